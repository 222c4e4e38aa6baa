using System.Buffers.Binary;
using System.Globalization;
using SharedBridge.Platform;
using static SharedBridge.Tests.HeaderFormatTests;

namespace SharedBridge.Tests;

/// <summary>
/// Hostile segments (docs/security.md, "What it must never achieve"): every failure is one of the library's exceptions, and
/// opening never changes the segment: no resizing, only the described bytes are mapped, another
/// user's segment is refused unless the caller opts in.
/// </summary>
public class HostileSegmentTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static bool IsRoot => Interop.GetEUid() == 0;

    /// <summary>Size in bytes of this process's mappings of /dev/shm/<paramref name="name"/>.</summary>
    private static long MappedBytes(string name)
    {
        long total = 0;
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            if (!line.EndsWith(Names.ShmPath(name), StringComparison.Ordinal)) continue;
            var range = line[..line.IndexOf(' ')].Split('-');
            total += long.Parse(range[1], NumberStyles.HexNumber) - long.Parse(range[0], NumberStyles.HexNumber);
        }
        return total;
    }

    [Fact]
    public void OpeningMapsOnlyWhatTheHeaderDescribes()
    {
        byte[] bytes = SegmentFiles.Of(n => SharedArray<double>.Create(n, 4)); // 512 + 32 bytes
        string name = Names.Unique("big");
        File.WriteAllBytes(Names.ShmPath(name), bytes);
        using (var f = new FileStream(Names.ShmPath(name), FileMode.Open)) f.SetLength(64 << 20);
        try
        {
            using var a = SharedArray<double>.Open(name);
            Assert.Equal(4096, MappedBytes(name)); // one page for 544 bytes, not 64 MiB
            Assert.Equal(64 << 20, new FileInfo(Names.ShmPath(name)).Length);
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }

    [Fact]
    public void ATooShortObjectIsCorruptAndKeepsItsSize()
    {
        byte[] bytes = SegmentFiles.Of(n => SharedArray<double>.Create(n, 1000));
        string name = Names.Unique("short");
        File.WriteAllBytes(Names.ShmPath(name), bytes[..1000]);
        try
        {
            var e = Assert.Throws<CorruptSegmentException>(() => SharedArray<double>.Open(name));
            Assert.Contains("past the object size", e.Message);
            Assert.Equal(1000, new FileInfo(Names.ShmPath(name)).Length); // never extended
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }

    [Fact]
    public void AnObjectChangingSizeWhileOpeningGivesOnlyOurErrors()
    {
        byte[] bytes = SegmentFiles.Of(n => SharedArray<double>.Create(n, 4096));
        string name = Names.Unique("resize");
        File.WriteAllBytes(Names.ShmPath(name), bytes);
        using var stop = new CancellationTokenSource();
        var resizer = new Thread(() =>
        {
            using var f = new FileStream(Names.ShmPath(name), FileMode.Open, FileAccess.ReadWrite);
            bool small = false;
            while (!stop.IsCancellationRequested)
            {
                f.SetLength(small ? bytes.Length : 600);
                small = !small;
            }
            f.SetLength(bytes.Length);
        });
        resizer.Start();
        int opened = 0, corrupt = 0, changed = 0;
        try
        {
            var until = DateTime.UtcNow.AddSeconds(1);
            while (DateTime.UtcNow < until)
            {
                try
                {
                    // The data is never touched here: a shrunk object would fault on access.
                    using var a = SharedArray<double>.Open(name, TimeSpan.FromMilliseconds(50));
                    Assert.Equal(4096, a.Length);
                    opened++;
                }
                catch (CorruptSegmentException e)
                {
                    corrupt++;
                    if (e.Message.Contains("changed size while attaching")) changed++;
                }
            }
        }
        finally
        {
            stop.Cancel();
            resizer.Join();
            File.Delete(Names.ShmPath(name));
        }
        output.WriteLine($"opened {opened}, corrupt {corrupt} (of which 'changed size while attaching' {changed})");
        Assert.True(opened + corrupt > 0);
    }

    [Fact]
    public void ASegmentOfAnotherUserIsRefusedUnlessTheCallerOptsIn()
    {
        if (!IsRoot) return; // needs root to give a segment away (fchown)
        string name = Names.Unique("owner");
        using var creator = SharedArray<int>.Create(name, [1, 2, 3]);
        GiveAway(name);

        var e = Assert.Throws<SegmentAccessDeniedException>(() => SharedArray<int>.Open(name));
        Assert.Contains("owned by uid 65534, not you", e.Message);
        Assert.Contains("AllowOtherOwner", e.Message);
        Assert.Equal(name, e.SegmentName);
        Assert.Throws<SegmentAccessDeniedException>(() => SharedSegment.Open(name));
        Assert.Throws<SegmentAccessDeniedException>(() => SharedLock.Open(name));

        var trusting = new OpenOptions { AllowOtherOwner = true };
        using (var a = SharedArray<int>.Open(name, trusting)) Assert.Equal([1, 2, 3], a.ToArray());
        using (var s = SharedSegment.Open(name, trusting)) Assert.Equal(12, s.Data.Length);
    }

    [Fact]
    public void AnExternalLockSegmentOfAnotherUserIsRefusedToo()
    {
        if (!IsRoot) return;
        using var shared = SharedLock.Create(Names.Unique("xowner"));
        string name = Names.Unique("xdata");
        using var data = SharedArray<int>.Create(name, 1, new SegmentOptions { SharedLock = shared });
        GiveAway(shared.Name);
        var e = Assert.Throws<SegmentAccessDeniedException>(() => SharedArray<int>.Open(name));
        Assert.Equal(shared.Name, e.SegmentName);
        using var a = SharedArray<int>.Open(name, new OpenOptions { AllowOtherOwner = true });
        using (a.Lock()) a[0] = 1;
    }

    [Fact]
    public void PermissionDeniedIsSegmentAccessDenied()
    {
        if (IsRoot) return; // root is never refused by the mode
        string name = Names.Unique("mode");
        using var creator = SharedArray<int>.Create(name, 1);
        File.SetUnixFileMode(Names.ShmPath(name), UnixFileMode.None);
        Assert.Throws<SegmentAccessDeniedException>(() => SharedArray<int>.Open(name));
    }

    /// <summary>chown to uid/gid 65534 (nobody), as root.</summary>
    private static void GiveAway(string name)
    {
        using var chown = System.Diagnostics.Process.Start(
            new System.Diagnostics.ProcessStartInfo("chown", ["65534:65534", Names.ShmPath(name)]) { UseShellExecute = false })!;
        chown.WaitForExit();
        Assert.Equal(0, chown.ExitCode);
    }

    /// <summary>A sparse 'B' array header claiming <paramref name="count"/> bytes of data.</summary>
    private static string SparseByteArray(ulong count)
    {
        byte[] bytes = SegmentFiles.Of(n => SharedArray<byte>.Create(n, 0, new SegmentOptions { Synchronized = false }));
        U64(bytes, 0x018, count);
        U64(bytes, 0x028, count);
        SegmentFiles.FixCrc(bytes);
        string name = Names.Unique("sparse");
        File.WriteAllBytes(Names.ShmPath(name), bytes);
        using var f = new FileStream(Names.ShmPath(name), FileMode.Open);
        f.SetLength(512 + (long)count);
        return name;
    }

    [Fact]
    public void MoreElementsThanAnArrayCanIndexIsATypeMismatchNotANegativeLength()
    {
        string name = SparseByteArray(1UL << 31);
        try
        {
            var e = Assert.Throws<TypeMismatchException>(() => SharedArray<byte>.Open(name));
            Assert.Contains("2147483648 elements", e.Message);
            using var s = SharedSegment.Open(name);
            Assert.Equal(1L << 31, s.Header.Length);
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }

    [Fact]
    public void AnObjectTooLargeToMapIsInsufficientSharedMemory()
    {
        string name = SparseByteArray(1UL << 48); // 256 TiB: more than a process's address space
        try
        {
            var e = Assert.Throws<InsufficientSharedMemoryException>(() => SharedSegment.Open(name));
            Assert.Contains((512 + (1L << 48)).ToString(CultureInfo.InvariantCulture), e.Message);
            Assert.Contains(name, e.Message);
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }

    [Fact]
    public void OpeningNeverWritesToTheSegment()
    {
        byte[] before = SegmentFiles.Of(n => SharedArray<Point>.Create(n, [new Point { X = 1, Y = 2 }]));
        Assert.Null(SegmentFiles.Try(before, name =>
        {
            using (var a = SharedArray<Point>.Open(name)) _ = a.ToArray();
            using (var s = SharedSegment.Open(name)) _ = s.Header;
            Assert.Equal(before, File.ReadAllBytes(Names.ShmPath(name)));
        }));
    }
}
