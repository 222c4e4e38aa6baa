using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using SharedBridge.Format;
using static SharedBridge.Tests.HeaderFormatTests;

namespace SharedBridge.Tests;

public struct RuneAndFlag
{
    public int Id;
    public Rune Letter;
    public bool Flag;
}

public struct ThisStructureNameIsLongerThanThirtyOneCharacters
{
    public int Value;
}

public struct Pünktchen
{
    public int Value;
}

public static class Outer
{
    public struct Inner
    {
        public int Value;
    }
}

public struct Pair<TFirst> where TFirst : unmanaged
{
    public TFirst First;
    public int Second;
}

public struct ReservedCtypesName
{
    public int _fields_;
}

public struct ReservedDunderName
{
    public int __private;
}

// Nest1 has a field at depth 16 (allowed); Nest0 one at depth 17 (refused).
public struct Nest16 { public double V; }
public struct Nest15 { public Nest16 N; }
public struct Nest14 { public Nest15 N; }
public struct Nest13 { public Nest14 N; }
public struct Nest12 { public Nest13 N; }
public struct Nest11 { public Nest12 N; }
public struct Nest10 { public Nest11 N; }
public struct Nest9 { public Nest10 N; }
public struct Nest8 { public Nest9 N; }
public struct Nest7 { public Nest8 N; }
public struct Nest6 { public Nest7 N; }
public struct Nest5 { public Nest6 N; }
public struct Nest4 { public Nest5 N; }
public struct Nest3 { public Nest4 N; }
public struct Nest2 { public Nest3 N; }
public struct Nest1 { public Nest2 N; }
public struct Nest0 { public Nest1 N; }

/// <summary>The header rules of docs/format.md (sections 1.2 to 7.2, one group per rule below), checked on real segments.</summary>
public class HeaderRuleTests
{
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(10);

    private static byte[] DoubleSegment() => SegmentFiles.Of(n => SharedArray<double>.Create(n, [1.0, 2.0, 3.0, 4.0]));

    private static void OpenAny(string name, TimeSpan timeout)
    {
        using var s = SharedSegment.Open(name, timeout);
        _ = s.Data.Length;
    }

    /// <summary>Runs <paramref name="open"/> and returns its exception and how long it took.</summary>
    private static (Exception? Error, TimeSpan Elapsed) Timed(byte[] bytes, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        var e = SegmentFiles.Try(bytes, n => OpenAny(n, timeout));
        return (e, clock.Elapsed);
    }

    // ------------------------------------------------------------ lock-only segments (format.md section 5)

