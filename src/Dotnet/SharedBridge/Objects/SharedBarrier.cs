// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using System.Diagnostics;
using SharedBridge.Objects;
using static SharedBridge.Objects.WaitWords;

namespace SharedBridge;

/// <summary>
/// A named barrier shared between processes and languages (docs/format.md section 10, kind 7): Python's
/// <c>sharedbridge.Barrier</c>, with the algorithm of section 10.3 (CPython's <c>threading.Barrier</c>, every
/// timeout honoured). A timeout, an <see cref="Abort"/>, a <see cref="Reset"/> while parties wait, a failing
/// <see cref="PostPhaseAction"/>, or a party that dies inside a wait (noticed within one 50 ms wait slice: parties
/// inside are recorded) breaks it: waiters get <see cref="BrokenBarrierException"/>; Reset() then works.
/// </summary>
public sealed class SharedBarrier : IDisposable
{
    private const string OwnerName = "SharedBarrier";
    private const uint Filling = 0, Draining = 1, Resetting = 2, Broken = 3;
    private readonly WaitWords _words;

    /// <param name="words">The segment's words.</param>
    /// <param name="snapshot">The sixteen words as read once at open (or written at creation): parties is kept
    /// from it, never read from shared memory again (section 10.2).</param>
    private SharedBarrier(WaitWords words, uint[] snapshot)
    {
        _words = words;
        ParticipantCount = (int)snapshot[Parties];
    }

