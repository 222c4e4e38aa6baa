// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
namespace SharedBridge;

/// <summary>What <see cref="SegmentDirectory"/> found under a name in /dev/shm.</summary>
public enum SegmentStatus
{
    /// <summary>A valid SharedBridge segment.</summary>
    Ok,
    /// <summary>Its creator has not published it yet (or died while creating it).</summary>
    Initializing,
    /// <summary>A SharedBridge header that fails validation (<see cref="SegmentInfo.Reason"/> says why).</summary>
    Corrupt,
    /// <summary>Written for a newer format than this library reads.</summary>
    Unsupported,
    /// <summary>Not a SharedBridge segment (another program's object, a FIFO, a directory, an invalid name).</summary>
    Foreign,
    /// <summary>Another user's segment, or one this process may not open.</summary>
    Inaccessible,
}

/// <summary>
/// One object in /dev/shm as <c>sharedbridge ls</c> shows it (docs/cli.md). The header-derived
/// properties are null unless <see cref="Status"/> is <see cref="SegmentStatus.Ok"/>.
/// </summary>
public sealed class SegmentInfo
{
    internal SegmentInfo() { }

    /// <summary>The segment name.</summary>
    public string Name { get; internal init; } = "";
    /// <summary>Ok, or what is wrong with the object.</summary>
    public SegmentStatus Status { get; internal init; }
    /// <summary>Why the object is not usable (the error message), null when Ok.</summary>
    public string? Reason { get; internal init; }
    /// <summary>Array, value, lock-only, n-dimensional array, ...</summary>
    public SegmentKind? Kind { get; internal init; }
    /// <summary>The element typecode ('\0' for a lock-only segment).</summary>
    public char? TypeCode { get; internal init; }
    /// <summary>The structure name for typecode 'T', otherwise empty.</summary>
    public string? TypeName { get; internal init; }
    /// <summary>What <c>ls</c> shows as the element type: the structure's name, or the typecode (empty for a lock).</summary>
    public string? ElementType => TypeCode is not { } code ? null
        : code == 'T' ? (TypeName is { Length: > 0 } n ? n : "T")
        : code == '\0' ? "" : code.ToString();
    /// <summary>Number of elements (1 for a value, 0 for a lock).</summary>
    public long? Length { get; internal init; }
    /// <summary>An n-dimensional array's dimensions, dimension 0 first (empty for rank 0); null for other kinds
    /// (docs/format.md section 12.3).</summary>
    public IReadOnlyList<long>? Shape { get; internal init; }
    /// <summary>An n-dimensional array's number of dimensions; null for other kinds.</summary>
    public int? Ndim => Shape?.Count;
    /// <summary>Size of the object in bytes (regular files only).</summary>
    public long? Bytes { get; internal init; }
    /// <summary>How the segment is synchronized.</summary>
    public LockKind? Lock { get; internal init; }
    /// <summary>The lock's segment for an external lock, otherwise null.</summary>
    public string? LockName { get; internal init; }
    /// <summary>The state of the segment's shared lock, read without taking it; null without a lock
    /// (or when <see cref="LockProblem"/> is set).</summary>
    public LockState? LockState { get; internal init; }
    /// <summary>"missing" (an external lock segment that is gone) or "unreadable" (it cannot serve as a lock), otherwise null.</summary>
    public string? LockProblem { get; internal init; }
    /// <summary>The pid of the process whose thread holds the lock, when it is held.</summary>
    public int? LockHolderPid { get; internal init; }
    /// <summary>Dead-owner recoveries of the lock (live): what the objects on that lock report as <c>LockRecoveries</c>.
    /// Named as the <c>recoveries</c> column and JSON key of <c>sharedbridge ls</c> (docs/cli.md) and Python's
    /// <c>SegmentInfo.recoveries</c>, like the other properties of this record.</summary>
    public long? Recoveries { get; internal init; }
    /// <summary>The state word read now: 0 initializing, 1 ready, 2 retired.</summary>
    public int? State { get; internal init; }
    /// <summary>Who removes the name, and when (docs/format.md section 8).</summary>
    public SegmentLifetime? Lifetime { get; internal init; }
    /// <summary>The creator's pid as recorded (the header's u32; a value above the system's pid_max names no process).</summary>
    public long? CreatorPid { get; internal init; }
    /// <summary>The header's last_recovered_by_pid as recorded (a u32), read when the segment was opened.</summary>
    public long? LastRecoveredPid { get; internal init; }
    /// <summary>The creator's start time (clock ticks after boot, 0 if unknown).</summary>
    public ulong? CreatorStartTime { get; internal init; }
    /// <summary>True when the creator (pid and start time) is still running.</summary>
    public bool? CreatorAlive { get; internal init; }
    /// <summary>Creation time, nanoseconds since the Unix epoch.</summary>
    public long? CreatedUnixNanoseconds { get; internal init; }
    /// <summary>Time since creation, when the survey ran.</summary>
    public TimeSpan? Age { get; internal init; }
    /// <summary>Pids whose /proc/PID/maps show the object (readable ones only).</summary>
    public IReadOnlyList<int> MappedBy { get; internal set; } = [];
    /// <summary>The validated header, null unless Ok.</summary>
    public SegmentHeader? Header { get; internal init; }
    /// <summary>For the synchronization kinds (event, semaphore, condition, barrier), their words decoded
    /// (docs/format.md section 10.2, read without the lock); null for other kinds.</summary>
    public SynchronizationWords? Sync { get; internal init; }
    /// <summary>For a queue (kind 8), its depth, capacity and statistics (docs/format.md section 11.2, read without the
    /// lock); null for other kinds.</summary>
    public QueueStatus? Queue { get; internal init; }
    /// <summary>The first elements asked of <see cref="SegmentDirectory.Inspect"/>, copied without the lock: long (signed),
    /// ulong (unsigned), double ('f', 'd'), bool, string ('u' characters), byte values as long ('c'), dictionaries for
    /// structures and lists for field arrays.</summary>
    public IReadOnlyList<object?> Elements { get; internal init; } = [];
}

