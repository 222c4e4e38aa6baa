using static SharedBridge.Tests.SyncRecoveryTests;

namespace SharedBridge.Tests;

/// <summary>Asynchronous waits (docs/wakeups-design.md section 6): pending WaitAsync calls occupy no thread of their own
/// (the process's one waiter thread serves them), complete on a Set, a Release from another process, a timeout or a
/// cancellation, leave the waiters word as it was, and run the code after an await on the thread pool.</summary>
public class AsyncWaitTests
{
    internal static readonly TimeSpan Long = TimeSpan.FromSeconds(20);
    internal const int Waiters = 1;     // docs/format.md section 10.2, word 1

    internal static string NewName(string tag) => Names.Unique(tag, prefix: "sbCA");

    [Fact]
    public async Task CancellingOnePendingWaitCompletesItCanceledAndLeavesTheWaitersWordAsBefore()
    {
        using var ev = SharedEvent.Create(NewName("cancel"));
        var other = ev.WaitAsync(Long);
        Until(() => ReadWord(ev.Name, Waiters) == 1);
        using var cts = new CancellationTokenSource();
        var cancelled = ev.WaitAsync(Long, cts.Token);
        Until(() => ReadWord(ev.Name, Waiters) == 2);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Long));
        Assert.True(cancelled.IsCanceled);
        Assert.Equal(1u, ReadWord(ev.Name, Waiters));    // only the other wait is still joined
        Assert.False(other.IsCompleted);
        ev.Set();
        Assert.True(await other.WaitAsync(Long));
        Assert.Equal(0u, ReadWord(ev.Name, Waiters));
    }

    [Fact]
    public async Task ACancelledSemaphoreWaitTakesNothingAndTheNextReleaseGoesToTheOtherWait()
    {
        using var sem = SharedSemaphore.Create(NewName("semcancel"), 0);
        using var cts = new CancellationTokenSource();
        var cancelled = sem.WaitAsync(Long, cts.Token);
        var other = sem.WaitAsync(Long);
        Until(() => ReadWord(sem.Name, Waiters) == 2);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Long));
        Assert.Equal(1u, ReadWord(sem.Name, Waiters));
        sem.Release();
        Assert.True(await other.WaitAsync(Long));
        Assert.Equal(0, sem.CurrentCount);
        Assert.Equal(0u, ReadWord(sem.Name, Waiters));
    }

    [Fact]
    public async Task ASemaphoreWaitCompletedByAReleaseInAnotherProcessTakesExactlyOneUnit()
    {
        using var sem = SharedSemaphore.Create(NewName("semxp"), 0);
        var waiting = sem.WaitAsync(Long);
        Until(() => ReadWord(sem.Name, Waiters) == 1);
        using (var child = Child.Start("sem-release", sem.Name, "2"))
        {
            child.ExpectLine("released");
            Assert.Equal(0, child.WaitForExit());
        }
        Assert.True(await waiting.WaitAsync(Long));
        Assert.Equal(1, sem.CurrentCount);                        // two released, one taken
        Assert.Equal((uint)Environment.ProcessId, ReadWord(sem.Name, 16));  // holder table entry 0: this process,
        Assert.Equal(1u, ReadWord(sem.Name, 17));                            // one unit
        Assert.Equal(0u, ReadWord(sem.Name, Waiters));
        Assert.True(await sem.WaitAsync(TimeSpan.Zero));          // an available unit: taken at once
        Assert.Equal(0, sem.CurrentCount);
    }

    [Fact]
    public async Task TheCodeAfterAnAwaitRunsOnThePoolNotOnTheWaiterThread()
    {
        using var ev = SharedEvent.Create(NewName("cont"));
        // Outside xunit's synchronization context: the continuation runs where the task's completion puts it.
        var awaited = Task.Run(async () =>
        {
            await ev.WaitAsync(Long).ConfigureAwait(false);
            return (Thread.CurrentThread.Name, Thread.CurrentThread.IsThreadPoolThread);
        });
        Until(() => ReadWord(ev.Name, Waiters) == 1);
        ev.Set();
        var (name, pool) = await awaited.WaitAsync(Long);
        Assert.True(pool && name != "SharedBridge waits", $"the continuation ran on thread \"{name}\" (pool thread: {pool})");
    }

    [Fact]
    public async Task TimeoutsReturnFalseOrBreakTheBarrierAndLeaveNoWaiterBehind()
    {
        using var ev = SharedEvent.Create(NewName("evto"));
        using var sem = SharedSemaphore.Create(NewName("semto"), 0);
        using var barrier = SharedBarrier.Create(NewName("barto"), 2);
        Assert.False(await ev.WaitAsync(TimeSpan.FromMilliseconds(80)).WaitAsync(Long));
        Assert.False(await sem.WaitAsync(TimeSpan.FromMilliseconds(80)).WaitAsync(Long));
        await Assert.ThrowsAsync<BrokenBarrierException>(() => barrier.SignalAndWaitAsync(TimeSpan.FromMilliseconds(80)).WaitAsync(Long));
        Assert.False(await ev.WaitAsync(TimeSpan.Zero));
        Assert.Equal(0u, ReadWord(ev.Name, Waiters));
        Assert.Equal(0u, ReadWord(sem.Name, Waiters));
        Assert.Equal(0u, ReadWord(barrier.Name, Waiters));
        Assert.Equal(0, barrier.ParticipantsWaiting);
    }

    [Fact]
    public async Task BarrierPartiesWaitingAsynchronouslyPassTogether()
    {
        using var barrier = SharedBarrier.Create(NewName("bar"), 3);
        int actions = 0;
        barrier.PostPhaseAction = () => Interlocked.Increment(ref actions);
        for (int round = 0; round < 3; round++)
        {
            var first = barrier.SignalAndWaitAsync(Long);
            var second = barrier.SignalAndWaitAsync(Long);
            Until(() => ReadWord(barrier.Name, Waiters) == 2);
            int last = await barrier.SignalAndWaitAsync(Long);     // the last party completes at once
            int[] indices = [await first.WaitAsync(Long), await second.WaitAsync(Long), last];
            Assert.Equal(new[] { 0, 1, 2 }, indices.Order().ToArray());
        }
        Assert.Equal(3, actions);
        Assert.Equal(0u, ReadWord(barrier.Name, Waiters));
        Assert.False(barrier.IsBroken);

        // A cancelled party leaves the round without breaking it (as after a Ctrl-C in Python).
        using var cts = new CancellationTokenSource();
        var cancelled = barrier.SignalAndWaitAsync(Long, cts.Token);
        Until(() => barrier.ParticipantsWaiting == 1);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Long));
        Assert.Equal(0, barrier.ParticipantsWaiting);
        Assert.Equal(0u, ReadWord(barrier.Name, Waiters));
        Assert.False(barrier.IsBroken);
    }

    [Fact]
    public async Task TheWaiterThreadServesOtherWaitsAfterOneSegmentIsDisposedOrCorrupted()
    {
        using var ev = SharedEvent.Create(NewName("live"));
        var disposedEvent = SharedEvent.Create(NewName("gone"));
        using var corruptEvent = SharedEvent.Create(NewName("bad"));
        var served = ev.WaitAsync(Long);
        var onDisposed = disposedEvent.WaitAsync(Long);
        var onCorrupt = corruptEvent.WaitAsync(Long);
        Until(() => ReadWord(ev.Name, Waiters) == 1 && ReadWord(corruptEvent.Name, Waiters) == 1);

        disposedEvent.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => onDisposed.WaitAsync(Long));

        // Another process overwrote the words: more signals than waiters, and seq moved.
        const int Seq = 0, Signals = 2;
        WriteWord(corruptEvent.Name, Signals, 5);
        WriteWord(corruptEvent.Name, Seq, ReadWord(corruptEvent.Name, Seq) + 1);
        await Assert.ThrowsAsync<CorruptSegmentException>(() => onCorrupt.WaitAsync(Long));
        Assert.Equal(0u, ReadWord(corruptEvent.Name, Waiters));     // the failed wait left

        Assert.False(served.IsCompleted);
        ev.Set();
        Assert.True(await served.WaitAsync(Long));
        ev.Reset();
        var again = ev.WaitAsync(Long);
        Until(() => ReadWord(ev.Name, Waiters) == 1);
        ev.Set();
        Assert.True(await again.WaitAsync(Long));
    }
}

