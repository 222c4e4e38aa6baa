using System.IO.MemoryMappedFiles;

namespace SharedBridge.Tests;

/// <summary>Dead participants and hostile words (docs/format.md sections 10.2-10.4): a barrier party that dies
/// inside a wait breaks the barrier at once and Reset works after it; every barrier wait honours its timeout; units
/// of a semaphore holder that died come back; immutable words are read once; an event waiter never misses a Set.</summary>
public class SyncRecoveryTests
{
    private static int s_counter;
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(20);

    private static string NewName(string tag) => $"sbsync_{Environment.ProcessId}_r{Interlocked.Increment(ref s_counter)}_{tag}";

    // Word indexes of docs/format.md section 10.2, written out here so that the tests check the spec, not the code.
    private const int Seq = 0, Waiters = 1, Signals = 2;
    private const int EventFlag = 3, EventSets = 4, SemaphoreMaxValue = 4, BarrierParties = 3, BarrierState = 4, BarrierCount = 5;

    internal static uint ReadWord(string name, int index)
    {
        using var f = new FileStream("/dev/shm/" + name, FileMode.Open, FileAccess.Read);
        f.Position = 0x200 + 4 * index;
        var b = new byte[4];
        f.ReadExactly(b);
        return BitConverter.ToUInt32(b);
    }

    internal static void WriteWord(string name, int index, uint value)
    {
        using var f = new FileStream("/dev/shm/" + name, FileMode.Open, FileAccess.Write);
        f.Position = 0x200 + 4 * index;
        f.Write(BitConverter.GetBytes(value));
    }

