// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Format;
using SharedBridge.Platform;

namespace SharedBridge;

/// <summary>
/// What is in /dev/shm (or in a directory of the directory backend, docs/format.md section 1.3): the data of <c>sharedbridge ls</c> and <c>sharedbridge inspect</c> (docs/cli.md).
/// Built on the ordinary open path (the header is validated there, never parsed a second time); an object
/// that fails it is described with <see cref="SegmentInfo.Status"/> and <see cref="SegmentInfo.Reason"/>, not
/// thrown. Nothing here takes a lock: its state is read from the mutex words.
/// </summary>
public static class SegmentDirectory
{
    private const string ShmDir = SegmentName.ShmDirectory;

    /// <summary>Every SharedBridge segment in /dev/shm, or in the directory backend's <paramref name="directory"/> (null:
    /// SHAREDBRIDGE_DIR, else /dev/shm) (with <paramref name="includeForeign"/>, every object there), sorted by name
    /// (ordinal), optionally only names starting with <paramref name="prefix"/>.</summary>
    public static IReadOnlyList<SegmentInfo> List(bool includeForeign = false, string? prefix = null, string? directory = null)
    {
        string? dir = SegmentName.ResolveDirectory(directory);
        var names = SegmentBackend.List(dir);
        var found = new List<(SegmentInfo, ulong)>();
        foreach (string name in names)
        {
            if (prefix is not null && !name.StartsWith(prefix, StringComparison.Ordinal)) continue;
            if (Survey(name, 0, dir) is not { } entry) continue; // gone meanwhile
            if (includeForeign || entry.Info.Status is SegmentStatus.Ok or SegmentStatus.Initializing
                    or SegmentStatus.Corrupt or SegmentStatus.Unsupported)
                found.Add(entry);
        }
        return WithMappers(found, dir);
    }

    /// <summary>The description of segment <paramref name="name"/> with its first <paramref name="data"/> elements
    /// (a snapshot copied without the lock). A corrupt or foreign object is described, not thrown.</summary>
    /// <exception cref="SegmentNotFoundException">Nothing has that name.</exception>
    /// <param name="name">The segment's name.</param>
    /// <param name="data">How many elements to read.</param>
    /// <param name="directory">The directory backend's directory (null: SHAREDBRIDGE_DIR, else /dev/shm).</param>
    public static SegmentInfo Inspect(string name, int data = 0, string? directory = null)
    {
        SegmentName.Validate(name);
        ArgumentOutOfRangeException.ThrowIfNegative(data);
        string? dir = SegmentName.ResolveDirectory(directory);
        var entry = Survey(name, data, dir) ?? throw new SegmentNotFoundException(name,
            $"No segment named \"{name}\" exists in {dir ?? ShmDir}: check the name (`sharedbridge ls` lists them).");
        return WithMappers([entry], dir)[0];
    }

    /// <summary>Fills MappedBy with one pass over /proc, after this survey's own mappings are gone.</summary>
    private static List<SegmentInfo> WithMappers(List<(SegmentInfo Info, ulong Inode)> found, string? dir)
    {
        var mappers = ProcessInfo.ProcessesMappingAny(found.Where(f => f.Inode != 0).Select(f => f.Inode), dir);
        foreach (var (info, inode) in found)
            if (inode != 0 && mappers.TryGetValue(inode, out var pids)) info.MappedBy = pids;
        return found.Select(f => f.Info).ToList();
    }

    private static (SegmentInfo Info, ulong Inode)? Survey(string name, int data, string? dir)
    {
        if (Interop.TryLStat(Path.Combine(dir ?? ShmDir, name), out int errno) is not { } st)
            return errno == Interop.ENOENT ? null
                : (new SegmentInfo { Name = name, Status = SegmentStatus.Inaccessible, Reason = $"lstat failed: {OsErrors.Describe(errno)}" }, 0);
        long? size = st.IsRegularFile ? st.Size : null;
        ulong inode = st.IsRegularFile ? st.Inode : 0;
        MappedSegment segment;
        try
        {
            SegmentName.Validate(name);
            // Look only: never joins a lifetime.
            segment = MappedSegment.OpenOnce(dir is null ? name : dir + "/" + name, TimeSpan.Zero, allowOtherOwner: false);
        }
        catch (SegmentNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is ISharedBridgeException or IOException or UnauthorizedAccessException)
        {
            var status = StatusOf(e);
            return (new SegmentInfo
            {
                Name = name, Status = status, Reason = e.Message, Bytes = size,
                State = status == SegmentStatus.Initializing ? (int)HeaderLayout.StateInitializing : null,
            }, inode);
        }
        try { return (Describe(segment, size, data), inode); }
        finally { segment.Release(); }
    }

    private static SegmentStatus StatusOf(Exception e) => e switch
    {
        SegmentNotReadyException => SegmentStatus.Initializing,
        NotASharedBridgeSegmentException or InvalidSegmentNameException => SegmentStatus.Foreign,
        UnsupportedFormatVersionException => SegmentStatus.Unsupported,
        CorruptSegmentException => SegmentStatus.Corrupt,
        SegmentAccessDeniedException or UnauthorizedAccessException => SegmentStatus.Inaccessible,
        _ => SegmentStatus.Corrupt,
    };

