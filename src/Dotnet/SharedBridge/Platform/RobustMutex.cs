using System.Runtime.CompilerServices;
using static SharedBridge.Platform.Interop;

namespace SharedBridge.Platform;

/// <summary>
/// The embedded robust process-shared mutex of one segment and the lock protocol of
/// docs/format.md sections 7.2 to 7.4. While the lock is held (or being acquired) the segment's
/// mapping holds a reference, so disposing the segment never unmaps a mutex this process is using.
/// The mutex bytes are writable by every process that maps the segment: the kind word is checked
/// before every pthread call, and a waiter checks that the recorded owner is a live thread.
/// </summary>
internal sealed unsafe class RobustMutex
{
    private readonly MappedSegment _segment;
    private readonly byte* _mutex;
    private readonly LockType _type;
    private readonly int _expectedKind;

    // glibc's pthread_mutex_t words (same offsets on x86_64 and aarch64): __lock holds the owner's
    // tid with FUTEX_OWNER_DIED (bit 30) and FUTEX_WAITERS (bit 31); __owner is 0x7FFFFFFE once the
    // mutex is not recoverable; __kind is the type | robust | process-shared.
    private const int LockWord = 0, OwnerWord = 8, KindWord = 16;
    private const int FutexTidMask = 0x3FFFFFFF;
    private const int FutexOwnerDied = 0x40000000;
    private const int KindRobustProcessShared = 0x10 | 0x80;
    private const int OwnerNotRecoverable = 0x7FFFFFFE;

    // Blocking waits run in slices so that the kind and the owner are re-checked while waiting.
    private static readonly TimeSpan WaitSlice = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan OwnerCheckInterval = TimeSpan.FromSeconds(1);
    // A cancellable wait (LockAsync) looks at its token at least this often.
    private static readonly TimeSpan CancelSlice = TimeSpan.FromMilliseconds(50);
    // Wait's result when the token was canceled (not an errno: errno values are positive).
    private const int Canceled = -1;

    internal RobustMutex(MappedSegment segment, byte* mutex, LockType type)
    {
        _segment = segment;
        _mutex = mutex;
        _type = type;
        _expectedKind = ExpectedKind(type);
    }

    internal string SegmentName => _segment.Name;

    private static int ExpectedKind(LockType type) =>
        (type == LockType.Recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK) | KindRobustProcessShared;

    private int Word(int offset) => Volatile.Read(ref *(int*)(_mutex + offset));

    internal int OwnerThreadId => Word(LockWord) & FutexTidMask;

    internal bool OwnerDied => (Word(LockWord) & FutexOwnerDied) != 0;

