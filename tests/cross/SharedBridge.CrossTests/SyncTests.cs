using System.Diagnostics;
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

    [Test]
    public void SemaphoreUnitsOfAKilledPythonHolderStayTakenUntilReleased()
    {
        using var sem = SharedSemaphore.Create(NewName(), 1, maximumCount: 1);
        using (var holder = Py.Start("worker", "sync-sem-hold", sem.Name))
        {
            Assert.That(holder.ReadLine(Quick), Is.EqualTo("held"), holder.Describe());
            holder.Kill();
        }
        Assert.That(sem.CurrentCount, Is.Zero, "section 10.4: nothing gives a dead holder's unit back");
        Assert.That(sem.Wait(TimeSpan.FromMilliseconds(100)), Is.False);
        sem.Release();                       // a survivor that knows the holder is gone
        Assert.That(sem.Wait(TimeSpan.FromSeconds(1)), Is.True);
    }
}
