// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using System.Diagnostics;
using SharedBridge.Objects;
using static SharedBridge.Objects.WaitWords;

namespace SharedBridge;

/// <summary>
/// A named counting semaphore shared between processes and languages (docs/format.md section 10, kind 5):
/// Python's <c>sharedbridge.Semaphore</c> / <c>BoundedSemaphore</c>. The segment records which processes hold
/// units (up to 64 processes), and a wait that finds the count at 0 takes back the units of holders that have
/// died (section 10.3 and 10.4, like System V's SEM_UNDO); a bounded semaphore never exceeds its bound by it.
/// Create with <c>reclaim: false</c> for a semaphore that counts items (producers release, consumers keep).
/// </summary>
public sealed class SharedSemaphore : IDisposable
{
    private const string OwnerName = "SharedSemaphore";
    private readonly WaitWords _words;
    private readonly uint _max;

    /// <param name="words">The segment's words.</param>
    /// <param name="snapshot">The sixteen words as read once at open (or written at creation): the
    /// immutable ones are kept from it, never read from shared memory again (section 10.2).</param>
    private SharedSemaphore(WaitWords words, uint[] snapshot)
    {
        _words = words;
        _max = snapshot[MaxValue];
        IsBounded = snapshot[Bounded] == 1;
    }

    /// <summary>Creates a semaphore segment.</summary>
    /// <param name="name">Segment name, or null for a generated name.</param>
    /// <param name="initialCount">Units available at first (0 to int.MaxValue).</param>
    /// <param name="maximumCount">Null for an unbounded semaphore; otherwise a bounded one (Python's
    /// <c>BoundedSemaphore</c>): releasing above it throws <see cref="SemaphoreFullException"/>.</param>
    /// <param name="options">Mode and lifetime (Synchronized must stay true, SharedLock and TypeCode null).</param>
    /// <param name="reclaim">True (default) to record holders so that units of a holder that died come back;
    /// false to keep every unit taken until some process releases it.</param>
    public static SharedSemaphore Create(string? name = null, int initialCount = 1, int? maximumCount = null, SegmentOptions? options = null,
        bool reclaim = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(initialCount);
        if (maximumCount is { } max && (max < initialCount || max < 1))
            throw new ArgumentOutOfRangeException(nameof(maximumCount), max, "The maximum count must be at least 1 and at least the initial count.");
        uint bound = maximumCount is { } m ? (uint)m : ValueMax;
        uint[] words = [0, 0, 0, (uint)initialCount, bound, maximumCount is null ? 0u : 1u, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        return new(new WaitWords(WaitWords.Create(OwnerName, name, SegmentKind.Semaphore, options, words,
            slots: reclaim ? SemaphoreSlots : 0)), words);
    }

    /// <summary>Opens an existing semaphore segment (bounded or not).</summary>
    /// <exception cref="TypeMismatchException">The segment is not a semaphore.</exception>
    public static SharedSemaphore Open(string name, OpenOptions? options = null)
    {
        var (words, snapshot) = OpenChecked(OwnerName, name, options, SegmentKind.Semaphore);
        return new(words, snapshot);
    }

    /// <summary>The segment name.</summary>
    public string Name => _words.Core.Name;

    /// <summary>True when this object created the segment.</summary>
    public bool IsOwner => _words.Core.IsOwner;

    /// <summary>The validated private copy of the header.</summary>
    public SegmentHeader Header => _words.Core.Header;

    /// <summary>True for a bounded semaphore (Python's BoundedSemaphore).</summary>
    public bool IsBounded { get; }

    /// <summary>The bound of a bounded semaphore; null when unbounded.</summary>
    public int? MaximumCount => IsBounded ? (int)_max : null;

    /// <summary>Units available now.</summary>
    public int CurrentCount
    {
        get
        {
            using var scope = _words.Lock();
            return (int)ReadValue();
        }
    }

    private uint ReadValue()
    {
        uint value = _words[Value];
        if (value > _max) throw _words.Corrupt($"value {value} > max_value {_max}");
        return value;
    }

    /// <summary>Takes one unit, waiting as long as needed.</summary>
    public void Wait() => Wait(Timeout.InfiniteTimeSpan, default);

    /// <summary>Takes one unit within <paramref name="timeout"/>; false when none came in time.</summary>
    public bool Wait(TimeSpan timeout) => Wait(timeout, default);

    /// <summary>Takes one unit within <paramref name="timeout"/>, or until <paramref name="cancellationToken"/> is cancelled.</summary>
    public bool Wait(TimeSpan timeout, CancellationToken cancellationToken)
    {
        CheckTimeout(timeout);
        long start = Stopwatch.GetTimestamp();
        using var scope = _words.Lock();
        bool joined = false;    // joins before its first wait, stays joined across slices and reclaims (section 10.3)
        try
        {
            while (!TryTake())
            {
                var left = Left(timeout, start);
                if (left == TimeSpan.Zero) return false;
                if (!joined)
                {
                    _words.Join();
                    joined = true;
                }
                _words.WaitOnce(_words.Slots > 0 ? SliceOf(left) : left, cancellationToken);
            }
            return true;
        }
        finally
        {
            if (joined) _words.LeaveIfHeld();
        }
    }

    /// <summary>Takes a unit if there is one, after taking back the units of holders that died; the lock is held.</summary>
    private bool TryTake()
    {
        while (true)
        {
            uint value = ReadValue();
            if (value != 0)
            {
                _words[Value] = value - 1;
                _words.Record();
                return true;
            }
            ulong freed = _words.FreeGone();
            if (freed == 0) return false;
            // holders that died: their units come back (section 10.3), never above the bound
            value = (uint)Math.Min(freed, _max);
            _words[Value] = value;
            _words.Notify(value);
        }
    }

    /// <summary>Takes one unit as <see cref="Wait(TimeSpan, CancellationToken)"/> without occupying a thread: an available
    /// unit completes the task at once; otherwise the process's one waiter thread takes the unit when one is released
    /// (true), or completes the task at the timeout (false) or the cancellation (canceled, nothing taken); the code after
    /// an await runs on the thread pool (docs/wakeups-design.md section 6). On kernels before Linux 5.16 (no futex_waitv)
    /// each pending wait takes a dedicated thread.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative timeout other than Timeout.InfiniteTimeSpan.</exception>
    /// <exception cref="ObjectDisposedException">The semaphore is disposed.</exception>
    public Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken = default) =>
        _words.WaitAsync(timeout, cancellationToken, periodic: _words.Slots > 0,
            (bool expired, out bool taken) => (taken = TryTake()) || expired, abandon: null, () => Wait(timeout, cancellationToken));

    /// <summary>Returns <paramref name="releaseCount"/> units and wakes as many waiters; returns the count before.</summary>
    /// <exception cref="SemaphoreFullException">The count would exceed the bound (a bounded semaphore: Python's
    /// "semaphore or lock released too many times"), or int.MaxValue; nothing is changed.</exception>
    public int Release(int releaseCount = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(releaseCount, 1);
        using var scope = _words.Lock();
        uint value = ReadValue();
        if ((ulong)value + (uint)releaseCount > _max)
            throw new SemaphoreFullException(
                $"Releasing {releaseCount} unit(s) of semaphore \"{Name}\" would exceed its {(IsBounded ? "bound" : "maximum")} {_max} " +
                $"(count now {value}): released too many times.");
        _words[Value] = value + (uint)releaseCount;
        _words.TakeUnits((uint)releaseCount);
        _words.Notify((uint)releaseCount);
        return (int)value;
    }

    /// <summary>Removes the name now; the memory stays mapped.</summary>
    public void Unlink() => _words.Core.Unlink();

    /// <summary>Closes the semaphore; the creator also unlinks the name unless kept.</summary>
    public void Dispose() => _words.Core.Dispose();
}
