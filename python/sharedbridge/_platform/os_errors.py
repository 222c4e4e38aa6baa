"""The one place that turns an operating-system error on a segment into our exception.

error_for() takes the exception a system call raised (an OSError with its errno; for a
mapping also OverflowError or MemoryError), the segment name, which call it was and the
size involved, and returns the exception the user gets, whose message says what to do;
an error that is none of these comes back unchanged (the caller raises it as it is).
translated() does the same around a block. The messages of the failures that are not an
errno but belong to the same name (not a SharedBridge object, another owner, a name
reused or removed under us) are built here too.
"""

import errno
import os
import stat

from .._format.segment_name import dir_of, path_of
from ..errors import (InsufficientMemoryError, NotASharedBridgeSegmentError, SegmentExistsError,
                      SegmentNotFoundError, SegmentPermissionError, SegmentTooLargeError)

# The calls whose errors are translated.
CREATE = "create"      # shm_open(O_CREAT | O_EXCL) of a new name (docs/format.md 6.1 step 1)
OPEN = "open"          # shm_open of an existing name (6.2 step 1)
SIZE = "size"          # ftruncate to the total size (6.1 step 1)
RESERVE = "reserve"    # posix_fallocate of the total size at create
MAP = "map"            # mmap, creating or attaching
UNLINK = "unlink"      # shm_unlink by name

# errno values of shm_open on a (valid) name that is not a regular shared-memory object:
# a symbolic link (ELOOP: shm_open uses O_NOFOLLOW), a directory (EISDIR, which glibc's
# shm_open reports as EINVAL), a socket (ENXIO), a device (docs/format.md 6.2 steps 1-2).
_NOT_AN_OBJECT_ERRNOS = {errno.ELOOP, errno.EISDIR, errno.EINVAL, errno.ENXIO, errno.ENODEV,
                         errno.ENOTDIR, errno.EOPNOTSUPP}
# errno values of mmap for a length this process cannot map.
_CANNOT_MAP_ERRNOS = {errno.ENOMEM, errno.EOVERFLOW, errno.EFBIG}
# Larger than any file multiprocessing's disk-backed fallback could hold (ext4: 16 TiB):
# multiprocessing reports EFBIG there.
_NO_FILE_THAT_LARGE = 2 ** 44


def error_for(exc, name, call, size=None):
    """The exception to raise for *exc*, raised by *call* (CREATE, OPEN, SIZE, RESERVE,
    MAP, UNLINK) on segment *name*, *size* bytes where it matters; *exc* itself when it
    is not one of the errors translated here."""
    err = exc.errno if isinstance(exc, OSError) else None
    if call == MAP:
        if isinstance(exc, (OverflowError, MemoryError)) or err in _CANNOT_MAP_ERRNOS:
            return InsufficientMemoryError(
                f"cannot map the {size} bytes of segment {name!r}: not enough address space "
                "or memory in this process")
    elif call in (SIZE, RESERVE):
        if err == errno.ENOSPC:
            return _full(name, size)
        if err == errno.EFBIG or (call == SIZE and err == errno.EINVAL):
            return SegmentTooLargeError(
                errno.EFBIG, f"cannot create a {size}-byte shared-memory segment {name!r}: "
                "larger than a file can be (EFBIG)")
    elif call == CREATE:
        if err == errno.EEXIST:
            return SegmentExistsError(
                errno.EEXIST, f"a shared-memory segment named {name!r} already exists: "
                "pick another name, attach to it with sharedbridge.attach(name), or remove "
                "it with sharedbridge.unlink(name)", name)
    elif call == OPEN:
        if err == errno.ENOENT:
            return SegmentNotFoundError(
                errno.ENOENT, f"no shared-memory segment named {name!r}: check the name, and "
                "that it is still alive (by default a creator unlinks its segments when it "
                "closes them or exits; lifetime='last-closer' or 'persistent' keep them "
                "longer)", name)
        if err in (errno.EACCES, errno.EPERM):
            return SegmentPermissionError(
                err, f"no permission to open the shared-memory segment {name!r} "
                "(it belongs to another user or its mode does not let you read and write it)",
                name)
        if err is not None and (err in _NOT_AN_OBJECT_ERRNOS or not _is_regular_file(name)):
            return not_ours(name, f"it is not a shared-memory object ({os.strerror(err)})")
    elif call == UNLINK:
        if err == errno.ENOENT:
            return _no_name(name)
        if err == errno.EISDIR:         # docs/format.md 6.2 step 1 (the name was validated)
            return not_ours(name, "it is a directory, which unlink does not remove")
    return exc


