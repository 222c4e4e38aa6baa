using System.Buffers.Binary;
using System.Runtime.InteropServices;
using SharedBridge.Format;
using SharedBridge.Objects;
using SharedBridge.Platform;
using static SharedBridge.Tests.WakeupTests;

namespace SharedBridge.Tests;

/// <summary>Format version 4 (docs/wakeups-design.md section 3, format.md 6.3 and 10): the sleepers word of the
/// synchronization kinds, the version rule that keeps version-3 processes off such segments, and the older
/// segments on which every notification still wakes.</summary>
public class FormatV4Tests
{
    private static string NewName(string tag) => Names.Unique(tag, "sbCW");

    private static readonly TimeSpan Long = TimeSpan.FromSeconds(10);

    private const int Sleepers = 6;     // the sleepers word (+24), format version 4

    [Fact]
    public void SynchronizationSegmentsAreWrittenAsVersion4AndTheOtherKindsAsVersion3Wrote()
    {
        var names = Enumerable.Range(0, 10).Select(i => NewName($"v{i}")).ToArray();
        using var ev = SharedEvent.Create(names[0]);
        using var sem = SharedSemaphore.Create(names[1], 1);
        using var items = SharedSemaphore.Create(names[2], 0, reclaim: false);
        using var bounded = SharedSemaphore.Create(names[3], 1, 2);
        using var cond = SharedCondition.Create(names[4]);
        using var shared = SharedLock.Create(names[5]);
        using var onShared = SharedCondition.Create(names[6], shared);
        using var barrier = SharedBarrier.Create(names[7], 2);
        foreach (var h in new[] { ev.Header, sem.Header, items.Header, bounded.Header, cond.Header, onShared.Header, barrier.Header })
            Assert.Equal((4, 4), (h.Version, h.CompatVersion));
        using var array = SharedArray<double>.Create(names[8], 2);
        using var value = SharedValue<int>.Create(names[9], 1, new SegmentOptions { Lifetime = SegmentLifetime.LastCloser });
        Assert.Equal((2, 1), (array.Header.Version, array.Header.CompatVersion));
        Assert.Equal((2, 1), (shared.Header.Version, shared.Header.CompatVersion));
        Assert.Equal((2, 2), (value.Header.Version, value.Header.CompatVersion));
    }

    private static readonly long SysFutex = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 98 : 202;

    /// <summary>A waiter as version 3 waits (a test helper: section 10.3 without registering): joins, reads seq,
    /// releases the mutex and sleeps in one FUTEX_WAIT of up to 10 s. Returns true when a FUTEX_WAKE ended it.</summary>
    private static unsafe bool Version3Waiter(WaitWords words, uint* seq, ref int tid)
    {
        Volatile.Write(ref tid, Interop.CurrentTid);
        uint s;
        using (words.Lock())
        {
            words.Join();
            s = words[WaitWords.Seq];
        }
        var timeout = new Interop.Timespec { Seconds = 10 };
        long rc = Interop.SyscallFutex(SysFutex, seq, 0, s, &timeout, null, 0);
        int errno = Marshal.GetLastPInvokeError();
        using (words.Lock())
        {
            words.ConsumeSignal();
            words.Leave();
        }
        Assert.True(rc == 0 || errno != 11, "seq changed before the waiter slept: the test could not check the wake-up");
        return rc == 0;
    }

    private static bool SleepsInFutex(int tid) =>
        File.Exists($"/proc/self/task/{tid}/wchan") && File.ReadAllText($"/proc/self/task/{tid}/wchan").Contains("futex");

    public static TheoryData<string, int> OlderSegments => new() { { "event", 2 }, { "semaphore", 3 }, { "condition", 2 } };

