using SharedBridge.Format;
using System.Runtime.InteropServices;

namespace SharedBridge.Platform;

/// <summary>
/// The one place that turns an error number of a system call on a segment into the exception a user
/// sees (the errors of docs/format.md section 6.2 and docs/api.md): the context (the segment's name, creating or opening, a size) goes into
/// a message that says what happened and what to do. An errno without a specific meaning becomes a
/// <see cref="SharedBridgeException"/> naming the call. The failures of the same names that are not an
/// errno (another owner, a name removed or reused under us) are built here too.
/// </summary>
internal static class OsErrors
{
    /// <summary>The system's text for an error number, with the number: "No such file or directory (errno 2)".</summary>
    internal static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";

    /// <summary>The errno of the last P/Invoke call that sets it.</summary>
    internal static int Last => Marshal.GetLastPInvokeError();

    /// <summary>A call failed for a reason the user cannot act on specifically: "<paramref name="call"/> failed: text (errno N)".</summary>
    internal static SharedBridgeException Failed(string call, int errno) => new($"{call} failed: {Describe(errno)}");

    /// <summary>shm_open of <paramref name="name"/> failed, creating it (O_CREAT | O_EXCL) or opening it.</summary>
    internal static Exception Open(string name, int errno, bool creating) => errno switch
    {
        Interop.EEXIST => new SegmentExistsException(name,
            $"A segment named \"{name}\" already exists: choose another name, open it instead, or unlink it first."),
        Interop.ENOENT => new SegmentNotFoundException(name,
            $"No segment named \"{name}\" exists (check the name, and that its creator has not disposed it)."),
        Interop.EACCES or Interop.EPERM => new SegmentAccessDeniedException(name,
            $"Permission denied {(creating ? "creating" : "opening")} segment \"{name}\": it belongs to another user or its mode forbids access."),
        // glibc's shm_open opens with O_NOFOLLOW (a symbolic link gives ELOOP) and turns EISDIR into
        // EINVAL; the name itself was validated before, so these mean "something else lives here".
        Interop.ELOOP or Interop.EISDIR or Interop.ENXIO or Interop.EINVAL when !creating => Format.HeaderCodec.NotASharedBridgeSegment(name,
            $"it is not a regular file ({(errno == Interop.ELOOP ? "a symbolic link" : errno == Interop.ENXIO ? "a socket or device" : "a directory")})"),
        Interop.EINVAL or Interop.ENAMETOOLONG => new InvalidSegmentNameException(
            $"The system refused the segment name \"{name}\": {Describe(errno)}."),
        _ => Failed($"shm_open(\"{name}\")", errno),
    };

    /// <summary>shm_unlink of <paramref name="name"/> failed: by name (<paramref name="byName"/>: the name was
    /// never seen) or for an object this process holds (the name has gone since).</summary>
    internal static Exception Unlink(string name, int errno, bool byName) => errno switch
    {
        Interop.ENOENT => new SegmentNotFoundException(name,
            byName ? $"No segment named \"{name}\" exists." : $"Segment \"{name}\" no longer exists."),
        Interop.EACCES or Interop.EPERM => new SegmentAccessDeniedException(name,
            $"Permission denied unlinking segment \"{name}\": {Describe(errno)}."),
        // Section 6.2 step 1: shm_unlink of a directory (the name was validated before).
        Interop.EISDIR => Format.HeaderCodec.NotASharedBridgeSegment(name, "it is a directory, which unlink does not remove"),
        _ => Failed($"shm_unlink(\"{name}\")", errno),
    };

    /// <summary>ftruncate of a new segment to <paramref name="total"/> bytes failed.</summary>
    internal static Exception Size(string name, int errno, long total) =>
        errno is Interop.ENOSPC or Interop.EINVAL or Interop.EFBIG
            ? new InsufficientSharedMemoryException($"Cannot size \"{name}\" to {total} bytes: {Describe(errno)}.")
            : Failed($"ftruncate on \"{name}\"", errno);

    /// <summary>posix_fallocate of a new segment's <paramref name="total"/> bytes failed (it returns the
    /// error number instead of setting errno).</summary>
    internal static Exception Reserve(string name, int errno, long total) =>
        errno is Interop.ENOSPC or Interop.EFBIG
            ? new InsufficientSharedMemoryException(SegmentName.DirectoryOf(name) is { } dir
                ? $"Not enough room for \"{name}\" ({total} bytes): {dir} is full or too small. Free some segments, use a smaller size, " +
                  "or make that directory larger (a tmpfs volume: docker run --mount type=tmpfs,dst=DIR,tmpfs-size=1g)."
                : $"Not enough shared memory for \"{name}\" ({total} bytes): /dev/shm is full or too small. Free some segments, use a " +
                  "smaller size, give the machine a larger /dev/shm (docker run --shm-size=1g), or keep the segments in a larger " +
                  "directory: set SHAREDBRIDGE_DIR=/path/to/tmpfs or SegmentOptions.Directory (docs/format.md section 1.3).")
            : Failed($"posix_fallocate on \"{name}\"", errno);

    /// <summary>mmap of <paramref name="length"/> bytes of a segment failed.</summary>
    internal static Exception Map(string name, int errno, long length) =>
        errno is Interop.ENOMEM or Interop.EOVERFLOW or Interop.EFBIG
            ? new InsufficientSharedMemoryException(
                $"Cannot map segment \"{name}\" ({length} bytes): {Describe(errno)}. The process lacks address space or memory for it.")
            : Failed($"mmap of segment \"{name}\" ({length} bytes)", errno);

    /// <summary>The object belongs to user <paramref name="uid"/>, not to us (docs/format.md sections 1.2, 6.2 step 2).</summary>
    internal static SegmentAccessDeniedException OwnedByOther(string name, uint uid) => new(name,
        $"Segment \"{name}\" is owned by uid {uid}, not you (uid {Interop.GetEUid()}); its owner can change or resize it at any time. " +
        "Pass AllowOtherOwner = true in OpenOptions if you trust it.");

    /// <summary>The last closer removed the segment while this process opened it, every time it tried (section 8).</summary>
    internal static SegmentNotFoundException RemovedByLastCloser(string name) => new(name,
        $"Segment \"{name}\" was removed by its last closer while this process opened it: it is gone; create it again.");

    /// <summary>An explicit unlink of a segment this process holds whose name is gone, or refers to another
    /// object now (<paramref name="nameExists"/>), which is left alone (section 8).</summary>
    internal static SegmentNotFoundException NameGone(string name, bool nameExists) => new(name,
        $"Segment \"{name}\" no longer exists under that name (someone else unlinked it{(nameExists ? " and reused the name" : "")}).");
}
