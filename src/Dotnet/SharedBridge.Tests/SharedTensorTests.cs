using System.Buffers.Binary;
using System.Numerics.Tensors;
using SharedBridge.Format;
using SharedBridge.TestChild;

namespace SharedBridge.Tests;

/// <summary>
/// SharedTensor&lt;T&gt; (docs/format.md section 12, docs/api.md): the n-dimensional array segment (kind 9), created and
/// opened in this process and across processes, its C-order indexer and strides, the copies, the TensorSpan views of
/// SharedBridge.Tensors, typed-open mismatches, and hostile kind-9 headers. Segment names start with sbt_tncs_.
/// </summary>
public class SharedTensorTests
{
    private const string Prefix = "sbt_tncs";
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(200);

    private static string NewName(string tag = "t") => Names.Unique(tag, Prefix);

    // ------------------------------------------------------------ the object in one process

    [Fact]
    public void ShapeStridesRankLengthAndTheHeaderDescribeTheTensor()
    {
        using var t = SharedTensor<float>.Create(NewName(), [2, 3, 4]);
        Assert.Equal([2, 3, 4], t.Shape.ToArray());
        Assert.Equal([12, 4, 1], t.Strides.ToArray());
        Assert.Equal([2L, 3, 4], t.GetShape());
        Assert.Equal([12L, 4, 1], t.GetStrides());
        Assert.Equal(3, t.Rank);
        Assert.Equal(24, t.Length);
        Assert.Equal(96, t.ByteLength);
        Assert.Equal('f', t.TypeCode);
        Assert.True(t.IsSynchronized);
        Assert.Equal(SegmentKind.NDArray, t.Header.Kind);
        Assert.Equal([2L, 3, 4], t.Header.Shape);
        Assert.Equal((7, 7), (t.Header.Version, t.Header.CompatVersion));
        Assert.Equal($"SharedTensor<Single>(\"{t.Name}\", [2, 3, 4])", t.ToString());
    }

