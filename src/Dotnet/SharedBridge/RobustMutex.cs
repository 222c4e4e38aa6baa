using System.Runtime.CompilerServices;
using static SharedBridge.Interop;

namespace SharedBridge;

/// <summary>
/// The embedded robust process-shared mutex of one segment and the lock protocol of
/// docs/format.md section 7.3. While the lock is held (or being acquired) the segment's mapping
/// holds a reference, so disposing the segment never unmaps a mutex this process is using.
/// </summary>
internal sealed unsafe class RobustMutex
{
    private readonly Segment _segment;
    private readonly void* _mutex;
    private readonly LockType _type;

    internal RobustMutex(Segment segment, byte* mutex, LockType type)
    {
        _segment = segment;
        _mutex = mutex;
        _type = type;
    }

    internal string SegmentName => _segment.Name;

    // glibc keeps the owner's tid in the first int of the mutex (__lock, offset 0 on x86_64 and
    // aarch64) for robust mutexes, with FUTEX_OWNER_DIED (bit 30) set when the owner died.
    private const int FutexTidMask = 0x3FFFFFFF;
    private const int FutexOwnerDied = 0x40000000;

    internal int OwnerThreadId => Volatile.Read(ref *(int*)_mutex) & FutexTidMask;

    internal bool OwnerDied => (Volatile.Read(ref *(int*)_mutex) & FutexOwnerDied) != 0;

    /// <summary>Initializes a fresh mutex (creator only, before the segment is ready).</summary>
    internal static void Initialize(byte* mutex, LockType type)
    {
        ulong* attr = stackalloc ulong[4]; // pthread_mutexattr_t is 4 bytes on x86_64, 8 on aarch64
        Check(MutexAttrInit(attr), "pthread_mutexattr_init");
        try
        {
            Check(MutexAttrSetPShared(attr, PTHREAD_PROCESS_SHARED), "pthread_mutexattr_setpshared");
            Check(MutexAttrSetRobust(attr, PTHREAD_MUTEX_ROBUST), "pthread_mutexattr_setrobust");
            Check(MutexAttrSetType(attr, type == LockType.Recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK),
                "pthread_mutexattr_settype");
            Check(MutexInit(mutex, attr), "pthread_mutex_init");
        }
        finally
        {
            MutexAttrDestroy(attr);
        }
    }

    /// <summary>Blocks until the lock is held.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal LockScope Lock()
    {
        _segment.AddRef();
        int rc = MutexTryLock(_mutex);
        if (rc == 0) return new LockScope(this, false);
        return Finish(rc == EBUSY ? MutexLock(_mutex) : rc, timeoutText: null);
    }

    /// <summary>Waits at most <paramref name="timeout"/>; false when the lock was not acquired in time.</summary>
    internal bool TryLock(TimeSpan timeout, out LockScope scope)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
        {
            scope = Lock();
            return true;
        }
        if (timeout < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must be non-negative or Timeout.InfiniteTimeSpan.");
        _segment.AddRef();
        int rc = MutexTryLock(_mutex);
        // Busy: wait with a deadline, even a zero timeout (a deadline already past). glibc's trylock
        // answers EBUSY to the owner of a non-recursive lock while clocklock answers EDEADLK, so
        // going through clocklock makes every timeout report self-recursion the same way.
        if (rc == EBUSY)
        {
            Timespec deadline;
            ClockGetTime(CLOCK_MONOTONIC, &deadline);
            long ns = deadline.Nanoseconds + (timeout.Ticks % TimeSpan.TicksPerSecond) * 100;
            deadline.Seconds += timeout.Ticks / TimeSpan.TicksPerSecond + ns / 1_000_000_000;
            deadline.Nanoseconds = ns % 1_000_000_000;
            rc = MutexClockLock(_mutex, CLOCK_MONOTONIC, &deadline);
        }
        if (rc is EBUSY or ETIMEDOUT)
        {
            _segment.Release();
            scope = default;
            return false;
        }
        scope = Finish(rc, timeoutText: null);
        return true;
    }

    /// <summary>Handles every result but "acquired cleanly" (section 7.3).</summary>
    private LockScope Finish(int rc, string? timeoutText)
    {
        if (rc == 0) return new LockScope(this, false);
        if (rc == EOWNERDEAD)
        {
            // We hold the lock now. Make it consistent before anything else, so that no unlock can
            // ever leave it unrecoverable; then record the recovery while holding it.
            int c = MutexConsistent(_mutex);
            if (c != 0)
            {
                MutexUnlock(_mutex);
                _segment.Release();
                throw new IOException($"pthread_mutex_consistent failed on the lock of \"{_segment.Name}\": {Describe(c)}");
            }
            _segment.RecordRecovery();
            return new LockScope(this, true);
        }
        _segment.Release();
        throw rc switch
        {
            EDEADLK => new LockRecursionException(
                $"This thread already holds the non-recursive lock of \"{_segment.Name}\"; release it before locking again."),
            ENOTRECOVERABLE => new LockNotRecoverableException(
                $"The lock of \"{_segment.Name}\" is permanently unusable: a process recovered it from a dead owner " +
                "without completing the recovery. Copy the data to a new segment."),
            _ => new IOException($"Locking \"{_segment.Name}\" failed: {Describe(rc)}{timeoutText}"),
        };
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Unlock()
    {
        int rc = MutexUnlock(_mutex);
        if (rc != 0) ThrowUnlockFailed(rc);
        _segment.Release();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowUnlockFailed(int rc)
    {
        if (rc == EPERM)
            throw new SynchronizationLockException(
                $"The lock of \"{_segment.Name}\" is not held by this thread: dispose the LockScope on the thread that " +
                "acquired it, exactly once (do not await while holding a shared lock).");
        throw new IOException($"Unlocking \"{_segment.Name}\" failed: {Describe(rc)}");
    }

    private static void Check(int rc, string what)
    {
        if (rc != 0) throw new IOException($"{what} failed: {Describe(rc)}");
    }
}