    [Fact]
    public void LockOnlySegmentHasTypecodeZeroAndAcceptsALargerObjectButNotASmallerOne()
    {
        byte[] bytes = SegmentFiles.Of(n => SharedLock.Create(n));
        Assert.Equal(512, bytes.Length);
        Assert.Equal(0, bytes[0x011]);
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(0x028)));

        byte[] larger = [.. bytes, .. new byte[4096]];
        Assert.Null(SegmentFiles.Try(larger, n => { using var l = SharedLock.Open(n); using (l.Lock()) { } }));
        var e = SegmentFiles.Try(bytes[..500], n => SharedLock.Open(n).Dispose());
        Assert.Contains("truncated", Assert.IsType<CorruptSegmentException>(e).Message);
    }

    // ------------------------------------------------------------ the order of checks on open (format.md section 6.2)

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void AnObjectOfOneToSevenBytesIsNotASharedBridgeSegmentAtOnce(int size)
    {
        var (e, elapsed) = Timed(DoubleSegment()[..size], Long);
        Assert.IsType<NotASharedBridgeSegmentException>(e);
        Assert.True(elapsed < TimeSpan.FromSeconds(3), $"took {elapsed}: no waiting for a foreign object");
    }

    [Fact]
    public void WrongMagicIsNotASharedBridgeSegmentAtOnceEvenWithALongTimeout()
    {
        byte[] foreign = new byte[4096];
        "PYTHONMP"u8.CopyTo(foreign);
        var (e, elapsed) = Timed(foreign, Long);
        var error = Assert.IsType<NotASharedBridgeSegmentException>(e);
        Assert.Contains("wrong magic: this name belongs to another program", error.Message);
        Assert.IsAssignableFrom<CorruptSegmentException>(error); // a subclass: catching CorruptSegmentException covers it (docs/api.md)
        Assert.True(elapsed < TimeSpan.FromSeconds(3), $"took {elapsed}");

        // Even with a state word of 0 and a valid rest: only an all-zero magic means "not written yet".
        byte[] almost = DoubleSegment();
        almost[0] = (byte)'X';
        U32(almost, 0x180, 0);
        (e, elapsed) = Timed(almost, Long);
        Assert.IsType<NotASharedBridgeSegmentException>(e);
        Assert.True(elapsed < TimeSpan.FromSeconds(3), $"took {elapsed}");
    }

    [Fact]
    public void AnAllZeroObjectWithStateZeroIsACreatorNotDoneYet()
    {
        var (e, elapsed) = Timed(new byte[4096], Short);
        Assert.IsType<SegmentNotReadyException>(e);
        Assert.True(elapsed >= Short);

        // ... and becomes usable once the creator has written it.
        byte[] valid = DoubleSegment();
        string name = Names.Unique("late");
        File.WriteAllBytes(Names.ShmPath(name), new byte[valid.Length]);
        try
        {
            var writer = new Thread(() =>
            {
                Thread.Sleep(150);
                using var f = new FileStream(Names.ShmPath(name), FileMode.Open, FileAccess.Write);
                f.Write(valid);
            });
            writer.Start();
            using (var a = SharedArray<double>.Open(name, Long))
                Assert.Equal(4.0, a[3]);
            writer.Join();
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }

    [Fact]
    public void AZeroMagicWithAnotherStateOrTooShortIsNotOurs()
    {
        byte[] zeroMagicReady = new byte[4096];
        U32(zeroMagicReady, 0x180, 1);
        Assert.IsType<NotASharedBridgeSegmentException>(Timed(zeroMagicReady, Long).Error);
        Assert.IsType<NotASharedBridgeSegmentException>(Timed(new byte[100], Long).Error);
    }

    [Fact]
    public void StateIsCheckedBeforeTheOtherFields()
    {
        byte[] bytes = DoubleSegment();
        U32(bytes, 0x180, 3);
        U32(bytes, 0x014, 17); // a broken element_size too: the state is reported first
        var e = Assert.IsType<CorruptSegmentException>(Timed(bytes, Long).Error);
        Assert.Contains("state 3", e.Message);
    }

    [Fact]
    public void AFifoIsNotASharedBridgeSegmentAndNeverBlocks()
    {
        string name = Names.Unique("fifo");
        using (var mkfifo = Process.Start(new ProcessStartInfo("mkfifo", [Names.ShmPath(name)]) { UseShellExecute = false })!)
        {
            mkfifo.WaitForExit();
            Assert.Equal(0, mkfifo.ExitCode);
        }
        try
        {
            var clock = Stopwatch.StartNew();
            var e = Assert.Throws<NotASharedBridgeSegmentException>(() => SharedArray<int>.Open(name, Long));
            Assert.Contains("not a regular file", e.Message);
            Assert.True(SharedSegment.Exists(name));
            Assert.Throws<SegmentExistsException>(() => SharedArray<int>.Create(name, 1));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3));
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }

    [Fact]
    public void ADirectoryASymlinkAndASocketAreNotSharedBridgeSegments()
    {
        string dir = Names.Unique("dir"), link = Names.Unique("link"), socket = Names.Unique("sock"), target = Names.Unique();
        using var real = SharedArray<int>.Create(target, 1);
        Directory.CreateDirectory(Names.ShmPath(dir));
        File.CreateSymbolicLink(Names.ShmPath(link), Names.ShmPath(target));
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(Names.ShmPath(socket)));
        try
        {
            foreach (var name in new[] { dir, link, socket })
            {
                var e = Assert.Throws<NotASharedBridgeSegmentException>(() => SharedSegment.Open(name, Long));
                Assert.Contains("not a regular file", e.Message);
            }
        }
        finally
        {
            Directory.Delete(Names.ShmPath(dir));
            File.Delete(Names.ShmPath(link));
            File.Delete(Names.ShmPath(socket));
        }
    }

    // ------------------------------------------------------------ zero-length arrays, field tables (format.md sections 4 and 5)

    [Fact]
    public void ZeroLengthArraysOfEveryTypecodeAreValid()
    {
        void Check<T>(char? code = null) where T : unmanaged
        {
            string name = Names.Unique("empty");
            using var created = SharedArray<T>.Create(name, 0, new SegmentOptions { TypeCode = code });
            using var opened = SharedArray<T>.Open(name);
            Assert.Equal(0, opened.Length);
            Assert.Empty(opened.ToArray());
            Assert.Equal(0, opened.Header.DataSize);
        }
        Check<sbyte>(); Check<byte>(); Check<short>(); Check<ushort>(); Check<int>(); Check<uint>();
        Check<long>('l'); Check<ulong>('L'); Check<long>(); Check<ulong>(); Check<float>(); Check<double>();
        Check<bool>(); Check<Rune>(); Check<Point>(); Check<RuneAndFlag>();
        string chars = Names.Unique("emptyc");
        using var c = SharedCharArray.Create(chars, 0);
        using var opened = SharedCharArray.Open(chars);
        Assert.Empty(opened.Value);
    }

    [Fact]
    public void DuplicateFieldNamesInOneStructureAreCorruptButNotAcrossStructures()
    {
        byte[] bytes = SegmentFiles.Of(n => SharedArray<Point>.Create(n, 1));
        bytes[0x240] = (byte)'X'; // entry 1 "Y" -> "X"
        SegmentFiles.FixCrc(bytes);
        var e = Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(bytes, n => OpenAny(n, Short)));
        Assert.Contains("appears twice", e.Message);

        // Particle: Position (a Point) has X and Y; naming a top-level field "X" is fine.
        byte[] particle = SegmentFiles.Of(n => SharedArray<Particle>.Create(n, 1));
        Encoding.ASCII.GetBytes("X\0\0").CopyTo(particle, 0x200); // "Tag" -> "X"
        SegmentFiles.FixCrc(particle);
        Assert.Null(SegmentFiles.Try(particle, n => OpenAny(n, Short)));
    }

    [Fact]
    public void AFieldTableOnAScalarSegmentIsCorrupt()
    {
        foreach (int field in new[] { 0x03A, 0x03C, 0x040 })
        {
            byte[] bytes = DoubleSegment();
            bytes[field] = 1;
            SegmentFiles.FixCrc(bytes);
            Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(bytes, n => OpenAny(n, Short)));
        }
    }

    [Theory]
    [InlineData("_pack_")]
    [InlineData("_fields_")]
    [InlineData("__x")]
    [InlineData("_b_needsfree_")]
    public void AReservedFieldNameIsCorrupt(string reserved)
    {
        byte[] bytes = SegmentFiles.Of(n => SharedArray<Point>.Create(n, 1));
        Array.Clear(bytes, 0x200, 32);
        Encoding.ASCII.GetBytes(reserved).CopyTo(bytes, 0x200);
        SegmentFiles.FixCrc(bytes);
        var e = Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(bytes, n => OpenAny(n, Short)));
        Assert.Contains($"field name {reserved} is reserved", e.Message);
    }

    [Fact]
    public void WritersRefuseReservedFieldNames()
    {
        Assert.Contains("_fields_ is reserved",
            Assert.Throws<UnsupportedTypeException>(() => SharedArray<ReservedCtypesName>.Create(Names.Unique(), 1)).Message);
        Assert.Contains("__private is reserved",
            Assert.Throws<UnsupportedTypeException>(() => SharedValue<ReservedDunderName>.Create(Names.Unique())).Message);
    }

    // ------------------------------------------------------------ nesting depth (format.md section 4)

    [Fact]
    public void WritersAcceptSixteenLevelsAndRefuseSeventeen()
    {
        string name = Names.Unique("deep");
        using (var deep = SharedValue<Nest1>.Create(name))
        {
            Assert.Equal(16, deep.Header.Fields.Count);
            using var opened = SharedValue<Nest1>.Open(name);
            Assert.Equal(0.0, opened.Value.N.N.N.N.N.N.N.N.N.N.N.N.N.N.N.V);
        }
        var e = Assert.Throws<UnsupportedTypeException>(() => SharedValue<Nest0>.Create(Names.Unique()));
        Assert.Contains("deeper than 16", e.Message);
    }

    /// <summary>A hand-made chain of <paramref name="depth"/> nested entries (the last a double).</summary>
    private static byte[] ChainOfDepth(int depth)
    {
        var fields = new List<StructField>();
        for (int d = 0; d < depth; d++)
            fields.Add(new StructField("f", d < depth - 1 ? 'T' : 'd', 0, 1, 8, d - 1));
        var spec = new HeaderSpec(SegmentKind.Array, 'T', 8, 1, LockKind.None, LockType.None, "", "Deep", fields);
        var bytes = new byte[spec.TotalSize];
        HeaderCodec.WriteIdentity(bytes, spec, 1, 0, 0);
        U32(bytes, 0x180, 1);
        SegmentFiles.FixCrc(bytes);
        return bytes;
    }

    [Fact]
    public void ReadersRefuseATableDeeperThanSixteen()
    {
        Assert.Null(SegmentFiles.Try(ChainOfDepth(16), n => OpenAny(n, Short)));
        var e = Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(ChainOfDepth(17), n => OpenAny(n, Short)));
        Assert.Contains("deeper than 16", e.Message);
        Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(ChainOfDepth(4000), n => OpenAny(n, Short)));
    }

    // ------------------------------------------------------------ 'u' and '?' elements read by value (format.md section 3.4)

    private static void PokeUInt32(string name, int index, uint value)
    {
        using var raw = SharedArray<uint>.Open(name); // uint opens 'u' (format.md section 3.4, typed-open equivalences)
        raw[index] = value;
    }

    [Theory]
    [InlineData(0xD800u)]
    [InlineData(0xDFFFu)]
    [InlineData(0x110000u)]
    [InlineData(0xFFFFFFFFu)]
    public void ANonScalarRuneIsCorruptDataWhenCopiedOut(uint bad)
    {
        string name = Names.Unique("rune");
        using var runes = SharedArray<Rune>.Create(name, [new Rune('a'), new Rune('b'), new Rune('c')]);
        PokeUInt32(name, 2, bad);

        var e = Assert.Throws<CorruptDataException>(() => runes.ToArray());
        Assert.Equal(name, e.SegmentName);
        Assert.Equal(2, e.Index);
        Assert.Contains($"\"{name}\"", e.Message);
        Assert.Contains("element 2", e.Message);
        Assert.IsAssignableFrom<CorruptSegmentException>(e);
        Assert.Throws<CorruptDataException>(() => runes.CopyTo(new Rune[3]));
        Assert.Equal(bad, (uint)Unsafe.As<Rune, int>(ref runes[2])); // the ref indexer is raw memory
        Assert.Equal(new Rune('a'), runes[0]);

        string valueName = Names.Unique("runev");
        using var value = SharedValue<Rune>.Create(valueName, new Rune('x'));
        using (var raw = SharedValue<uint>.Open(valueName)) raw.Value = bad;
        Assert.Equal(0, Assert.Throws<CorruptDataException>(() => value.Value).Index);
    }

    [Fact]
    public void ARuneInsideAStructureIsCheckedToo()
    {
        string name = Names.Unique("runes");
        using var items = SharedArray<RuneAndFlag>.Create(name, [new RuneAndFlag { Letter = new Rune('q') }, default]);
        using (var segment = SharedSegment.Open(name))
            BinaryPrimitives.WriteUInt32LittleEndian(segment.Data[(12 + 4)..], 0xDC00); // element 1, Letter at 4
        Assert.Equal(1, Assert.Throws<CorruptDataException>(() => items.ToArray()).Index);
    }

    [Fact]
    public void BoolsReadByValueAreNormalizedAndTheRefIsRaw()
    {
        string name = Names.Unique("bool");
        using var flags = SharedArray<bool>.Create(name, [false, true, false]);
        using (var segment = SharedSegment.Open(name))
        {
            segment.Data[0] = 2;
            segment.Data[2] = 0xFF;
        }
        bool[] copy = flags.ToArray();
        Assert.Equal([true, true, true], copy);
        Assert.All(copy, b => Assert.Equal(1, Unsafe.As<bool, byte>(ref b)));
        var span = new bool[3];
        flags.CopyTo(span);
        Assert.All(span, b => Assert.Equal(1, Unsafe.As<bool, byte>(ref b)));
        Assert.Equal(2, Unsafe.As<bool, byte>(ref flags[0])); // raw memory

        string valueName = Names.Unique("boolv");
        using var value = SharedValue<RuneAndFlag>.Create(valueName, new RuneAndFlag { Letter = new Rune('z'), Flag = true });
        using (var segment = SharedSegment.Open(valueName)) segment.Data[8] = 0x80;
        var read = value.Value;
        Assert.True(read.Flag);
        Assert.Equal(1, Unsafe.As<bool, byte>(ref read.Flag));
    }

    // ------------------------------------------------------------ external-lock recovery (format.md sections 7.1 and 7.3)

    [Fact]
    public void RecoveringAnExternalLockCountsOnTheLockSegment()
    {
        using var shared = SharedLock.Create(Names.Unique("xlock"));
        string name = Names.Unique("xdata");
        using var data = SharedArray<long>.Create(name, 1, new SegmentOptions { SharedLock = shared });
        using (var child = Child.Start("hold", name, "1", "9"))
        {
            child.ExpectLine("locked");
            child.KillHard();
        }
        using (var scope = data.Lock(TimeSpan.FromSeconds(10)))
            Assert.True(scope.Recovered);
        Assert.Equal(1, shared.LockRecoveries);
        Assert.Equal(1, data.LockRecoveries); // the live counter of its lock segment
        using var lockView = SharedSegment.Open(shared.Name);
        using var dataView = SharedSegment.Open(name);
        Assert.Equal(1, lockView.Header.RecoveryCount);
        Assert.Equal(Environment.ProcessId, lockView.Header.LastRecoveredByPid);
        Assert.Equal(0, dataView.Header.RecoveryCount);
        Assert.Equal(0, dataView.Header.LastRecoveredByPid);
    }

    // ------------------------------------------------------------ the lock region (format.md section 7.1)

    [Fact]
    public void WritersZeroTheLockRegionPastTheMutexAndReadersIgnoreIt()
    {
        byte[] embedded = DoubleSegment();
        Assert.All(embedded[(0x1C0 + 40)..0x200], b => Assert.Equal(0, b));
        byte[] external;
        using (var l = SharedLock.Create(Names.Unique()))
            external = SegmentFiles.Of(n => SharedArray<int>.Create(n, 1, new SegmentOptions { SharedLock = l }));
        Assert.All(external[0x1C0..0x200], b => Assert.Equal(0, b));

        embedded.AsSpan((0x1C0 + 40)..0x200).Fill(0xEE);
        Assert.Null(SegmentFiles.Try(embedded, n => OpenAny(n, Short)));
        byte[] raw = SegmentFiles.Of(n => SharedArray<int>.Create(n, 1, new SegmentOptions { Synchronized = false }));
        raw.AsSpan(0x1C0..0x200).Fill(0xEE);
        Assert.Null(SegmentFiles.Try(raw, n => OpenAny(n, Short)));
    }

    // ------------------------------------------------------------ mode (format.md section 1.2)

    [Theory]
    [InlineData(0x1B0 | 0x200)] // 01660: sticky bit
    [InlineData(0x800 | 0x180)] // 04600: setuid
    [InlineData(0x100)]         // 0400: owner cannot write
    [InlineData(0x0B6)]         // 0266: owner cannot read
    public void AModeThatIsNotPermissionBitsOrLacksOwnerReadWriteIsRefused(int mode)
    {
        string name = Names.Unique();
        Assert.Throws<ArgumentException>(() => SharedArray<int>.Create(name, 1, new SegmentOptions { Mode = (UnixFileMode)mode }));
        Assert.False(Names.Exists(name));
    }

    [Fact]
    public void TheExactModeIsSetWhateverTheUmask()
    {
        string name = Names.Unique();
        var mode = (UnixFileMode)0x1B6; // 0666: the usual umask 022 would make it 0644
        using (SharedArray<int>.Create(name, 1, new SegmentOptions { Mode = mode }))
            Assert.Equal(mode, File.GetUnixFileMode(Names.ShmPath(name)));
    }

    // ------------------------------------------------------------ type_name (format.md section 4.1)

    [Fact]
    public void TypeNamesAreSanitizedAndCutLikePython()
    {
        // Expected values are Python's type_name_of (python/sharedbridge/_layout.py) for classes of these names.
        string TypeName<T>() where T : unmanaged
        {
            string name = Names.Unique("tn");
            using var a = SharedArray<T>.Create(name, 1);
            byte[] b = File.ReadAllBytes(Names.ShmPath(name));
            int end = Array.IndexOf(b, (byte)0, 0x060);
            Assert.Equal(a.Header.TypeName, Encoding.ASCII.GetString(b, 0x060, end - 0x060));
            return a.Header.TypeName;
        }
        Assert.Equal("ThisStructureNameIsLongerThanTh", TypeName<ThisStructureNameIsLongerThanThirtyOneCharacters>());
        Assert.Equal("P_nktchen", TypeName<Pünktchen>());
        Assert.Equal("Inner", TypeName<Outer.Inner>());
        Assert.Equal("Pair", TypeName<Pair<double>>());
        Assert.Equal("Point", TypeName<Point>());
    }

    // ------------------------------------------------------------ external locks (format.md sections 6.2 step 7 and 7.1)

    private static byte[] WithLockName(byte[] bytes, string lockName)
    {
        Array.Clear(bytes, 0x080, 256);
        Encoding.ASCII.GetBytes(lockName).CopyTo(bytes, 0x080);
        SegmentFiles.FixCrc(bytes);
        return bytes;
    }

    [Fact]
    public void AnExternalLockNamingItselfIsCorrupt()
    {
        byte[] bytes;
        using (var l = SharedLock.Create(Names.Unique()))
            bytes = SegmentFiles.Of(n => SharedArray<int>.Create(n, 1, new SegmentOptions { SharedLock = l }));
        string name = Names.Unique("self");
        File.WriteAllBytes(Names.ShmPath(name), WithLockName(bytes, name));
        try
        {
            var e = Assert.Throws<CorruptSegmentException>(() => SharedSegment.Open(name));
            Assert.Contains("names the segment itself", e.Message);
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }

    [Fact]
    public void AnExternalLockSegmentWithoutAnEmbeddedLockOrOfAnotherAbiIsCorruptNamingBoth()
    {
        using var l = SharedLock.Create(Names.Unique());
        byte[] bytes = SegmentFiles.Of(n => SharedArray<int>.Create(n, 1, new SegmentOptions { SharedLock = l }));
        using var unsynchronized = SharedArray<int>.Create(Names.Unique("nolock"), 1, new SegmentOptions { Synchronized = false });
        var e = Assert.IsType<CorruptSegmentException>(
            SegmentFiles.Try(WithLockName(bytes, unsynchronized.Name), n => SharedArray<int>.Open(n).Dispose()));
        Assert.Contains(unsynchronized.Name, e.Message);
        Assert.Contains("neth_", e.Message[..(20 + Names.Shown("").Length)]);

        byte[] otherAbi = File.ReadAllBytes(Names.ShmPath(l.Name));
        otherAbi[0x031] = 2;
        U16(otherAbi, 0x032, 48);
        SegmentFiles.FixCrc(otherAbi);
        string lockCopy = Names.Unique("abi");
        File.WriteAllBytes(Names.ShmPath(lockCopy), otherAbi);
        try
        {
            e = Assert.IsType<CorruptSegmentException>(
                SegmentFiles.Try(WithLockName(bytes, lockCopy), n => SharedArray<int>.Open(n).Dispose()));
            Assert.Contains(lockCopy, e.Message);
            Assert.Contains("lock_abi", e.Message);
        }
        finally
        {
            File.Delete(Names.ShmPath(lockCopy));
        }

        var missing = Assert.IsType<SegmentNotFoundException>(
            SegmentFiles.Try(WithLockName(bytes, "neth_no_such_lock"), n => SharedArray<int>.Open(n).Dispose()));
        Assert.Equal("neth_no_such_lock", missing.SegmentName);
    }

    // ------------------------------------------------------------ integers are never narrowed blindly

    [Fact]
    public void APidThatNoProcessCanHaveReadsAsUnknown()
    {
        byte[] bytes = DoubleSegment();
        U32(bytes, 0x044, 0xFFFFFFFF);
        SegmentFiles.FixCrc(bytes);
        Assert.Null(SegmentFiles.Try(bytes, n =>
        {
            using var s = SharedSegment.Open(n);
            Assert.Equal(0, s.Header.CreatorPid);
            Assert.False(s.Header.CreatorIsRunning());
        }));
    }

    [Fact]
    public void AnElementSizeAbove2GiBIsCorruptNotNegative()
    {
        byte[] bytes = SegmentFiles.Of(n => SharedArray<Point>.Create(n, 0));
        U32(bytes, 0x014, 0x80000000);
        SegmentFiles.FixCrc(bytes);
        var e = Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(bytes, n => OpenAny(n, Short)));
        Assert.Contains("element_size 2147483648", e.Message);
    }
}
