// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using SharedBridge.Format;
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

    /// <summary>The other processes that still map it (from /proc/*/maps, where readable), sorted: their
    /// memory stays valid, the name is gone for everyone else.</summary>
    public IReadOnlyList<int> MappedBy { get; internal set; } = [];

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {Reason}{(Removed ? "" : " (not removed)")}";
}

/// <summary>
/// Removes the segments left behind by crashed processes (docs/format.md section 8): a
/// <see cref="SegmentLifetime.Creator"/> segment whose creator (pid and start time) is gone, a
/// <see cref="SegmentLifetime.LastCloser"/> segment that no process holds open (the reaper gets the
/// exclusive flock without waiting; a queue's reusable out-of-line data segment only when its queue is gone or no record of
/// the queue references it), and a segment whose creator died while initializing it (state 0,
/// older than the grace period, its recorded creator gone, or nothing recorded and nobody has it open).
/// Persistent segments, version-1 segments (their header does not say whether they were kept), segments
/// a live creator is initializing, corrupt or foreign objects and other users' objects are never touched
/// and not reported.
/// </summary>
public static class SegmentReaper
{
    /// <summary>A segment still initializing is garbage only when its object is at least this old (section 8):
    /// the default open timeout, after which attachers give up on it.</summary>
    internal static readonly TimeSpan InitializingGrace = TimeSpan.FromSeconds(5);

