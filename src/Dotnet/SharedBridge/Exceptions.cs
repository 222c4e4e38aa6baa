// Public API: the errors every layer throws, so at the root, below the layer folders (README.md).
// Each has a Python counterpart in sharedbridge.errors with the same meaning; docs/api.md pairs the names.
namespace SharedBridge;

/// <summary>
/// Implemented by every exception SharedBridge throws, whatever its base class: catch them all with
/// <c>catch (Exception e) when (e is ISharedBridgeException)</c>. An error a .NET developer already
/// catches as a BCL type derives from that type (<see cref="SegmentNotFoundException"/> is a
/// <see cref="FileNotFoundException"/>, <see cref="LockTimeoutException"/> a <see cref="TimeoutException"/>, ...);
/// the others derive from <see cref="SharedBridgeException"/> (docs/api.md, "Errors in both languages").
/// </summary>
public interface ISharedBridgeException
{
}

/// <summary>Base class of the SharedBridge errors that have no BCL counterpart (a corrupt segment, a type
/// mismatch, a broken barrier, ...). The errors that have one derive from that BCL type instead; every
/// SharedBridge error implements <see cref="ISharedBridgeException"/>.</summary>
public class SharedBridgeException : Exception, ISharedBridgeException
{
    /// <summary>Creates the exception with a message that says what went wrong and what to do.</summary>
    public SharedBridgeException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the underlying cause.</summary>
    public SharedBridgeException(string message, Exception? inner) : base(message, inner) { }
}

/// <summary>No segment has the given name (or the lock segment a segment refers to is gone).</summary>
public sealed class SegmentNotFoundException : FileNotFoundException, ISharedBridgeException
{
    /// <summary>Creates the exception for <paramref name="segmentName"/>.</summary>
    public SegmentNotFoundException(string segmentName, string message) : base(message, segmentName) => SegmentName = SegmentNames.WithoutDirectory(segmentName);

    /// <summary>The name that was not found (without the directory of a directory-backend segment, docs/format.md section
    /// 1.3, which the message names).</summary>
    public string SegmentName { get; }
}

/// <summary>A segment with the requested name already exists; names are never silently reused.</summary>
public sealed class SegmentExistsException : IOException, ISharedBridgeException
{
    /// <summary>Creates the exception for <paramref name="segmentName"/>.</summary>
    public SegmentExistsException(string segmentName, string message) : base(message) => SegmentName = SegmentNames.WithoutDirectory(segmentName);

    /// <summary>The name that is taken.</summary>
    public string SegmentName { get; }
}

/// <summary>The name breaks the naming rules of docs/format.md section 1.1.</summary>
public sealed class InvalidSegmentNameException : ArgumentException, ISharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public InvalidSegmentNameException(string message) : base(message) { }
}

/// <summary>The segment's header fails validation (docs/format.md section 6.2): it is not a SharedBridge segment, or it is damaged.</summary>
public class CorruptSegmentException : SharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public CorruptSegmentException(string message) : base(message) { }

    /// <summary>Creates the exception with the underlying cause.</summary>
    public CorruptSegmentException(string message, Exception? inner) : base(message, inner) { }
}

/// <summary>The segment was written for a newer format version than this library can read (docs/format.md section 6.3).</summary>
public sealed class UnsupportedFormatVersionException : CorruptSegmentException
{
    /// <summary>Creates the exception.</summary>
    public UnsupportedFormatVersionException(string message) : base(message) { }
}

/// <summary>The segment's element type, layout or kind differs from the type it is opened as.</summary>
public sealed class TypeMismatchException : SharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public TypeMismatchException(string message) : base(message) { }
}

/// <summary>The .NET type cannot live in a shared segment (pointers, references, <c>char</c>,
/// non-sequential or packed structs, types without a typecode).</summary>
public sealed class UnsupportedTypeException : SharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public UnsupportedTypeException(string message) : base(message) { }
}

/// <summary>The segment's creator had not finished initializing it when the timeout expired.</summary>
public sealed class SegmentNotReadyException : TimeoutException, ISharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public SegmentNotReadyException(string message) : base(message) { }
}

/// <summary>The lock could not be acquired before the timeout.</summary>
public sealed class LockTimeoutException : TimeoutException, ISharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public LockTimeoutException(string message) : base(message) { }
}

/// <summary>The lock is permanently unusable: an earlier dead-owner recovery was not completed (docs/format.md
/// section 7.3); <see cref="SharedLock.Reset(string)"/> is the operator's way out (section 7.4).</summary>
public sealed class LockNotRecoverableException : SharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public LockNotRecoverableException(string message) : base(message) { }
}