    private static unsafe SegmentInfo Describe(MappedSegment segment, long? size, int data)
    {
        var h = segment.Header;
        var (lockState, problem, holder, recoveries) = LockOf(segment);
        return new SegmentInfo
        {
            Name = SegmentName.BaseName(segment.Name), Status = SegmentStatus.Ok, Kind = h.Kind, TypeCode = h.TypeCode, TypeName = h.TypeName,
            Length = h.Length, Shape = h.Shape, Bytes = size, Lock = h.LockKind, LockName = h.LockKind == LockKind.External ? h.LockName : null,
            LockState = lockState, LockProblem = problem, LockHolderPid = holder, Recoveries = recoveries,
            State = segment.LiveState, Lifetime = h.Lifetime, CreatorPid = h.RecordedCreatorPid, LastRecoveredPid = h.RecordedLastRecoveredByPid, CreatorStartTime = h.CreatorStartTime,
            CreatorAlive = h.CreatorIsRunning(), CreatedUnixNanoseconds = h.CreatedUnixNanoseconds,
            Age = TimeSpan.FromTicks(Math.Max(0, ProcessInfo.UnixNanosecondsNow() - h.CreatedUnixNanoseconds) / 100),
            Header = h, Elements = h.Kind == SegmentKind.Queue ? [] : ReadElements(segment, data), Sync = ReadSync(segment),
            Queue = ReadQueue(segment),
        };
    }

    private static readonly string[] BarrierStates = ["filling", "draining", "resetting", "broken"];

    /// <summary>The words of a synchronization segment, decoded (format.md section 10.2), or null.</summary>
    private static unsafe SynchronizationWords? ReadSync(MappedSegment segment)
    {
        var h = segment.Header;
        if (h.Kind is not (SegmentKind.Event or SegmentKind.Semaphore or SegmentKind.Condition or SegmentKind.Barrier)) return null;
        uint* words = (uint*)segment.Data;
        uint waiters = Volatile.Read(ref words[1]), w3 = Volatile.Read(ref words[3]), w4 = Volatile.Read(ref words[4]),
             w5 = Volatile.Read(ref words[5]);
        return h.Kind switch
        {
            SegmentKind.Event => new SynchronizationWords { Waiters = waiters, Flag = w3 },
            SegmentKind.Semaphore => new SynchronizationWords { Waiters = waiters, Value = w3, MaxValue = w4, Bounded = w5 },
            SegmentKind.Barrier => new SynchronizationWords
            {
                Waiters = waiters, Parties = w3, Count = w5, BarrierState = w4 < BarrierStates.Length ? BarrierStates[w4] : "corrupt",
            },
            _ => new SynchronizationWords { Waiters = waiters },
        };
    }

    /// <summary>A queue's words (format.md section 11.2), or null for other kinds.</summary>
    private static unsafe QueueStatus? ReadQueue(MappedSegment segment)
    {
        if (segment.Header.Kind != SegmentKind.Queue) return null;
        byte* c = segment.Data;
        uint U32(int offset) => Volatile.Read(ref *(uint*)(c + offset));
        ulong U64(int offset) => Volatile.Read(ref *(ulong*)(c + offset));
        ulong head = U64(QueueLayout.Head), tail = U64(QueueLayout.Tail);
        return new QueueStatus
        {
            Count = U32(QueueLayout.Count), Capacity = segment.Header.Length - QueueLayout.Ring,
            BytesUsed = tail >= head ? tail - head : 0, MaxMessages = U32(QueueLayout.MaxMessages),
            Unfinished = U32(QueueLayout.Unfinished), Completed = U32(QueueLayout.Completed) != 0,
            Puts = U64(QueueLayout.Puts), Gets = U64(QueueLayout.Gets), Flavour = U32(QueueLayout.Flavour),
            ReadersWaiting = U32(QueueLayout.R + 4), WritersWaiting = U32(QueueLayout.W + 4),
        };
    }

    /// <summary>The first <paramref name="data"/> elements (at most what a span can hold), copied without the lock.</summary>
    private static unsafe IReadOnlyList<object?> ReadElements(MappedSegment segment, int data)
    {
        var h = segment.Header;
        if (h.ElementSize == 0) return [];
        long count = Math.Min(Math.Min(data, h.Length), int.MaxValue / h.ElementSize);
        return ElementReader.Read(h, new ReadOnlySpan<byte>(segment.Data, (int)(count * h.ElementSize)), (int)count);
    }

    /// <summary>(state, problem, holder pid, recoveries) of the segment's shared lock, read without taking it.</summary>
    private static (LockState?, string?, int?, long?) LockOf(MappedSegment segment)
    {
        var h = segment.Header;
        if (h.LockKind == LockKind.Embedded) return LockOfHolder(segment);
        if (h.LockKind != LockKind.External) return (null, null, null, null);
        MappedSegment lockSegment;
        try
        {
            lockSegment = MappedSegment.OpenOnce(SegmentName.InSameDirectory(segment.Name, h.LockName), TimeSpan.Zero, allowOtherOwner: false);
        }
        catch (SegmentNotFoundException) { return (null, "missing", null, null); }
        catch (Exception e) when (e is ISharedBridgeException or IOException or UnauthorizedAccessException)
        {
            return (null, "unreadable", null, null);
        }
        try
        {
            return lockSegment.Mutex is null ? (null, "unreadable", null, null) : LockOfHolder(lockSegment);
        }
        finally { lockSegment.Release(); }
    }

    private static (LockState?, string?, int?, long?) LockOfHolder(MappedSegment holder)
    {
        var mutex = holder.Mutex!;
        int tid = mutex.OwnerThreadId;
        var state = mutex.State;
        int? pid = null;
        if (state == SharedBridge.LockState.Held)
        {
            pid = ProcessInfo.ProcessOfThread(tid) is int p and not 0 ? p : null;
            if (mutex.OwnerThreadId != tid)
            {
                state = mutex.State; // released or taken again meanwhile
                pid = null;
            }
        }
        return (state, null, pid, holder.LiveRecoveryCount);
    }
}
