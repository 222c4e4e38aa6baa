using System.Buffers.Binary;
using System.Text;
using SharedBridge.TestChild;
using Xunit.Abstractions;

namespace SharedBridge.Tests;

/// <summary>
/// Seeded header fuzzer: the header is untrusted input (docs/security.md). Valid segments of many shapes (an array of every typecode,
/// values, a structure with a nested structure and a fixed array, lock-only, external lock) are
/// mutated (n-dimensional arrays of several ranks, with and without a structure; bit flips, interesting values in every header and field-table field, text fields,
/// truncation, growth, magic and state, data bytes), the checksum is recomputed most of the time, and
/// each result is written to /dev/shm and opened by a CHILD process (`child fuzz-open`), untyped and
/// typed, reading every element. A crash or an abort of the child, a hang (no answer within 10 s),
/// an exception that is not a SharedBridge one (ISharedBridgeException), or a segment that changed because it was opened fails
/// the test. The outcome classes are printed.
/// <para>The normal suite runs a few hundred cases with a fixed seed. Long run (20,000 cases, a few
/// minutes):</para>
/// <code>
/// SB_FUZZ_CASES=20000 SB_FUZZ_SEED=7 dotnet test src/Dotnet/SharedBridge.Tests -c Release \
///     --filter FullyQualifiedName~HeaderFuzzTests --logger "console;verbosity=detailed"
/// </code>
/// <para>A failing case is reproducible from the seed and its case number (the generator never depends
/// on the child's answers).</para>
/// </summary>
public class HeaderFuzzTests(ITestOutputHelper output)
{
    private const int DefaultCases = 400;
    private const int DefaultSeed = 20240611;
    private const int AnswerTimeoutMs = 10_000;

    private sealed record Base(string Shape, byte[] Bytes);

    [Fact]
    public void MutatedHeadersOpenedInAChildGiveOnlyOkOrOurExceptions()
    {
        int cases = int.TryParse(Environment.GetEnvironmentVariable("SB_FUZZ_CASES"), out int n) ? n : DefaultCases;
        int seed = int.TryParse(Environment.GetEnvironmentVariable("SB_FUZZ_SEED"), out int s) ? s : DefaultSeed;
        using var fuzzLock = SharedLock.Create(Names.Unique("fzlock"));
        var bases = MakeBases(fuzzLock, new Random(seed));
        var rng = new Random(seed);
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var failures = new List<string>();
        var child = new FuzzChild();
        try
        {
            for (int i = 0; i < cases; i++)
            {
                var baseShape = bases[rng.Next(bases.Count)];
                string name = Names.Unique("fz");
                var (bytes, description) = Mutate(baseShape.Bytes, name, rng);
                File.WriteAllBytes(Names.ShmPath(name), bytes);
                try
                {
                    string answer = child.Ask($"{name} {baseShape.Shape}", out string? problem);
                    foreach (var (open, outcome) in new[] { ("untyped", answer.Split(' ')[0]), ("typed", answer.Split(' ').ElementAtOrDefault(1) ?? "") })
                    {
                        string key = $"{open}: {outcome}";
                        outcomes[key] = outcomes.GetValueOrDefault(key) + 1;
                    }
                    if (problem is not null || answer.Contains("foreign:"))
                        failures.Add($"case {i} ({baseShape.Shape}; {description}): {answer} {problem}");
                    else if (!File.ReadAllBytes(Names.ShmPath(name)).AsSpan().SequenceEqual(bytes))
                        failures.Add($"case {i} ({baseShape.Shape}; {description}): opening changed the segment");
                }
                finally
                {
                    File.Delete(Names.ShmPath(name));
                }
            }
        }
        finally
        {
            child.Dispose();
        }

        output.WriteLine($"seed {seed}, {cases} cases, {bases.Count} base segments");
        foreach (var (key, count) in outcomes) output.WriteLine($"  {key,-50} {count,7}");
        foreach (var failure in failures.Take(20)) output.WriteLine("FAILURE " + failure);
        Assert.True(failures.Count == 0, $"{failures.Count} failing cases (seed {seed}), first: {failures.FirstOrDefault()}");
    }

    // ------------------------------------------------------------ the child

    /// <summary>`child fuzz-open`, restarted after a crash or a hang.</summary>
    private sealed class FuzzChild : IDisposable
    {
        private Child? _child;