/// <summary>Counts the process's OS threads: runs alone (no other test starts threads meanwhile).</summary>
[CollectionDefinition("sbCA threads", DisableParallelization = true)]
public class ThreadCountCollection;

[Collection("sbCA threads")]
public class AsyncWaitThreadTests
{
    private const string WaiterThread = "SharedBridge wa";  // the waiter threads' name as the OS keeps it (15 characters)

    private static Dictionary<string, string> Threads() =>
        Directory.GetDirectories("/proc/self/task").ToDictionary(t => Path.GetFileName(t), t =>
        {
            try { return File.ReadAllText(Path.Combine(t, "comm")).Trim(); }
            catch (IOException) { return "(exited)"; }
        });

    [Fact]
    public async Task TwoHundredPendingEventWaitsTakeAtMostOneNewThreadAndOneSetCompletesThemAll()
    {
        using var ev = SharedEvent.Create(AsyncWaitTests.NewName("many"));
        var before = Threads();
        var waits = Enumerable.Range(0, 200).Select(_ => ev.WaitAsync(AsyncWaitTests.Long)).ToArray();
        var added = Threads().Where(t => !before.ContainsKey(t.Key)).Select(t => t.Value).ToList();
        Assert.True(added.Count <= 1, $"{added.Count} new OS threads while 200 waits are pending: " +
            string.Join(", ", added.GroupBy(n => n).Select(g => $"{g.Key} x{g.Count()}")));
        Assert.All(waits, w => Assert.False(w.IsCompleted));
        Until(() => ReadWord(ev.Name, AsyncWaitTests.Waiters) == 200);
        ev.Set();
        Assert.All(await Task.WhenAll(waits).WaitAsync(AsyncWaitTests.Long), Assert.True);
        Assert.Equal(0u, ReadWord(ev.Name, AsyncWaitTests.Waiters));
    }

