namespace SharedBridge.Tests;

/// <summary>Rules of docs/format.md section 10 settled in revision 7.1: a condition wait with its recursive lock held
/// several times (10.3), and which segments may lend their lock to a condition (10.1). The cross-language cases of
/// the same rules are in tests/cross (SyncRulesTests).</summary>
public class SyncRulesTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(10);

    private static string NewName(string tag) => Names.Unique(tag, "sbs23");

    /// <summary>Data word <paramref name="index"/> of a synchronization segment, read from the file (section 10.2).</summary>
    private static uint Word(string name, int index)
    {
        using var f = new FileStream(Names.ShmPath(name), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        f.Position = 0x200 + 4 * index;
        var b = new byte[4];
        f.ReadExactly(b);
        return BitConverter.ToUInt32(b);
    }

    [Fact]
    public void AConditionWaitWithItsLockHeldTwiceReleasesItCompletelyAndTakesItBackTwice()
    {
        using var cond = SharedCondition.Create(NewName("cond"));
        bool? notified = null, heldAfterInner = null;
        Exception? failure = null;
        var waiter = new Thread(() =>
        {
            try
            {
                using (cond.Lock())
                {
                    using (cond.Lock())
                        notified = cond.Wait(Long);
                    cond.Notify();          // still held once: allowed
                    heldAfterInner = true;
                }
                Assert.Throws<SynchronizationLockException>(() => cond.Notify());   // released completely
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        waiter.Start();
        // The waiter released both levels: this thread gets the lock while the waiter waits.
        bool notifiedWaiter = false;
        for (var sw = System.Diagnostics.Stopwatch.StartNew(); !notifiedWaiter && failure is null && sw.Elapsed < Long;)
        {
            using var scope = cond.Lock(Long);
            // notify only once the waiter is inside its wait (then it no longer holds the lock)
            if (Word(cond.Name, 1) == 1)
            {
                cond.Notify();
                notifiedWaiter = true;
            }
        }
        Assert.True(waiter.Join(Long), "the waiter never returned");
        Assert.Null(failure);
        Assert.True(notified);
        Assert.True(heldAfterInner);
    }

    public static TheoryData<string> ObjectsWithAnInternalLock() => new() { "event", "semaphore", "barrier" };

    private static IDisposable CreateObject(string kind, string name) => kind switch
    {
        "event" => SharedEvent.Create(name),
        "semaphore" => SharedSemaphore.Create(name, 1),
        _ => SharedBarrier.Create(name, 2),
    };

    [Theory]
    [MemberData(nameof(ObjectsWithAnInternalLock))]
    public void AConditionCannotBeCreatedOnTheInternalLockOfAnEventASemaphoreOrABarrier(string kind)
    {
        string objName = NewName(kind);
        using var obj = CreateObject(kind, objName);
        using var itsLock = InternalLock.Of(objName);  // SharedLock.Open refuses it (LockTests)
        string name = NewName("cond");
        var e = Assert.Throws<ArgumentException>(() => SharedCondition.Create(name, itsLock));
        Assert.Contains("section 10.1", e.Message);
        Assert.False(Names.Exists(name));
    }

    [Theory]
    [MemberData(nameof(ObjectsWithAnInternalLock))]
    public void AConditionWhoseLockSegmentIsAnEventASemaphoreOrABarrierIsCorrupt(string kind)
    {
        // A condition on a lock-only segment whose name is then taken by another object (section 10.1).
        string lockName = NewName("lock");
        var theLock = SharedLock.Create(lockName);
        using var cond = SharedCondition.Create(NewName("cond"), theLock);
        theLock.Dispose();                                  // the creator removes the name
        Assert.False(Names.Exists(lockName));
        using var obj = CreateObject(kind, lockName);       // the name is now an event, a semaphore or a barrier
        var e = Assert.Throws<CorruptSegmentException>(() => SharedCondition.Open(cond.Name));
        Assert.Contains("section 10.1", e.Message);
        Assert.Throws<CorruptSegmentException>(() => SharedSegment.Open(cond.Name));
    }
}
