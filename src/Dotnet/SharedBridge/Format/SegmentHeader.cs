// Public API: namespace SharedBridge, not SharedBridge.Format; the folder names the layer (README.md).
using SharedBridge.Format;

namespace SharedBridge;

/// <summary>What a segment holds (header field <c>kind</c>).</summary>
public enum SegmentKind : byte
{
    /// <summary>An array of <c>element_count</c> elements.</summary>
    Array = 1,
    /// <summary>A single value.</summary>
    Value = 2,
    /// <summary>Only a lock, no data.</summary>
    Lock = 3,
    /// <summary>An event (format version 2, section 10).</summary>
    Event = 4,
    /// <summary>A semaphore, bounded or not (format version 2, section 10).</summary>
    Semaphore = 5,
    /// <summary>A condition variable on a shared lock (format version 2, section 10).</summary>
    Condition = 6,
    /// <summary>A barrier (format version 2, section 10).</summary>
    Barrier = 7,
    /// <summary>A message queue: a ring of records (format versions 5 and 6, section 11).</summary>
    Queue = 8,
    /// <summary>An n-dimensional array: an array whose header records its shape (format version 7, section 12).</summary>
    NDArray = 9,
}

/// <summary>How a segment is synchronized (header field <c>lock_kind</c>).</summary>
public enum LockKind : byte
{
    /// <summary>Unsynchronized (RawArray, RawValue, <c>lock=False</c>).</summary>
    None = 0,
    /// <summary>A robust process-shared mutex inside this segment.</summary>
    Embedded = 1,
    /// <summary>The embedded lock of the segment named by <see cref="SegmentHeader.LockName"/>.</summary>
    External = 2,
    /// <summary>A lock outside shared memory (a Python multiprocessing lock); unsynchronized for .NET.</summary>
    ProcessLocal = 3,
}

/// <summary>Behaviour of an embedded lock (header field <c>lock_type</c>).</summary>
public enum LockType : byte
{
    /// <summary>No embedded lock.</summary>
    None = 0,
    /// <summary>Recursive, like Python's RLock: the holding thread may lock it again.</summary>
    Recursive = 1,
    /// <summary>Non-recursive error-checking, like Python's Lock: locking it twice is an error.</summary>
    ErrorChecking = 2,
}

/// <summary>Who removes a segment's name, and when (header field <c>lifetime</c>, docs/format.md section 8).</summary>
public enum SegmentLifetime : byte
{
    /// <summary>The creator unlinks it when it disposes it or exits (the default).</summary>
    Creator = 0,
    /// <summary>The last process that has it open unlinks it when it disposes it or exits, in whatever
    /// order the processes go, crashes included (every opener holds a shared <c>flock</c> on it).</summary>
    LastCloser = 1,
    /// <summary>Never unlinked implicitly (<see cref="SegmentOptions.KeepOnDispose"/>).</summary>
    Persistent = 2,
}

/// <summary>One entry of a structure's field table (docs/format.md section 4).</summary>
/// <param name="Name">Field name (ASCII identifier, at most 31 bytes).</param>
/// <param name="TypeCode">Typecode of the field's items, or 'T' for a nested structure.</param>
/// <param name="Offset">Byte offset inside the parent structure.</param>
/// <param name="Count">1 for a scalar, N for a fixed array of N items.</param>
/// <param name="ItemSize">Size of one item in bytes.</param>
/// <param name="Parent">Index of the enclosing 'T' entry, or -1 for a top-level field.</param>
public sealed record StructField(string Name, char TypeCode, int Offset, int Count, int ItemSize, int Parent);

/// <summary>
/// A segment's header as validated when it was opened or created: a private copy, never re-read
/// from shared memory (except <see cref="RecoveryCount"/>, which is a snapshot at open time;
/// use <c>LockRecoveries</c> on the objects for the live value).
/// </summary>
public sealed class SegmentHeader
{
    internal SegmentHeader() { }

