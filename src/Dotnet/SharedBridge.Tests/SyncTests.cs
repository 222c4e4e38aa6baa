using System.Diagnostics;

namespace SharedBridge.Tests;

/// <summary>SharedEvent, SharedSemaphore, SharedCondition, SharedBarrier (docs/format.md section 10):
/// behaviour with threads, async waits, cancellation, and across real processes including crashes.</summary>
public class SyncTests
{
    private static int s_counter;

    private static string NewName(string tag) => $"sbsync_{Environment.ProcessId}_{Interlocked.Increment(ref s_counter)}_{tag}";

    private static readonly TimeSpan Long = TimeSpan.FromSeconds(10);

    [Fact]
    public void SynchronizationObjectsRecordTheLifetimeAsked()
    {
        string persistentName = NewName("keep"), closerName = NewName("lc");
        using (var kept = SharedSemaphore.Create(persistentName, 1, null, new SegmentOptions { Lifetime = SegmentLifetime.Persistent }))
            Assert.Equal(SegmentLifetime.Persistent, kept.Header.Lifetime);
        Assert.True(File.Exists("/dev/shm/" + persistentName));
        File.Delete("/dev/shm/" + persistentName);
        var last = SharedEvent.Create(closerName, false, new SegmentOptions { Lifetime = SegmentLifetime.LastCloser });
        Assert.Equal(SegmentLifetime.LastCloser, last.Header.Lifetime);
        Assert.Equal(4, last.Header.CompatVersion);
        using (var other = SharedEvent.Open(closerName))
        {
            last.Dispose();
            Assert.True(File.Exists("/dev/shm/" + closerName));   // the other holder is still there
        }
        Assert.False(File.Exists("/dev/shm/" + closerName));      // the last closer removed it
        Assert.Throws<ArgumentException>(() => SharedEvent.Create(NewName("bad"), false,
            new SegmentOptions { KeepOnDispose = true, Lifetime = SegmentLifetime.LastCloser }));
    }

