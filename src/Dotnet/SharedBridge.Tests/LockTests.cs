namespace SharedBridge.Tests;

/// <summary>The embedded lock between threads of one process (cross-process: CrossProcessTests).</summary>
public class LockTests
{
    // tryLock acquires and, when it did, releases at once: true when the lock was free for that thread.
    private static bool TryLockOnOtherThread(Func<TimeSpan, bool> tryLock, TimeSpan timeout)
    {
        bool acquired = false;
        var t = new Thread(() => acquired = tryLock(timeout));
        t.Start();
        t.Join();
        return acquired;
    }

    [Fact]
    public void HeldLockExcludesOtherThreadsUntilReleased()
    {
        using var a = SharedArray<int>.Create(Names.Unique(), 1);
        Func<TimeSpan, bool> tryLock = t => { if (!a.TryLock(t, out var s)) return false; s.Dispose(); return true; };
        var scope = a.Lock();
        Assert.False(scope.Recovered);
        Assert.True(scope.IsHeld);
        Assert.False(TryLockOnOtherThread(tryLock, TimeSpan.Zero));
        Assert.False(TryLockOnOtherThread(tryLock, TimeSpan.FromMilliseconds(50)));
        scope.Dispose();
        Assert.True(TryLockOnOtherThread(tryLock, TimeSpan.Zero));
    }

    [Fact]
    public void TimedLockThrowsLockTimeoutWhenHeldElsewhere()
    {
        using var a = SharedArray<int>.Create(Names.Unique(), 1);
        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var holder = new Thread(() =>
        {
            using (a.Lock())
            {
                held.Set();
                release.Wait();
            }
        });
        holder.Start();
        held.Wait();
        var started = DateTime.UtcNow;
        var e = Assert.Throws<LockTimeoutException>(() => a.Lock(TimeSpan.FromMilliseconds(100)));
        Assert.InRange(DateTime.UtcNow - started, TimeSpan.FromMilliseconds(90), TimeSpan.FromSeconds(10));
        Assert.Contains(a.Name, e.Message);
        release.Set();
        holder.Join();
        using (a.Lock(TimeSpan.FromSeconds(5))) { }
    }

    [Fact]
    public void BlockingLockWaitsForTheHolder()
    {
        using var a = SharedArray<long>.Create(Names.Unique(), 1);
        const int threads = 4, perThread = 20_000;
        var workers = Enumerable.Range(0, threads).Select(_ => new Thread(() =>
        {
            for (int i = 0; i < perThread; i++)
                using (a.Lock()) a[0]++;
        })).ToList();
        workers.ForEach(t => t.Start());
        workers.ForEach(t => t.Join());
        Assert.Equal(threads * perThread, a[0]);
    }

    [Fact]
    public void RecursiveLockCanBeTakenTwiceByItsThread()
    {
        using var a = SharedArray<int>.Create(Names.Unique(), 1);
        Func<TimeSpan, bool> tryLock = t => { if (!a.TryLock(t, out var s)) return false; s.Dispose(); return true; };
        var outer = a.Lock();
        var inner = a.Lock();
        Assert.True(a.TryLock(TimeSpan.Zero, out var third));
        third.Dispose();
        inner.Dispose();
        Assert.False(TryLockOnOtherThread(tryLock, TimeSpan.Zero)); // still held once
        outer.Dispose();
        Assert.True(TryLockOnOtherThread(tryLock, TimeSpan.Zero));
    }

    [Fact]
    public void ErrorCheckingLockRefusesRecursionInsteadOfHanging()
    {
        using var l = SharedLock.Create(Names.Unique(), new SegmentOptions { RecursiveLock = false });
        using (l.Lock())
        {
            var e = Assert.Throws<LockRecursionException>(() => l.Lock());
            Assert.Contains("non-recursive", e.Message);
            Assert.Throws<LockRecursionException>(() => l.TryLock(TimeSpan.FromMilliseconds(10), out _));
            Assert.Throws<LockRecursionException>(() => l.TryLock(TimeSpan.Zero, out _));
        }
        using (l.Lock()) { } // still usable
    }

