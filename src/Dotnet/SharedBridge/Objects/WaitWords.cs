using System.Buffers.Binary;
using System.Diagnostics;
using SharedBridge.Format;
using SharedBridge.Platform;

namespace SharedBridge.Objects;

/// <summary>
/// The sixteen u32 words of a synchronization segment (docs/format.md section 10) and the wait
/// protocol of section 10.3: every word changes only under the robust mutex (the segment's own, or
/// a condition's external lock); waiters sleep with FUTEX_WAIT on <c>seq</c> in 50 ms slices, so a
/// cancellation is noticed and a wake-up whose notifier died before FUTEX_WAKE is seen at the next
/// slice. Used by SharedEvent, SharedSemaphore, SharedCondition and SharedBarrier.
/// </summary>
internal sealed unsafe class WaitWords
{
    internal const int Seq = 0, Waiters = 1, Signals = 2, W3 = 3, W4 = 4, W5 = 5;
    internal const uint ValueMax = 0x7FFFFFFF;
    private static readonly TimeSpan Slice = TimeSpan.FromMilliseconds(50);

    private readonly SharedObjectCore _core;
    private readonly RobustMutex _mutex;
    private readonly uint* _w;

    internal WaitWords(SharedObjectCore core)
    {
        _core = core;
        _mutex = core.Mutex ?? throw new InvalidOperationException("a synchronization segment always has a lock");
        _w = (uint*)core.Segment.Data;
    }

    internal SharedObjectCore Core => _core;

    internal uint this[int index]
    {
        get
        {
            _core.ThrowIfDisposed();
            return Volatile.Read(ref _w[index]);
        }
        set
        {
            _core.ThrowIfDisposed();
            Volatile.Write(ref _w[index], value);
        }
    }

    internal LockScope Lock() => _core.Lock();

    internal bool HeldByCurrentThread => _mutex.OwnerThreadId == Interop.GetTid();

    internal CorruptSegmentException Corrupt(string what) => new(
        $"The {Describe(_core.Header.Kind)} segment \"{_core.Name}\" is corrupt: {what} (another process overwrote its words): recreate it.");

    // ------------------------------------------------------------------ creation

    internal static SharedObjectCore Create(string owner, string? name, SegmentKind kind, SegmentOptions? options,
        ReadOnlySpan<uint> initialWords, SharedLock? externalLock = null)
    {
        if (!Futex.Available)
            throw new PlatformNotSupportedException("SharedBridge synchronization objects need Linux on x86_64 or aarch64 (futex).");
        options ??= SegmentOptions.Default;
        if (!options.Synchronized || options.SharedLock is not null || options.TypeCode is not null)
            throw new ArgumentException(
                $"A {owner} has its own lock: Synchronized must stay true and SharedLock and TypeCode null " +
                "(a condition takes its shared lock as the sharedLock argument).", nameof(options));
        var effective = new SegmentOptions
        {
            Mode = options.Mode,
            Lifetime = options.ResolveLifetime(),
            RecursiveLock = kind == SegmentKind.Condition,
            SharedLock = externalLock,
        };
        Span<byte> data = stackalloc byte[4 * HeaderLayout.SyncWords];
        data.Clear();
        for (int i = 0; i < initialWords.Length; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(data[(4 * i)..], initialWords[i]);
        return SharedObjectCore.Create(owner, name, kind, 'I', 4, HeaderLayout.SyncWords, "", [], effective, data);
    }

    internal static SharedObjectCore Open(string owner, string name, OpenOptions? options, SegmentKind kind) =>
        SharedObjectCore.Open(owner, name, options, header => header.Kind == kind ? null
            : $"it is {Article(header.Kind)} {Describe(header.Kind)} segment (kind {(int)header.Kind}), not {Article(kind)} {Describe(kind)}");

    /// <summary>Opens, then checks the immutable words with <paramref name="check"/> (a reason, or null).</summary>
    internal static WaitWords OpenChecked(string owner, string name, OpenOptions? options, SegmentKind kind, Func<WaitWords, string?>? check = null)
    {
        var core = Open(owner, name, options, kind);
        var words = new WaitWords(core);
        if (check?.Invoke(words) is { } why)
        {
            core.Dispose();
            throw words.Corrupt(why);
        }
        return words;
    }

    private static string Describe(SegmentKind kind) => kind switch
    {
        SegmentKind.Event => "event",
        SegmentKind.Semaphore => "semaphore",
        SegmentKind.Condition => "condition",
        SegmentKind.Barrier => "barrier",
        SegmentKind.Lock => "lock",
        SegmentKind.Value => "value",
        _ => "array",
    };

    private static string Article(SegmentKind kind) => kind is SegmentKind.Event or SegmentKind.Array ? "an" : "a";

    // ------------------------------------------------------------------ timeouts

    internal static void CheckTimeout(TimeSpan timeout)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must be non-negative or Timeout.InfiniteTimeSpan.");
    }

