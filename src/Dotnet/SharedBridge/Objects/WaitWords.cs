using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.CompilerServices;
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
internal sealed unsafe partial class WaitWords
{
    // Word indexes (docs/format.md section 10.2: offset / 4), named as in Python's _objects/sync.py.
    // Words 0 to 2 mean the same in every kind; words 3 to 5 (w3, w4, w5 in the table) mean one thing per kind.
    internal const int Seq = 0, Waiters = 1, Signals = 2;
    internal const int Sleepers = 6;                            // format version 4 (compat_version 4): waiters registered to sleep
    internal const int Flag = 3, Sets = 4;                      // event (4): flag 0 clear / 1 set; set() calls mod 2^32
    internal const int Value = 3, MaxValue = 4, Bounded = 5;    // semaphore (5): units available; bound (immutable); 0 or 1 (immutable)
    internal const int Parties = 3, State = 4, Count = 5;       // barrier (7): parties (immutable); 0 filling .. 3 broken; inside wait now
    // a condition (6) uses words 0 to 2 only
    internal const uint ValueMax = 0x7FFFFFFF;
    internal static readonly TimeSpan Slice = TimeSpan.FromMilliseconds(50);

    /// <summary>The first word of the holder table (section 10.2): entry i is words Table + 4i .. + 3:
    /// pid, units, start_time low, start_time high.</summary>
    internal const int Table = HeaderLayout.SyncWords;
    internal const int SemaphoreSlots = 64;

    private readonly SharedObjectCore _core;
    private readonly RobustMutex _mutex;
    private readonly uint* _w;
    private readonly bool _hasSleepers;
    private readonly int _sleepers;     // index of the sleepers word: 6 in a synchronization segment, 3 in a queue's wait block

    internal WaitWords(SharedObjectCore core) : this(core, 0, Sleepers)
    {
    }

    /// <summary>The wait protocol on a wait block <paramref name="offset"/> bytes into the data area: the sixteen words of
    /// a synchronization segment (offset 0, sleepers word 6), or one of a queue's 16-byte blocks (docs/format.md
    /// section 11.2: seq, waiters, signals, sleepers; sleepers word 3).</summary>
    internal WaitWords(SharedObjectCore core, int offset, int sleepersWord)
    {
        _core = core;
        _mutex = core.Mutex ?? throw new InvalidOperationException("a synchronization segment always has a lock");
        _w = (uint*)(core.Segment.Data + offset);
        _sleepers = sleepersWord;
        // From the validated private header copy, never from shared memory (section 10.1).
        Slots = HeaderCodec.TableSlots(core.Header.Kind, core.Header.CompatVersion, (ulong)core.Header.Length) ?? 0;
        // Version 4 rules (sleepers, wake only when a sleeper registered) on compat_version 4 only; older
        // segments may be shared with version-2/3 processes, which never register (section 6.3).
        _hasSleepers = core.Header.CompatVersion >= HeaderLayout.SleepersVersion;
        // Read this process's start time now, not between counting a unit and recording it (section 10.2).
        if (Slots > 0) _ = ProcessInfo.StartTime;
    }

    /// <summary>Entries of the holder table (0: none).</summary>
    internal int Slots { get; }