    /// <summary>Creates a barrier segment for <paramref name="participantCount"/> parties (in any processes).</summary>
    public static SharedBarrier Create(string? name, int participantCount, SegmentOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(participantCount, 1);
        uint[] words = [0, 0, 0, (uint)participantCount, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        return new(new WaitWords(WaitWords.Create(OwnerName, name, SegmentKind.Barrier, options, words,
            slots: Math.Min(participantCount, MaxSlots))), words);
    }

    private const int MaxSlots = Format.HeaderLayout.MaxSlots;   // section 10.1: writers record every party up to 1024

    /// <summary>Opens an existing barrier segment.</summary>
    /// <exception cref="TypeMismatchException">The segment is not a barrier.</exception>
    public static SharedBarrier Open(string name, OpenOptions? options = null)
    {
        var (words, snapshot) = OpenChecked(OwnerName, name, options, SegmentKind.Barrier);
        return new(words, snapshot);
    }

    /// <summary>The segment name.</summary>
    public string Name => _words.Core.Name;

    /// <summary>True when this object created the segment.</summary>
    public bool IsOwner => _words.Core.IsOwner;

    /// <summary>The validated private copy of the header.</summary>
    public SegmentHeader Header => _words.Core.Header;

    /// <summary>Parties needed to pass (Python's <c>parties</c>).</summary>
    public int ParticipantCount { get; }

    /// <summary>Run by the last party to arrive in this process, before the others are released (Python's
    /// <c>action</c>; each process sets its own). If it throws, the barrier breaks.</summary>
    public Action? PostPhaseAction { get; set; }

    /// <summary>Parties waiting now (Python's <c>n_waiting</c>).</summary>
    public int ParticipantsWaiting
    {
        get
        {
            using var scope = _words.Lock();
            Reap();
            return ReadState() == Filling ? (int)_words[Count] : 0;
        }
    }

    /// <summary>True when the barrier is broken (Python's <c>broken</c>).</summary>
    public bool IsBroken
    {
        get
        {
            using var scope = _words.Lock();
            Reap();
            return ReadState() == Broken;
        }
    }

    private uint ReadState()
    {
        uint state = _words[State], count = _words[Count];
        if (state > Broken || count > (uint)ParticipantCount) throw _words.Corrupt($"state {state}, count {count}");
        return state;
    }

    /// <summary>Section 10.3 barrier step 1: parties that died inside a wait leave the count; a round they were
    /// part of is broken.</summary>
    private void Reap()
    {
        ulong freed = _words.FreeGone();
        if (freed == 0) return;
        uint state = ReadState(), count = _words[Count];
        _words[Count] = count - (uint)Math.Min(freed, count);
        if (state == Filling) _words[State] = Broken;
        else if (_words[Count] == 0 && state is Draining or Resetting) _words[State] = Filling;
        _words.Notify(ValueMax);
    }

    /// <summary>Waits for every party; returns this party's arrival index (0 to ParticipantCount - 1).</summary>
    public int SignalAndWait() => SignalAndWait(Timeout.InfiniteTimeSpan, default);

    /// <summary>Waits for every party within <paramref name="timeout"/>; a timeout breaks the barrier.</summary>
    /// <exception cref="BrokenBarrierException">The barrier is or became broken, or was reset.</exception>
    public int SignalAndWait(TimeSpan timeout) => SignalAndWait(timeout, default);

    /// <summary>As <see cref="SignalAndWait(TimeSpan)"/>, ended by <paramref name="cancellationToken"/> too
    /// (OperationCanceledException; this party leaves, as after a Ctrl-C in Python).</summary>
    public int SignalAndWait(TimeSpan timeout, CancellationToken cancellationToken)
    {
        CheckTimeout(timeout);
        long start = Stopwatch.GetTimestamp();
        using var scope = _words.Lock();
        bool joined = false;    // joins before its first wait, stays joined across slices and reaps (section 10.3)
        try
        {
            Reap();
            while (ReadState() is Draining or Resetting)
            {
                if (_words[Count] == 0)     // nobody left to finish the drain (section 10.3 step 2)
                {
                    _words[State] = Filling;
                    _words.Notify(ValueMax);
                    break;
                }
                WaitSliceOrBreak(timeout, start, ref joined, cancellationToken);
            }
            if (ReadState() == Broken) throw BrokenError();
            uint index = _words[Count];
            _words[Count] = index + 1;
            _words.Record();
            try
            {
                if (index + 1 == (uint)ParticipantCount)
                    ReleaseAll();
                else
                    WaitRound(timeout, start, ref joined, cancellationToken);
                return (int)index;
            }
            finally
            {
                LeaveRound();
            }
        }
        finally
        {
            if (joined) _words.LeaveIfHeld();
        }
    }

    /// <summary>Section 10.3 barrier: a party that counted itself in leaves (its holder entry, the count); the last one
    /// out of a drain or a reset opens the next round.</summary>
    private void LeaveRound()
    {
        _words.TakeUnits(1, ownOnly: true);
        uint count = _words[Count];
        _words[Count] = count == 0 ? 0 : count - 1;
        if (_words[Count] == 0 && ReadState() is Draining or Resetting)
        {
            _words[State] = Filling;
            _words.Notify(ValueMax);
        }
    }

    /// <summary>As <see cref="SignalAndWait(TimeSpan, CancellationToken)"/> without occupying a thread: the steps run with
    /// the lock held, first on the calling thread (the last party to arrive completes at once, running
    /// <see cref="PostPhaseAction"/> there), then on the process's one waiter thread (which runs the action if this party
    /// arrives last after waiting for a drain); the code after an await runs on the thread pool
    /// (docs/wakeups-design.md section 6). On kernels before Linux 5.16 (no futex_waitv) each pending wait takes a
    /// dedicated thread.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative timeout other than Timeout.InfiniteTimeSpan.</exception>
    /// <exception cref="ObjectDisposedException">The barrier is disposed.</exception>
    public Task<int> SignalAndWaitAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var party = new AsyncParty(this);
        return _words.WaitAsync(timeout, cancellationToken, periodic: true, party.Step, party.Leave,
            () => SignalAndWait(timeout, cancellationToken));
    }

    /// <summary>One party of <see cref="SignalAndWaitAsync"/>: <see cref="SignalAndWait(TimeSpan, CancellationToken)"/> cut
    /// into steps that each run with the lock held and return whether the party is done.</summary>
    private sealed class AsyncParty(SharedBarrier barrier)
    {
        private uint _index;
        private bool _entered, _left;