    [Theory]
    [MemberData(nameof(OlderSegments))]
    public unsafe void OnAnOlderSegmentEveryNotificationWakesAWaiterThatNeverRegisters(string kind, int version)
    {
        byte[] bytes = SegmentFiles.Of(name => kind switch
        {
            "event" => SharedEvent.Create(name),
            "semaphore" => SharedSemaphore.Create(name, 0),
            _ => SharedCondition.Create(name),
        });
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(HeaderLayout.VersionOffset), (ushort)version);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(HeaderLayout.CompatVersionOffset), (ushort)version);
        SegmentFiles.FixCrc(bytes);
        var failure = SegmentFiles.Try(bytes, name =>
        {
            var segmentKind = kind switch { "event" => SegmentKind.Event, "semaphore" => SegmentKind.Semaphore, _ => SegmentKind.Condition };
            var core = WaitWords.Open("test", name, null, segmentKind);
            try
            {
                Assert.Equal(version, core.Header.CompatVersion);
                var words = new WaitWords(core);
                uint* seq = (uint*)core.Segment.Data;
                int tid = 0;
                bool? woken = null;
                var waiter = new Thread(() => woken = Version3Waiter(words, seq, ref tid)) { IsBackground = true };
                waiter.Start();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                while (Volatile.Read(ref tid) == 0 || !SleepsInFutex(Volatile.Read(ref tid)))
                {
                    Assert.True(sw.Elapsed < Long, "the helper never slept");
                    Thread.Sleep(1);
                }
                switch (kind)
                {
                    case "event": { using var ev = SharedEvent.Open(name); ev.Set(); break; }
                    case "semaphore": { using var sem = SharedSemaphore.Open(name); sem.Release(); break; }
                    default: { using var cond = SharedCondition.Open(name); using (cond.Lock()) cond.Notify(); break; }
                }
                Assert.True(waiter.Join(TimeSpan.FromSeconds(30)));
                Assert.True(woken, $"a notification on a compat_version {version} segment did not wake a waiter that never registered");
            }
            finally
            {
                core.Dispose();
            }
        });
        Assert.True(failure is null, failure?.ToString());
    }

    [Fact]
    public void AWaiterKilledWhileRegisteredLeavesSleepersOneTooHighAndLaterWaitsStillReturn()
    {
        string name = NewName("kreg");
        using var cond = SharedCondition.Create(name);
        using var words = new WordReader(name, cond.Header.DataOffset);
        using (var child = Child.Start("cond-wait", name))
        {
            child.ExpectLine("waiting");
            words.AwaitWord(Sleepers, 1);        // registered: asleep in FUTEX_WAIT
            child.KillHard();
        }
        Assert.Equal((1u, 1u), (words[WaitWords.Waiters], words[Sleepers]));
        bool? notified = null;
        var live = new Thread(() =>
        {
            using (cond.Lock()) notified = cond.Wait(Long);
        }) { IsBackground = true };
        live.Start();
        words.AwaitWord(Sleepers, 2);
        using (cond.Lock()) cond.Notify();
        Assert.True(live.Join(Long), "the live waiter was not woken");
        Assert.True(notified);
        Assert.Equal((1u, 1u), (words[WaitWords.Waiters], words[Sleepers]));   // the dead waiter's, as before
        using (cond.Lock())
        {
            Assert.False(cond.Wait(TimeSpan.FromMilliseconds(100)));
        }
        Assert.Equal(1u, words[WaitWords.Waiters]);
    }

    [Fact]
    public void MoreSleepersThanWaitersIsACorruptSegment()
    {
        string name = NewName("csl");
        using var ev = SharedEvent.Create(name);
        using (var words = new WordReader(name, ev.Header.DataOffset)) words[Sleepers] = 1;
        var e = Assert.Throws<CorruptSegmentException>(() => ev.Set());
        Assert.Contains("sleepers 1 > waiters 0", e.Message);
        using var evLock = InternalLock.Of(name);
        Assert.Equal(LockState.Free, evLock.State);    // nothing was left held
    }

    public static IEnumerable<object[]> Version3Goldens()
    {
        string dir = AppContext.BaseDirectory;
        while (!Directory.Exists(Path.Combine(dir, "tests", "cross", "vectors", "v3"))) dir = Path.GetDirectoryName(dir)!;
        return Directory.GetFiles(Path.Combine(dir, "tests", "cross", "vectors", "v3"), "*.header.bin")
            .Where(p => !p.Contains("sharedlock")).Order(StringComparer.Ordinal).Select(p => new object[] { p });
    }

    /// <summary>The synchronization segments a version-3 writer wrote (tests/cross/vectors/v3) open with this
    /// version-4 reader, wake their waiters, and never get the sleepers word written (format.md 6.3).</summary>
    [Theory]
    [MemberData(nameof(Version3Goldens))]
    public void EveryVersion3SynchronizationGoldenIsUsedWithTheVersion3Rules(string path)
    {
        string name = NewName("v3g");
        string vector = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(path))!, Path.GetFileName(path).Replace(".header.bin", ".json"));
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(vector));
        var values = json.RootElement.GetProperty("values").EnumerateArray().Select(v => v.GetUInt32()).ToArray();
        byte[] head = File.ReadAllBytes(path);
        var bytes = new byte[head.Length + 4 * values.Length];
        head.CopyTo(bytes, 0);
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(head.Length + 4 * i), values[i]);
        File.WriteAllBytes(Names.ShmPath(name), bytes);
        try
        {
            var version = (BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(8)), BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(10)));
            Assert.True(version.Item2 < 4);
            var done = new List<Thread>();
            int woken = 0;
            void Start(Func<bool> wait)
            {
                var t = new Thread(() =>
                {
                    try { if (wait()) Interlocked.Increment(ref woken); }
                    catch (Exception) { }       // counted as not woken: the assertion below says so
                }) { IsBackground = true };
                t.Start();
                done.Add(t);
            }
            void Joined() => SyncRecoveryTests.Until(() => SyncRecoveryTests.ReadWord(name, WaitWords.Waiters) > 0);
            switch ((SegmentKind)head[0x10])
            {
                case SegmentKind.Event:
                {
                    using var ev = SharedEvent.Open(name);
                    Assert.Equal(version, ((ushort)ev.Header.Version, (ushort)ev.Header.CompatVersion));
                    ev.Reset();
                    Start(() => ev.Wait(Long));
                    Joined();
                    ev.Set();
                    done.ForEach(t => t.Join(Long));
                    break;
                }
                case SegmentKind.Semaphore:
                {
                    using var sem = SharedSemaphore.Open(name);
                    while (sem.Wait(TimeSpan.Zero)) { }     // every unit taken: the next Wait sleeps
                    Start(() => sem.Wait(Long));
                    Joined();
                    sem.Release();
                    done.ForEach(t => t.Join(Long));
                    break;
                }
                case SegmentKind.Condition:
                {
                    using var cond = SharedCondition.Open(name);
                    Start(() => { using (cond.Lock(Long)) return cond.Wait(Long); });
                    Joined();
                    using (cond.Lock(Long)) cond.Notify();
                    done.ForEach(t => t.Join(Long));
                    break;
                }
                default:
                {
                    using var barrier = SharedBarrier.Open(name);
                    for (int i = 0; i < barrier.ParticipantCount; i++) Start(() => barrier.SignalAndWait(Long) >= 0);
                    done.ForEach(t => t.Join(Long));
                    break;
                }
            }
            Assert.Equal(done.Count, woken);
            Assert.Equal(0u, SyncRecoveryTests.ReadWord(name, Sleepers));
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }
}
