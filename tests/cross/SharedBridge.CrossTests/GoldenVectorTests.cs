using System.Buffers.Binary;
using System.Collections.Concurrent;
using SharedBridge.CrossTests.Golden;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>The golden header bytes of tests/cross/vectors (docs/format.md section 9): the
/// independent SpecEncoder reproduces them from the spec; every implementation writes exactly them
/// (masked fields aside); every implementation reads a segment made from them.</summary>
public sealed class GoldenVectorTests : CrossTestBase
{
    private static readonly ConcurrentDictionary<string, Lazy<IReadOnlyDictionary<string, (EntryResult Result, byte[] Segment)>>> Written = new();
    private static readonly ConcurrentDictionary<string, Lazy<IReadOnlyDictionary<string, EntryResult>>> Read = new();

    public static IEnumerable<string> AllDrivers() =>
        new[] { Driver.CSharpLabel }.Concat(Interpreters.All.Select(i => i.Label));

    public static IEnumerable<TestCaseData> VectorCases() =>
        Vectors.All.Select(v => new TestCaseData(v.Id).SetName($"spec encoder | {v.Title}"));

    public static IEnumerable<TestCaseData> WriterCases() =>
        from d in AllDrivers() from v in Vectors.All
        select new TestCaseData(d, v.Id).SetName($"{d} writes golden | {v.Title}");

    public static IEnumerable<TestCaseData> ReaderCases() =>
        from d in AllDrivers() from v in Vectors.All
        select new TestCaseData(d, v.Id).SetName($"{d} reads golden | {v.Title}");

    private static byte[] Golden(VectorFile v)
    {
        Assert.That(File.Exists(v.GoldenPath), Is.True, $"missing golden header {v.GoldenPath}: see tests/cross/make_golden.py");
        return File.ReadAllBytes(v.GoldenPath);
    }

    /// <summary>A queue vector's control block as a conforming writer makes it (docs/format.md section 9).</summary>
    private static string? ControlHex(VectorFile v) => v.Root.TryGetProperty("control_hex", out var c) ? c.GetString() : null;

    [TestCaseSource(nameof(VectorCases))]
    public void SpecEncoderProducesTheGoldenHeader(string vectorId)
    {
        VectorFile v = Vectors.ById(vectorId);
        byte[] golden = Golden(v);
        byte[] encoded = SpecEncoder.Segment(v.Root, null);
        int headerSize = (int)BinaryPrimitives.ReadUInt32LittleEndian(encoded.AsSpan(0x00C));
        Assert.Multiple(() =>
        {
            Assert.That(golden, Has.Length.EqualTo(headerSize), "the golden file is not exactly header_size bytes");
            Assert.That(HeaderMask.Differences(encoded.AsSpan(0, headerSize), golden), Is.Empty, "golden bytes differ from the spec");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(golden.AsSpan(0x184)), Is.EqualTo(Crc32.OfHeader(golden)),
                "the golden header's crc32 is not the checksum of its bytes");
            if (ControlHex(v) is { } control)
                Assert.That(Convert.ToHexStringLower(encoded.AsSpan(headerSize, SpecEncoder.QueueControl)), Is.EqualTo(control),
                    "the queue's control block (control_hex, section 9) differs from the spec");
        });
    }

    [TestCaseSource(nameof(WriterCases))]
    public void ImplementationWritesTheGoldenHeader(string driver, string vectorId)
    {
        long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000L;
        var all = Written.GetOrAdd(driver, d => new Lazy<IReadOnlyDictionary<string, (EntryResult, byte[])>>(() => Write(d))).Value;
        var (result, segment) = all[vectorId];
        Assert.That(result.Ok, Is.True, $"{driver} could not create the segment:\n{result.Describe()}");
        VectorFile v = Vectors.ById(vectorId);
        byte[] golden = Golden(v);
        Assert.That(segment.Length, Is.GreaterThanOrEqualTo(golden.Length), "segment shorter than its header");
        byte[] header = segment[..golden.Length];
        byte[] expectedData = SpecEncoder.Segment(v.Root, v.FixedLockSegment)[golden.Length..];
        Assert.Multiple(() =>
        {
            Assert.That(HeaderMask.Differences(golden, header), Is.Empty, "header differs from the golden bytes");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(0x184)), Is.EqualTo(Crc32.OfHeader(header)), "header_crc32 is wrong");
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(0x044)), Is.EqualTo((uint)result.Pid), "creator_pid is not the creating process");
            long created = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(0x050));
            Assert.That(created, Is.InRange(before - 600_000_000_000L, before + 600_000_000_000L), "created_unix_ns is not the creation time");
            Assert.That(segment.Length, Is.EqualTo(golden.Length + expectedData.Length), "total size is not data_offset + data_size");
            if (ControlHex(v) is { } control)
                Assert.That(Convert.ToHexStringLower(segment.AsSpan(golden.Length, SpecEncoder.QueueControl)), Is.EqualTo(control),
                    "the queue's control block differs from control_hex (section 9)");
            if (!File.ReadAllText(v.JsonPath).Contains("\"nan\""))  // NaN payloads legitimately differ
                Assert.That(segment[golden.Length..], Is.EqualTo(expectedData), "data area differs from the spec encoding");
        });
    }

    [TestCaseSource(nameof(ReaderCases))]
    public void ImplementationReadsTheGoldenSegment(string driver, string vectorId)
    {
        var all = Read.GetOrAdd(driver, d => new Lazy<IReadOnlyDictionary<string, EntryResult>>(() => ReadGolden(d))).Value;
        EntryResult result = all[vectorId];
        Assert.That(result.Ok, Is.True, $"{driver} rejected or misread the golden segment:\n{result.Describe()}");
    }

    /// <summary>The driver creates every vector (with the fixed lock names the golden bytes
    /// record); the test copies each segment's bytes out of /dev/shm.</summary>
    private static IReadOnlyDictionary<string, (EntryResult, byte[])> Write(string driver)
    {
        using var batch = new Batch(Vectors.All, fixedLockNames: true);
        var results = batch.Run(Driver.ByLabel(driver), "create-batch");
        return results.ToDictionary(r => r.Key, r =>
        {
            string name = batch.Entries[r.Key].Name;
            return (r.Value, Shm.Exists(name) ? Shm.ReadAll(name) : Array.Empty<byte>());
        });
    }

    /// <summary>Each vector's segment is written from its golden header and the spec encoding of
    /// its data (an external lock's segment from the golden lock-only header), then the driver
    /// verifies them all.</summary>
    private static IReadOnlyDictionary<string, EntryResult> ReadGolden(string driver)
    {
        using var batch = new Batch(Vectors.All, fixedLockNames: true);
        foreach (var v in Vectors.All)
        {
            var (name, lockName) = batch.Entries[v.Id];
            byte[] golden = Golden(v);
            byte[] data = SpecEncoder.Segment(v.Root, lockName)[golden.Length..];
            Shm.WriteNew(name, [.. golden, .. data]);
            if (lockName != null)
                Shm.WriteNew(lockName, Golden(Vectors.ById(v.ExternalLockType == "rlock" ? "lock_rlock" : "lock_lock")));
        }
        return batch.Run(Driver.ByLabel(driver), "verify-batch");
    }
}
