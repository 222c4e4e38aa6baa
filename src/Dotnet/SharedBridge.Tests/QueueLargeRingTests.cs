using System.Text;
using SharedBridge.Format;

namespace SharedBridge.Tests;

/// <summary>Rings larger than 16 GiB (docs/format.md section 11.5): a record's size is a u32, so a message goes inline only
/// when its record is at most min(capacity / 4, 2^31) bytes, and no record exceeds min(capacity / 2, 2^32 - 8). A message
/// above 2^31 bytes cannot be built in a test, so the decision is tested where it is taken (QueueLayout); the 32 GiB ring
/// itself lives in a directory on a disk file system, because creating a segment reserves all of it (posix_fallocate:
/// on tmpfs, memory), where the reservation is unwritten extents and only the pages touched are written.</summary>
public sealed class QueueLargeRingTests : IDisposable
{
    private const long Huge = 1L << 35;
    private readonly string _dir = Directory.CreateTempSubdirectory("sbt_cr_large_").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);    // never leaves 32 GiB reserved, even after a failure

    [Theory]
    [InlineData(4096UL)]
    [InlineData(1UL << 20)]
    [InlineData(1UL << 34)]
    [InlineData(1UL << 35)]
    [InlineData(1UL << 40)]
    public void TheInlineBoundIsAQuarterOfTheRingAtMost2To31(ulong capacity)
    {
        Assert.Equal(1UL << 31, QueueLayout.MaxInlineRecord);
        Assert.Equal((1UL << 32) - 8, QueueLayout.MaxRecord);
        Assert.Equal(Math.Min(capacity / 4, 1UL << 31), QueueLayout.InlineLimit(capacity));
        Assert.Equal(Math.Min(capacity / 2, (1UL << 32) - 8), QueueLayout.RecordLimit(capacity));
        Assert.True(QueueLayout.InlineLimit(capacity) <= QueueLayout.RecordLimit(capacity));
        Assert.True(QueueLayout.RecordLimit(capacity) <= uint.MaxValue);
    }

    [Fact]
    public void AMessageAbove2To31BytesGoesOutOfLineOnA32GiBRing()
    {
        ulong limit = QueueLayout.InlineLimit(Huge);
        Assert.True(QueueLayout.RecordSize(0, (1UL << 31) - 32) <= limit);      // the last inline bytes message
        Assert.True(QueueLayout.RecordSize(0, (1UL << 31) - 31) > limit);
        Assert.True(QueueLayout.RecordSize(0, 5UL << 30) > limit);              // 5 GiB: below capacity / 4, out of line
    }

    [SkippableFact]
    public void A32GiBQueueIsMadeUsedAndRemovedCheaply()
    {
        var drive = new DriveInfo(_dir);
        Skip.If(drive.DriveFormat == "tmpfs" || drive.AvailableFreeSpace < Huge + (4L << 30),
                $"{_dir} is tmpfs or has less than {Huge + (4L << 30)} bytes free");
        string name = QueueTests.NewName("huge");
        string path = Path.Combine(_dir, name);
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = Huge, Directory = _dir }))
        {
            Assert.Equal(Huge, q.Capacity);
            Assert.Equal(Huge + 0x200 + QueueLayout.Ring, new FileInfo(path).Length);
            byte[] big = new byte[5000];
            big.AsSpan().Fill(7);
            q.Write("first"u8);
            q.Write("second");
            q.Write(big);
            q.Write(3L);
            using (var m = q.Read(QueueTests.Long)) Assert.Equal("first"u8.ToArray(), m.Data.ToArray());
            using (var m = q.Read(QueueTests.Long)) Assert.Equal("second", Encoding.UTF8.GetString(m.Data));
            using (var m = q.Read(QueueTests.Long))
            {
                Assert.False(m.IsOutOfLine);
                Assert.Equal(big, m.Data.ToArray());
            }
            using (var m = q.Read(QueueTests.Long)) Assert.Equal(3L, BitConverter.ToInt64(m.Data));
        }
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void AnOutOfLineRecordLargerThanHalfTheRingIsRefused()
    {
        // A record message of 40 fields: a descriptor of 40 + 64 * 40 bytes, more than half a 4096-byte ring even out of
        // line (section 11.5): refused before anything is made, as Python refuses it.
        string name = QueueTests.NewName("wide");
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096 }))
        {
            var e = Assert.Throws<ArgumentException>(() => q.Write(new Wide40(), QueueTests.Long));
            Assert.Contains("does not fit", e.Message);
            Assert.Throws<ArgumentException>(() => q.TryWrite(new Wide40()));
            Assert.Equal(0, q.Count);
            Assert.Equal(0UL, q.TotalWritten);
            Assert.Single(QueueTests.Leftovers(name));
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }
}

/// <summary>A structure of 40 fields (a 2600-byte structure description, docs/format.md section 11.4).</summary>
public struct Wide40
{
    public long F00, F01, F02, F03, F04, F05, F06, F07, F08, F09, F10, F11, F12, F13, F14, F15, F16, F17, F18, F19,
        F20, F21, F22, F23, F24, F25, F26, F27, F28, F29, F30, F31, F32, F33, F34, F35, F36, F37, F38, F39;
}
