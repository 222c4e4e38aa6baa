using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// Event, Condition, Semaphore and Barrier (docs/format.md section 10) across real processes of both
/// languages: C# notifies Python, Python notifies C#, mixed waiters, barrier rounds with 2 C# + 2 Python
/// parties, a bounded buffer (an Array + a Condition on its lock) passing every item exactly once, and
/// the crash cases of section 10.4. The test process creates every segment (names sbsync_...) and is a
/// party itself where a scenario says so; the workers are cross_sync.py and CSharpDriver/SyncWorkers.cs.
/// </summary>
public sealed class SyncTests : CrossTestBase
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(20);
    private static string Prefix => "sbsync_" + Shm.RunPrefix;
    private static int s_counter;

    private static string NewName() => $"{Prefix}_{Interlocked.Increment(ref s_counter)}";

    private static Driver Py => Driver.Python(Interpreters.Preferred);

    public static IEnumerable<TestCaseData> Directions() =>
        new[] { (Driver.CSharpLabel, "py"), ("py", Driver.CSharpLabel) }
            .Select(d => new TestCaseData(d.Item1, d.Item2).SetName($"event: {d.Item1} sets, {d.Item2} waits"));

    private static Driver ByShortLabel(string label) => label == "py" ? Py : Driver.CSharp;

    [TearDown]
    public void NothingLeftInShm()
    {
        var left = Shm.RemoveAll(Prefix);
        if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Passed)
            Assert.That(left, Is.Empty, "segments left in /dev/shm (now removed)");
    }

    [TestCaseSource(nameof(Directions))]
    public void AnEventSetInOneLanguageWakesAWaiterInTheOther(string setter, string waiter)
    {
        using var ev = SharedEvent.Create(NewName());
        using var waiting = ByShortLabel(waiter).Start("worker", "sync-event-wait", ev.Name, "20000");
        Assert.That(waiting.ReadLine(Quick), Is.EqualTo("waiting"), waiting.Describe());
        Thread.Sleep(50);
        var set = ByShortLabel(setter).Run(Quick, "worker", "sync-event-set", ev.Name);
        Assert.That(set.ExitCode, Is.Zero, set.Describe());
        Assert.That(waiting.ReadLine(Quick), Is.EqualTo("set"), waiting.Describe());
        Assert.That(waiting.WaitForExit(Quick).ExitCode, Is.Zero);
    }

    [Test]
    public void NotifyTwoWakesExactlyTwoOfFourMixedWaiters()
    {
        using var cond = SharedCondition.Create(NewName());
        var waiters = new[] { Py, Driver.CSharp, Py, Driver.CSharp }
            .Select(d => d.Start("worker", "sync-cond-wait", cond.Name, "3000")).ToList();
        try
        {
            foreach (var w in waiters) Assert.That(w.ReadLine(Quick), Is.EqualTo("waiting"), w.Describe());
            // Each printed "waiting" holding the lock: once this process holds it, all four are registered.
            using (cond.Lock()) cond.Notify(2);
            var outcomes = waiters.Select(w => w.ReadLine(Quick)).ToList();
            Assert.That(outcomes.Count(o => o == "notified"), Is.EqualTo(2), string.Join(",", outcomes));
            Assert.That(outcomes.Count(o => o == "timeout"), Is.EqualTo(2), string.Join(",", outcomes));
        }
        finally
        {
            waiters.ForEach(w => w.Dispose());
        }
    }

    [Test]
    public void BarrierRoundsWithTwoCSharpAndTwoPythonParties()
    {
        const int rounds = 25;
        using var barrier = SharedBarrier.Create(NewName(), 4);
        using var counts = SharedArray<long>.Create(NewName(), 4);
        var parties = new[] { Driver.CSharp, Driver.CSharp, Py, Py }
            .Select(d => d.Start("worker", "sync-barrier", barrier.Name, rounds.ToString(), counts.Name)).ToList();
        try
        {
            foreach (var p in parties) Assert.That(p.ReadLine(Quick), Is.EqualTo("done"), p.Describe());
        }
        finally
        {
            parties.ForEach(p => p.Dispose());
        }
        Assert.That(counts.ToArray(), Is.EqualTo(new long[] { rounds, rounds, rounds, rounds }), "every arrival index once per round");
        Assert.That(barrier.IsBroken, Is.False);
    }

    [Test]
    public void BoundedBufferOnAnArrayLockPassesEveryItemExactlyOnce()
    {
        const int perProducer = 400;
        using var buffer = SharedArray<long>.Create(NewName(), 2 + 8);    // head, tail, 8 slots
        using var bufferLock = buffer.GetLock();
        using var cond = SharedCondition.Create(NewName(), bufferLock);
        var procs = new List<DriverProcess>
        {
            Py.Start("worker", "sync-produce", cond.Name, buffer.Name, "0", perProducer.ToString()),
            Driver.CSharp.Start("worker", "sync-produce", cond.Name, buffer.Name, perProducer.ToString(), perProducer.ToString()),
            Py.Start("worker", "sync-consume", cond.Name, buffer.Name, perProducer.ToString()),
            Driver.CSharp.Start("worker", "sync-consume", cond.Name, buffer.Name, perProducer.ToString()),
        };
        try
        {
            var lines = procs.Select(p => p.ReadLine(Long * 3)).ToList();
            Assert.That(lines[0..2], Is.EqualTo(new[] { "done", "done" }), string.Join("\n", procs.Select(p => p.Describe())));
            var items = lines[2..].SelectMany(l => JsonSerializer.Deserialize<long[]>(l)!).OrderBy(x => x).ToList();
            Assert.That(items, Is.EqualTo(Enumerable.Range(0, 2 * perProducer).Select(i => (long)i)), "every item exactly once");
        }
        finally
        {
            procs.ForEach(p => p.Dispose());
        }
    }

    [Test]
    public void AKilledPythonWaiterBlocksNoCSharpWaiter()
    {
        using var cond = SharedCondition.Create(NewName());
        using (var doomed = Py.Start("worker", "sync-cond-wait", cond.Name, "-1"))
        {
            Assert.That(doomed.ReadLine(Quick), Is.EqualTo("waiting"), doomed.Describe());
            using (cond.Lock()) { }   // it has released the lock inside wait()
            doomed.Kill();
        }
        using var live = Driver.CSharp.Start("worker", "sync-cond-wait", cond.Name, "20000");
        Assert.That(live.ReadLine(Quick), Is.EqualTo("waiting"), live.Describe());
        using (cond.Lock()) cond.Notify();
        Assert.That(live.ReadLine(Quick), Is.EqualTo("notified"), live.Describe());
    }

    [Test]
    public void APythonNotifierKilledBeforeItsWakeUpStillWakesACSharpWaiter()
    {
        using var cond = SharedCondition.Create(NewName());
        bool notified = false;
        var waiter = new Thread(() =>
        {
            using var scope = cond.Lock(Long);
            notified = cond.Wait(Long);
        });
        waiter.Start();
        Thread.Sleep(100);
        var sw = Stopwatch.StartNew();
        var r = Py.Run(Quick, "worker", "sync-notify-then-die", cond.Name);
        Assert.That(r.Stdout, Does.Contain("updated"), r.Describe());
        Assert.That(r.ExitCode, Is.Not.Zero, "the notifier was to die by SIGKILL");
        Assert.That(waiter.Join(TimeSpan.FromSeconds(5)), Is.True, "the waiter never woke");
        Assert.That(notified, Is.True);
        Assert.That(sw.Elapsed, Is.LessThan(TimeSpan.FromSeconds(3)), "woken at a slice, not at the timeout");
    }

    public static IEnumerable<TestCaseData> Pairs() =>
        new[] { (Driver.CSharpLabel, "py"), ("py", Driver.CSharpLabel), ("py", "py"), (Driver.CSharpLabel, Driver.CSharpLabel) }
            .Select(d => new TestCaseData(d.Item1, d.Item2).SetName($"condition: {d.Item1} notifies under a nested lock, {d.Item2} waits"));

    [TestCaseSource(nameof(Pairs))]
    public void ANotifyUnderANestedLockWakesTheWaiterAfterTheOuterRelease(string notifier, string waiter)
    {
        // Section 10.3 notify: the wake-up is issued after the outermost release; it must never be lost.
        using var cond = SharedCondition.Create(NewName());
        using var waiting = ByShortLabel(waiter).Start("worker", "sync-cond-wait", cond.Name, "20000");
        Assert.That(waiting.ReadLine(Quick), Is.EqualTo("waiting"), waiting.Describe());
        using (cond.Lock()) { }   // the waiter has released the lock inside wait()
        var r = ByShortLabel(notifier).Run(Quick, "worker", "sync-cond-notify-nested", cond.Name);
        Assert.That(r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[] { "inner released", "released" }), r.Describe());
        Assert.That(waiting.ReadLine(Quick), Is.EqualTo("notified"), waiting.Describe());
    }

    public static IEnumerable<TestCaseData> Waiters() =>
        new[] { "py", Driver.CSharpLabel }.Select(w => new TestCaseData(w).SetName($"{{m}}({w})"));

    /// <summary>Samples the waiters word (section 10.2, +4) without the lock, as sharedbridge ls does, for
    /// <paramref name="span"/>; returns how many samples saw 0 and how many were taken.</summary>
    private static (long Zero, long Samples) SampleWaiters(string name, TimeSpan span)
    {
        using var map = MemoryMappedFile.CreateFromFile("/dev/shm/" + name, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        using var view = map.CreateViewAccessor(0, 0x200 + 64, MemoryMappedFileAccess.Read);
        long zero = 0, samples = 0;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < span)
        {
            samples++;
            if (view.ReadUInt32(0x200 + 4) == 0) zero++;
        }
        return (zero, samples);
    }

    private static void UntilWaiting(string name)
    {
        var sw = Stopwatch.StartNew();
        while (Word(name, 1) == 0)
        {
            Assert.That(sw.Elapsed, Is.LessThan(Long), "the waiter never joined");
            Thread.Sleep(2);
        }
    }

    [TestCaseSource(nameof(Waiters))]
    public void ASemaphoreWaiterStaysCountedInWaitersAcrossItsSlices(string waiter)
    {
        // Section 10.3 "Join and leave": a waiting acquire is counted for its whole duration, also while it
        // looks for gone holders between slices (this process holds the only unit: the table has an entry).
        using var sem = SharedSemaphore.Create(NewName(), 1, maximumCount: 1);
        Assert.That(sem.Wait(Quick), Is.True);
        using var acquiring = ByShortLabel(waiter).Start("worker", "sync-sem-acquire", sem.Name, "20000");
        UntilWaiting(sem.Name);
        var (zero, samples) = SampleWaiters(sem.Name, TimeSpan.FromSeconds(0.6));
        sem.Release();
        Assert.That(acquiring.ReadLine(Long), Is.EqualTo("acquired"), acquiring.Describe());
        Assert.That(zero, Is.Zero, $"{zero} of {samples} samples saw waiters 0 while a {waiter} acquire was waiting");
    }

    [TestCaseSource(nameof(Waiters))]
    public void AnEventWaiterStaysCountedInWaitersAcrossItsSlices(string waiter)
    {
        using var ev = SharedEvent.Create(NewName());
        using var waiting = ByShortLabel(waiter).Start("worker", "sync-event-wait", ev.Name, "20000");
        Assert.That(waiting.ReadLine(Quick), Is.EqualTo("waiting"), waiting.Describe());
        UntilWaiting(ev.Name);
        var (zero, samples) = SampleWaiters(ev.Name, TimeSpan.FromSeconds(0.6));
        ev.Set();
        Assert.That(waiting.ReadLine(Long), Is.EqualTo("set"), waiting.Describe());
        Assert.That(zero, Is.Zero, $"{zero} of {samples} samples saw waiters 0 while a {waiter} event wait was waiting");
    }

    /// <summary>Data word <paramref name="index"/> of a synchronization segment, read from the file (section 10.2).</summary>
    private static uint Word(string name, int index)
    {
        using var f = new FileStream("/dev/shm/" + name, FileMode.Open, FileAccess.Read);
        f.Position = 0x200 + 4 * index;
        var b = new byte[4];
        f.ReadExactly(b);
        return BitConverter.ToUInt32(b);
    }

    /// <summary>Waits until <paramref name="pid"/> is counted inside the barrier and recorded in its holder table.</summary>
    private static void UntilRecorded(SharedBarrier barrier, int pid)
    {
        var sw = Stopwatch.StartNew();
        while (!Enumerable.Range(0, barrier.ParticipantCount).Any(i => Word(barrier.Name, 16 + 4 * i) == (uint)pid))
        {
            Assert.That(sw.Elapsed, Is.LessThan(Long), "the party never got inside the wait");
            Thread.Sleep(5);
        }
    }

    [Test]
    public void SemaphoreUnitsOfAKilledPythonHolderComeBackToACSharpWaiter()
    {
        using var sem = SharedSemaphore.Create(NewName(), 1, maximumCount: 1);
        using (var holder = Py.Start("worker", "sync-sem-hold", sem.Name))
        {
            Assert.That(holder.ReadLine(Quick), Is.EqualTo("held"), holder.Describe());
            holder.Kill();
        }
        Assert.That(sem.CurrentCount, Is.Zero);
        Assert.That(sem.Wait(Long), Is.True, "section 10.3: a dead holder's recorded unit comes back");
        sem.Release();
        Assert.Throws<SemaphoreFullException>(() => sem.Release(), "never above the bound");
    }

    [Test]
    public void SemaphoreUnitsOfAKilledCSharpHolderComeBackToAPythonWaiter()
    {
        using var sem = SharedSemaphore.Create(NewName(), 1, maximumCount: 1);
        using (var holder = Driver.CSharp.Start("worker", "sync-sem-hold", sem.Name))
        {
            Assert.That(holder.ReadLine(Quick), Is.EqualTo("held"), holder.Describe());
            holder.Kill();
        }
        var r = Py.Run(Quick, "worker", "sync-sem-acquire", sem.Name, "20000");
        Assert.That(r.Stdout.Trim(), Is.EqualTo("acquired"), r.Describe());
        Assert.That(sem.CurrentCount, Is.EqualTo(1));
    }

    [Test]
    public void APythonPartyKilledInsideWaitBreaksTheBarrierForACSharpPartyAtOnce()
    {
        using var barrier = SharedBarrier.Create(NewName(), 3);
        object? outcome = null;
        var survivor = new Thread(() =>
        {
            try { outcome = barrier.SignalAndWait(TimeSpan.FromMinutes(2)); }
            catch (BrokenBarrierException e) { outcome = e; }
        }) { IsBackground = true };
        survivor.Start();
        UntilRecorded(barrier, Environment.ProcessId);
        using (var party = Py.Start("worker", "sync-barrier-wait", barrier.Name, "120000"))
        {
            Assert.That(party.ReadLine(Quick), Is.EqualTo("entering"), party.Describe());
            UntilRecorded(barrier, party.Id);
            party.Kill();
        }
        Assert.That(survivor.Join(TimeSpan.FromSeconds(30)), Is.True, "broken within a slice, not at its 2-minute timeout");
        Assert.That(outcome, Is.InstanceOf<BrokenBarrierException>());
        barrier.Reset();
        Assert.That(barrier.IsBroken, Is.False);
        using var py = Py.Start("worker", "sync-barrier-wait", barrier.Name, "20000");
        using var cs = Driver.CSharp.Start("worker", "sync-barrier-wait", barrier.Name, "20000");
        Assert.That(py.ReadLine(Quick), Is.EqualTo("entering"), py.Describe());
        Assert.That(cs.ReadLine(Quick), Is.EqualTo("entering"), cs.Describe());
        int mine = barrier.SignalAndWait(Long);
        var indexes = new[] { mine, int.Parse(py.ReadLine(Quick)), int.Parse(cs.ReadLine(Quick)) };
        Assert.That(indexes.Order(), Is.EqualTo(new[] { 0, 1, 2 }), "a full round after Reset");
    }

    [Test]
    public void ACSharpPartyKilledInsideWaitBreaksTheBarrierForAPythonParty()
    {
        using var barrier = SharedBarrier.Create(NewName(), 2);
        using (var party = Driver.CSharp.Start("worker", "sync-barrier-wait", barrier.Name, "120000"))
        {
            Assert.That(party.ReadLine(Quick), Is.EqualTo("entering"), party.Describe());
            UntilRecorded(barrier, party.Id);
            party.Kill();
        }
        // Before: the Python party passed with the dead party's phantom arrival.
        var r = Py.Run(Quick, "worker", "sync-barrier-wait", barrier.Name, "30000");
        Assert.That(r.Stdout.Trim().Split('\n').Last(), Is.EqualTo("broken"), r.Describe());
        barrier.Reset();
        using var py = Py.Start("worker", "sync-barrier-wait", barrier.Name, "20000");
        Assert.That(py.ReadLine(Quick), Is.EqualTo("entering"), py.Describe());
        int mine = barrier.SignalAndWait(Long);
        Assert.That(new[] { mine, int.Parse(py.ReadLine(Quick)) }.Order(), Is.EqualTo(new[] { 0, 1 }));
    }
}
