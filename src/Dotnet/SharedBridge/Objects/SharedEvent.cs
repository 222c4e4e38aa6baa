// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using System.Diagnostics;
using SharedBridge.Objects;
using static SharedBridge.Objects.WaitWords;

namespace SharedBridge;

/// <summary>
/// A named event shared between processes and languages (docs/format.md section 10, kind 4): Python's
/// <c>sharedbridge.Event</c>. <see cref="Set"/> wakes every waiter, in any process.
/// </summary>
public sealed class SharedEvent : IDisposable
{
    private const string OwnerName = "SharedEvent";
    private readonly WaitWords _words;

    private SharedEvent(WaitWords words) => _words = words;

    /// <summary>Creates an event segment.</summary>
    /// <param name="name">Segment name, or null for a generated name.</param>
    /// <param name="initialState">True to create it set.</param>
    /// <param name="options">Mode and lifetime (Synchronized must stay true, SharedLock and TypeCode null).</param>
    public static SharedEvent Create(string? name = null, bool initialState = false, SegmentOptions? options = null) =>
        new(new WaitWords(WaitWords.Create(OwnerName, name, SegmentKind.Event, options, [0, 0, 0, initialState ? 1u : 0u])));

    /// <summary>Opens an existing event segment.</summary>
    /// <exception cref="TypeMismatchException">The segment is not an event.</exception>
    public static SharedEvent Open(string name, OpenOptions? options = null) =>
        new(OpenChecked(OwnerName, name, options, SegmentKind.Event).Words);

    /// <summary>The segment name.</summary>
    public string Name => _words.Core.Name;

    /// <summary>True when this object created the segment.</summary>
    public bool IsOwner => _words.Core.IsOwner;

    /// <summary>The validated private copy of the header.</summary>
    public SegmentHeader Header => _words.Core.Header;

    /// <summary>True while the event is set.</summary>
    public bool IsSet
    {
        get
        {
            using var scope = _words.Lock();
            return ReadFlag() == 1;
        }
    }

    private uint ReadFlag()
    {
        uint flag = _words[Flag];
        if (flag > 1) throw _words.Corrupt($"flag {flag}");
        return flag;
    }

    /// <summary>Sets the event and wakes every waiter.</summary>
    public void Set()
    {
        using var scope = _words.Lock();
        ReadFlag();
        _words[Flag] = 1;
        _words[Sets] = unchecked(_words[Sets] + 1);     // section 10.3: ends the waits even if Reset follows at once
        _words.Notify(ValueMax);
    }

    /// <summary>Clears the event.</summary>
    public void Reset()
    {
        using var scope = _words.Lock();
        ReadFlag();
        _words[Flag] = 0;
    }

    /// <summary>Waits until the event is set.</summary>
    public void Wait() => Wait(Timeout.InfiniteTimeSpan, default);

    /// <summary>Waits until the event is set or <paramref name="timeout"/> passes; returns whether it is set.</summary>
    public bool Wait(TimeSpan timeout) => Wait(timeout, default);

    /// <summary>Waits until the event is set, <paramref name="timeout"/> passes or <paramref name="cancellationToken"/> is
    /// cancelled (OperationCanceledException, within 50 ms). A Set during the wait ends it even if Reset followed at
    /// once (then false), as Python's multiprocessing.Event does (docs/format.md section 10.3).</summary>
    public bool Wait(TimeSpan timeout, CancellationToken cancellationToken)
    {
        CheckTimeout(timeout);
        long start = Stopwatch.GetTimestamp();
        using var scope = _words.Lock();
        if (ReadFlag() == 1) return true;
        uint sets = _words[Sets];
        if (Left(timeout, start) == TimeSpan.Zero) return false;
        _words.Join();      // once for the whole wait (section 10.3)
        try
        {
            while (true)
            {
                var left = Left(timeout, start);
                if (left == TimeSpan.Zero) return false;
                _words.WaitOnce(SliceOf(left), cancellationToken);
                if (ReadFlag() == 1 || _words[Sets] != sets) return ReadFlag() == 1;
            }
        }
        finally
        {
            _words.LeaveIfHeld();
        }
    }

    /// <summary>Waits as <see cref="Wait(TimeSpan, CancellationToken)"/> without occupying a thread: a set event completes
    /// the task at once; otherwise the process's one waiter thread completes it on a Set (true), the timeout (false) or
    /// the cancellation (canceled), and the code after an await runs on the thread pool (docs/wakeups-design.md section 6).
    /// On kernels before Linux 5.16 (no futex_waitv) each pending wait takes a dedicated thread.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative timeout other than Timeout.InfiniteTimeSpan.</exception>
    /// <exception cref="ObjectDisposedException">The event is disposed.</exception>
    public Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        uint? sets = null;      // the Set count when the wait began (section 10.3 event wait)
        return _words.WaitAsync(timeout, cancellationToken, periodic: false, (bool expired, out bool set) =>
        {
            set = ReadFlag() == 1;
            if (set) return true;
            uint now = _words[Sets];
            sets ??= now;
            return now != sets || expired;
        }, abandon: null, () => Wait(timeout, cancellationToken));
    }

    /// <summary>Removes the name now; the memory stays mapped.</summary>
    public void Unlink() => _words.Core.Unlink();

    /// <summary>Closes the event; the creator also unlinks the name unless kept.</summary>
    public void Dispose() => _words.Core.Dispose();
}
