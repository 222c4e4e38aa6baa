// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Platform;

namespace SharedBridge;

/// <summary>One segment <see cref="SegmentReaper.Reap"/> removed (or, in a dry run, would remove).</summary>
public sealed class ReapedSegment
{
    internal ReapedSegment(string name, string reason, bool removed)
    {
        Name = name;
        Reason = reason;
        Removed = removed;
    }

    /// <summary>The segment name (no leading slash).</summary>
    public string Name { get; }

    /// <summary>Why it is garbage, for people: "creator pid 1234 (started 5678) is gone",
    /// "last-closer: no process holds it open".</summary>
    public string Reason { get; }

    /// <summary>True when it was removed; false in a dry run.</summary>
    public bool Removed { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {Reason}{(Removed ? "" : " (not removed)")}";
}

/// <summary>
/// Removes the segments left behind by crashed processes (docs/format.md section 8): a
/// <see cref="SegmentLifetime.Creator"/> segment whose creator (pid and start time) is gone, and a
/// <see cref="SegmentLifetime.LastCloser"/> segment that no process holds open (the reaper gets the
/// exclusive flock without waiting). Persistent segments, version-1 segments (their header does not
/// say whether they were kept), segments still initializing, corrupt or foreign objects and other
/// users' objects are never touched and not reported.
/// </summary>
public static class SegmentReaper
{
    /// <summary>Removes the garbage segments in /dev/shm and returns what it removed and why. Call it at
    /// start-up to clean up after a crashed predecessor.</summary>
    /// <param name="dryRun">True removes nothing (every result has <see cref="ReapedSegment.Removed"/> false).</param>
    /// <param name="prefix">Only names starting with this string; null for all.</param>
    public static IReadOnlyList<ReapedSegment> Reap(bool dryRun = false, string? prefix = null)
    {
        var reaped = new List<ReapedSegment>();
        foreach (string name in MappedSegment.ShmNames())
        {
            if (prefix is not null && !name.StartsWith(prefix, StringComparison.Ordinal)) continue;
            var segment = MappedSegment.TryOpenForReap(name);
            if (segment is null) continue;
            try
            {
                if (Judge(segment, dryRun) is { } result) reaped.Add(result);
            }
            finally
            {
                segment.Release();
            }
        }
        return reaped;
    }

    private static ReapedSegment? Judge(MappedSegment segment, bool dryRun)
    {
        var header = segment.Header;
        if (header.Version < 2) return null;
        string reason;
        switch (header.Lifetime)
        {
            case SegmentLifetime.Creator:
                if (header.CreatorIsRunning()) return null;
                reason = $"creator pid {header.CreatorPid} (started {header.CreatorStartTime}) is gone";
                break;
            case SegmentLifetime.LastCloser:
                // Holding the exclusive lock keeps attachers out until the name is gone: they re-check
                // the name after taking their shared lock.
                if (!segment.TryLockExclusive()) return null;
                reason = "last-closer: no process holds it open";
                break;
            default:
                return null;
        }
        if (dryRun) return new ReapedSegment(segment.Name, reason, false);
        return segment.RetireAndUnlinkForReaper() ? new ReapedSegment(segment.Name, reason, true) : null;
    }
}
