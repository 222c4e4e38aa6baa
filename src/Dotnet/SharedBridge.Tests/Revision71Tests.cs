using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using SharedBridge.Platform;

namespace SharedBridge.Tests;

/// <summary>
/// Rules docs/format.md revision 7.1 settles for opening and lifetimes: every open validates the immutable
/// words of the data area (section 6.2 step 6, 10.2), a directory at a name (6.2 step 1), a magic read while its
/// creator writes it (6.2 step 3), a shared flock not granted in time and the signals a creator handles (8).
/// </summary>
public class Revision71Tests
{
    private static string NewName(string tag) => Names.Unique(tag, "sbh23");

    private static void Poke(string name, long offset, uint value)
    {
        using var fs = new FileStream(Names.ShmPath(name), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        RandomAccess.Write(fs.SafeFileHandle, bytes, offset);
    }

    [Theory]
    [InlineData("barrier", 12, 0u, "parties 0")]
    [InlineData("semaphore", 20, 2u, "bounded 2")]
    [InlineData("semaphore", 16, 5u, "max_value 5")]
    [InlineData("queue", 128, 0u, "max_messages 0")]
    public void TheUntypedOpenRefusesBrokenImmutableWordsAsTheTypedOpensDo(string kind, int offset, uint value, string said)
    {
        string name = NewName(kind);
        IDisposable creator = kind switch
        {
            "barrier" => SharedBarrier.Create(name, 2),
            "semaphore" => SharedSemaphore.Create(name),
            _ => SharedQueue.Create(name),
        };
        using (creator)
        {
            using (SharedSegment.Open(name)) { }      // valid words: opens
            Poke(name, 0x200 + offset, value);
            var e = Assert.Throws<CorruptSegmentException>(() => SharedSegment.Open(name).Dispose());
            Assert.Contains(said, e.Message);
            Assert.Throws<CorruptSegmentException>(() => SharedSegment.ReadHeader(name));
        }
        Assert.False(Names.Exists(name));
    }

    [Fact]
    public void ADirectoryAtTheNameIsNotASharedBridgeSegmentToOpenAndToUnlink()
    {
        string name = NewName("dir");
        Directory.CreateDirectory(Names.ShmPath(name));
        try
        {
            Assert.Throws<NotASharedBridgeSegmentException>(() => SharedSegment.Open(name, TimeSpan.Zero).Dispose());
            var e = Assert.Throws<NotASharedBridgeSegmentException>(() => SharedSegment.Unlink(name));
            Assert.Contains("directory", e.Message);
            Assert.True(Directory.Exists(Names.ShmPath(name)));
        }
        finally
        {
            Directory.Delete(Names.ShmPath(name));
        }
    }

    [Fact]
    public void AttachersRacingCreatorsOfOneNameNeverReportAWrongMagic()
    {
        // Section 6.2 step 3: a segment being created is never another program's. Two creators churn
        // one name (create, dispose) while two attachers open it, for 2 seconds.
        string name = NewName("race");
        var until = Stopwatch.StartNew();
        var wrong = new ConcurrentQueue<string>();
        int opened = 0;
        void Create()
        {
            while (until.Elapsed < TimeSpan.FromSeconds(2))
            {
                try { using var a = SharedArray<long>.Create(name, 4); }
                catch (SegmentExistsException) { }
            }
        }
        void Attach()
        {
            while (until.Elapsed < TimeSpan.FromSeconds(2))
            {
                try
                {
                    using var s = SharedSegment.Open(name, TimeSpan.FromSeconds(1));
                    Interlocked.Increment(ref opened);
                }
                catch (SegmentNotFoundException) { }       // between a dispose and the next create
                catch (Exception e) when (e is ISharedBridgeException) { wrong.Enqueue($"{e.GetType().Name}: {e.Message}"); }
            }
        }
        var threads = new[] { new Thread(Create), new Thread(Create), new Thread(Attach), new Thread(Attach) };
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(30)), "a racing thread hung");
        try
        {
            Assert.Empty(wrong.Distinct().Take(3));
            Assert.True(opened > 0, "no attach ever met a segment");
        }
        finally
        {
            if (Names.Exists(name)) SharedSegment.Unlink(name);
        }
    }

    [Fact]
    public void ASharedLockNotGrantedInTimeIsStillInitializing()
    {
        // Section 8 step 3: a process holds the segment's flock exclusively (a closer or reaper would, for an instant).
        string name = NewName("excl");
        using (var a = SharedArray<int>.Create(name, 2, new SegmentOptions { Lifetime = SegmentLifetime.Persistent })) { }
        try
        {
            // Make it last-closer (section 3.1: lifetime 1 needs compat_version 2), checksum recomputed (section 3.3).
            byte[] header = File.ReadAllBytes(Names.ShmPath(name)).AsSpan(0, 0x200).ToArray();
            header[0x39] = 1;
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(0x0A), 2);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0x184), Format.Crc32.Compute(header.AsSpan(0, 0x180)));
            using var holder = File.Open(Names.ShmPath(name), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            RandomAccess.Write(holder.SafeFileHandle, header, 0);
            Assert.Equal(0, Interop.Flock(holder.SafeFileHandle, Interop.LOCK_EX | Interop.LOCK_NB));
            var e = Assert.Throws<SegmentNotReadyException>(() => SharedArray<int>.Open(name, TimeSpan.FromMilliseconds(200)).Dispose());
            Assert.Contains("exclusively", e.Message);
            Interop.Flock(holder.SafeFileHandle, Interop.LOCK_UN);
        }
        finally
        {
            if (Names.Exists(name)) SharedSegment.Unlink(name);
        }
    }

    [Theory]
    [InlineData("USR1", 10)]
    [InlineData("ALRM", 14)]
    public void OnlyTermIntAndHupAreHandledAnyOtherSignalLeavesTheNameAsSigkillDoes(string signal, int number)
    {
        string name = NewName("sig"), kept = NewName("kept");
        try
        {
            using var child = WatchedChild.Start([], "create-and-wait", name, kept);
            child.Child.ExpectLine("created");
            Signals.Send(child.Pid, signal);
            Assert.Equal(-number, child.WaitForEnd());
            Assert.True(Names.Exists(name), $"SIG{signal} is not one a creator handles (section 8): the name stays");
        }
        finally
        {
            foreach (string n in new[] { name, kept })
                if (Names.Exists(n)) SharedSegment.Unlink(n);
        }
    }
}
