using System.Buffers.Binary;
using System.Text.Json;
using SharedBridge.CrossTests.Golden;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// A seeded header fuzzer across languages: segments made from the golden vectors (header + spec
/// data) are mutated (fields set to interesting values, random bytes, object size changes), the CRC is
/// recomputed for most of them, and the C# driver and one Python driver open each one. Both must
/// report the same class, and only classes of the libraries' own hierarchies (never "other:"). Each
/// language's own suite runs its fuzzer in child processes (crashes, hangs); this one checks agreement.
/// `make test` runs a short batch; a long one:
/// <code>SB_CROSS_FUZZ_CASES=5000 SB_CROSS_FUZZ_SEED=7 dotnet test tests/cross/SharedBridge.CrossTests -c Release --filter "FullyQualifiedName~CrossFuzz"</code>
/// </summary>
public sealed class CrossFuzzTests : CrossTestBase
{
    private static int Env(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), out int v) && v > 0 ? v : fallback;

    // (offset, width) of every identity field, and of a field-table entry's numeric fields.
    private static readonly (int Offset, int Width)[] Fields =
    [
        (0x008, 2), (0x00A, 2), (0x00C, 4), (0x010, 1), (0x011, 1), (0x012, 2), (0x014, 4), (0x018, 8),
        (0x020, 8), (0x028, 8), (0x030, 1), (0x031, 1), (0x032, 2), (0x034, 4), (0x038, 1), (0x03A, 2),
        (0x03C, 4), (0x040, 4), (0x058, 4), (0x05C, 4), (0x060, 1), (0x080, 1), (0x180, 4),
    ];

    // Dimensions an n-dimensional array's shape is set to (docs/format.md section 12.1: each at most 2^63 - 1, the
    // product times element_size at most 2^63 - 1 without overflow).
    private static readonly ulong[] Dimensions =
    [
        0, 1, 2, 3, 255, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 1UL << 40, 1UL << 61, 1UL << 62,
        (1UL << 63) - 1, 1UL << 63, ulong.MaxValue,
    ];
    private static readonly uint[] Ranks = [0, 1, 2, 3, 7, 8, 9, 31, 32, 33, 64, 0x10000, uint.MaxValue];
    private static readonly (int Offset, int Width)[] EntryFields = [(0, 1), (32, 1), (36, 4), (40, 4), (44, 4), (48, 4)];

    private static readonly ulong[] Interesting =
    [
        0, 1, 2, 3, 7, 8, 16, 31, 32, 63, 64, 65, 0x7F, 0x80, 0xFF, 0x100, 0x1C0, 0x200, 0x240, 0x280, 0xFFFF,
        0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 1UL << 40, long.MaxValue, ulong.MaxValue,
        (byte)'T', (byte)'d', (byte)'0', (byte)'u', (byte)'?',
    ];

    [Test]
    public void BothLanguagesClassifyEveryMutatedHeaderTheSameWay()
    {
        int cases = Env("SB_CROSS_FUZZ_CASES", 300), seed = Env("SB_CROSS_FUZZ_SEED", 20261122);
        var random = new Random(seed);
        var bases = Vectors.All.Where(v => !v.HasExternalLock).Select(v =>
        {
            int headerSize = File.ReadAllBytes(v.GoldenPath).Length;
            return (Id: v.Id, Bytes: SpecEncoder.Segment(v.Root, null), HeaderSize: headerSize,
                NDArray: v.Root.GetProperty("object").GetString() == "ndarray");
        }).ToList();
        Assert.That(bases.Count(b => b.NDArray), Is.GreaterThanOrEqualTo(5), "the n-dimensional array vectors are missing");

        var made = new Dictionary<string, (string Base, string Mutations)>();
        string prefix = Shm.NewName() + "f";
        try
        {
            for (int i = 0; i < cases; i++)
            {
                var b = bases[random.Next(bases.Count)];
                byte[] bytes = (byte[])b.Bytes.Clone();
                long size = bytes.Length;
                var what = new List<string>();
                int n = 1 + random.Next(3);
                for (int m = 0; m < n; m++)
                    size = b.NDArray && random.Next(2) == 0 ? MutateShape(random, ref bytes, size, what) : Mutate(random, bytes, b.HeaderSize, size, what);
                if (random.Next(10) != 0 && bytes.Length >= 512)
                {
                    int hs = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(0x00C)), (uint)bytes.Length);
                    if (hs >= 512 && hs % 64 == 0)
                        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(0x184), Crc32.OfHeader(bytes.AsSpan(0, hs)));
                }
                else what.Add("crc not recomputed");
                string name = prefix + i.ToString("x4");
                Shm.WriteNew(name, bytes.AsSpan(0, (int)Math.Min(size, bytes.Length)).ToArray());
                using (var fs = new FileStream(Shm.PathOf(name), FileMode.Open, FileAccess.Write)) fs.SetLength(size);
                made[name] = (b.Id, string.Join("; ", what));
            }

            string manifest = Path.Combine(Path.GetTempPath(), prefix + ".json");
            File.WriteAllText(manifest, JsonSerializer.Serialize(new { names = made.Keys, timeout = 0.05 }));
            try
            {
                var csharp = Classes(Driver.CSharp, manifest);
                var python = Classes(Driver.Python(Interpreters.Preferred), manifest);
                var outcomes = csharp.Values.GroupBy(c => c.Split(':')[0]).OrderBy(g => g.Key)
                    .Select(g => $"{g.Key} {g.Count()}");
                TestContext.Out.WriteLine($"cross fuzz seed {seed}, {cases} cases: {string.Join(", ", outcomes)}");
                var ndarrayBases = bases.Where(b => b.NDArray).Select(b => b.Id).ToHashSet();
                var ndarrayOutcomes = made.Where(m => ndarrayBases.Contains(m.Value.Base)).GroupBy(m => csharp[m.Key].Split(':')[0])
                    .OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}");
                TestContext.Out.WriteLine($"  of which from n-dimensional arrays: {string.Join(", ", ndarrayOutcomes)}");
                var problems = made.Keys
                    .Where(name => csharp[name] != python[name] || csharp[name].StartsWith("other:", StringComparison.Ordinal))
                    .Select(name => $"{name} from {made[name].Base} ({made[name].Mutations}): C# {csharp[name]} | Python {python[name]}")
                    .ToList();
                Assert.That(problems, Is.Empty, $"seed {seed}: disagreements or foreign exceptions");
            }
            finally
            {
                File.Delete(manifest);
            }
        }
        finally
        {
            Shm.RemoveAll(prefix);
        }
    }

    private static Dictionary<string, string> Classes(Driver driver, string manifest)
    {
        DriverResult r = driver.Run(TimeSpan.FromSeconds(600), "classify-batch", manifest);
        Assert.That(r.ExitCode, Is.Zero, r.Describe());
        using var doc = JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
        return doc.RootElement.GetProperty("classes").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
    }

    private static long Mutate(Random random, byte[] bytes, int headerSize, long size, List<string> what)
    {
        switch (random.Next(6))
        {
            case 0 or 1:
            {
                var (offset, width) = Fields[random.Next(Fields.Length)];
                Write(bytes, offset, width, Interesting[random.Next(Interesting.Length)]);
                what.Add($"field 0x{offset:X3}");
                return size;
            }
            case 2 when headerSize > 512:
            {
                int entry = 512 + 64 * random.Next((headerSize - 512) / 64);
                var (offset, width) = EntryFields[random.Next(EntryFields.Length)];
                Write(bytes, entry + offset, width, Interesting[random.Next(Interesting.Length)]);
                what.Add($"entry 0x{entry:X3}+{offset}");
                return size;
            }
            case 3:
            {
                int offset = random.Next(Math.Min(bytes.Length, headerSize));
                bytes[offset] = (byte)random.Next(256);
                what.Add($"byte 0x{offset:X3}");
                return size;
            }
            case 4:
            {
                long newSize = random.Next(3) switch { 0 => random.Next(0, 600), 1 => size - random.Next(1, 64), _ => size + random.Next(1, 4096) };
                what.Add($"size {newSize}");
                return Math.Max(0, newSize);
            }
            default:
                Write(bytes, 0x180, 4, (ulong)random.Next(4));
                what.Add("state");
                return size;
        }
    }

    /// <summary>A kind-9 mutation (docs/format.md section 12.1) that keeps the rest of the header consistent half of the
    /// time, so that the readers get past the early checks to the shape's own bounds: a dimension set to a hostile value
    /// (with element_count and data_size recomputed from the product as a wrapping writer would), or ndim changed (with
    /// header_size and data_offset following it).</summary>
    private static long MutateShape(Random random, ref byte[] bytes, long size, List<string> what)
    {
        uint ndim = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(0x058));
        uint shapeOffset = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(0x05C));
        uint elementSize = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(0x014));
        bool consistent = random.Next(2) == 0;
        if (ndim > 0 && ndim <= 32 && shapeOffset <= bytes.Length && shapeOffset + 8 * ndim <= bytes.Length && random.Next(3) != 0)
        {
            int k = random.Next((int)ndim);
            ulong dim = Dimensions[random.Next(Dimensions.Length)];
            Write(bytes, (int)shapeOffset + 8 * k, 8, dim);
            what.Add($"dimension {k} = {dim}");
            if (consistent)
            {
                ulong product = 1;
                for (int j = 0; j < ndim; j++)
                    product = unchecked(product * BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan((int)shapeOffset + 8 * j)));
                Write(bytes, 0x018, 8, product);
                Write(bytes, 0x028, 8, unchecked(product * elementSize));
                what.Add($"element_count = {product} (wrapping), data_size");
            }
            return size;
        }
        uint rank = random.Next(2) == 0 ? Ranks[random.Next(Ranks.Length)] : (uint)random.Next(0, 12);
        Write(bytes, 0x058, 4, rank);
        what.Add($"ndim = {rank}");
        if (consistent && rank <= 64 && shapeOffset <= 1 << 16)
        {
            ulong headerSize = (shapeOffset + 8UL * rank + 63) / 64 * 64;
            if ((long)headerSize > bytes.Length) Array.Resize(ref bytes, (int)headerSize);   // the new dimensions are 0
            Write(bytes, 0x00C, 4, headerSize);
            Write(bytes, 0x020, 8, headerSize);
            ulong product = 1;
            for (int j = 0; j < rank; j++)
                product = shapeOffset + 8 * j + 8 <= bytes.Length
                    ? unchecked(product * BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan((int)shapeOffset + 8 * j)))
                    : 0;
            Write(bytes, 0x018, 8, product);
            Write(bytes, 0x028, 8, unchecked(product * elementSize));
            what.Add($"header_size = data_offset = {headerSize}, element_count = {product}");
            // The object at least as large as the header, so that the shape itself is what gets checked.
            size = Math.Max(size, (long)headerSize + (long)Math.Min(unchecked(product * elementSize), 1UL << 16));
        }
        return size;
    }

    private static void Write(byte[] bytes, int offset, int width, ulong value)
    {
        if (offset + width > bytes.Length) return;
        for (int i = 0; i < width; i++) bytes[offset + i] = (byte)(value >> (8 * i));
    }
}