    /// <summary>The segment name (without leading slash).</summary>
    public string Name { get; internal init; } = "";
    /// <summary>Format version of the writer.</summary>
    public int Version { get; internal init; }
    /// <summary>Lowest reader version able to use the segment.</summary>
    public int CompatVersion { get; internal init; }
    /// <summary>Header size in bytes (fixed part plus field table).</summary>
    public int HeaderSize { get; internal init; }
    /// <summary>Array, value or lock-only.</summary>
    public SegmentKind Kind { get; internal init; }
    /// <summary>Element typecode ('d', 'i', 'T', ...); '\0' for lock-only segments.</summary>
    public char TypeCode { get; internal init; }
    /// <summary>Bytes per element.</summary>
    public int ElementSize { get; internal init; }
    /// <summary>Number of elements (1 for a value, 0 for lock-only; the product of <see cref="Shape"/> for an
    /// n-dimensional array).</summary>
    public long Length { get; internal init; }
    /// <summary>The dimensions of an n-dimensional array (<see cref="SegmentKind.NDArray"/>, docs/format.md section 12),
    /// dimension 0 first (C order; empty for rank 0); null for every other kind. Part of the validated private copy.</summary>
    public IReadOnlyList<long>? Shape { get; internal init; }
    /// <summary>Offset of the data area from the start of the segment.</summary>
    public long DataOffset { get; internal init; }
    /// <summary>Size of the data area in bytes.</summary>
    public long DataSize { get; internal init; }
    /// <summary>Size of the shared-memory object when it was opened.</summary>
    public long ObjectSize { get; internal init; }
    /// <summary>How the segment is synchronized.</summary>
    public LockKind LockKind { get; internal init; }
    /// <summary>Mutex ABI: 1 glibc x86_64, 2 glibc aarch64, 0 none.</summary>
    public int LockAbi { get; internal init; }
    /// <summary>Size of the embedded mutex, 0 if none.</summary>
    public int LockSize { get; internal init; }
    /// <summary>Offset of the embedded mutex (0x1C0), 0 if none.</summary>
    public int LockOffset { get; internal init; }
    /// <summary>Recursive or error-checking embedded lock.</summary>
    public LockType LockType { get; internal init; }
    /// <summary>Name of the segment whose lock this one uses (external lock), otherwise empty.</summary>
    public string LockName { get; internal init; } = "";
    /// <summary>Structure name when <see cref="TypeCode"/> is 'T', otherwise empty.</summary>
    public string TypeName { get; internal init; } = "";
    /// <summary>The structure's field table, empty for scalar types.</summary>
    public IReadOnlyList<StructField> Fields { get; internal init; } = [];
    /// <summary>Process id of the creator; 0 when the recorded u32 is above <see cref="int.MaxValue"/> (no
    /// process has such a pid: the creator is gone, docs/format.md section 8).</summary>
    public int CreatorPid { get; internal init; }
    /// <summary>creator_pid exactly as recorded (a u32), what the tools print.</summary>
    internal uint RecordedCreatorPid { get; init; }
    /// <summary>last_recovered_by_pid exactly as recorded (a u32), what the tools print.</summary>
    internal uint RecordedLastRecoveredByPid { get; init; }
    /// <summary>Creator start time in clock ticks after boot (0 if unknown).</summary>
    public ulong CreatorStartTime { get; internal init; }
    /// <summary>Creation time (UTC).</summary>
    public DateTimeOffset CreatedAt { get; internal init; }
    /// <summary>Creation time as recorded: nanoseconds since the Unix epoch (<see cref="CreatedAt"/> keeps 100 ns ticks).</summary>
    public long CreatedUnixNanoseconds { get; internal init; }
    /// <summary>Who removes the name, and when. A version-1 segment reports <see cref="SegmentLifetime.Creator"/>:
    /// version 1 did not record whether it was kept.</summary>
    public SegmentLifetime Lifetime { get; internal init; }
    /// <summary>1 ready, 2 retired (the creator has unlinked the name), at open time.</summary>
    public int State { get; internal init; }
    /// <summary>The stored CRC-32 of the immutable bytes.</summary>
    public uint HeaderCrc32 { get; internal init; }
    /// <summary>Dead-owner recoveries of the embedded lock, at open time.</summary>
    public long RecoveryCount { get; internal init; }
    /// <summary>Pid of the process that performed the last recovery, 0 if none, at open time.</summary>
    public int LastRecoveredByPid { get; internal init; }

    /// <summary>
    /// True when the creator process is still running: a process with <see cref="CreatorPid"/> exists
    /// and (when recorded) has <see cref="CreatorStartTime"/>, so a reused pid does not count. Tools use
    /// it to find segments left behind by crashed creators (docs/format.md section 8).
    /// </summary>
    public bool CreatorIsRunning() => CreatorIdentity.IsRunning(CreatorPid, CreatorStartTime);

    /// <summary>True when the segment has a lock shared between processes (embedded or external).</summary>
    public bool IsSynchronized => LockKind is LockKind.Embedded or LockKind.External;

    /// <summary>The typecode as the messages describe it.</summary>
    public string TypeDescription => TypeCode == TypeCodes.Structure && TypeName.Length > 0
        ? $"'T' (structure {TypeName}, {ElementSize} bytes)"
        : TypeCodes.Describe(TypeCode);
}