    [Fact]
    public void DisposingTheArrayWhileLockedKeepsTheMutexMappedUntilRelease()
    {
        string name = Names.Unique();
        var a = SharedArray<int>.Create(name, 1);
        var scope = a.Lock();
        a.Dispose();
        Assert.False(Names.Exists(name));              // the name goes at once
        Assert.Throws<ObjectDisposedException>(() => a.Lock());
        scope.Dispose();                                // unlocking a still-mapped mutex: no crash
    }

    [Fact]
    public void DisposingWhileOtherThreadsLockNeverCrashes()
    {
        // Each held lock keeps the mapping alive; lockers racing with Dispose either finish their
        // round or get ObjectDisposedException, never an access to unmapped memory.
        for (int round = 0; round < 20; round++)
        {
            var a = SharedArray<int>.Create(Names.Unique(), 1);
            int disposedSeen = 0;
            using var started = new CountdownEvent(3);
            var lockers = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
            {
                started.Signal();
                while (true)
                {
                    try
                    {
                        using (a.Lock()) Thread.SpinWait(20);
                    }
                    catch (ObjectDisposedException)
                    {
                        Interlocked.Increment(ref disposedSeen);
                        return;
                    }
                }
            })).ToList();
            lockers.ForEach(t => t.Start());
            started.Wait();
            Thread.Sleep(2);
            a.Dispose();
            lockers.ForEach(t => t.Join());
            Assert.Equal(3, disposedSeen);
            Assert.False(Names.Exists(a.Name));
        }
    }

    [Fact]
    public void DefaultScopeDisposesAsANoOp()
    {
        LockScope none = default;
        Assert.False(none.IsHeld);
        none.Dispose();
    }

    [Fact]
    public void NegativeTimeoutIsAnArgumentError()
    {
        using var a = SharedArray<int>.Create(Names.Unique(), 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => a.TryLock(TimeSpan.FromSeconds(-2), out _));
        Assert.True(a.TryLock(Timeout.InfiniteTimeSpan, out var scope));
        scope.Dispose();
    }

    [Fact]
    public void SegmentsShareOneExternalLock()
    {
        // The multiprocessing docs: lock = Lock(); n = Value('i', 7); x = Value(c_double, 1.0/3.0, lock=False);
        // s = Array('c', b'hello world', lock=lock); A = Array(Point, [...], lock=lock)
        using var shared = SharedLock.Create(Names.Unique(), new SegmentOptions { RecursiveLock = false });
        var options = new SegmentOptions { SharedLock = shared };
        string sName = Names.Unique(), aName = Names.Unique();
        using var s = SharedCharArray.Create(sName, "hello world"u8, options);
        using var points = SharedArray<Point>.Create(aName, [new Point { X = 1.875, Y = -6.25 }], options);
        Assert.Equal(LockKind.External, s.Header.LockKind);
        Assert.Equal(shared.Name, points.Header.LockName);

        using var sAgain = SharedCharArray.Open(sName);
        using var pointsAgain = SharedArray<Point>.Open(aName);
        Func<TimeSpan, bool> tryPoints = t => { if (!pointsAgain.TryLock(t, out var x)) return false; x.Dispose(); return true; };
        Func<TimeSpan, bool> tryLock = t => { if (!shared.TryLock(t, out var x)) return false; x.Dispose(); return true; };
        using (sAgain.Lock())
        {
            Assert.False(TryLockOnOtherThread(tryPoints, TimeSpan.Zero)); // same lock
            Assert.False(TryLockOnOtherThread(tryLock, TimeSpan.Zero));
            Assert.Throws<LockRecursionException>(() => pointsAgain.Lock()); // non-recursive: one holder, one depth
        }
        Assert.True(TryLockOnOtherThread(tryPoints, TimeSpan.Zero));
    }

    [Fact]
    public void GetLockSharesAnArraysEmbeddedLock()
    {
        using var owner = SharedArray<int>.Create(Names.Unique(), 1);
        using var itsLock = owner.GetLock();
        Assert.Equal(owner.Name, itsLock.Name);
        Assert.False(itsLock.IsOwner);
        string other = Names.Unique();
        using var follower = SharedValue<double>.Create(other, 0.5, new SegmentOptions { SharedLock = itsLock });
        Assert.Equal(owner.Name, follower.Header.LockName);
        Func<TimeSpan, bool> tryOwner = t => { if (!owner.TryLock(t, out var x)) return false; x.Dispose(); return true; };
        using (follower.Lock())
            Assert.False(TryLockOnOtherThread(tryOwner, TimeSpan.Zero));
        using var opened = SharedLock.Open(owner.Name); // an array's embedded lock opens as a SharedLock
        Assert.Equal(SegmentKind.Array, opened.Header.Kind);
    }

    [Fact]
    public void OpeningASegmentWhoseLockSegmentIsGoneIsSegmentNotFound()
    {
        string lockName = Names.Unique(), name = Names.Unique();
        var shared = SharedLock.Create(lockName);
        using var a = SharedArray<int>.Create(name, 1, new SegmentOptions { SharedLock = shared });
        shared.Dispose(); // the creator unlinks the lock's name
        var e = Assert.Throws<SegmentNotFoundException>(() => SharedArray<int>.Open(name));
        Assert.Equal(lockName, e.SegmentName);
        Assert.Contains("lock", e.Message);
        using (a.Lock()) a[0] = 1; // the creator still has the lock mapped
    }

    public static TheoryData<string> KindsWithAnInternalLock() => new() { "event", "semaphore", "barrier", "queue" };

    /// <summary>The mutex of an event, a semaphore, a barrier or a queue guards the object's own words
    /// (docs/format.md section 10.1): it is no SharedLock, and the message says which Open to call.</summary>
    [Theory]
    [MemberData(nameof(KindsWithAnInternalLock))]
    public void OpenRefusesTheInternalLockOfAnotherKind(string kind)
    {
        string name = Names.Unique(kind);
        using IDisposable obj = kind switch
        {
            "event" => SharedEvent.Create(name),
            "semaphore" => SharedSemaphore.Create(name, 1),
            "barrier" => SharedBarrier.Create(name, 2),
            _ => SharedQueue.Create(name),
        };
        var e = Assert.Throws<TypeMismatchException>(() => SharedLock.Open(name));
        string typeName = "Shared" + char.ToUpperInvariant(kind[0]) + kind[1..];
        Assert.Contains($"{kind} segment", e.Message);
        Assert.Contains("not a lock", e.Message);
        Assert.Contains($"{typeName}.Open", e.Message);
        Assert.Throws<TypeMismatchException>(() => SharedLock.Open(name, new OpenOptions()));
    }

    [Fact]
    public void OpenStillTakesTheLockOfAConditionAndOfAValue()
    {
        using var cond = SharedCondition.Create(Names.Unique("cond"));
        using (var itsLock = SharedLock.Open(cond.Name))
        using (itsLock.Lock()) { }
        using var value = SharedValue<int>.Create(Names.Unique("val"), 1);
        using (var itsLock = SharedLock.Open(value.Name))
        using (itsLock.Lock()) { }
    }

    [Fact]
    public void ContradictoryOptionsAreRefused()
    {
        using var shared = SharedLock.Create(Names.Unique());
        string name = Names.Unique();
        Assert.Throws<ArgumentException>(() => SharedArray<int>.Create(name, 1, new SegmentOptions { Synchronized = false, SharedLock = shared }));
        Assert.Throws<ArgumentException>(() => SharedLock.Create(name, new SegmentOptions { Synchronized = false }));
        Assert.Throws<ArgumentException>(() => SharedCharArray.Create(name, 1, new SegmentOptions { TypeCode = 'B' }));
        Assert.False(Names.Exists(name));
        using var raw = SharedArray<int>.Create(name, 1, new SegmentOptions { Synchronized = false });
        Assert.Throws<InvalidOperationException>(() => raw.GetLock());
        Assert.Throws<TypeMismatchException>(() => SharedLock.Open(name));
    }
}