    internal static void Until(Func<bool> condition)
    {
        var end = DateTime.UtcNow + Long;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < end, "condition not reached in time");
            Thread.Sleep(5);
        }
    }

    /// <summary>Runs <paramref name="fn"/> on a thread; the result is its value or the exception's type.</summary>
    private static (Thread Thread, Func<object?> Result) OnThread(Func<object?> fn)
    {
        object? result = null;
        var t = new Thread(() =>
        {
            try { result = fn(); }
            catch (Exception e) { result = e.GetType(); }
        }) { IsBackground = true };
        t.Start();
        return (t, () => result);
    }

    private static void KillPartyInsideWait(SharedBarrier barrier, uint before)
    {
        using var child = Child.Start("barrier-enter", barrier.Name);
        child.ExpectLine("entering");
        // Inside the wait: counted, and recorded in the holder table (section 10.2).
        Until(() => ReadWord(barrier.Name, BarrierCount) == before + 1
            && Enumerable.Range(0, barrier.ParticipantCount).Any(i => ReadWord(barrier.Name, 16 + 4 * i) == (uint)child.Pid));
        child.KillHard();
    }

    [Fact]
    public void TwoPartiesADeadPartyBreaksTheBarrierAndResetWorks()
    {
        using var b = SharedBarrier.Create(NewName("b2"), 2);
        KillPartyInsideWait(b, 0);
        // Before: the survivor passed with the dead party's phantom arrival (returned 1).
        var (t, result) = OnThread(() => b.SignalAndWait(TimeSpan.FromSeconds(30)));
        Assert.True(t.Join(Long));
        Assert.Equal(typeof(BrokenBarrierException), result());
        Assert.True(b.IsBroken);
        b.Reset();
        Assert.False(b.IsBroken);
        Assert.Equal(0, b.ParticipantsWaiting);
        var p1 = OnThread(() => b.SignalAndWait(Long));
        var p2 = OnThread(() => b.SignalAndWait(Long));
        Assert.True(p1.Thread.Join(Long) && p2.Thread.Join(Long));
        Assert.Equal(new object?[] { 0, 1 }, new[] { p1.Result(), p2.Result() }.OrderBy(x => x as int?).ToArray());
    }

    [Fact]
    public void ThreePartiesTheOthersBreakAtOnceAndResetWorks()
    {
        using var b = SharedBarrier.Create(NewName("b3"), 3);
        var (t, result) = OnThread(() => b.SignalAndWait(TimeSpan.FromMinutes(2)));
        Until(() => ReadWord(b.Name, BarrierCount) == 1);
        KillPartyInsideWait(b, 1);
        Assert.True(t.Join(TimeSpan.FromSeconds(30)));      // long before its own 2-minute timeout
        Assert.Equal(typeof(BrokenBarrierException), result());
        b.Reset();
        Assert.Equal(0u, ReadWord(b.Name, BarrierState)); // filling
        Assert.Equal(0u, ReadWord(b.Name, BarrierCount));
        var parties = Enumerable.Range(0, 3).Select(_ => OnThread(() => b.SignalAndWait(Long))).ToList();
        Assert.All(parties, p => Assert.True(p.Thread.Join(Long)));
        Assert.Equal([0, 1, 2], parties.Select(p => (int)p.Result()!).Order());
    }

    [Theory]
    [InlineData(1u, 0u)]
    [InlineData(2u, 0u)]
    [InlineData(1u, 1u)]
    [InlineData(2u, 1u)]
    public void EveryBarrierWaitHonoursItsTimeoutWhateverTheStateWord(uint state, uint count)
    {
        using var b = SharedBarrier.Create(NewName("bs"), 2);
        WriteWord(b.Name, BarrierState, state); // a stale or hostile state word
        WriteWord(b.Name, BarrierCount, count);
        var (t, result) = OnThread(() => b.SignalAndWait(TimeSpan.FromMilliseconds(300)));
        Assert.True(t.Join(Long));          // before: blocked for ever, whatever the timeout
        Assert.Equal(typeof(BrokenBarrierException), result());
    }

    [Fact]
    public void ADrainLeftByADeadLastPartyIsRepaired()
    {
        using var b = SharedBarrier.Create(NewName("bd"), 1);
        WriteWord(b.Name, BarrierState, 1); // draining with count 0
        var (t, result) = OnThread(() => b.SignalAndWait(TimeSpan.FromSeconds(5)));
        Assert.True(t.Join(Long));
        Assert.Equal(0, result());
    }

    private static Thread Toggle(string name, int index, uint a, uint b, CancellationToken stop)
    {
        var t = new Thread(() =>
        {
            using var map = MemoryMappedFile.CreateFromFile("/dev/shm/" + name, FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
            using var view = map.CreateViewAccessor();
            while (!stop.IsCancellationRequested)
            {
                view.Write(0x200 + 4 * index, a);
                view.Write(0x200 + 4 * index, b);
            }
            view.Write(0x200 + 4 * index, a);
        }) { IsBackground = true };
        t.Start();
        return t;
    }

    [Fact]
    public void ImmutableWordsAreReadOnceWhileAPeerTogglesThem()
    {
        using var bar = SharedBarrier.Create(NewName("tb"), 3);
        using var sem = SharedSemaphore.Create(NewName("ts"), 2, 2);
        var parties = new HashSet<int>();
        var maxima = new HashSet<int?>();
        using (var stop = new CancellationTokenSource())
        {
            var peer = Toggle(bar.Name, BarrierParties, 3, 0, stop.Token);
            for (int i = 0; i < 300; i++)
            {
                try
                {
                    using var other = SharedBarrier.Open(bar.Name);
                    parties.Add(other.ParticipantCount);
                    Assert.Equal(0, other.ParticipantsWaiting);
                }
                catch (CorruptSegmentException) { }
            }
            stop.Cancel();
            Assert.True(peer.Join(Long));
        }
        using (var stop = new CancellationTokenSource())
        {
            var peer = Toggle(sem.Name, SemaphoreMaxValue, 2, 0xFFFFFFFF, stop.Token);
            for (int i = 0; i < 300; i++)
            {
                try
                {
                    using var other = SharedSemaphore.Open(sem.Name);
                    maxima.Add(other.MaximumCount);
                    Assert.True(other.Wait(Long));
                    other.Release();
                }
                catch (CorruptSegmentException) { }
            }
            stop.Cancel();
            Assert.True(peer.Join(Long));
        }
        // Before: parties 0 and MaximumCount -1 got through validation.
        Assert.Subset(new HashSet<int> { 3 }, parties);
        Assert.Subset(new HashSet<int?> { 2 }, maxima);
    }

    [Fact]
    public void AKilledHoldersUnitComesBack()
    {
        using var sem = SharedSemaphore.Create(NewName("ks"), 1);
        using (var holder = Child.Start("sem-hold", sem.Name))
        {
            holder.ExpectLine("held");
            holder.KillHard();
        }
        Assert.Equal(0, sem.CurrentCount);
        Assert.True(sem.Wait(Long));                    // before: false, the unit was lost for ever
        Assert.False(sem.Wait(TimeSpan.FromMilliseconds(100)));
        sem.Release();
    }

    [Fact]
    public void AWaitingWaitGetsTheUnitOfAHolderKilledMeanwhileWithinTheBound()
    {
        using var sem = SharedSemaphore.Create(NewName("ws"), 1, 1);
        using var holder = Child.Start("sem-hold", sem.Name);
        holder.ExpectLine("held");
        var (t, result) = OnThread(() => sem.Wait(TimeSpan.FromMinutes(2)));
        Until(() => ReadWord(sem.Name, Waiters) == 1);
        holder.KillHard();
        Assert.True(t.Join(TimeSpan.FromSeconds(30)));
        Assert.Equal(true, result());
        sem.Release();
        Assert.Throws<SemaphoreFullException>(() => sem.Release());   // reclaiming never exceeds the bound
        Assert.Equal(1, sem.CurrentCount);
    }

    [Fact]
    public void AReleaseByANonHolderKeepsTheTableConsistent()
    {
        using var sem = SharedSemaphore.Create(NewName("ns"), 2, 2);
        using (var holder = Child.Start("sem-hold", sem.Name))
        {
            holder.ExpectLine("held");
            sem.Release();                  // this process gives the child's unit back for it
            holder.KillHard();
        }
        Assert.True(sem.Wait(Long) && sem.Wait(Long));
        Assert.False(sem.Wait(TimeSpan.FromMilliseconds(200)));   // nothing to reclaim: no phantom unit
        sem.Release(2);
        Assert.Equal(2, sem.CurrentCount);
    }

    [Fact]
    public void ReclaimFalseKeepsADeadConsumersUnitsTaken()
    {
        using var sem = SharedSemaphore.Create(NewName("rf"), 1, reclaim: false);
        Assert.Equal(16, sem.Header.Length);
        using (var holder = Child.Start("sem-hold", sem.Name))
        {
            holder.ExpectLine("held");
            holder.KillHard();
        }
        Assert.False(sem.Wait(TimeSpan.FromMilliseconds(200)));
    }

    [Fact]
    public void AnEventSetAndResetAtOnceEndsTheWait()
    {
        using var ev = SharedEvent.Create(NewName("ev"));
        var (t, result) = OnThread(() => ev.Wait(TimeSpan.FromMinutes(1)));
        Until(() => ReadWord(ev.Name, Waiters) == 1);
        using (var peer = InternalLock.Of(ev.Name))
        using (peer.Lock())
        {
            // A peer's set() and clear() with no unlock between them (section 10.3): flag 1, sets + 1,
            // notify_all (signals, seq + 1; the waiter sees seq within a slice), then flag 0.
            WriteWord(ev.Name, EventFlag, 1);
            WriteWord(ev.Name, EventSets, ReadWord(ev.Name, EventSets) + 1);
            WriteWord(ev.Name, Signals, ReadWord(ev.Name, Waiters));
            WriteWord(ev.Name, Seq, ReadWord(ev.Name, Seq) + 1);
            WriteWord(ev.Name, EventFlag, 0);
        }
        Assert.True(t.Join(Long));          // before: it waited for its whole timeout
        Assert.Equal(false, result());
        ev.Set();                           // and the API's own Set/Reset still work
        ev.Reset();
        Assert.False(ev.IsSet);
    }
}
