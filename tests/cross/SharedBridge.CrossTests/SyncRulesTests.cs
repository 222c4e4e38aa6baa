using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// The rules of docs/format.md section 10 that revision 7.1 settles, across languages: one child per language
/// (cross_sync.py / CSharpDriver/SyncWorkers.cs "sync-rules") runs every case, the test process being the other
/// party, and where a case needs a state that no API makes (a barrier left resetting by a party that never comes
/// back, a hostile word), the test process writes the words under the object's own mutex (section 10.3).
/// Segment names sbs23_...
/// </summary>
public sealed class SyncRulesTests : CrossTestBase
{
    private static string Prefix => "sbs23_" + Shm.RunPrefix;
    private static int s_counter;

    private static string NewName() => $"{Prefix}_{Interlocked.Increment(ref s_counter)}";

    // Data words (section 10.2, index = offset / 4).
    private const int Seq = 0, Waiters = 1, Signals = 2, W3 = 3, W4 = 4, W5 = 5;

    [TearDown]
    public void NothingLeftInShm()
    {
        var left = Shm.RemoveAll(Prefix);
        if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Passed)
            Assert.That(left, Is.Empty, "segments left in /dev/shm (now removed)");
    }

    private static uint Word(string name, int index)
    {
        using var f = new FileStream(Shm.PathOf(name), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        f.Position = 0x200 + 4 * index;
        var b = new byte[4];
        f.ReadExactly(b);
        return BitConverter.ToUInt32(b);
    }

    /// <summary>Writes data words of a synchronization segment with its own mutex held, as a (hostile or dead) process
    /// of the protocol would; <paramref name="whileHeld"/> runs before the release.</summary>
    private static void WriteWords(string name, (int Index, uint Value)[] words, Action? whileHeld = null)
    {
        // Untyped: SharedLock.Open refuses the internal lock of these kinds (docs/format.md section 10.1).
        using var segment = SharedSegment.Open(name);
        using var scope = segment.Lock(Quick);
        using var map = MemoryMappedFile.CreateFromFile(Shm.PathOf(name), FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
        using var view = map.CreateViewAccessor(0x200, 64, MemoryMappedFileAccess.ReadWrite);
        foreach (var (index, value) in words) view.Write(4 * index, value);
        whileHeld?.Invoke();
    }

    /// <summary>Waits until <paramref name="count"/> waiters are joined (section 10.3): each of them is inside its wait
    /// once this process can take the mutex.</summary>
    private static void UntilJoined(string name, uint count = 1)
    {
        var sw = Stopwatch.StartNew();
        while (Word(name, Waiters) != count)
        {
            Assert.That(sw.Elapsed, Is.LessThan(Quick), "the waiter never joined");
            Thread.Sleep(2);
        }
    }

    private sealed class Child(DriverProcess process) : IDisposable
    {
        public string Ask(string command)
        {
            process.WriteLine(command);
            return process.ReadLine(Quick);
        }

        public void Send(string command)
        {
            process.WriteLine(command);
            Assert.That(process.ReadLine(Quick), Is.EqualTo("waiting"), process.Describe());
        }

        public string Result() => process.ReadLine(Quick);

        public string Describe() => process.Describe();

        public void Dispose()
        {
            process.WriteLine("exit");
            Assert.That(process.WaitForExit(Quick).ExitCode, Is.Zero, process.Describe());
            process.Dispose();
        }
    }

    public static IEnumerable<TestCaseData> Languages() =>
        new[] { "py", Driver.CSharpLabel }.Select(l => new TestCaseData(l).SetName($"{{m}}({l})"));

    [TestCaseSource(nameof(Languages))]
    public void SectionTenRulesHoldForAChildOf(string language)
    {
        var driver = language == "py" ? Driver.Python(Interpreters.Preferred) : Driver.CSharp;
        using var child = new Child(driver.Start("worker", "sync-rules"));

        // 10.3: a condition wait with the recursive lock held twice releases it completely (this process gets the
        // lock and notifies) and holds it twice again afterwards.
        using (var cond = SharedCondition.Create(NewName()))
        {
            Assert.That(child.Ask($"open {cond.Name}"), Is.EqualTo("ok"));
            child.Send($"cond-nested-wait {cond.Name} -1");
            UntilJoined(cond.Name);
            using (cond.Lock(Quick)) cond.Notify();
            Assert.That(child.Result(), Is.EqualTo("notified held released"), "section 10.3: any depth, restored");
        }

        // 10.3 event: set() then clear() at once ends a wait without timeout; it returns the flag it finds when it has
        // the mutex again (true if it got it between the two). Then the same two stores in one critical section (as
        // when the clear() takes the mutex first): the wait ends and returns false.
        using (var ev = SharedEvent.Create(NewName()))
        {
            Assert.That(child.Ask($"open {ev.Name}"), Is.EqualTo("ok"));
            child.Send($"event-wait {ev.Name} -1");
            UntilJoined(ev.Name);
            ev.Set();
            ev.Reset();
            Assert.That(child.Result(), Is.AnyOf("true", "false"), "section 10.3: the set ends the wait");
            child.Send($"event-wait {ev.Name} -1");
            UntilJoined(ev.Name);
            WriteWords(ev.Name, [(W4, Word(ev.Name, W4) + 1), (Signals, 1), (Seq, Word(ev.Name, Seq) + 1)]);  // sets, notify_all
            Assert.That(child.Result(), Is.EqualTo("false"), "section 10.3: ended by the set, the flag it finds is 0");
        }

        // 10.3 semaphore: a unit that comes while the waiter is past its deadline (this process holds the mutex
        // across the deadline, then adds the unit) is found: value is looked at after the timed-out wait.
        using (var sem = SharedSemaphore.Create(NewName(), 0, maximumCount: 2))
        {
            Assert.That(child.Ask($"open {sem.Name}"), Is.EqualTo("ok"));
            child.Send($"sem-acquire {sem.Name} 200");
            UntilJoined(sem.Name);
            WriteWords(sem.Name, [(W3, 1)], whileHeld: () => Thread.Sleep(500));
            Assert.That(child.Result(), Is.EqualTo("acquired"), "section 10.3: value looked at again after the deadline");
        }

        // 10.3 barrier: a party that wakes to "resetting" fails broken; the reset then completes (the party left) and
        // a full round follows.
        using (var barrier = SharedBarrier.Create(NewName(), 2))
        {
            Assert.That(child.Ask($"open {barrier.Name}"), Is.EqualTo("ok"));
            child.Send($"barrier-wait {barrier.Name} -1");
            UntilJoined(barrier.Name);
            barrier.Reset();
            Assert.That(child.Result(), Is.EqualTo("broken"), "section 10.3 step 5: resetting fails broken");
            Assert.That((Word(barrier.Name, W4), Word(barrier.Name, W5)), Is.EqualTo((0u, 0u)), "filling and empty after the reset");
            child.Send($"barrier-wait {barrier.Name} -1");
            int mine = barrier.SignalAndWait(Quick);
            Assert.That(new[] { mine, int.Parse(child.Result()) }.Order(), Is.EqualTo(new[] { 0, 1 }));

            // Step 2: a barrier left resetting by a party that never leaves: the timeout is honoured (broken).
            WriteWords(barrier.Name, [(W4, 2), (W5, 1)]);
            child.Send($"barrier-wait {barrier.Name} 200");
            Assert.That(child.Result(), Is.EqualTo("broken"), "section 10.3 step 2: no untimed wait while resetting");
            Assert.That(Word(barrier.Name, W4), Is.EqualTo(3u), "the timeout broke it");

            // Step 2: draining with nobody inside is repaired, and the round works.
            WriteWords(barrier.Name, [(W4, 1), (W5, 0)]);
            child.Send($"barrier-wait {barrier.Name} -1");
            mine = barrier.SignalAndWait(Quick);
            Assert.That(new[] { mine, int.Parse(child.Result()) }.Order(), Is.EqualTo(new[] { 0, 1 }));
        }

        // 10.1: a condition whose lock segment is an event is corrupt (the lock-only segment's name was taken by one).
        string lockName = NewName();
        var theLock = SharedLock.Create(lockName);
        using (var cond = SharedCondition.Create(NewName(), theLock))
        {
            theLock.Dispose();
            using var impostor = SharedEvent.Create(lockName);
            Assert.That(child.Ask($"open {cond.Name}"), Is.EqualTo("corrupt"), "section 10.1: not an event's mutex");
        }

        // 10.2: the immutable max_value changed after the child opened: the child keeps its copy (2), a new opener
        // takes 1 and finds value 2 corrupt.
        using (var sem = SharedSemaphore.Create(NewName(), 2, maximumCount: 2))
        {
            Assert.That(child.Ask($"open {sem.Name}"), Is.EqualTo("ok"));
            Assert.That(sem.Wait(Quick) && sem.Wait(Quick), Is.True);
            WriteWords(sem.Name, [(W4, 1)]);
            Assert.That(child.Ask($"sem-release {sem.Name}"), Is.EqualTo("ok"));
            Assert.That(child.Ask($"sem-release {sem.Name}"), Is.EqualTo("ok"), "its copy of max_value is 2");
            Assert.That(child.Ask($"sem-release {sem.Name}"), Is.EqualTo("full"));
            Assert.That(sem.CurrentCount, Is.EqualTo(2), "this process's copy is 2 as well");
            using var late = SharedSemaphore.Open(sem.Name);
            Assert.Throws<CorruptSegmentException>(() => _ = late.CurrentCount, "a copy of 1 makes value 2 corrupt");

            // 10.2: a value above the waiter's copy written during its wait: it leaves, then reports corrupt.
            Assert.That(sem.Wait(Quick) && sem.Wait(Quick), Is.True);
            child.Send($"sem-acquire {sem.Name} -1");
            UntilJoined(sem.Name);
            WriteWords(sem.Name, [(W3, 7), (Seq, Word(sem.Name, Seq) + 1)]);
            Assert.That(child.Result(), Is.EqualTo("corrupt"));
            Assert.That(Word(sem.Name, Waiters), Is.Zero, "the waiter left before it reported");
            WriteWords(sem.Name, [(W3, 0), (W4, 2)]);
        }
    }
}