    /// <summary>Time left of <paramref name="timeout"/> since <paramref name="start"/> (infinite stays infinite; never negative).</summary>
    internal static TimeSpan Left(TimeSpan timeout, long start)
    {
        if (timeout == Timeout.InfiniteTimeSpan) return timeout;
        var left = timeout - Stopwatch.GetElapsedTime(start);
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }

    /// <summary>Runs a blocking wait on a dedicated thread: the robust lock is taken and released on that
    /// thread only, never held across an await.</summary>
    internal static Task<T> RunBlocking<T>(Func<T> wait, CancellationToken cancellationToken) =>
        Task.Factory.StartNew(wait, cancellationToken, TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach,
            TaskScheduler.Default);

    // ------------------------------------------------------------------ the protocol

    /// <summary>Waits (the lock held once by this thread) until <paramref name="ready"/> is true; false when
    /// <paramref name="timeout"/>, counted from <paramref name="start"/>, passes first.</summary>
    internal bool WaitUntil(Func<bool> ready, TimeSpan timeout, long start, CancellationToken cancellationToken)
    {
        while (!ready())
        {
            var left = Left(timeout, start);
            if (left == TimeSpan.Zero) return false;
            Wait(left, cancellationToken);
        }
        return true;
    }

    /// <summary>Section 10.3 wait. The calling thread holds the mutex once; it holds it again on return,
    /// also when a cancellation ends the wait (OperationCanceledException). True when notified.</summary>
    internal bool Wait(TimeSpan timeout, CancellationToken cancellationToken)
    {
        CheckTimeout(timeout);
        if (!HeldByCurrentThread)
            throw new SynchronizationLockException(
                $"Waiting on \"{_core.Name}\" needs its lock held by this thread: take it with Lock() first.");
        CheckSignals();
        long start = Stopwatch.GetTimestamp();
        bool infinite = timeout == Timeout.InfiniteTimeSpan;
        this[Waiters] += 1;
        uint seq = this[Seq];
        var segment = _core.Segment;
        segment.AddRef();               // the words stay mapped while the lock is not held
        bool held = true;
        try
        {
            ReleaseOnce();
            held = false;
            while (true)
            {
                TimeSpan left = infinite ? Slice : timeout - Stopwatch.GetElapsedTime(start);
                if (Volatile.Read(ref _w[Seq]) == seq && left > TimeSpan.Zero)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    Futex.Wait(&_w[Seq], seq, left < Slice ? left : Slice);
                    if (Volatile.Read(ref _w[Seq]) == seq && (infinite || Stopwatch.GetElapsedTime(start) < timeout))
                        continue;
                }
                _mutex.Lock();
                held = true;
                CheckSignals();
                if (this[Signals] > 0)
                {
                    this[Signals] -= 1;
                    this[Waiters] -= 1;
                    return true;
                }
                if (!infinite && Stopwatch.GetElapsedTime(start) >= timeout)
                {
                    this[Waiters] -= 1;
                    return false;
                }
                seq = this[Seq];
                held = false;
                _mutex.Unlock();
            }
        }
        catch
        {
            if (!held) _mutex.Lock();
            uint waiters = Volatile.Read(ref _w[Waiters]);
            waiters = waiters == 0 ? 0 : waiters - 1;
            Volatile.Write(ref _w[Waiters], waiters);
            Volatile.Write(ref _w[Signals], Math.Min(Volatile.Read(ref _w[Signals]), waiters));
            throw;
        }
        finally
        {
            segment.Release();
        }
    }

    private void ReleaseOnce()
    {
        _mutex.Unlock();
        if (HeldByCurrentThread)
        {
            _mutex.Lock();
            throw new InvalidOperationException(
                $"The lock of \"{_core.Name}\" is held more than once by this thread: a condition wait must be able to release it " +
                "completely. Hold it once (one LockScope) while waiting.");
        }
    }

    private void CheckSignals()
    {
        uint signals = this[Signals], waiters = this[Waiters];
        if (signals > waiters) throw Corrupt($"signals {signals} > waiters {waiters}");
    }

    /// <summary>Section 10.3 notify(n); the caller holds the mutex.</summary>
    internal void Notify(uint count)
    {
        CheckSignals();
        uint k = Math.Min(count, this[Waiters] - this[Signals]);
        if (k == 0) return;
        this[Signals] += k;
        this[Seq] = unchecked(this[Seq] + 1);
        Futex.Wake(&_w[Seq]);
    }

    internal void RequireHeld(string what)
    {
        if (!HeldByCurrentThread)
            throw new SynchronizationLockException($"{what} on \"{_core.Name}\" needs its lock held by this thread: take it with Lock() first.");
    }
}
