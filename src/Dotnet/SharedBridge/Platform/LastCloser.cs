using Microsoft.Win32.SafeHandles;

namespace SharedBridge.Platform;

/// <summary>
/// The last-closer protocol of docs/format.md section 8 on one open descriptor of a segment. Every
/// process that creates or opens a last-closer segment joins it: a shared <c>flock</c>, held until it
/// releases the segment (dispose, process exit through <see cref="ExitCleanup"/>). Leaving tries to
/// convert it to an exclusive lock without waiting; the one that gets it is the last holder: it
/// retires the segment and unlinks the name. The reaper's test is the same exclusive lock without
/// waiting. The lock is always released explicitly (<c>LOCK_UN</c>): the kernel drops a flock only
/// when the open file description's last reference goes, and a mapping is one.
/// </summary>
internal sealed class LastCloser
{
    /// <summary>The shortest wait for the shared lock when joining: a closer or reaper holds the
    /// exclusive lock only for an instant, even when the caller asked not to wait for readiness.</summary>
    private static readonly TimeSpan MinJoinWait = TimeSpan.FromMilliseconds(100);

    private readonly SafeFileHandle _fd;
    private readonly string _name;
    private int _joined;     // 1 while this object holds the shared flock
    private int _exclusive;  // 1 while the reaper holds the exclusive flock

    internal LastCloser(SafeFileHandle fd, string name, bool joined)
    {
        _fd = fd;
        _name = name;
        _joined = joined ? 1 : 0;
    }

    /// <summary>True while this object holds the shared flock.</summary>
    internal bool IsJoined => Volatile.Read(ref _joined) != 0;

    /// <summary>The creator's join (section 6.1 step 1), before anything is written: nobody else can
    /// hold the lock yet, so it never waits.</summary>
    internal static void JoinNew(SafeFileHandle fd, string name)
    {
        if (Interop.Flock(fd, Interop.LOCK_SH) != 0) throw OsErrors.Failed($"flock on \"{name}\"", OsErrors.Last);
    }

    /// <summary>An opener's join (section 6.2 step 8): takes the shared flock (polling), then re-checks with
    /// <paramref name="stillAlive"/> that the name still refers to this object and it is not retired, so that
    /// it never joins a segment whose last closer removed it meanwhile. False (unlocked) when it was.</summary>
    internal bool Join(TimeSpan timeout, Func<bool> stillAlive)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        TimeSpan limit = timeout == Timeout.InfiniteTimeSpan || timeout > MinJoinWait ? timeout : MinJoinWait;
        while (Interop.Flock(_fd, Interop.LOCK_SH | Interop.LOCK_NB) != 0)
        {
            int errno = OsErrors.Last;
            if (errno != Interop.EWOULDBLOCK) throw OsErrors.Failed($"flock on \"{_name}\"", errno);
            if (limit != Timeout.InfiniteTimeSpan && System.Diagnostics.Stopwatch.GetElapsedTime(start) >= limit)
                throw new SegmentNotReadyException(
                    $"Segment \"{_name}\" stayed locked exclusively for {limit.TotalSeconds:0.###} s: a process is removing it, or holds its flock for another reason. Retry later.");
            Thread.Sleep(1);
        }
        if (!stillAlive())
        {
            Unlock();
            return false;
        }
        _joined = 1;
        return true;
    }

    /// <summary>Leaves: whoever converts its shared flock to an exclusive one without waiting is the last
    /// holder and runs <paramref name="whenLast"/> (retire and unlink); the lock is then released. False,
    /// doing nothing, when this object had not joined (or has left already).</summary>
    internal bool Leave(Action whenLast)
    {
        if (Interlocked.Exchange(ref _joined, 0) == 0) return false;
        try
        {
            if (Interop.Flock(_fd, Interop.LOCK_EX | Interop.LOCK_NB) == 0) whenLast();
        }
        finally
        {
            Unlock();
        }
        return true;
    }

    /// <summary>A reusing producer's test (docs/format.md section 11.5, Reuse, condition 2): converts its shared flock to an
    /// exclusive one without waiting; true when it got it, so that no other process holds the segment. On failure the
    /// kernel has dropped the shared lock (Linux): it is taken again (polling, as a join); false either way. A segment
    /// whose shared lock cannot be taken again is no longer joined (<see cref="IsJoined"/> false).</summary>
    internal bool TryHoldAlone()
    {
        if (!IsJoined) return false;
        if (Interop.Flock(_fd, Interop.LOCK_EX | Interop.LOCK_NB) == 0) return true;
        if (!Reshare()) Volatile.Write(ref _joined, 0);
        return false;
    }

    /// <summary>Converts the exclusive flock of <see cref="TryHoldAlone"/> back to a shared one; false (no longer joined)
    /// when it could not be taken.</summary>
    internal bool ShareAgain()
    {
        if (Reshare()) return true;
        Volatile.Write(ref _joined, 0);
        return false;
    }

    /// <summary>Takes the shared flock again, polling for <see cref="MinJoinWait"/> at most: whoever holds the exclusive one
    /// (a last closer leaving, a reaper) holds it for an instant.</summary>
    private bool Reshare()
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        while (Interop.Flock(_fd, Interop.LOCK_SH | Interop.LOCK_NB) != 0)
        {
            if (OsErrors.Last != Interop.EWOULDBLOCK || System.Diagnostics.Stopwatch.GetElapsedTime(start) >= MinJoinWait)
            {
                Unlock();
                return false;
            }
            Thread.Sleep(1);
        }
        return true;
    }

    /// <summary>Leaves without the protocol: an explicit unlink removes the name itself.</summary>
    internal void Quit()
    {
        if (Interlocked.Exchange(ref _joined, 0) != 0) Unlock();
    }

    /// <summary>The reaper's test: true when it got the exclusive flock without waiting, so that no other
    /// process holds the segment open; held until <see cref="ReleaseExclusive"/>. Holding it keeps
    /// openers out until the name is gone: they re-check the name after taking their shared lock.</summary>
    internal bool TryLockExclusive()
    {
        if (Interop.Flock(_fd, Interop.LOCK_EX | Interop.LOCK_NB) != 0) return false;
        _exclusive = 1;
        return true;
    }

    /// <summary>Drops the reaper's exclusive flock, if held.</summary>
    internal void ReleaseExclusive()
    {
        if (Interlocked.Exchange(ref _exclusive, 0) != 0) Unlock();
    }

    private void Unlock() => Interop.Flock(_fd, Interop.LOCK_UN);
}