/// <summary>The words of a synchronization segment as <c>sharedbridge ls</c> shows them (docs/format.md
/// section 10.2), read without the lock: a snapshot. Properties that do not apply to the kind are null.</summary>
public sealed class SynchronizationWords
{
    internal SynchronizationWords() { }

    /// <summary>Threads waiting now (every kind).</summary>
    public uint Waiters { get; internal init; }
    /// <summary>An event's flag: 0 clear, 1 set (another value is corrupt).</summary>
    public uint? Flag { get; internal init; }
    /// <summary>A semaphore's units available.</summary>
    public uint? Value { get; internal init; }
    /// <summary>A semaphore's bound (0x7FFFFFFF when unbounded).</summary>
    public uint? MaxValue { get; internal init; }
    /// <summary>A semaphore's bounded word: 1 bounded, 0 not.</summary>
    public uint? Bounded { get; internal init; }
    /// <summary>A barrier's number of parties.</summary>
    public uint? Parties { get; internal init; }
    /// <summary>A barrier's parties inside <c>wait</c> now.</summary>
    public uint? Count { get; internal init; }
    /// <summary>A barrier's state: "filling", "draining", "resetting", "broken", or "corrupt" for another value.</summary>
    public string? BarrierState { get; internal init; }
}

/// <summary>A queue's words as <c>sharedbridge ls</c> shows them (docs/format.md section 11.2), read without the lock:
/// a snapshot.</summary>
public sealed class QueueStatus
{
    internal QueueStatus() { }

    /// <summary>Ready messages (the queue's depth).</summary>
    public uint Count { get; internal init; }
    /// <summary>The ring's bytes.</summary>
    public long Capacity { get; internal init; }
    /// <summary>Bytes of the ring holding records now (tail - head).</summary>
    public ulong BytesUsed { get; internal init; }
    /// <summary>The most ready messages (0x7FFFFFFF: unbounded).</summary>
    public uint MaxMessages { get; internal init; }
    /// <summary>Messages put and not yet acknowledged (task_done).</summary>
    public uint Unfinished { get; internal init; }
    /// <summary>True once completed.</summary>
    public bool Completed { get; internal init; }
    /// <summary>Messages ever put (mod 2^64).</summary>
    public ulong Puts { get; internal init; }
    /// <summary>Messages ever taken (mod 2^64).</summary>
    public ulong Gets { get; internal init; }
    /// <summary>0 Queue, 1 SimpleQueue, 2 JoinableQueue, 3 pipe direction.</summary>
    public uint Flavour { get; internal init; }
    /// <summary>Threads waiting to read (the R block's waiters).</summary>
    public uint ReadersWaiting { get; internal init; }
    /// <summary>Threads waiting to write (the W block's waiters).</summary>
    public uint WritersWaiting { get; internal init; }
}
