using System.Buffers.Binary;
using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// Section 8 rules docs/format.md revision 7.1 settles, across languages: the reaper judges every segment by its
/// own header (it never opens the lock segment a data segment names, so the order of the names decides nothing),
/// and a tool that reads a segment's data (`inspect --data`) never joins a last-closer segment, not even an
/// orphaned one. The segments are made here and then given a dead creator / no holder by rewriting their header.
/// </summary>
public sealed class Revision71Tests : CrossTestBase
{
    private static string NewPrefix() => "sbh23_" + Shm.NewName() + "_";

    /// <summary>Rewrites identity bytes of the (512-byte header) segment <paramref name="name"/>, then its checksum (section 3.3).</summary>
    private static void Rewrite(string name, Action<byte[]> change)
    {
        using var fs = new FileStream(Shm.PathOf(name), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var header = new byte[0x200];
        RandomAccess.Read(fs.SafeFileHandle, header, 0);
        change(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0x184), Crc32(header.AsSpan(0, 0x180)));
        RandomAccess.Write(fs.SafeFileHandle, header, 0);
    }

    private static void LastCloserNobodyHolds(byte[] h)
    {
        h[0x39] = 1;                                              // lifetime last-closer ...
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(0x0A), 2);   // ... needs compat_version 2
    }

    private static void CreatorGone(byte[] h)
    {
        h[0x39] = 0;                                              // lifetime creator
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x44), 0);    // creator_pid 0 names no process
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320 & (uint)-(int)(crc & 1));
        }
        return ~crc;
    }

    public static IEnumerable<TestCaseData> Reapers() =>
        new[] { Driver.CSharpLabel, Interpreters.Preferred.Label }.Select(l => new TestCaseData(l).SetName($"{l} reaps each segment by its own header"));

    [TestCaseSource(nameof(Reapers))]
    public void TheReaperNeverOpensALockSegment(string reaperLabel)
    {
        // "a" (a lock segment nobody holds) sorts before "b" (its data segment, creator gone): a reaper that opened
        // b's lock segment would find it gone and keep b; "c" names a lock segment that never existed.
        string p = NewPrefix(), a = p + "a", b = p + "b", c = p + "c";
        var persistent = new SegmentOptions { Lifetime = SegmentLifetime.Persistent };
        try
        {
            using (var lockSegment = SharedLock.Create(a, persistent))
            {
                SharedArray<int>.Create(b, 2, new SegmentOptions { Lifetime = SegmentLifetime.Persistent, SharedLock = lockSegment }).Dispose();
                SharedArray<int>.Create(c, 2, new SegmentOptions { Lifetime = SegmentLifetime.Persistent, SharedLock = lockSegment }).Dispose();
            }
            Rewrite(a, LastCloserNobodyHolds);
            Rewrite(b, CreatorGone);
            Rewrite(c, h =>
            {
                CreatorGone(h);
                h.AsSpan(0x80, 256).Clear();
                System.Text.Encoding.ASCII.GetBytes(p + "zz_never").CopyTo(h, 0x80);
            });
            DriverResult r = Driver.ByLabel(reaperLabel).Run(Quick, "reap", p);
            Assert.That(r.ExitCode, Is.Zero, r.Describe());
            using var doc = JsonDocument.Parse(r.Stdout);
            var reaped = doc.RootElement.GetProperty("reaped").EnumerateArray().Select(e => e.GetProperty("name").GetString()).Order();
            Assert.That(reaped, Is.EqualTo(new[] { a, b, c }), r.Stdout);
            Assert.That(Shm.Leftovers(p), Is.Empty);
        }
        finally
        {
            Shm.RemoveAll(p);
        }
    }

    [Test]
    public void InspectingTheDataOfAnOrphanedLastCloserSegmentLeavesIt()
    {
        string p = NewPrefix(), name = p + "o";
        try
        {
            using (var a = SharedArray<long>.Create(name, [7, 8], new SegmentOptions { Lifetime = SegmentLifetime.Persistent })) { }
            Rewrite(name, LastCloserNobodyHolds);
            foreach (var command in new[] { new[] { Repo.Cli }, new[] { Interpreters.Preferred.Executable, "-m", "sharedbridge" } })
            {
                using var cli = DriverProcess.Start([.. command, "inspect", name, "--json", "--data", "2"], withPythonPath: command.Length > 1);
                var r = cli.WaitForExit(Quick);
                Assert.That(r.ExitCode, Is.Zero, r.Describe());
                Assert.That(r.Stdout, Does.Contain("8"), r.Describe());
                Assert.That(Shm.Exists(name), Is.True, $"{command[^1]} inspect --data joined and removed an orphaned last-closer segment");
            }
        }
        finally
        {
            Shm.RemoveAll(p);
        }
    }
}