    [Fact]
    public async Task WithoutFutexWaitvEachPendingWaitTakesADedicatedThreadAndStillCompletes()
    {
        using var ev = SharedEvent.Create(AsyncWaitTests.NewName("old"));
        using var sem = SharedSemaphore.Create(AsyncWaitTests.NewName("oldsem"), 0);
        Objects.AsyncWaiter.s_unavailableForTests = true;     // a kernel before Linux 5.16
        try
        {
            var before = Threads();
            var waits = Enumerable.Range(0, 3).Select(_ => ev.WaitAsync(AsyncWaitTests.Long)).ToArray();
            var taking = sem.WaitAsync(AsyncWaitTests.Long);
            Assert.True(Threads().Count(t => !before.ContainsKey(t.Key)) >= 4);
            Until(() => ReadWord(ev.Name, AsyncWaitTests.Waiters) == 3 && ReadWord(sem.Name, AsyncWaitTests.Waiters) == 1);
            ev.Set();
            sem.Release();
            Assert.All(await Task.WhenAll(waits).WaitAsync(AsyncWaitTests.Long), Assert.True);
            Assert.True(await taking.WaitAsync(AsyncWaitTests.Long));
            Assert.Equal(0, sem.CurrentCount);
        }
        finally
        {
            Objects.AsyncWaiter.s_unavailableForTests = false;
        }
    }

    [Fact]
    public async Task WaitsOnMoreWordsThanOneFutexWaitvCallTakesUseASecondThreadThatEndsWhenTheyAreDone()
    {
        // futex_waitv takes 128 words: the control word and 127 seq words per waiter thread.
        var events = Enumerable.Range(0, 130).Select(i => SharedEvent.Create(AsyncWaitTests.NewName($"w{i}"))).ToList();
        try
        {
            var before = Threads();
            var waits = events.Select(e => e.WaitAsync(AsyncWaitTests.Long)).ToArray();
            var added = Threads().Where(t => !before.ContainsKey(t.Key)).ToList();
            Assert.True(added.Count <= 2, $"{added.Count} new OS threads for waits on 130 events");
            Assert.All(waits, w => Assert.False(w.IsCompleted));
            Assert.Equal(2, Threads().Values.Count(n => n == WaiterThread));
            events.ForEach(e => e.Set());
            Assert.All(await Task.WhenAll(waits).WaitAsync(AsyncWaitTests.Long), Assert.True);
            // The extra thread ends once it has nothing to wait for; the first one stays for the next waits.
            Until(() => Threads().Values.Count(n => n == WaiterThread) == 1);
        }
        finally
        {
            events.ForEach(e => e.Dispose());
        }
    }
}