    /// <summary>Initializes a fresh mutex (creator only, before the segment is ready; and the operator's reset).</summary>
    internal static void Initialize(byte* mutex, int size, LockType type)
    {
        new Span<byte>(mutex, size).Clear();
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

    // ---------------------------------------------------------------- acquire

    // Lock and TryLock report whether the acquisition recovered the lock from a dead owner; the
    // public objects wrap that into a LockScope, whose Dispose calls Unlock.

    /// <summary>Blocks until the lock is held; returns true when it was recovered from a dead owner.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool Lock()
    {
        _segment.AddRef();
        int rc = KindIsIntact() ? LockNow() : ThrowCorruptKind();
        if (rc == 0) return false;
        return Finish(rc is ETIMEDOUT or EBUSY ? Wait(Timeout.InfiniteTimeSpan) : rc);
    }

    /// <summary>Waits at most <paramref name="timeout"/>; false when the lock was not acquired in time.
    /// <paramref name="recovered"/> is true when it was recovered from a dead owner.</summary>
    internal bool TryLock(TimeSpan timeout, out bool recovered) => TryLock(timeout, default, out recovered);

    /// <summary>As <see cref="TryLock(TimeSpan, out bool)"/>, and while waiting <paramref name="cancellationToken"/>
    /// is checked between slices (at most <see cref="CancelSlice"/> apart): a cancellation throws
    /// <see cref="OperationCanceledException"/> with nothing held.</summary>
    internal bool TryLock(TimeSpan timeout, CancellationToken cancellationToken, out bool recovered)
    {
        if (timeout == Timeout.InfiniteTimeSpan && !cancellationToken.CanBeCanceled)
        {
            recovered = Lock();
            return true;
        }
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must be non-negative or Timeout.InfiniteTimeSpan.");
        _segment.AddRef();
        int rc = KindIsIntact() ? LockNow() : ThrowCorruptKind();
        if (rc is ETIMEDOUT or EBUSY && timeout != TimeSpan.Zero) rc = Wait(timeout, cancellationToken);
        if (rc is ETIMEDOUT or EBUSY or Canceled)
        {
            _segment.Release();
            recovered = false;
            if (rc == Canceled) throw new OperationCanceledException(
                $"Waiting for the lock of \"{_segment.Name}\" was canceled; nothing is held.", cancellationToken);
            return false;
        }
        recovered = Finish(rc);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool KindIsIntact() => Word(KindWord) == _expectedKind;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int LockNow()
    {
        Timespec past = new() { Seconds = -1 };
        return MutexLockNow(_mutex, CLOCK_MONOTONIC, &past);
    }

    /// <summary>Waits in slices until acquired or the timeout expires (ETIMEDOUT) or the token is canceled
    /// (<see cref="Canceled"/>); checks the kind before every slice and the owner every second (section 7.2).
    /// The caller holds a reference.</summary>
    private int Wait(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        TimeSpan maxSlice = cancellationToken.CanBeCanceled ? CancelSlice : WaitSlice;
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        TimeSpan nextOwnerCheck = OwnerCheckInterval;
        while (true)
        {
            TimeSpan elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(start);
            if (cancellationToken.IsCancellationRequested) return Canceled;
            TimeSpan slice = maxSlice;
            if (timeout != Timeout.InfiniteTimeSpan)
            {
                if (elapsed >= timeout) return ETIMEDOUT;
                if (timeout - elapsed < slice) slice = timeout - elapsed;
            }
            if (elapsed >= nextOwnerCheck)
            {
                if (StaleOwner() is int tid and not 0) ThrowStaleOwner(tid);
                nextOwnerCheck = elapsed + OwnerCheckInterval;
            }
            if (!KindIsIntact()) ThrowCorruptKind();
            Timespec deadline;
            ClockGetTime(CLOCK_MONOTONIC, &deadline);
            long ns = deadline.Nanoseconds + (slice.Ticks % TimeSpan.TicksPerSecond) * 100;
            deadline.Seconds += slice.Ticks / TimeSpan.TicksPerSecond + ns / 1_000_000_000;
            deadline.Nanoseconds = ns % 1_000_000_000;
            int rc = MutexClockLock(_mutex, CLOCK_MONOTONIC, &deadline);
            if (rc != ETIMEDOUT) return rc;
        }
    }

    /// <summary>The owner tid recorded in the lock word when no such thread exists (forged or stale), else 0.</summary>
    private int StaleOwner()
    {
        int word = Word(LockWord);
        int tid = word & FutexTidMask;
        if (tid == 0 || (word & FutexOwnerDied) != 0 || tid == GetTid()) return 0;
        if (Directory.Exists($"/proc/{tid}")) return 0;
        // A real owner that dies is marked FUTEX_OWNER_DIED before its id disappears: the same word
        // after the check means nobody will ever release it.
        return Word(LockWord) == word ? tid : 0;
    }

    /// <summary>Handles every result but "acquired cleanly" (section 7.3); returns true for a recovery.
    /// The caller holds a reference.</summary>
    private bool Finish(int rc)
    {
        if (rc == 0) return false;
        if (rc == EOWNERDEAD)
        {
            // We hold the lock now. Make it consistent before anything else, so that no unlock can
            // ever leave it unrecoverable; then record the recovery while holding it.
            int c = MutexConsistent(_mutex);
            if (c != 0)
            {
                MutexUnlock(_mutex);
                _segment.Release();
                throw OsErrors.Failed($"pthread_mutex_consistent on the lock of \"{_segment.Name}\"", c);
            }
            _segment.RecordRecovery();
            return true;
        }
        _segment.Release();
        throw rc switch
        {
            EDEADLK => new LockRecursionException(
                $"This thread already holds the non-recursive lock of \"{_segment.Name}\"; release it before locking again."),
            ENOTRECOVERABLE => new LockNotRecoverableException(
                $"The lock of \"{_segment.Name}\" is permanently unusable: a process recovered it from a dead owner " +
                $"without completing the recovery. Copy the data to a new segment, or, once no process uses it, reset it " +
                $"with SharedLock.Reset(\"{_segment.Name}\")."),
            _ => OsErrors.Failed($"Locking \"{_segment.Name}\"", rc),
        };
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private int ThrowCorruptKind()
    {
        int kind = Word(KindWord);
        _segment.Release();
        throw new CorruptLockException(
            $"The lock of \"{_segment.Name}\" is corrupt: its pthread mutex kind is 0x{kind:X}, not the robust " +
            $"process-shared 0x{_expectedKind:X} it was created with (another process overwrote the mutex). Nothing was " +
            $"called on it; if no process uses the segment, SharedLock.Reset(\"{_segment.Name}\") re-initializes it.");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowStaleOwner(int tid)
    {
        _segment.Release();
        throw new CorruptLockException(
            $"The lock of \"{_segment.Name}\" is held by thread {tid}, which does not exist (the lock word was " +
            "overwritten, or its owner's robust-list entry was lost): it will never be released. If no process uses " +
            $"the segment, SharedLock.Reset(\"{_segment.Name}\") re-initializes it.");
    }

    // ---------------------------------------------------------------- release

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Unlock()
    {
        int rc = MutexUnlock(_mutex);
        if (rc != 0) ThrowUnlockFailed(rc);
        if (t_pendingWake is { Seq: not null } pending) pending.IssueIfReleased();
        _segment.Release();
    }

    // ---------------------------------------------------------------- the deferred wake-up

    // docs/wakeups-design.md section 3 (format.md 10.3 notify): a notifier's FUTEX_WAKE is issued after
    // it released the mutex (for a recursive lock, after its outermost release), so that the woken waiter
    // finds the mutex free instead of sleeping a second time on it. One slot per thread, not per
    // RobustMutex instance: the same mutex may be mapped twice in a process (a condition's lock opened
    // by the condition and by the user), and the release may go through either instance.
    [ThreadStatic] private static PendingWake? t_pendingWake;

    /// <summary>Defers <c>FUTEX_WAKE(seq, all)</c> to the moment this thread no longer holds this mutex.
    /// The caller holds this mutex; <paramref name="seqSegment"/> maps <paramref name="seq"/> and stays
    /// mapped until the wake-up is issued. A second deferral on another word while one is pending issues
    /// the first at once (before the release: correct, only slower).</summary>
    internal void DeferWake(MappedSegment seqSegment, uint* seq)
    {
        var pending = t_pendingWake ??= new PendingWake();
        if (pending.Seq == seq) return;
        pending.Issue();
        seqSegment.AddRef();
        _segment.AddRef();
        pending.Mutex = this;
        pending.SeqSegment = seqSegment;
        pending.Seq = seq;
    }

    private sealed class PendingWake
    {
        internal RobustMutex? Mutex;
        internal MappedSegment? SeqSegment;
        internal uint* Seq;

        [MethodImpl(MethodImplOptions.NoInlining)]
        internal void IssueIfReleased()
        {
            if (Mutex!.OwnerThreadId != CurrentTid) Issue();
        }

        internal void Issue()
        {
            if (Seq is null) return;
            uint* seq = Seq;
            var seqSegment = SeqSegment!;
            var mutex = Mutex!;
            Seq = null;
            SeqSegment = null;
            Mutex = null;
            try
            {
                Futex.Wake(seq);
            }
            finally
            {
                seqSegment.Release();
                mutex._segment.Release();
            }
        }
    }

    // The reference is not released on failure: the mutex may still be linked in this thread's
    // robust list, so its mapping must stay.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowUnlockFailed(int rc)
    {
        if (rc == EPERM)
            throw new SynchronizationLockException(
                $"The lock of \"{_segment.Name}\" is not held by this thread: release it on the thread that acquired it, " +
                "exactly once (in async code use LockAsync); or another process overwrote the mutex's owner.");
        throw new CorruptLockException($"Unlocking \"{_segment.Name}\" failed: {OsErrors.Describe(rc)}");
    }

    // ---------------------------------------------------------------- tools

    /// <summary>The lock's state now, for tools.</summary>
    internal LockState State
    {
        get
        {
            if (!KindIsIntact() || StaleOwner() != 0) return LockState.Corrupt;
            if (Word(OwnerWord) == OwnerNotRecoverable) return LockState.NotRecoverable;
            int word = Word(LockWord);
            if ((word & FutexOwnerDied) != 0) return LockState.OwnerDead;
            return (word & FutexTidMask) != 0 ? LockState.Held : LockState.Free;
        }
    }

    /// <summary>Section 7.4 step 4: re-initializes the mutex and counts it as a recovery. The caller
    /// checked that no other process maps the segment and that the lock needs it.</summary>
    internal void Reset(int mutexSize)
    {
        Initialize(_mutex, mutexSize, _type);
        _segment.RecordRecovery();
    }

    private static void Check(int rc, string what)
    {
        if (rc != 0) throw OsErrors.Failed(what, rc);
    }
}