        internal bool Step(bool expired, out int index)
        {
            var b = barrier;
            index = 0;
            b.Reap();
            if (!_entered)
            {
                if (b.ReadState() is Draining or Resetting)
                {
                    if (b._words[Count] != 0) return WaitOrBreak(expired);
                    b._words[State] = Filling;      // nobody left to finish the drain (section 10.3 step 2)
                    b._words.Notify(ValueMax);
                }
                if (b.ReadState() == Broken) throw b.BrokenError();
                _index = b._words[Count];
                b._words[Count] = _index + 1;
                b._words.Record();
                _entered = true;
                if (_index + 1 != (uint)b.ParticipantCount) return false;
                b.ReleaseAll();
            }
            else if (b.ReadState() == Filling)
            {
                return WaitOrBreak(expired);
            }
            bool broken = b.ReadState() is Resetting or Broken;
            Leave();
            if (broken) throw b.BrokenError();
            index = (int)_index;
            return true;
        }

        /// <summary>Waits on, unless the deadline has passed: then the barrier breaks (every timeout is honoured).</summary>
        private bool WaitOrBreak(bool expired)
        {
            if (!expired) return false;
            barrier.Break();
            throw barrier.BrokenError();
        }

        /// <summary>Leaves the round once, if this party counted itself in (also on cancellation and errors).</summary>
        internal void Leave()
        {
            if (!_entered || _left) return;
            _left = true;
            barrier.LeaveRound();
        }
    }

    private void ReleaseAll()
    {
        try
        {
            PostPhaseAction?.Invoke();
            _words[State] = Draining;
            _words.Notify(ValueMax);
        }
        catch
        {
            Break();
            throw;
        }
    }

    private void WaitRound(TimeSpan timeout, long start, ref bool joined, CancellationToken cancellationToken)
    {
        while (ReadState() == Filling)
            WaitSliceOrBreak(timeout, start, ref joined, cancellationToken);
        if (ReadState() is Resetting or Broken) throw BrokenError();
    }

    /// <summary>One wait of section 10.3 barrier steps 2 and 5: a slice (or the time left), then reap; when the
    /// call's deadline has passed, the barrier breaks instead (every timeout is honoured).</summary>
    private void WaitSliceOrBreak(TimeSpan timeout, long start, ref bool joined, CancellationToken cancellationToken)
    {
        var left = Left(timeout, start);
        if (left == TimeSpan.Zero)
        {
            Break();
            throw BrokenError();
        }
        if (!joined)
        {
            _words.Join();
            joined = true;
        }
        _words.WaitOnce(SliceOf(left), cancellationToken);
        Reap();
    }

    private void Break()
    {
        _words[State] = Broken;
        _words.Notify(ValueMax);
    }

    private BrokenBarrierException BrokenError() => new(
        $"The barrier \"{Name}\" is broken (a party timed out or died inside its wait, it was aborted or reset, or an action failed): " +
        "Reset() it once no party is inside, or create a new one.");

    /// <summary>Returns the barrier to its empty state; parties waiting now get BrokenBarrierException. Parties
    /// that died inside a wait no longer count.</summary>
    public void Reset()
    {
        using var scope = _words.Lock();
        Reap();
        if (_words[Count] > 0)
        {
            if (ReadState() is Filling or Broken) _words[State] = Resetting;
        }
        else
        {
            _words[State] = Filling;
        }
        _words.Notify(ValueMax);
    }

    /// <summary>Breaks the barrier: every waiter, now and later, gets BrokenBarrierException until Reset.</summary>
    public void Abort()
    {
        using var scope = _words.Lock();
        Break();
    }

    /// <summary>Removes the name now; the memory stays mapped.</summary>
    public void Unlink() => _words.Core.Unlink();

    /// <summary>Closes the barrier; the creator also unlinks the name unless kept.</summary>
    public void Dispose() => _words.Core.Dispose();
}