    /// <summary>The sixteen words, read once (the immutable ones are validated and kept from this copy).</summary>
    internal uint[] Snapshot()
    {
        var words = new uint[HeaderLayout.SyncWords];
        for (int i = 0; i < words.Length; i++) words[i] = this[i];
        return words;
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

    internal bool HeldByCurrentThread => _mutex.OwnerThreadId == Interop.CurrentTid;

    internal CorruptSegmentException Corrupt(string what) => new(
        $"The {Describe(_core.Header.Kind)} segment \"{_core.Name}\" is corrupt: {what} (another process overwrote its words): recreate it.");

    // ------------------------------------------------------------------ creation

    internal static SharedObjectCore Create(string owner, string? name, SegmentKind kind, SegmentOptions? options,
        ReadOnlySpan<uint> initialWords, SharedLock? externalLock = null, int slots = 0)
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
            Directory = options.Directory,
        };
        int count = HeaderLayout.SyncWords + 4 * slots;
        var data = new byte[4 * count];     // the holder table starts free (all zero)
        for (int i = 0; i < initialWords.Length; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(4 * i), initialWords[i]);
        return SharedObjectCore.Create(owner, name, kind, 'I', 4, count, "", [], effective, data);
    }

    internal static SharedObjectCore Open(string owner, string name, OpenOptions? options, SegmentKind kind) =>
        SharedObjectCore.Open(owner, name, options, header => header.Kind == kind ? null
            : $"it is {Article(header.Kind)} {Describe(header.Kind)} segment (kind {(int)header.Kind}), not {Article(kind)} {Describe(kind)}");

    /// <summary>Opens, reads the sixteen words once and checks the immutable ones on that copy (the rules of
    /// <see cref="ImmutableWords"/>); the caller keeps the copy (section 10.2).</summary>
    internal static (WaitWords Words, uint[] Snapshot) OpenChecked(string owner, string name, OpenOptions? options, SegmentKind kind)
    {
        var core = Open(owner, name, options, kind);
        var words = new WaitWords(core);
        uint[] snapshot;
        try
        {
            snapshot = words.Snapshot();
        }
        catch
        {
            core.Dispose();
            throw;
        }
        if (ImmutableWords.Problem(kind, System.Runtime.InteropServices.MemoryMarshal.AsBytes(snapshot.AsSpan())) is { } why)
        {
            core.Dispose();
            throw words.Corrupt(why);
        }
        return (words, snapshot);
    }

    // ------------------------------------------------------------------ the holder table (section 10.2), lock held

    private int _hint = -1;     // the entry this process used last (checked before use)

    private bool IsOwn(int i) =>
        this[Table + 4 * i] == (uint)ProcessInfo.Pid && (this[Table + 4 * i + 2] | (ulong)this[Table + 4 * i + 3] << 32) == ProcessInfo.StartTime;

    private int OwnEntry()
    {
        if (_hint >= 0 && this[Table + 4 * _hint + 1] != 0 && IsOwn(_hint)) return _hint;
        for (int i = 0; i < Slots; i++)
        {
            int b = Table + 4 * i;
            if (this[b] == (uint)ProcessInfo.Pid && this[b + 1] != 0
                && (this[b + 2] | (ulong)this[b + 3] << 32) == ProcessInfo.StartTime)
                return _hint = i;
        }
        return -1;
    }

    private void ClearEntry(int i)
    {
        for (int k = 0; k < 4; k++) this[Table + 4 * i + k] = 0;
    }

    /// <summary>Records one unit (a semaphore unit, a barrier party) of this process; not recorded when the
    /// table is full or absent.</summary>
    internal void Record()
    {
        if (Slots == 0) return;
        // The entry used last, even if this process freed it since (units 0: pid and start_time stay).
        int own = _hint >= 0 && IsOwn(_hint) ? _hint : OwnEntry();
        if (own >= 0)
        {
            uint units = this[Table + 4 * own + 1];
            this[Table + 4 * own + 1] = units == uint.MaxValue ? units : units + 1;
            return;
        }
        for (int i = 0; i < Slots; i++)
        {
            int b = Table + 4 * i;
            if (this[b] != 0 && this[b + 1] != 0) continue;
            this[b] = (uint)ProcessInfo.Pid;
            this[b + 1] = 1;
            this[b + 2] = (uint)ProcessInfo.StartTime;
            this[b + 3] = (uint)(ProcessInfo.StartTime >> 32);
            _hint = i;
            return;
        }
    }

    /// <summary>Takes up to <paramref name="count"/> units off the table: the entry this process holds first,
    /// then (unless <paramref name="ownOnly"/>) the other entries in slot order. Returns how many.</summary>
    internal uint TakeUnits(uint count, bool ownOnly = false)
    {
        if (Slots == 0) return 0;
        uint taken = 0;
        int own = OwnEntry();
        if (own >= 0) taken += TakeFrom(own, count);
        for (int i = 0; !ownOnly && i < Slots && taken < count; i++)
            if (this[Table + 4 * i] != 0 && this[Table + 4 * i + 1] != 0) taken += TakeFrom(i, count - taken);
        return taken;
    }

    /// <summary>units 0 frees the entry (section 10.2); pid and start_time stay, so that this process can take
    /// it again without a search.</summary>
    private uint TakeFrom(int i, uint count)
    {
        uint units = this[Table + 4 * i + 1];
        uint k = Math.Min(units, count);
        this[Table + 4 * i + 1] = units - k;
        return k;
    }

    /// <summary>Frees the entries of holders that are gone (section 10.2: no such process, or a zombie);
    /// returns their units (saturating).</summary>
    internal ulong FreeGone()
    {
        ulong freed = 0;
        for (int i = 0; i < Slots; i++)
        {
            int b = Table + 4 * i;
            uint pid = this[b], units = this[b + 1];
            if (pid == 0) continue;
            if (units != 0 && pid <= int.MaxValue && CreatorIdentity.IsRunning((int)pid, this[b + 2] | (ulong)this[b + 3] << 32))
                continue;
            ClearEntry(i);
            freed += units;
        }
        return freed;
    }

    private static string Describe(SegmentKind kind) => kind switch
    {
        SegmentKind.Event => "event",
        SegmentKind.Semaphore => "semaphore",
        SegmentKind.Condition => "condition",
        SegmentKind.Barrier => "barrier",
        SegmentKind.Lock => "lock",
        SegmentKind.Value => "value",
        SegmentKind.Queue => "queue",
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

    /// <summary>One wait slice, or the time left if shorter.</summary>
    internal static TimeSpan SliceOf(TimeSpan left) => left == Timeout.InfiniteTimeSpan || left > Slice ? Slice : left;

    /// <summary>Runs a blocking wait on a dedicated thread: the robust lock is taken and released on that
    /// thread only, never held across an await.</summary>
    internal static Task<T> RunBlocking<T>(Func<T> wait, CancellationToken cancellationToken) =>
        Task.Factory.StartNew(wait, cancellationToken, TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach,
            TaskScheduler.Default);

    // ------------------------------------------------------------------ the protocol

    /// <summary>What one <see cref="WaitOnce"/> ended with (section 10.3 wait, steps 7 and 8).</summary>
    internal enum WaitResult { Notified, Woken, TimedOut }

    /// <summary>Section 10.3 join: a waiting operation counts itself in <c>waiters</c> once, before its first
    /// wait, and stays counted across its waits (so that <c>sharedbridge ls</c> never sees 0 while it waits).
    /// The caller holds the mutex and calls <see cref="Leave"/> on every way out.</summary>
    internal void Join()
    {
        CheckSignals();
        this[Waiters] = unchecked(this[Waiters] + 1);
    }

    /// <summary>Section 10.3 leave: <c>waiters -= 1</c> (never below 0), then <c>signals</c> (and, from format
    /// version 4, <c>sleepers</c>) at most <c>waiters</c>. The caller holds the mutex. Never throws for the
    /// words' content: it runs on the way out of failed and cancelled waits.</summary>
    internal void Leave()
    {
        uint waiters = Volatile.Read(ref _w[Waiters]);
        waiters = waiters == 0 ? 0 : waiters - 1;
        Volatile.Write(ref _w[Waiters], waiters);
        if (Volatile.Read(ref _w[Signals]) > waiters) Volatile.Write(ref _w[Signals], waiters);
        if (_hasSleepers && Volatile.Read(ref _w[_sleepers]) > waiters) Volatile.Write(ref _w[_sleepers], waiters);
    }

    /// <summary>Section 10.3 wait step 7: takes one signal if there is one. The caller holds the mutex.</summary>
    internal bool ConsumeSignal()
    {
        uint signals = this[Signals];
        if (signals == 0) return false;
        this[Signals] = signals - 1;
        return true;
    }

    /// <summary>Section 10.3 wait step 1 or 3: counts this waiter in <c>sleepers</c> before it sleeps in
    /// FUTEX_WAIT (format version 4; nothing before). The caller holds the mutex.</summary>
    internal void RegisterSleeper()
    {
        if (_hasSleepers) this[_sleepers] = unchecked(this[_sleepers] + 1);
    }

    /// <summary>Section 10.3 wait step 6: <c>sleepers -= 1</c>, never below 0 (format version 4; nothing
    /// before). The caller holds the mutex.</summary>
    internal void UnregisterSleeper()
    {
        if (!_hasSleepers) return;
        uint sleepers = Volatile.Read(ref _w[_sleepers]);
        if (sleepers > 0) Volatile.Write(ref _w[_sleepers], sleepers - 1);
    }

    /// <summary>Section 10.3 wait for a condition: join, wait until notified or the timeout, leave. The calling
    /// thread holds the mutex (at any depth); it holds it again on return, also when a cancellation ends the wait
    /// (OperationCanceledException). True when notified.</summary>
    internal bool Wait(TimeSpan timeout, CancellationToken cancellationToken)
    {
        CheckTimeout(timeout);
        RequireHeld("Waiting");
        long start = Stopwatch.GetTimestamp();
        Join();
        try
        {
            while (true)
            {
                switch (WaitOnce(Left(timeout, start), cancellationToken))
                {
                    case WaitResult.Notified: return true;
                    case WaitResult.TimedOut: return false;
                }
            }
        }
        finally
        {
            LeaveIfHeld();
        }
    }

    /// <summary><see cref="Leave"/> on the way out of a joined operation, unless an error left the mutex not
    /// held by this thread (a lock that cannot be taken again: nothing may be written then).</summary>
    internal void LeaveIfHeld()
    {
        if (HeldByCurrentThread) Leave();
    }

    /// <summary>
    /// Section 10.3 wait(deadline), steps 1 to 8, for a joined thread holding the mutex (at any depth: a recursive
    /// lock held several times is released completely and taken again to the same depth): releases it
    /// (issuing the wake-up this thread deferred), spins on <c>seq</c> within the adaptive budget, sleeps in
    /// FUTEX_WAIT slices of at most 50 ms until <c>seq</c> changes or <paramref name="timeout"/> passes, takes
    /// the mutex again and consumes a signal if there is one. Returns with the mutex held, still joined, also
    /// when it throws (a cancellation: OperationCanceledException; the caller leaves).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal WaitResult WaitOnce(TimeSpan timeout, CancellationToken cancellationToken)
    {
        CheckSignals();
        long start = Stopwatch.GetTimestamp();
        bool infinite = timeout == Timeout.InfiniteTimeSpan;
        uint seq = this[Seq];
        long spin = infinite || timeout > TimeSpan.Zero ? SpinBudget() : 0;
        if (!infinite && spin > 0) spin = Math.Min(spin, (long)(timeout.TotalSeconds * Stopwatch.Frequency) + 1);
        bool registered = false;
        if (spin == 0)
        {
            RegisterSleeper();          // no spin: register in step 1, before releasing
            registered = true;
        }
        var segment = _core.Segment;
        segment.AddRef();               // the words stay mapped while the lock is not held
        bool held = true;
        int depth = 0;
        try
        {
            depth = ReleaseCompletely();    // step 1 (the last Unlock issues this thread's deferred wake-up)
            held = false;
            if (spin > 0 && !Spin(seq, spin, start))
            {
                Reacquire(depth);       // step 3
                held = true;
                if (Volatile.Read(ref _w[Seq]) == seq)
                {
                    RegisterSleeper();
                    registered = true;
                    held = false;
                    ReleaseCompletely();
                }
            }
            while (!held && Volatile.Read(ref _w[Seq]) == seq)    // step 4
            {
                TimeSpan left = infinite ? Slice : timeout - Stopwatch.GetElapsedTime(start);
                if (left <= TimeSpan.Zero) break;
                cancellationToken.ThrowIfCancellationRequested();
                Futex.Wait(&_w[Seq], seq, left < Slice ? left : Slice);
            }
            if (!held)
            {
                Reacquire(depth);       // step 5
                held = true;
            }
            if (registered)             // step 6
            {
                registered = false;
                UnregisterSleeper();
            }
            CheckSignals();
            if (ConsumeSignal()) return WaitResult.Notified;    // step 7
            return !infinite && Stopwatch.GetElapsedTime(start) >= timeout ? WaitResult.TimedOut : WaitResult.Woken;
        }
        catch
        {
            // Abandoned (section 10.3): take the mutex again and unregister; the caller leaves.
            if (!held && depth > 0) Reacquire(depth);
            if (registered) UnregisterSleeper();
            throw;
        }
        finally
        {
            segment.Release();
        }
    }

    // ------------------------------------------------------------------ spinning (docs/wakeups-design.md section 3)

    // The adaptive spin of one object (docs/format.md section 10.3, "Spinning"), the rule of Python's
    // _platform/wake.py Spinner: the whole budget every wait until FailsOff spins in a row ended in a sleep,
    // then no spin for 16 waits, one retry, 32, ... 1024; a spin that succeeds resets it. A budget scaled to
    // the last successful spin collapsed to no spin in a ping-pong (each miss of a jittery answer halved it).
    private const int FailsOff = 4, FirstRetryInterval = 16, LastRetryInterval = 1024;
    private int _fails, _skip, _retryInterval = FirstRetryInterval;

    /// <summary>The spin this wait may use (Stopwatch ticks; 0: none). Local to this process; races between
    /// threads only blur the counts.</summary>
    private long SpinBudget()
    {
        long budget = SharedBridgeSettings.SpinStopwatchTicks;
        if (budget == 0) return 0;
        if (_skip > 0)
        {
            _skip--;
            return 0;
        }
        return budget;
    }

    /// <summary>Step 2: reads <c>seq</c> until it differs from <paramref name="seq"/> (true) or the spin budget is
    /// used up (false), with a CPU pause between reads and the clock read every 64 reads. Holds no mutex and
    /// writes no word; adapts this object's spin.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool Spin(uint seq, long spin, long start)
    {
        long end = start + spin;
        for (int i = 1; Volatile.Read(ref _w[Seq]) == seq; i++)
        {
            Futex.Pause();
            if ((i & 63) == 0 && Stopwatch.GetTimestamp() >= end)
            {
                if (++_fails >= FailsOff)
                {
                    _skip = _retryInterval;
                    _retryInterval = Math.Min(2 * _retryInterval, LastRetryInterval);
                    _fails = FailsOff - 1;      // a failed retry turns it off again at once
                }
                return false;
            }
        }
        _fails = 0;
        _retryInterval = FirstRetryInterval;
        return true;
    }

    /// <summary>Section 10.3 wait step 1: releases the mutex completely, as multiprocessing.Condition and
    /// threading.Condition release an RLock; returns the depth it was held to (a recursive lock: any; 1 otherwise).</summary>
    private int ReleaseCompletely()
    {
        int depth = 0;
        do
        {
            _mutex.Unlock();
            depth++;
        } while (HeldByCurrentThread);
        return depth;
    }

    /// <summary>Section 10.3 wait steps 3 and 5: takes the mutex again to <paramref name="depth"/> (a recovery from a
    /// dead owner happens, and is recorded, on the first acquisition).</summary>
    private void Reacquire(int depth)
    {
        _mutex.Lock();
        for (int i = 1; i < depth; i++) _mutex.Lock();
    }

    private void CheckSignals()
    {
        uint signals = this[Signals], waiters = this[Waiters];
        if (signals > waiters) throw Corrupt($"signals {signals} > waiters {waiters}");
        if (_hasSleepers && this[_sleepers] is var sleepers && sleepers > waiters)
            throw Corrupt($"sleepers {sleepers} > waiters {waiters}");
    }

    /// <summary>Section 10.3 notify(n); the caller holds the mutex. The wake-up is issued when this thread
    /// releases the mutex (its outermost release), or at once if this thread defers another one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Notify(uint count)
    {
        CheckSignals();
        uint k = Math.Min(count, this[Waiters] - this[Signals]);
        if (k == 0) return;
        this[Signals] += k;
        this[Seq] = unchecked(this[Seq] + 1);
        if (WakeDue) _mutex.DeferWake(_core.Segment, &_w[Seq]);
    }

    /// <summary>Whether a notify must call FUTEX_WAKE (section 10.3): on format version 4 only when a waiter
    /// registered to sleep (a spinning waiter sees seq change by itself); always on older segments.</summary>
    private bool WakeDue => !_hasSleepers || this[_sleepers] > 0;

    internal void RequireHeld(string what)
    {
        if (!HeldByCurrentThread)
            throw new SynchronizationLockException($"{what} on \"{_core.Name}\" needs its lock held by this thread: take it with Lock() first.");
    }
}