    /// <summary>Removes the garbage segments in /dev/shm and returns what it removed and why. Call it at
    /// start-up to clean up after a crashed predecessor.</summary>
    /// <param name="dryRun">True removes nothing (every result has <see cref="ReapedSegment.Removed"/> false).</param>
    /// <param name="prefix">Only names starting with this string; null for all.</param>
    /// <param name="directory">The directory backend's directory to clean up instead of /dev/shm (null: SHAREDBRIDGE_DIR,
    /// else /dev/shm; docs/format.md section 1.3).</param>
    public static IReadOnlyList<ReapedSegment> Reap(bool dryRun = false, string? prefix = null, string? directory = null)
    {
        string? dir = SegmentName.ResolveDirectory(directory);
        var reaped = new List<(ReapedSegment Result, ulong Inode)>();
        foreach (string entry in MappedSegment.ShmNames(dir))
        {
            if (prefix is not null && !entry.StartsWith(prefix, StringComparison.Ordinal)) continue;
            string name = dir is null ? entry : dir + "/" + entry;
            var segment = MappedSegment.TryOpenForReap(name);
            if (segment is null)
            {
                if (JudgeInitializing(name, dryRun) is { } initializing) reaped.Add(initializing);
                continue;
            }
            try
            {
                if (Judge(segment, dryRun) is { } result) reaped.Add((result, segment.Inode));
            }
            finally
            {
                segment.Release();
            }
        }
        // One pass over /proc, after the reaper's own mappings are gone.
        var mappers = ProcessInfo.ProcessesMappingAny(reaped.Select(r => r.Inode), dir);
        foreach (var (result, inode) in reaped)
            if (mappers.TryGetValue(inode, out var pids)) result.MappedBy = pids.Where(p => p != ProcessInfo.Pid).ToArray();
        return reaped.Select(r => r.Result).ToList();
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
                reason = $"creator pid {header.RecordedCreatorPid} (started {header.CreatorStartTime}) is gone";
                break;
            case SegmentLifetime.LastCloser when IsMessageSegment(segment, out string owner):
                // A reusable out-of-line data segment (section 11.5). Its exclusive lock is taken with the queue's mutex held
                // (FindOutOfLineUse), never held while waiting for that mutex: a consumer joins a data segment with the
                // mutex held. One a record of its queue still references is kept for that record's consumer, who will be
                // the last to leave and remove it; so is one whose queue's ring cannot be read (its mutex held too long, a
                // corrupt ring): a later run decides.
                switch (SharedQueue.FindOutOfLineUse(owner, SegmentName.BaseName(segment.Name), InitializingGrace, segment.TryLockExclusive))
                {
                    case SharedQueue.OutOfLineUse.QueueGone:
                        reason = $"out-of-line message of queue \"{owner}\", which no longer exists";
                        break;
                    case SharedQueue.OutOfLineUse.Unreferenced:
                        reason = $"out-of-line message of queue \"{owner}\" that no record references, and nobody holds";
                        break;
                    default:
                        return null;
                }
                break;
            case SegmentLifetime.LastCloser:
                // Holding the exclusive lock keeps attachers out until the name is gone: they re-check
                // the name after taking their shared lock.
                if (!segment.TryLockExclusive()) return null;
                reason = "last-closer: no process holds it open";
                break;
            case SegmentLifetime.Persistent when IsOrphanMessage(segment, out string queue):
                reason = $"out-of-line message of queue \"{queue}\", which no longer exists";
                break;
            default:
                return null;
        }
        string shown = SegmentName.BaseName(segment.Name);
        if (dryRun) return new ReapedSegment(shown, reason, false);
        return segment.RetireAndUnlinkForReaper() ? new ReapedSegment(shown, reason, true) : null;
    }

    /// <summary>An out-of-line message segment (docs/format.md section 11.5: <c>&lt;queue&gt;.m&lt;16 hex&gt;</c>, kind 1,
    /// typecode 'B', no lock) whose queue's name is gone: nobody will ever take it.</summary>
    private static bool IsOrphanMessage(MappedSegment segment, out string queue)
    {
        if (!IsMessageSegment(segment, out queue)) return false;
        try { return !MappedSegment.Exists(queue); }
        catch (Exception e) when (e is ISharedBridgeException) { return false; }     // not a valid name: not a queue's message
    }

    /// <summary>An array named like an out-of-line message segment (<c>&lt;queue&gt;.m&lt;16 hex&gt;</c>, kind 1, typecode 'B',
    /// no lock); <paramref name="queue"/> is its queue's name.</summary>
    private static bool IsMessageSegment(MappedSegment segment, out string queue)
    {
        var h = segment.Header;
        return QueueLayout.IsOutOfLineName(segment.Name, out queue) && h.Kind == SegmentKind.Array && h.TypeCode == 'B'
               && h.LockKind == LockKind.None;
    }

    /// <summary>A segment still initializing (state 0) that can never become ready: its creator died between
    /// shm_open and publishing it (section 8). Only the bytes a creator writes first are read (magic, state,
    /// creator_pid, creator_start_time); nothing is written to it (an empty object has no state word).</summary>
    private static (ReapedSegment, ulong)? JudgeInitializing(string name, bool dryRun)
    {
        try
        {
            SegmentName.ValidateKey(name);
        }
        catch (Exception e) when (e is ISharedBridgeException) { return null; }
        string shown = SegmentName.BaseName(name);
        if (Interop.TryLStat(SegmentName.PathOf(name), out _) is not { } linkStat || !linkStat.IsRegularFile || linkStat.Uid != Interop.GetEUid())
            return null;
        using var fd = SegmentBackend.Open(name, Interop.O_RDONLY | Interop.O_NONBLOCK, 0, out _);
        if (fd is null || Interop.TryFStat(fd, out _) is not { } st || !st.IsRegularFile || st.Uid != Interop.GetEUid())
            return null;
        try
        {
            if (InitializingCreator(fd, st.Size) is not { } creator) return null;
            if (DateTime.UtcNow - File.GetLastWriteTimeUtc(fd) < InitializingGrace) return null;
            string reason;
            if (creator.Pid != 0)
            {
                if (CreatorIdentity.IsRunning(creator.Pid > int.MaxValue ? 0 : (int)creator.Pid, creator.StartTime)) return null;
                reason = $"initializing: creator pid {creator.Pid} (started {creator.StartTime}) is gone";
            }
            else
            {
                if (OpenedByAny(name, st, (int)fd.DangerousGetHandle())) return null;
                reason = "initializing: no creator recorded and no process has it open";
            }
            if (dryRun) return (new ReapedSegment(shown, reason, false), st.Inode);
            // Still unpublished and recording the same creator, and the name is still this object.
            if (Interop.TryFStat(fd, out _) is not { } now || InitializingCreator(fd, now.Size) != creator) return null;
            if (Interop.TryLStat(SegmentName.PathOf(name), out _) is not { } named || named.Device != st.Device || named.Inode != st.Inode)
                return null;
            return SegmentBackend.Unlink(name) == 0 ? (new ReapedSegment(shown, reason, true), st.Inode) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>(creator_pid, creator_start_time) of a state-0 object: (0, 0) when nothing is recorded (size 0,
    /// or a sized object whose magic and state are still zero); null when it is not an initializing segment.</summary>
    private static (uint Pid, ulong StartTime)? InitializingCreator(SafeFileHandle fd, long size)
    {
        if (size == 0) return (0, 0);
        if (size < HeaderLayout.FixedSize) return null;
        var head = new byte[HeaderLayout.FixedSize];
        if (Interop.PRead(fd, head, 0, out _) != head.Length) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(HeaderLayout.StateOffset)) != HeaderLayout.StateInitializing) return null;
        var magic = head.AsSpan(HeaderLayout.MagicOffset, HeaderLayout.MagicBytes.Length);
        if (magic.IndexOfAnyExcept((byte)0) < 0) return (0, 0);
        if (!magic.SequenceEqual(HeaderLayout.MagicBytes)) return null;
        return (BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(HeaderLayout.CreatorPidOffset)),
                BinaryPrimitives.ReadUInt64LittleEndian(head.AsSpan(HeaderLayout.CreatorStartTimeOffset)));
    }

    /// <summary>True when some process (where /proc lets us look) has the object open or mapped: /proc/PID/maps,
    /// and /proc/PID/fd links to /dev/shm/NAME whose object has the same device and inode. The reaper's own
    /// descriptor does not count.</summary>
    private static bool OpenedByAny(string name, Interop.FileStat st, int ownFd)
    {
        if (ProcessInfo.ProcessesMappingAny([st.Inode], SegmentName.DirectoryOf(name)).Count > 0) return true;
        string path = SegmentName.PathOf(name);
        string own = ownFd.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            IEnumerable<string> fds;
            try { fds = Directory.EnumerateFileSystemEntries(Path.Combine(dir, "fd")).ToList(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            foreach (string link in fds)
            {
                if (pid == ProcessInfo.Pid && Path.GetFileName(link) == own) continue;
                try
                {
                    if (new FileInfo(link).LinkTarget != path) continue;
                    using var other = File.OpenHandle(link, FileMode.Open, FileAccess.Read);
                    if (Interop.TryFStat(other, out _) is { } o && o.Device == st.Device && o.Inode == st.Inode) return true;
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            }
        }
        return false;
    }
}