/// <summary>An operator action (<see cref="SharedLock.Reset(string)"/>, docs/format.md section 7.4) was refused because other processes map the segment.</summary>
public sealed class SegmentInUseException : SharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public SegmentInUseException(string message, IReadOnlyList<int> processIds) : base(message) => ProcessIds = processIds;

    /// <summary>The processes that map the segment.</summary>
    public IReadOnlyList<int> ProcessIds { get; }
}

/// <summary>The system has not enough shared memory (<c>/dev/shm</c>) for the requested segment, or not
/// enough address space or memory to map a segment being opened.</summary>
public sealed class InsufficientSharedMemoryException : IOException, ISharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public InsufficientSharedMemoryException(string message) : base(message) { }
}

/// <summary>The name belongs to something that is not a SharedBridge segment: another program's
/// shared memory (wrong magic), an object too small to hold a magic, or not a regular file (a FIFO,
/// a directory, a socket, a symbolic link).</summary>
public sealed class NotASharedBridgeSegmentException : CorruptSegmentException
{
    /// <summary>Creates the exception.</summary>
    public NotASharedBridgeSegmentException(string message) : base(message) { }
}

/// <summary>An element holds a value its type cannot have (for example a <c>u</c> element that is not
/// a Unicode scalar value), found when the element was read as a .NET value.</summary>
public sealed class CorruptDataException : CorruptSegmentException
{
    /// <summary>Creates the exception for element <paramref name="index"/> of <paramref name="segmentName"/>.</summary>
    public CorruptDataException(string segmentName, long index, string message) : base(message)
    {
        SegmentName = SegmentNames.WithoutDirectory(segmentName);
        Index = index;
    }

    /// <summary>The segment holding the bad element.</summary>
    public string SegmentName { get; }

    /// <summary>The index of the bad element.</summary>
    public long Index { get; }
}

/// <summary>The segment may not be used by this process: the system refused access (EACCES), or it
/// is owned by another user and the caller did not opt in with <see cref="OpenOptions.AllowOtherOwner"/>.</summary>
public sealed class SegmentAccessDeniedException : UnauthorizedAccessException, ISharedBridgeException
{
    /// <summary>Creates the exception for <paramref name="segmentName"/>.</summary>
    public SegmentAccessDeniedException(string segmentName, string message) : base(message) => SegmentName = SegmentNames.WithoutDirectory(segmentName);

    /// <summary>The segment that could not be used.</summary>
    public string SegmentName { get; }
}

/// <summary>A segment's embedded lock is in a state no conforming SharedBridge process leaves it in (docs/format.md
/// section 7.2; docs/security.md).</summary>
public sealed class CorruptLockException : SharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public CorruptLockException(string message) : base(message) { }

    /// <summary>Creates the exception with the underlying cause.</summary>
    public CorruptLockException(string message, Exception? inner) : base(message, inner) { }
}

/// <summary>A <see cref="SharedBarrier"/> is broken: a party timed out, it was aborted or reset while
/// this party waited, or its post-phase action threw (Python's <c>threading.BrokenBarrierError</c>).</summary>
public sealed class BrokenBarrierException : SharedBridgeException
{
    /// <summary>Creates the exception.</summary>
    public BrokenBarrierException(string message) : base(message) { }
}

/// <summary>A queue was completed (<c>SharedQueue.Complete</c>, Python's <c>complete()</c>): a write on it, or a read
/// once its ready messages are drained (docs/format.md section 11.3, complete). Python raises <c>QueueCompleted</c>.</summary>
public sealed class QueueCompletedException : SharedBridgeException
{
    /// <summary>Creates the exception for queue <paramref name="queueName"/>.</summary>
    public QueueCompletedException(string queueName, string message) : base(message) => QueueName = queueName;

    /// <summary>The completed queue.</summary>
    public string QueueName { get; }
}

/// <summary>A blocking queue operation (<c>Write</c>/<c>Read</c>/<c>Join</c> with a timeout) did not succeed in time:
/// the queue stayed full, empty or unfinished. Nothing was written or taken. Python raises queue.Full / queue.Empty.</summary>
public sealed class QueueTimeoutException : TimeoutException, ISharedBridgeException
{
    /// <summary>Creates the exception for queue <paramref name="queueName"/>.</summary>
    public QueueTimeoutException(string queueName, string message) : base(message) => QueueName = queueName;

    /// <summary>The queue.</summary>
    public string QueueName { get; }
}

/// <summary>The name part of a segment's key: a segment of the directory backend is known below the public API by its path
/// <c>&lt;dir&gt;/&lt;name&gt;</c> (docs/format.md section 1.3), and exceptions name the segment by its name.</summary>
internal static class SegmentNames
{
    internal static string WithoutDirectory(string key) => key[(key.LastIndexOf('/') + 1)..];
}