    [Fact]
    public void EventSetWakesEveryWaiterAndResetClearsIt()
    {
        using var ev = SharedEvent.Create(NewName("ev"));
        Assert.False(ev.IsSet);
        Assert.False(ev.Wait(TimeSpan.FromMilliseconds(20)));
        int woken = 0;
        var waiters = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            if (ev.Wait(Long)) Interlocked.Increment(ref woken);
        })).ToList();
        waiters.ForEach(t => t.Start());
        Thread.Sleep(50);
        ev.Set();
        waiters.ForEach(t => t.Join());
        Assert.Equal(3, woken);
        Assert.True(ev.IsSet);
        Assert.True(ev.Wait(TimeSpan.Zero));
        ev.Reset();
        Assert.False(ev.Wait(TimeSpan.Zero));
        Assert.Equal(4, ev.Header.Version);
        Assert.Equal(4, ev.Header.CompatVersion);
        Assert.Equal(SegmentKind.Event, ev.Header.Kind);
    }

    [Fact]
    public async Task WaitAsyncCompletesOnSetAndCancelsPromptlyLeavingTheEventUsable()
    {
        using var ev = SharedEvent.Create(NewName("evasync"));
        using var cts = new CancellationTokenSource();
        var cancelled = ev.WaitAsync(Timeout.InfiniteTimeSpan, cts.Token);
        await Task.Delay(30);
        var sw = Stopwatch.StartNew();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.True(sw.ElapsedMilliseconds < 1000, $"cancellation took {sw.ElapsedMilliseconds} ms");
        var waiting = ev.WaitAsync(Long);
        await Task.Delay(30);
        ev.Set();
        Assert.True(await waiting);
        Assert.False(await SharedEvent.Create(NewName("evto")).WaitAsync(TimeSpan.FromMilliseconds(20)));
    }

    [Fact]
    public void SemaphoreCountsAndABoundedOneRefusesTooManyReleases()
    {
        using var sem = SharedSemaphore.Create(NewName("sem"), 2);
        Assert.True(sem.Wait(TimeSpan.Zero));
        Assert.True(sem.Wait(TimeSpan.Zero));
        Assert.False(sem.Wait(TimeSpan.FromMilliseconds(20)));
        Assert.Equal(0, sem.Release(3));
        Assert.Equal(3, sem.CurrentCount);
        Assert.False(sem.IsBounded);
        Assert.Null(sem.MaximumCount);

        using var bounded = SharedSemaphore.Create(NewName("bsem"), 1, maximumCount: 2);
        Assert.Equal(1, bounded.Release());
        var e = Assert.Throws<SemaphoreFullException>(() => bounded.Release());
        Assert.Contains("released too many times", e.Message);
        Assert.Equal(2, bounded.CurrentCount);
        using var opened = SharedSemaphore.Open(bounded.Name);
        Assert.True(opened.IsBounded);
        Assert.Equal(2, opened.MaximumCount);
    }

    [Fact]
    public void SemaphoreReleaseWakesAsManyWaitersAsUnits()
    {
        using var sem = SharedSemaphore.Create(NewName("semw"), 0);
        int taken = 0;
        var waiters = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            if (sem.Wait(TimeSpan.FromMilliseconds(600))) Interlocked.Increment(ref taken);
        })).ToList();
        waiters.ForEach(t => t.Start());
        Thread.Sleep(100);
        sem.Release(2);
        waiters.ForEach(t => t.Join());
        Assert.Equal(2, taken);
        Assert.Equal(0, sem.CurrentCount);
    }

    [Fact]
    public void ConditionNeedsItsLockAndNotifyOneWakesOne()
    {
        using var cond = SharedCondition.Create(NewName("cond"));
        Assert.Throws<SynchronizationLockException>(() => cond.Wait(TimeSpan.Zero));
        Assert.Throws<SynchronizationLockException>(() => cond.Notify());
        int woken = 0;
        var waiters = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            using var scope = cond.Lock();
            if (cond.Wait(TimeSpan.FromMilliseconds(700))) Interlocked.Increment(ref woken);
        })).ToList();
        waiters.ForEach(t => t.Start());
        Thread.Sleep(150);
        using (cond.Lock()) cond.Notify();
        waiters.ForEach(t => t.Join());
        Assert.Equal(1, woken);
    }

    [Fact]
    public void BoundedBufferOnAnArrayLockPassesEveryItemOnce()
    {
        using var buffer = SharedArray<long>.Create(NewName("buf"), 2 + 4);   // head, tail, 4 slots
        using var arrayLock = buffer.GetLock();
        using var cond = SharedCondition.Create(NewName("bufc"), arrayLock);
        Assert.Equal(buffer.Name, cond.LockName);
        Assert.Equal(LockKind.External, cond.Header.LockKind);
        const int n = 500;
        var producer = new Thread(() =>
        {
            for (long item = 0; item < n; item++)
            {
                using var scope = cond.Lock();
                Assert.True(cond.WaitFor(() => buffer[1] - buffer[0] < 4, Long));
                buffer[2 + (int)(buffer[1] % 4)] = item;
                buffer[1]++;
                cond.NotifyAll();
            }
        });
        producer.Start();
        var got = new List<long>();
        while (got.Count < n)
        {
            using var scope = buffer.Lock();
            Assert.True(cond.WaitFor(() => buffer[1] > buffer[0], Long));
            got.Add(buffer[2 + (int)(buffer[0] % 4)]);
            buffer[0]++;
            cond.NotifyAll();
        }
        producer.Join();
        Assert.Equal(Enumerable.Range(0, n).Select(i => (long)i), got);
    }

    [Fact]
    public void BarrierRoundsIndexesActionTimeoutResetAndAbort()
    {
        using var barrier = SharedBarrier.Create(NewName("bar"), 3);
        int actions = 0;
        barrier.PostPhaseAction = () => Interlocked.Increment(ref actions);
        var indexes = new System.Collections.Concurrent.ConcurrentBag<int>();
        var parties = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            for (int r = 0; r < 10; r++) indexes.Add(barrier.SignalAndWait(Long));
        })).ToList();
        parties.ForEach(t => t.Start());
        parties.ForEach(t => t.Join());
        Assert.Equal(10, actions);
        Assert.Equal(Enumerable.Repeat(new[] { 0, 1, 2 }, 10).SelectMany(x => x).OrderBy(x => x), indexes.OrderBy(x => x));
        Assert.Throws<BrokenBarrierException>(() => barrier.SignalAndWait(TimeSpan.FromMilliseconds(30)));
        Assert.True(barrier.IsBroken);
        Assert.Throws<BrokenBarrierException>(() => barrier.SignalAndWait(Long));
        barrier.Reset();
        Assert.False(barrier.IsBroken);
        Assert.Equal(0, barrier.ParticipantsWaiting);
        barrier.Abort();
        Assert.True(barrier.IsBroken);
        using var opened = SharedBarrier.Open(barrier.Name);
        Assert.Equal(3, opened.ParticipantCount);
    }

    [Fact]
    public void OpeningTheWrongKindIsATypeMismatch()
    {
        using var ev = SharedEvent.Create(NewName("kind"));
        var e = Assert.Throws<TypeMismatchException>(() => SharedSemaphore.Open(ev.Name));
        Assert.Contains("an event segment", e.Message);
        Assert.Contains("an event segment, not an array", Assert.Throws<TypeMismatchException>(() => SharedArray<uint>.Open(ev.Name)).Message);
        Assert.Contains("an event segment, not a value", Assert.Throws<TypeMismatchException>(() => SharedValue<uint>.Open(ev.Name)).Message);
        Assert.Throws<ArgumentException>(() => SharedEvent.Create(NewName("opt"), options: new SegmentOptions { Synchronized = false }));
    }

    [Fact]
    public void ChildProcessWaitsForAnEventSetHereAndSetsOneWaitedHere()
    {
        using var ev = SharedEvent.Create(NewName("xev"));
        using var back = SharedEvent.Create(NewName("xback"));
        using var child = Child.Start("event-wait", ev.Name, "20000");
        child.ExpectLine("waiting");
        ev.Set();
        child.ExpectLine("set");
        using var setter = Child.Start("event-set", back.Name);
        Assert.True(back.Wait(TimeSpan.FromSeconds(30)));
        Assert.Equal(0, child.WaitForExit());
        Assert.Equal(0, setter.WaitForExit());
    }

    [Fact]
    public void AKilledWaiterBlocksNobodyAndAKilledHoldersUnitComesBack()
    {
        using var cond = SharedCondition.Create(NewName("xcond"));
        using (var child = Child.Start("cond-wait", cond.Name))
        {
            child.ExpectLine("waiting");
            Thread.Sleep(50);
            child.KillHard();
        }
        bool notified = false;
        var live = new Thread(() =>
        {
            using var scope = cond.Lock();
            notified = cond.Wait(Long);
        });
        live.Start();
        Thread.Sleep(100);
        using (cond.Lock()) cond.Notify();
        live.Join();
        Assert.True(notified);

        using var sem = SharedSemaphore.Create(NewName("xsem"), 1);
        using (var holder = Child.Start("sem-hold", sem.Name))
        {
            holder.ExpectLine("held");
            holder.KillHard();
        }
        Assert.Equal(0, sem.CurrentCount);
        Assert.True(sem.Wait(Long));                       // section 10.3: a dead holder's recorded unit comes back
    }

    [Fact]
    public void CorruptWordsAreReportedNotUsed()
    {
        using var sem = SharedSemaphore.Create(NewName("csem"), 1);
        using var ev = SharedEvent.Create(NewName("cev"));
        WriteWord(sem.Name, 5, 2);          // bounded = 2
        Assert.Throws<CorruptSegmentException>(() => SharedSemaphore.Open(sem.Name));
        WriteWord(ev.Name, 3, 7);           // flag = 7: a mutable word out of range
        var e = Assert.Throws<CorruptSegmentException>(() => ev.Set());
        Assert.Contains("flag 7", e.Message);
        using var evLock = InternalLock.Of(ev.Name);
        Assert.Equal(LockState.Free, evLock.State);    // nothing was left held
    }

    private static void WriteWord(string name, int index, uint value)
    {
        using var f = new FileStream("/dev/shm/" + name, FileMode.Open, FileAccess.Write);
        f.Position = 0x200 + 4 * index;
        f.Write(BitConverter.GetBytes(value));
    }
}