    [Fact]
    public void TheHeaderBytesFollowSection12()
    {
        string name = NewName();
        using var t = SharedTensor<double>.Create(name, [2, 3, 4]);
        byte[] b = File.ReadAllBytes(Names.ShmPath(name));
        Assert.Equal(7, BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(0x008)));      // version
        Assert.Equal(7, BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(0x00A)));      // compat_version
        Assert.Equal(0x240u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(0x00C))); // align64(0x200 + 8 x 3)
        Assert.Equal(9, b[0x010]);
        Assert.Equal(24UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x018)));
        Assert.Equal(0x240UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x020))); // data_offset = header_size
        Assert.Equal(192UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x028)));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(0x058)));     // ndim
        Assert.Equal(0x200u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(0x05C))); // shape_offset
        Assert.Equal([2UL, 3, 4], Enumerable.Range(0, 3).Select(k => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x200 + 8 * k))));
        Assert.All(b[0x218..0x240], x => Assert.Equal(0, x));
        Assert.Equal(0x240 + 192, b.Length);
    }

    [Fact]
    public void AStructTensorHasItsShapeAfterTheFieldTable()
    {
        string name = NewName();
        using var t = SharedTensor<TensorPoint>.Create(name, [3, 2]);
        byte[] b = File.ReadAllBytes(Names.ShmPath(name));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(0x03C)));      // x, y, flag
        Assert.Equal(0x2C0u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(0x05C)));  // 0x200 + 3 x 64
        Assert.Equal(0x300u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(0x00C)));  // align64(0x2C0 + 16)
        Assert.Equal([3UL, 2], new[] { BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x2C0)), BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x2C8)) });
        Assert.Equal('T', t.TypeCode);
        t[2, 1] = new TensorPoint { X = 1.5, Y = -3, Flag = true };
        using var again = SharedTensor<TensorPoint>.Open(name);
        Assert.Equal(new TensorPoint { X = 1.5, Y = -3, Flag = true }, again.AsSpan()[5]);
    }

    [Fact]
    public void TheIndexerIsCOrderOverTheFlatSpan()
    {
        using var t = SharedTensor<int>.Create(NewName(), [2, 3, 4]);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++)
                    t[i, j, k] = 100 * i + 10 * j + k;
        var flat = t.AsSpan();
        Assert.Equal(24, flat.Length);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++)
                    Assert.Equal(100 * i + 10 * j + k, flat[(int)(i * t.Strides[0] + j * t.Strides[1] + k * t.Strides[2])]);
        Assert.Equal(123, t.Get(1, 2, 3));
        t.Set([0, 1, 2], -7);
        Assert.Equal(-7, flat[6]);
    }

    [Fact]
    public void RanksZeroAndEightAndAnEmptyDimension()
    {
        using (var scalar = SharedTensor<double>.Create(NewName(), []))
        {
            Assert.Equal((0, 1L), (scalar.Rank, scalar.Length));
            Assert.Empty(scalar.Header.Shape!);
            scalar[[]] = 2.5;
            Assert.Equal(2.5, scalar.AsSpan()[0]);
            Assert.Equal(0x200, scalar.Header.HeaderSize);
        }
        using (var eight = SharedTensor<short>.Create(NewName(), [2, 1, 2, 1, 2, 1, 2, 3]))
        {
            Assert.Equal((8, 48L), (eight.Rank, eight.Length));
            Assert.Equal([24, 24, 12, 12, 6, 6, 3, 1], eight.Strides.ToArray());
            eight[1, 0, 1, 0, 1, 0, 1, 2] = 99;
            Assert.Equal(99, eight.AsSpan()[47]);
        }
        using (var empty = SharedTensor<long>.Create(NewName(), [3, 0, 2]))
        {
            Assert.Equal(0, empty.Length);
            Assert.Equal(0, empty.Header.DataSize);
            Assert.Equal([0, 2, 1], empty.Strides.ToArray());
            Assert.Empty(empty.ToArray());
            Assert.Throws<IndexOutOfRangeException>(() => empty[0, 0, 0]);
        }
    }

    [Fact]
    public void IndexerErrorsNameTheIndexAndTheShape()
    {
        using var t = SharedTensor<double>.Create(NewName(), [2, 3]);
        var e = Assert.Throws<IndexOutOfRangeException>(() => t[1, 3]);
        Assert.Contains("Index 3 of dimension 1", e.Message);
        Assert.Contains("[2, 3]", e.Message);
        Assert.Throws<IndexOutOfRangeException>(() => t[-1, 0]);
        var rank = Assert.Throws<ArgumentException>(() => t[1]);
        Assert.Contains("1 index given", rank.Message);
        Assert.Contains("2 dimensions", rank.Message);
        Assert.Throws<ArgumentException>(() => t[0, 0, 0]);
    }

    [Fact]
    public void CopyFromAndCopyToMoveAllElementsInCOrderAndRefuseAnotherLength()
    {
        using var t = SharedTensor<double>.Create(NewName(), [2, 3]);
        double[] values = [1, 2, 3, 4, 5, 6];
        t.CopyFrom(values);
        Assert.Equal(6.0, t[1, 2]);
        Assert.Equal(2.0, t[0, 1]);
        var back = new double[6];
        t.CopyTo(back);
        Assert.Equal(values, back);
        Assert.Equal(values, t.ToArray());
        var e = Assert.Throws<ArgumentException>(() => t.CopyFrom(new double[5]));
        Assert.Contains("5 elements given", e.Message);
        Assert.Contains("[2, 3] holds 6", e.Message);
        Assert.Throws<ArgumentException>(() => t.CopyTo(new double[7]));
        Assert.Throws<ArgumentNullException>(() => t.CopyFrom((double[])null!));
    }

    [Fact]
    public void CreateWithInitialElementsPublishesThemAndRefusesAnotherCount()
    {
        string name = NewName();
        using (var t = SharedTensor<int>.Create(name, [2, 3], [1, 2, 3, 4, 5, 6]))
        using (var opened = SharedTensor<int>.Open(name))
        {
            Assert.Equal(6, opened[1, 2]);
            Assert.Equal(2, opened[0, 1]);
        }
        using (var fromArray = SharedTensor<double>.Create(name, new long[] { 3 }, new double[] { 0.5, 1.5, 2.5 }))
            Assert.Equal([0.5, 1.5, 2.5], fromArray.ToArray());
        using (var scalar = SharedTensor<double>.Create(name, [], [4.5]))
            Assert.Equal(4.5, scalar[[]]);
        var e = Assert.Throws<ArgumentException>(() => SharedTensor<int>.Create(name, [2, 3], [1, 2, 3]));
        Assert.Contains("3 initial elements given for the shape [2, 3], which holds 6", e.Message);
        Assert.False(Names.Exists(name));
    }

    [Fact]
    public void CopiesNormalizeBools()
    {
        using var t = SharedTensor<bool>.Create(NewName(), [2, 2]);
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.AsSpan())[3] = 7; // another language wrote a non-zero byte
        Assert.Equal([false, false, false, true], t.ToArray());
        Assert.True(t.Get(1, 1));
        var copy = new bool[4];
        t.CopyTo(copy);
        Assert.Equal(1, System.Runtime.CompilerServices.Unsafe.As<bool, byte>(ref copy[3]));
    }

    [Fact]
    public void CreateRefusesMoreThan32DimensionsNegativeDimensionsAndTooMuchData()
    {
        var tooMany = Assert.Throws<ArgumentException>(() => SharedTensor<byte>.Create(NewName(), new long[33]));
        Assert.Contains("at most 32", tooMany.Message);
        using (var max = SharedTensor<byte>.Create(NewName(), Enumerable.Repeat(1L, 32).ToArray()))
            Assert.Equal(32, max.Rank);
        Assert.Throws<ArgumentOutOfRangeException>(() => SharedTensor<byte>.Create(NewName(), [2, -1]));
        var huge = Assert.Throws<ArgumentOutOfRangeException>(() => SharedTensor<double>.Create(NewName(), [1L << 31, 1L << 31, 4]));
        Assert.Contains("more data than a segment can", huge.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => SharedTensor<double>.Create(NewName(), [1L << 62, 4, 0, 1L << 62]));
        Assert.Empty(Directory.GetFiles("/dev/shm", $"{Prefix}_{Environment.ProcessId}-*"));
    }

    [Fact]
    public void TheShapeIsNotReReadFromSharedMemory()
    {
        string name = NewName();
        using var t = SharedTensor<int>.Create(name, [2, 3]);
        using var opened = SharedTensor<int>.Open(name);
        // Another process scribbles over the shape (and ndim) after both validated the header.
        using (var file = new FileStream(Names.ShmPath(name), FileMode.Open, FileAccess.Write))
        {
            file.Position = 0x058;
            file.Write(BitConverter.GetBytes(1u));
            file.Position = 0x200;
            file.Write(BitConverter.GetBytes(1UL << 40));
        }
        Assert.Equal([2, 3], opened.Shape.ToArray());
        Assert.Equal([2L, 3], opened.Header.Shape);
        Assert.Throws<IndexOutOfRangeException>(() => opened[2, 0]);
        Assert.Equal(6, opened.AsSpan().Length);
    }

    // ------------------------------------------------------------ lock, lifetime, typed open

    [Fact]
    public void TheLockAndTheLifetimesWorkAsForEveryObject()
    {
        string name = NewName();
        using (var t = SharedTensor<long>.Create(name, [4]))
        {
            using (t.Lock()) t[0] += 1;
            Assert.True(t.TryLock(TimeSpan.Zero, out var scope));
            scope.Dispose();
            Assert.Equal(0, t.LockRecoveries);
            using var shared = t.GetLock();
            using var other = SharedArray<long>.Create(NewName(), 2, new SegmentOptions { SharedLock = shared });
            using (other.Lock()) Assert.True(Names.Exists(name));
        }
        Assert.False(Names.Exists(name)); // the creator's Dispose unlinks

        using (var raw = SharedTensor<long>.Create(name, [4], new SegmentOptions { Synchronized = false }))
        {
            Assert.False(raw.IsSynchronized);
            Assert.Contains("not synchronized", Assert.Throws<InvalidOperationException>(() => raw.Lock()).Message);
        }
        using (SharedTensor<long>.Create(name, [4], new SegmentOptions { Lifetime = SegmentLifetime.Persistent })) { }
        try
        {
            Assert.True(Names.Exists(name));
            using var kept = SharedTensor<long>.Open(name);
            Assert.Equal(SegmentLifetime.Persistent, kept.Header.Lifetime);
            kept.Unlink();
            Assert.False(Names.Exists(name));
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
        using (var first = SharedTensor<long>.Create(name, [4], new SegmentOptions { Lifetime = SegmentLifetime.LastCloser }))
        using (var second = SharedTensor<long>.Open(name))
        {
            first.Dispose();
            Assert.True(Names.Exists(name)); // the last closer removes it
        }
        Assert.False(Names.Exists(name));
    }

    [Fact]
    public void TypedOpenMismatchesNameBothSides()
    {
        string name = NewName();
        using var t = SharedTensor<double>.Create(name, [2, 3]);
        var type = Assert.Throws<TypeMismatchException>(() => SharedTensor<float>.Open(name));
        Assert.Contains("'d'", type.Message);
        Assert.Contains("Single", type.Message);
        var rank = Assert.Throws<TypeMismatchException>(() => SharedTensor<double>.Open(name, 3));
        Assert.Contains("its shape is [2, 3] (rank 2), not of rank 3", rank.Message);
        var shape = Assert.Throws<TypeMismatchException>(() => SharedTensor<double>.Open(name, [3, 2]));
        Assert.Contains("its shape is [2, 3], not [3, 2]", shape.Message);
        using (var ok = SharedTensor<double>.Open(name, [2, 3])) Assert.Equal(2, ok.Rank);
        using (var ok = SharedTensor<double>.Open(name, 2)) Assert.Equal(6, ok.Length);
        var asArray = Assert.Throws<TypeMismatchException>(() => SharedArray<double>.Open(name));
        Assert.Contains("n-dimensional array of shape [2, 3]", asArray.Message);
        Assert.Contains("SharedTensor<Double>.Open", asArray.Message);
        Assert.Contains("it is an n-dimensional array segment, not a value", Assert.Throws<TypeMismatchException>(() => SharedValue<double>.Open(name)).Message);
        Assert.Contains("it is an n-dimensional array of 'd'", Assert.Throws<TypeMismatchException>(() => SharedCharArray.Open(name)).Message);
        Assert.Contains("not a queue", Assert.Throws<TypeMismatchException>(() => SharedQueue.Open(name)).Message);
        var structure = Assert.Throws<TypeMismatchException>(() => SharedTensor<TensorPoint>.Open(name));
        Assert.Contains("TensorPoint", structure.Message);

        string arrayName = NewName();
        using var array = SharedArray<double>.Create(arrayName, 6);
        var flat = Assert.Throws<TypeMismatchException>(() => SharedTensor<double>.Open(arrayName));
        Assert.Contains("one-dimensional array of 6 elements with no shape", flat.Message);
        using var segment = SharedSegment.Open(name);
        Assert.Equal([2L, 3], segment.Header.Shape);
    }

    [Fact]
    public void TheSurveyShowsTheShape()
    {
        string name = NewName();
        using var t = SharedTensor<float>.Create(name, [2, 3, 4]);
        var info = SegmentDirectory.Inspect(name, 3);
        Assert.Equal(SegmentStatus.Ok, info.Status);
        Assert.Equal(SegmentKind.NDArray, info.Kind);
        Assert.Equal([2L, 3, 4], info.Shape);
        Assert.Equal(3, info.Ndim);
        Assert.Equal(24, info.Length);
        Assert.Equal(3, info.Elements.Count);
        using var array = SharedArray<float>.Create(NewName(), 2);
        var arrayInfo = SegmentDirectory.Inspect(array.Name);
        Assert.Null(arrayInfo.Shape);
        Assert.Null(arrayInfo.Ndim);
    }

    // ------------------------------------------------------------ TensorSpan (SharedBridge.Tensors)

    [Fact]
    public void TheTensorSpanIsAViewOfTheSharedMemoryBothWays()
    {
        string name = NewName();
        using var t = SharedTensor<float>.Create(name, [2, 3, 4]);
        TensorSpan<float> span = t.AsTensorSpan();
        Assert.Equal([2, 3, 4], span.Lengths.ToArray());
        Assert.Equal([12, 4, 1], span.Strides.ToArray());
        Assert.Equal(24, span.FlattenedLength);
        span[1, 2, 3] = 42f;
        Assert.Equal(42f, t[1, 2, 3]);
        t[0, 1, 2] = -1.5f;
        Assert.Equal(-1.5f, span[0, 1, 2]);
        using var other = SharedTensor<float>.Open(name);       // another mapping of the same memory
        Assert.Equal(42f, other[1, 2, 3]);
        other.AsTensorSpan()[1, 0, 0] = 7f;
        Assert.Equal(7f, t.AsReadOnlyTensorSpan()[1, 0, 0]);
        ReadOnlyTensorSpan<float> read = other.AsReadOnlyTensorSpan();
        Assert.Equal(-1.5f, read[0, 1, 2]);
    }

    [Fact]
    public void TheCoreAssemblyReferencesOnlyTheSharedFrameworkAndTheCompanionDoesTheTensors()
    {
        // The SharedBridge assembly stays BCL-only: everything it references is in the runtime's own folder.
        string runtime = System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory();
        foreach (var reference in typeof(SharedTensor<>).Assembly.GetReferencedAssemblies())
        {
            var loaded = System.Reflection.Assembly.Load(reference);
            Assert.True(loaded.Location.StartsWith(runtime, StringComparison.Ordinal), $"SharedBridge references {reference.Name} from {loaded.Location}");
        }
        Assert.DoesNotContain(typeof(SharedTensor<>).Assembly.GetReferencedAssemblies(), r => r.Name == "System.Numerics.Tensors");
        Assert.Contains(typeof(TensorSpanExtensions).Assembly.GetReferencedAssemblies(), r => r.Name == "System.Numerics.Tensors");
    }

    [Fact]
    public void TensorSpansOfRankZeroAndOfAnEmptyTensor()
    {
        using var scalar = SharedTensor<double>.Create(NewName(), []);
        var view = scalar.AsTensorSpan();
        Assert.Equal(1, view.FlattenedLength);
        view[0] = 3.25;
        Assert.Equal(3.25, scalar[[]]);
        using var empty = SharedTensor<double>.Create(NewName(), [4, 0]);
        Assert.Equal(0, empty.AsTensorSpan().FlattenedLength);
        Assert.Equal([4, 0], empty.AsReadOnlyTensorSpan().Lengths.ToArray());
    }

    [Fact]
    public void ADisposedTensorGivesNoView()
    {
        var t = SharedTensor<int>.Create(NewName(), [2]);
        t.Dispose();
        Assert.Throws<ObjectDisposedException>(() => t.AsTensorSpan());
        Assert.Throws<ObjectDisposedException>(() => t.AsSpan());
        Assert.Throws<ObjectDisposedException>(() => t[0]);
    }

    // ------------------------------------------------------------ across processes

    public static TheoryData<string, string> TypesAndShapes => new()
    {
        { "d", "" }, { "d", "5" }, { "d", "2 3 4" }, { "d", "2 1 2 1 2 1 2 3" },
        { "f", "2 3 4" }, { "i", "3 0 2" }, { "q", "2 3 4" }, { "B", "7" }, { "h", "" }, { "?", "2 3 4" },
        { "point", "" }, { "point", "5" }, { "point", "2 3 4" }, { "point", "2 1 2 1 2 1 2 3" },
    };

    [Theory]
    [MemberData(nameof(TypesAndShapes))]
    public void AChildCreatesThisProcessReadsAndWritesThroughATensorSpan(string type, string dims)
    {
        string name = NewName("srv");
        string[] shape = dims.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        using var child = Child.Start(["tensor-serve", name, type, "3", .. shape]);
        child.ExpectLine("created");
        try
        {
            ByType(type, new ReadAndRewrite(name, shape.Select(long.Parse).ToArray(), 3));
            child.WriteLine("go");
            child.ExpectLine("ok");
            Assert.Equal(0, child.WaitForExit());
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
        Assert.False(Names.Exists(name));
    }

    [Theory]
    [MemberData(nameof(TypesAndShapes))]
    public void ThisProcessCreatesAChildOpensByRankReadsAndWrites(string type, string dims)
    {
        string name = NewName("tch");
        long[] shape = dims.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray();
        ByType(type, new CreateForChild(name, shape));
        Assert.False(Names.Exists(name));
    }

    private interface ITyped
    {
        void Run<T>() where T : unmanaged;
    }

    private static void ByType(string type, ITyped test)
    {
        switch (type)
        {
            case "d": test.Run<double>(); break;
            case "f": test.Run<float>(); break;
            case "i": test.Run<int>(); break;
            case "q": test.Run<long>(); break;
            case "B": test.Run<byte>(); break;
            case "h": test.Run<short>(); break;
            case "?": test.Run<bool>(); break;
            case "point": test.Run<TensorPoint>(); break;
            default: throw new ArgumentException(type);
        }
    }

    /// <summary>Opens the child's tensor with its shape, checks the pattern through the indexer and the
    /// TensorSpan, and writes the next pattern through the TensorSpan.</summary>
    private sealed record ReadAndRewrite(string Name, long[] Shape, int Salt) : ITyped
    {
        public void Run<T>() where T : unmanaged
        {
            nint[] shape = Array.ConvertAll(Shape, d => (nint)d);
            using var t = SharedTensor<T>.Open(Name, shape);
            Assert.Equal(Shape.Aggregate(1L, (a, b) => a * b), t.Length);
            var span = t.AsTensorSpan();
            for (long i = 0; i < t.Length; i++)
            {
                nint[] at = TensorPattern.Indices(i, t.Shape);
                nint[] viewAt = t.Rank == 0 ? [0] : at;
                Assert.Equal(TensorPattern.Value<T>(i, Salt), t[at]);
                Assert.Equal(TensorPattern.Value<T>(i, Salt), span[viewAt]);
                span[viewAt] = TensorPattern.Value<T>(i, Salt + 1);
            }
        }
    }

    /// <summary>Creates the tensor, writes the pattern through the TensorSpan, lets the child check it and write
    /// the next one, and checks that through the TensorSpan.</summary>
    private sealed record CreateForChild(string Name, long[] Shape) : ITyped
    {
        public void Run<T>() where T : unmanaged
        {
            using var t = SharedTensor<T>.Create(Name, Shape);
            var span = t.AsTensorSpan();
            for (long i = 0; i < t.Length; i++) span[t.Rank == 0 ? [0] : TensorPattern.Indices(i, t.Shape)] = TensorPattern.Value<T>(i, 11);
            string type = typeof(T) == typeof(double) ? "d" : typeof(T) == typeof(float) ? "f" : typeof(T) == typeof(int) ? "i"
                : typeof(T) == typeof(long) ? "q" : typeof(T) == typeof(byte) ? "B" : typeof(T) == typeof(short) ? "h"
                : typeof(T) == typeof(bool) ? "?" : "point";
            using var child = Child.Start("tensor-touch", Name, type, $"{Shape.Length}", "11");
            string strides = string.Join(", ", t.GetStrides());
            child.ExpectLine($"shape [{string.Join(", ", Shape)}] strides [{strides}] ok");
            Assert.Equal(0, child.WaitForExit());
            var read = t.AsReadOnlyTensorSpan();
            var flat = t.ToArray();
            for (long i = 0; i < t.Length; i++)
            {
                Assert.Equal(TensorPattern.Value<T>(i, 12), read[t.Rank == 0 ? [0] : TensorPattern.Indices(i, t.Shape)]);
                Assert.Equal(TensorPattern.Value<T>(i, 12), flat[i]);
            }
        }
    }

    [Fact]
    public void AChildAskingForAnotherRankGetsATypeMismatch()
    {
        string name = NewName();
        using var t = SharedTensor<double>.Create(name, [2, 3]);
        using var child = Child.Start("tensor-touch", name, "d", "3", "0");
        child.ExpectLine($"TypeMismatchException: Segment \"{name}\" cannot be opened as SharedTensor<Double>: its shape is [2, 3] (rank 2), not of rank 3.");
        Assert.Equal(3, child.WaitForExit());
    }

    // ------------------------------------------------------------ hostile kind-9 headers (section 12.1)

    /// <summary>The bytes of a real tensor segment (disposed afterwards).</summary>
    private static byte[] TensorBytes<T>(params long[] shape) where T : unmanaged
    {
        string name = NewName("src");
        using (SharedTensor<T>.Create(name, shape))
            return File.ReadAllBytes(Names.ShmPath(name));
    }

    /// <summary>Writes <paramref name="bytes"/> as a segment, opens it untyped, removes it; what the open threw.</summary>
    private static Exception? OpenBytes(byte[] bytes, Action<string>? use = null)
    {
        string name = NewName("file");
        File.WriteAllBytes(Names.ShmPath(name), bytes);
        try
        {
            (use ?? (n => { using var s = SharedSegment.Open(n, Short); _ = s.Data.Length; }))(name);
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }

    private static void U16(byte[] b, int at, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(at), v);
    private static void U32(byte[] b, int at, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(at), v);
    private static void U64(byte[] b, int at, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(at), v);

    /// <summary>Mutations of a double tensor of shape [2, 3, 4] (header 0x240, data 192 bytes at 0x240), each with
    /// the words a reader's message must name.</summary>
    private static readonly Dictionary<string, (Action<byte[]> Mutate, string Names)> Hostile = new()
    {
        ["ndim 33"] = (b => U32(b, 0x058, 33), "ndim 33"),
        ["ndim 2^32 - 1"] = (b => U32(b, 0x058, uint.MaxValue), "ndim 4294967295"),
        ["ndim 2 (header_size still fits)"] = (b => U32(b, 0x058, 2), "element_count 24"),
        ["ndim 9 (header_size too small)"] = (b => U32(b, 0x058, 9), "header_size"),
        ["shape_offset 0x208"] = (b => U32(b, 0x05C, 0x208), "shape_offset 0x208"),
        ["shape_offset 0"] = (b => U32(b, 0x05C, 0), "shape_offset 0x0"),
        ["shape_offset past the header"] = (b => U32(b, 0x05C, 0x10000), "shape_offset"),
        ["header_size 0x280"] = (b => U32(b, 0x00C, 0x280), "header_size 640"),
        ["header_size 0x200"] = (b => U32(b, 0x00C, 0x200), "header_size 512"),
        ["dimension 2^63"] = (b => U64(b, 0x200, 1UL << 63), "dimension 0"),
        ["dimension 2^64 - 1"] = (b => U64(b, 0x208, ulong.MaxValue), "dimension 1"),
        ["product overflowing"] = (b => { U64(b, 0x200, 1UL << 62); U64(b, 0x208, 4); }, "exceeds 2^63 - 1"),
        ["product wrapping to element_count"] = (b => { U64(b, 0x200, 1UL << 32); U64(b, 0x208, 1UL << 32); U64(b, 0x210, 24); }, "exceeds 2^63 - 1"),
        // 8 x (2^61 + 3) wraps to 24 mod 2^64: a wrapping reader would accept 2^61 + 3 elements over 24 bytes.
        ["product wrapping to a consistent element_count"] = (b => { U64(b, 0x200, (1UL << 61) + 3); U64(b, 0x208, 1); U64(b, 0x210, 1); U64(b, 0x018, 3); U64(b, 0x028, 24); }, "exceeds 2^63 - 1"),
        ["product times element_size overflowing"] = (b => { U64(b, 0x200, 1UL << 30); U64(b, 0x208, 1UL << 30); U64(b, 0x210, 1UL << 1); U64(b, 0x018, 1UL << 61); U64(b, 0x028, 0); }, "exceeds 2^63 - 1"),
        ["a zero dimension after an overflowing product"] = (b => { U64(b, 0x200, 1UL << 62); U64(b, 0x208, 0); U64(b, 0x210, 1UL << 62); U64(b, 0x018, 0); U64(b, 0x028, 0); }, "exceeds 2^63 - 1"),
        ["element_count 25"] = (b => { U64(b, 0x018, 25); U64(b, 0x028, 200); }, "element_count 25"),
        ["element_count with a zero dimension"] = (b => U64(b, 0x208, 0), "element_count 24"),
        ["data_size 184"] = (b => U64(b, 0x028, 184), "data_size 184"),
        ["element_count and data_size 0"] = (b => { U64(b, 0x018, 0); U64(b, 0x028, 0); }, "element_count 0"),
        ["compat_version 6"] = (b => U16(b, 0x00A, 6), "needs compat_version 7, not 6"),
        ["flags 1"] = (b => U16(b, 0x012, 1), "flags"),
        ["typecode z"] = (b => b[0x011] = (byte)'z', "typecode"),
    };

    public static TheoryData<string> HostileCases => new(Hostile.Keys);

    [Theory]
    [MemberData(nameof(HostileCases))]
    public void AHostileKind9HeaderIsCorruptAndTheMessageNamesTheField(string mutation)
    {
        byte[] bytes = TensorBytes<double>(2, 3, 4);
        var (mutate, words) = Hostile[mutation];
        mutate(bytes);
        SegmentFiles.FixCrc(bytes);
        foreach (var open in new Action<string>[]
                 {
                     n => { using var s = SharedSegment.Open(n, Short); },
                     n => { using var t = SharedTensor<double>.Open(n, Short); },
                 })
        {
            var e = OpenBytes(bytes, open);
            Assert.IsType<CorruptSegmentException>(e);
            Assert.Contains(words, e!.Message);
            Assert.Contains($"Segment \"{Prefix}_", e.Message);
        }
    }

    [Fact]
    public void AStructTensorWhoseShapeOffsetIgnoresTheFieldTableIsCorrupt()
    {
        byte[] bytes = TensorBytes<TensorPoint>(3, 2);
        U32(bytes, 0x05C, 0x200);
        SegmentFiles.FixCrc(bytes);
        Assert.Contains("shape_offset 0x200 is not 0x2C0", Assert.IsType<CorruptSegmentException>(OpenBytes(bytes)).Message);
    }

    [Fact]
    public void AnObjectTooSmallForTheShapeIsCorrupt()
    {
        byte[] bytes = TensorBytes<double>(2, 3, 4);
        var e = OpenBytes(bytes[..^8]);
        Assert.Contains("extends past the object size", Assert.IsType<CorruptSegmentException>(e).Message);
        // The shape says more than the object holds, every other word agreeing with the shape.
        U64(bytes, 0x210, 5);
        U64(bytes, 0x018, 30);
        U64(bytes, 0x028, 240);
        SegmentFiles.FixCrc(bytes);
        Assert.Contains("extends past the object size", Assert.IsType<CorruptSegmentException>(OpenBytes(bytes)).Message);
    }

    [Fact]
    public void ADamagedShapeFailsTheChecksum()
    {
        byte[] bytes = TensorBytes<double>(2, 3, 4);
        U64(bytes, 0x208, 4); // [2, 4, 4]; the checksum covers the shape (section 3.3)
        Assert.Contains("checksum", Assert.IsType<CorruptSegmentException>(OpenBytes(bytes)).Message);
    }

    [Fact]
    public void HugeDimensionsBesideAZeroOneAreAValidEmptyTensor()
    {
        byte[] bytes = TensorBytes<double>(2, 3, 4);
        U64(bytes, 0x200, 1UL << 40);
        U64(bytes, 0x208, 0);
        U64(bytes, 0x210, 1UL << 19);
        U64(bytes, 0x018, 0);
        U64(bytes, 0x028, 0);
        SegmentFiles.FixCrc(bytes);
        Assert.Null(OpenBytes(bytes, name =>
        {
            using var t = SharedTensor<double>.Open(name);
            Assert.Equal([1L << 40, 0, 1L << 19], t.GetShape());
            Assert.Equal(0, t.Length);
        }));
    }

    [Fact]
    public void MoreElementsThanASpanHoldsOpenAndIndexButGiveNoFlatSpan()
    {
        // A sparse 4 GiB byte tensor of shape [65536, 65536]: 2^32 elements, above int.MaxValue.
        byte[] bytes = TensorBytes<byte>(1, 1);
        U64(bytes, 0x200, 1UL << 16);
        U64(bytes, 0x208, 1UL << 16);
        U64(bytes, 0x018, 1UL << 32);
        U64(bytes, 0x028, 1UL << 32);
        SegmentFiles.FixCrc(bytes);
        int dataOffset = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(0x020));
        string name = NewName("sparse");
        File.WriteAllBytes(Names.ShmPath(name), bytes[..dataOffset]);
        try
        {
            using (var f = new FileStream(Names.ShmPath(name), FileMode.Open)) f.SetLength(dataOffset + (1L << 32));
            using var t = SharedTensor<byte>.Open(name, [65536, 65536]);
            Assert.Equal(1L << 32, t.Length);
            t[65535, 65535] = 9;
            Assert.Equal(9, t.Get(65535, 65535));
            Assert.Contains("more than a Span can", Assert.Throws<InvalidOperationException>(() => t.AsSpan()).Message);
            var view = t.AsTensorSpan();
            Assert.Equal((nint)1 << 32, view.FlattenedLength);
            Assert.Equal(9, view[65535, 65535]);
            Assert.Throws<ArgumentException>(() => t.CopyTo(new byte[16]));
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }

    [Fact]
    public void KindsAbove9AndCompatVersionsAbove7AskForAnUpgrade()
    {
        byte[] bytes = TensorBytes<double>(2);
        bytes[0x010] = 10;
        SegmentFiles.FixCrc(bytes);
        Assert.Contains("unknown segment kind 10", Assert.IsType<UnsupportedFormatVersionException>(OpenBytes(bytes)).Message);
        bytes = TensorBytes<double>(2);
        U16(bytes, 0x008, 8);
        U16(bytes, 0x00A, 8);
        U32(bytes, 0x058, 99); // whatever a newer writer put there
        SegmentFiles.FixCrc(bytes);
        Assert.IsType<UnsupportedFormatVersionException>(OpenBytes(bytes));
    }

    [Fact]
    public void OtherKindsIgnoreTheReservedNdimAndShapeOffsetWords()
    {
        string name = NewName();
        byte[] bytes;
        using (var a = SharedArray<double>.Create(name, [1.0, 2.0]))
            bytes = File.ReadAllBytes(Names.ShmPath(name));
        U32(bytes, 0x058, 40);
        U32(bytes, 0x05C, 0x1234);
        SegmentFiles.FixCrc(bytes);
        Assert.Null(OpenBytes(bytes, n =>
        {
            using var a = SharedArray<double>.Open(n);
            Assert.Equal([1.0, 2.0], a.ToArray());
            Assert.Null(a.Header.Shape);
        }));
    }
}