        /// <summary>The child's answer, or "crash"/"hang" with the details in <paramref name="problem"/>.</summary>
        internal string Ask(string line, out string? problem)
        {
            problem = null;
            bool fresh = _child is null;
            _child ??= Child.Start("fuzz-open");
            var child = _child;
            try
            {
                child.WriteLine(line);
                string answer = child.ReadLine(fresh ? 60_000 : AnswerTimeoutMs);
                if (answer.Contains("foreign:")) problem = "stderr: " + child.Stderr;
                return answer;
            }
            catch (Exception e) when (e is TimeoutException or IOException)
            {
                bool exited = child.HasExited || WaitedForExit(child);
                problem = $"{(exited ? "child crashed" : "child hung")}; stderr: {child.Stderr}";
                _child = null;
                child.Dispose(); // kills a hung child
                return exited ? "crash crash" : "hang hang";
            }
        }

        private static bool WaitedForExit(Child child)
        {
            for (int i = 0; i < 50 && !child.HasExited; i++) Thread.Sleep(100);
            return child.HasExited;
        }

        public void Dispose() => _child?.Dispose();
    }

    // ------------------------------------------------------------ valid segments to start from

    private static List<Base> MakeBases(SharedLock fuzzLock, Random rng)
    {
        var bases = new List<Base>();
        void Array<T>(string shape, char? code = null) where T : unmanaged
        {
            foreach (bool synchronized in new[] { true, false })
            {
                int length = rng.Next(0, 4);
                var options = new SegmentOptions { TypeCode = code, Synchronized = synchronized };
                bases.Add(new Base(shape, SegmentFiles.Of(name =>
                {
                    var a = SharedArray<T>.Create(name, length, options);
                    if (typeof(T) != typeof(FuzzOuter)) rng.NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()));
                    if (typeof(T) == typeof(System.Text.Rune))
                        foreach (ref var r in System.Runtime.InteropServices.MemoryMarshal.Cast<T, System.Text.Rune>(a.AsSpan()))
                            r = System.Text.Rune.GetRuneAt("Aé€", rng.Next(3));
                    if (typeof(T) == typeof(bool))
                        foreach (ref byte b in System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())) b &= 1;
                    return a;
                })));
            }
        }
        Array<sbyte>("b"); Array<byte>("B"); Array<short>("h"); Array<ushort>("H"); Array<int>("i"); Array<uint>("I");
        Array<long>("l", 'l'); Array<ulong>("L", 'L'); Array<long>("q"); Array<ulong>("Q"); Array<float>("f"); Array<double>("d");
        Array<bool>("?"); Array<System.Text.Rune>("u"); Array<FuzzOuter>("T");
        void Tensor<T>(string shape, params long[][] shapes) where T : unmanaged
        {
            foreach (long[] dims in shapes)
                bases.Add(new Base(shape, SegmentFiles.Of(name =>
                {
                    var t = SharedTensor<T>.Create(name, dims, new SegmentOptions { Synchronized = rng.Next(2) == 0 });
                    if (typeof(T) == typeof(double)) rng.NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.AsSpan()));
                    return t;
                })));
        }
        Tensor<double>("tensor-d", [], [3], [2, 3, 4], [2, 0, 3], [2, 1, 2, 1, 2, 1, 2, 1]);
        Tensor<FuzzOuter>("tensor-T", [2, 2], []);
        bases.Add(new Base("c", SegmentFiles.Of(name => SharedCharArray.Create(name, "hello"u8))));
        bases.Add(new Base("value-d", SegmentFiles.Of(name => SharedValue<double>.Create(name, 2.5))));
        bases.Add(new Base("value-u", SegmentFiles.Of(name => SharedValue<System.Text.Rune>.Create(name, new System.Text.Rune('Z')))));
        bases.Add(new Base("value-?", SegmentFiles.Of(name => SharedValue<bool>.Create(name, true, new SegmentOptions { Synchronized = false }))));
        bases.Add(new Base("value-T", SegmentFiles.Of(name => SharedValue<FuzzOuter>.Create(name, new FuzzOuter { X = 1 }))));
        bases.Add(new Base("lock", SegmentFiles.Of(name => SharedLock.Create(name))));
        bases.Add(new Base("lock", SegmentFiles.Of(name => SharedLock.Create(name, new SegmentOptions { RecursiveLock = false }))));
        var external = new SegmentOptions { SharedLock = fuzzLock };
        bases.Add(new Base("i", SegmentFiles.Of(name => SharedArray<int>.Create(name, [1, 2, 3], external))));
        bases.Add(new Base("value-d", SegmentFiles.Of(name => SharedValue<double>.Create(name, 1.5, external))));
        bases.Add(new Base("T", SegmentFiles.Of(name => SharedArray<FuzzOuter>.Create(name, 1, external))));
        return bases;
    }

    // ------------------------------------------------------------ mutations

    private static readonly (string Name, int Offset, int Width)[] HeaderFields =
    [
        ("magic", 0x000, 8), ("version", 0x008, 2), ("compat_version", 0x00A, 2), ("header_size", 0x00C, 4),
        ("kind", 0x010, 1), ("typecode", 0x011, 1), ("flags", 0x012, 2), ("element_size", 0x014, 4),
        ("element_count", 0x018, 8), ("data_offset", 0x020, 8), ("data_size", 0x028, 8), ("lock_kind", 0x030, 1),
        ("lock_abi", 0x031, 1), ("lock_size", 0x032, 2), ("lock_offset", 0x034, 4), ("lock_type", 0x038, 1),
        ("reserved 0x39", 0x039, 1), ("field_entry_size", 0x03A, 2), ("field_count", 0x03C, 4),
        ("field_table_offset", 0x040, 4), ("creator_pid", 0x044, 4), ("creator_start_time", 0x048, 8),
        ("created_unix_ns", 0x050, 8), ("ndim", 0x058, 4), ("shape_offset", 0x05C, 4), ("state", 0x180, 4), ("header_crc32", 0x184, 4),
        ("recovery_count", 0x188, 8), ("last_recovered_by_pid", 0x190, 4), ("mutex", 0x1C0, 8),
    ];

    private static readonly (string Name, int Offset, int Width)[] EntryFields =
    [
        ("typecode", 32, 1), ("reserved", 33, 3), ("offset", 36, 4), ("count", 40, 4), ("item_size", 44, 4), ("parent", 48, 4),
    ];

    private static readonly string[] OddNames =
    [
        "", "X", "x", "Y", "Inner", "_pack_", "_fields_", "__x", "1abc", "a b", "naïve", "neth_no_such_lock",
        "sem.x", "/slash", ".hidden", new string('n', 31), new string('n', 40), "A\u007f",
    ];

    private static ulong Interesting(Random rng, long objectSize, int headerSize) => rng.Next(30) switch
    {
        0 => 0, 1 => 1, 2 => 2, 3 => 3, 4 => 7, 5 => 8, 6 => 63, 7 => 64, 8 => 65, 9 => 0x1C0, 10 => 0x200,
        11 => 0x240, 12 => 0x280, 13 => 0x7F, 14 => 0x80, 15 => 0xFF, 16 => 0x7FFF, 17 => 0xFFFF,
        18 => 0x7FFFFFFF, 19 => 0x80000000, 20 => 0xFFFFFFFF, 21 => 1 << 20, 22 => (1 << 20) + 64,
        23 => long.MaxValue, 24 => 1UL << 63, 25 => ulong.MaxValue, 26 => (ulong)objectSize,
        27 => (ulong)Math.Max(0, objectSize - 1), 28 => (ulong)(objectSize + 1),
        _ => (ulong)headerSize,
    };

    private static void WriteField(byte[] b, int offset, int width, ulong value)
    {
        if (offset + width > b.Length) return;
        Span<byte> le = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(le, value);
        le[..width].CopyTo(b.AsSpan(offset));
    }

    private static void WriteText(byte[] b, int offset, int width, string text, bool terminate)
    {
        if (offset + width > b.Length) return;
        b.AsSpan(offset, width).Clear();
        byte[] t = Encoding.UTF8.GetBytes(text);
        int n = Math.Min(t.Length, terminate ? width - 1 : width);
        t.AsSpan(0, n).CopyTo(b.AsSpan(offset));
        if (!terminate) b.AsSpan(offset + n, width - n).Fill((byte)'z');
    }

    /// <summary>A copy of <paramref name="original"/> with 1 to 3 mutations, and what they were.</summary>
    private static (byte[] Bytes, string Description) Mutate(byte[] original, string name, Random rng)
    {
        byte[] b = (byte[])original.Clone();
        int headerSize = (int)BinaryPrimitives.ReadUInt32LittleEndian(original.AsSpan(0x00C));
        int fieldCount = (int)BinaryPrimitives.ReadUInt32LittleEndian(original.AsSpan(0x03C));
        var what = new List<string>();
        int mutations = 1 + rng.Next(3);
        for (int m = 0; m < mutations; m++)
        {
            switch (rng.Next(10))
            {
                case 0:
                {
                    int flips = 1 + rng.Next(4);
                    for (int k = 0; k < flips && b.Length > 0; k++)
                    {
                        int at = rng.Next(Math.Min(b.Length, headerSize + 64));
                        b[at] ^= (byte)(1 + rng.Next(255));
                        what.Add($"flip 0x{at:X}");
                    }
                    break;
                }
                case 1 or 2:
                {
                    var (field, offset, width) = HeaderFields[rng.Next(HeaderFields.Length)];
                    ulong value = Interesting(rng, b.Length, headerSize);
                    if (field == "typecode" && rng.Next(2) == 0) value = (byte)"TdubBhHiIlLqQfd?c0\0z"[rng.Next(20)];
                    if (field is "kind" or "lock_kind" or "lock_type" or "lock_abi" or "state") value = (ulong)rng.Next(5);
                    WriteField(b, offset, width, value);
                    what.Add($"{field}={value}");
                    break;
                }
                case 3 when fieldCount > 0 && b.Length >= 0x200 + fieldCount * 64:
                {
                    int entry = rng.Next(fieldCount);
                    var (field, offset, width) = EntryFields[rng.Next(EntryFields.Length)];
                    long current = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(0x200 + entry * 64 + (width == 4 ? offset : 36)));
                    ulong value = rng.Next(3) switch
                    {
                        0 => Interesting(rng, b.Length, headerSize),
                        1 => (ulong)(uint)(rng.Next(-2, fieldCount + 2)),
                        _ => (ulong)(current + rng.Next(-9, 10)),
                    };
                    if (field == "typecode") value = (byte)"TdubBhHiIlLqQf?cz"[rng.Next(17)];
                    WriteField(b, 0x200 + entry * 64 + offset, width, value);
                    what.Add($"entry {entry} {field}={value}");
                    break;
                }
                case 4:
                {
                    int length = rng.Next(4) switch
                    {
                        0 => 0,
                        1 => 1 + rng.Next(7),
                        2 => 8 + rng.Next(504),
                        _ => 512 + rng.Next(Math.Max(1, b.Length - 512)),
                    };
                    if (length < b.Length) b = b[..length];
                    what.Add($"truncate to {b.Length}");
                    break;
                }
                case 5:
                {
                    int extra = 1 + rng.Next(8192);
                    b = [.. b, .. new byte[extra]];
                    what.Add($"grow by {extra}");
                    break;
                }
                case 6:
                {
                    int which = rng.Next(fieldCount > 0 ? 3 : 2);
                    string text = rng.Next(4) == 0 ? name : OddNames[rng.Next(OddNames.Length)];
                    bool terminate = rng.Next(8) != 0;
                    var (offset, width, label) = which switch
                    {
                        0 => (0x060, 32, "type_name"),
                        1 => (0x080, 256, "lock_name"),
                        _ => (0x200 + rng.Next(fieldCount) * 64, 32, "entry name"),
                    };
                    WriteText(b, offset, width, text, terminate);
                    what.Add($"{label}=\"{text}\"{(terminate ? "" : " unterminated")}");
                    break;
                }
                case 7:
                {
                    if (rng.Next(2) == 0)
                    {
                        WriteField(b, 0, 8, 0);
                        if (rng.Next(2) == 0) WriteField(b, 0x180, 4, 0);
                        what.Add("zero magic");
                    }
                    else
                    {
                        WriteField(b, 0x180, 4, (ulong)rng.Next(4));
                        what.Add("state");
                    }
                    break;
                }
                case 8 when b.Length > headerSize:
                {
                    int at = headerSize + rng.Next(b.Length - headerSize);
                    b[at] = (byte)rng.Next(256);
                    what.Add($"data byte 0x{at:X}");
                    break;
                }
                case 9 when original[0x010] == 9 && rng.Next(2) == 0:
                {
                    // A dimension of an n-dimensional array's shape (section 12.1), if it has one.
                    int ndim = (int)BinaryPrimitives.ReadUInt32LittleEndian(original.AsSpan(0x058));
                    int shapeOffset = (int)BinaryPrimitives.ReadUInt32LittleEndian(original.AsSpan(0x05C));
                    if (ndim == 0) { m--; break; }
                    int dimension = rng.Next(ndim);
                    ulong value = rng.Next(3) == 0 ? 1UL << rng.Next(64) : Interesting(rng, b.Length, headerSize);
                    WriteField(b, shapeOffset + 8 * dimension, 8, value);
                    what.Add($"dimension {dimension}={value}");
                    break;
                }
                case 9:
                {
                    int start = rng.Next(0x180);
                    int length = Math.Min(8 + rng.Next(25), 0x180 - start);
                    if (start + length <= b.Length) rng.NextBytes(b.AsSpan(start, length));
                    what.Add($"random 0x{start:X}+{length}");
                    break;
                }
                default:
                    m--; // the chosen mutation does not apply to this shape: pick another
                    break;
            }
        }
        if (b.Length >= 0x188 && rng.Next(5) != 0)
        {
            SegmentFiles.FixCrc(b);
            what.Add("crc fixed");
        }
        return (b, string.Join(", ", what));
    }
}