class translated:
    """``with translated(name, call, size):`` runs the block; an error of *call* on
    *name* leaves it as error_for() says."""

    __slots__ = ("name", "call", "size")

    def __init__(self, name, call, size=None):
        self.name = name
        self.call = call
        self.size = size

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if not isinstance(exc, (OSError, OverflowError, MemoryError)):
            return False
        error = error_for(exc, self.name, self.call, self.size)
        if error is exc:
            return False
        try:
            raise error from None
        finally:
            # The raised exception's traceback holds this frame: without this, frame and
            # exception would form a cycle that keeps every frame of the traceback, and
            # so the mappings their locals refer to, alive until the garbage collector
            # runs (sharedbridge ls would list itself among a segment's mappers).
            del error


def not_ours(name, why):
    """The name holds something that is not a SharedBridge segment (docs/format.md 6.2)."""
    return NotASharedBridgeSegmentError(
        f"{name!r} is not a SharedBridge segment: {why}; this name belongs to another "
        "program")


def owned_by_other(name, uid):
    """The object belongs to user *uid*, not to us (docs/format.md 1.2)."""
    return SegmentPermissionError(
        errno.EPERM, f"shared-memory segment {name!r} is owned by uid {uid}, not you "
        f"(uid {os.geteuid()}); pass allow_other_owner=True if you trust it", name)


def removed_by_last_closer(name):
    """The last closer removed the segment while this process attached to it
    (docs/format.md section 8), every time it tried."""
    return SegmentNotFoundError(
        errno.ENOENT, f"the shared-memory segment {name!r} was removed by its last closer "
        "while this process attached to it: it is gone; create it again", name)


def never_appeared(name, seconds):
    """attach(wait_for_name=...) waited in vain for the name to be created."""
    return SegmentNotFoundError(
        errno.ENOENT, f"no shared-memory segment named {name!r} appeared within {seconds} s: "
        "start its creator, check the name (and the directory: SHAREDBRIDGE_DIR or dir=), "
        "or wait longer", name)


def name_gone(name):
    """Removing the name of a segment this process has open: the name is gone, or refers
    to another object now (left alone: docs/format.md section 8)."""
    if os.path.lexists(path_of(name)):
        return SegmentNotFoundError(
            errno.ENOENT, f"the shared-memory segment {name!r} no longer exists under that "
            "name: someone else unlinked it and reused the name for another segment, which "
            f"was left alone (sharedbridge.unlink({name!r}) removes whatever has the name)",
            name)
    return _no_name(name)


def _no_name(name):
    return SegmentNotFoundError(
        errno.ENOENT, f"no shared-memory segment named {name!r} (already unlinked?)", name)


def _is_regular_file(name):
    try:
        return stat.S_ISREG(os.lstat(path_of(name)).st_mode)
    except OSError:
        return True         # cannot tell: report the original error


def _full(name, total):
    where = dir_of(name) or "/dev/shm"
    try:
        st = os.statvfs(where)
        capacity = st.f_blocks * st.f_frsize
        room = (f" ({where} holds {capacity // 2**20} MiB, "
                f"{st.f_bavail * st.f_frsize // 2**20} MiB free)")
    except OSError:
        capacity, room = None, ""
    if dir_of(name) is None:
        # Docker gives a container 64 MiB of /dev/shm: the directory backend (a tmpfs
        # volume of any size) is the fix that needs no change to the machine.
        fix = ("give the machine a larger /dev/shm (in a container: docker run "
               "--shm-size=1g; Kubernetes: an emptyDir volume with medium: Memory mounted "
               "on /dev/shm), or keep the segments in a larger directory: set "
               "SHAREDBRIDGE_DIR=/path/to/tmpfs or pass dir=... (docs/format.md section 1.3)")
    else:
        fix = (f"make {where} larger (a tmpfs volume: docker run --mount "
               "type=tmpfs,dst=DIR,tmpfs-size=1g; Kubernetes: an emptyDir volume with "
               "medium: Memory and a sizeLimit) or choose another directory")
    if capacity is not None and total > capacity:
        # It can never fit: also an OSError, as multiprocessing's disk-file fallback
        # raises for sizes no file can have (EFBIG); ENOSPC below that.
        code = errno.EFBIG if total >= _NO_FILE_THAT_LARGE else errno.ENOSPC
        return SegmentTooLargeError(
            code, f"cannot create a {total}-byte shared-memory segment {name!r}: {where} is "
            f"full: the object is larger than the whole of {where}{room}; create a smaller "
            f"object, or {fix}")
    return InsufficientMemoryError(
        f"cannot allocate {total} bytes of shared memory for {name!r}: {where} is full "
        f"or smaller than that{room}; free space there, create a smaller object, or {fix}")
