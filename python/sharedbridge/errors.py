"""Exceptions and warnings raised by sharedbridge.

Every class derives from :class:`SharedBridgeError` *and* from the builtin exception a
user of ``multiprocessing.sharedctypes`` would already catch for the same mistake, so
``except FileNotFoundError`` or ``except ValueError`` keep working.

The .NET library names some of the same errors differently; each such class also has the
.NET name with an ``Error`` suffix (``SegmentAccessDeniedError`` is
``SegmentPermissionError``, the same class object, so either name catches both). The
table of docs/api.md, "Errors in both languages", pairs every .NET exception with its
Python class.
"""

__all__ = [
    "SharedBridgeError", "SegmentNotFoundError", "SegmentExistsError", "InvalidNameError",
    "CorruptSegmentError", "UnsupportedVersionError", "TypeMismatchError",
    "UnsupportedTypeError", "SegmentNotReadyError", "LockNotRecoverableError",
    "LockRecoveredWarning", "NotASharedBridgeSegmentError", "CorruptDataError",
    "SegmentPermissionError", "InsufficientMemoryError", "CorruptLockError",
    "SegmentInUseError", "SegmentTooLargeError", "LockTimeoutError", "QueueCompleted", "QueueCompletedError",
    "QueueTimeoutError",
    # The .NET library's names (docs/api.md, "Errors in both languages").
    "SegmentAccessDeniedError", "InvalidSegmentNameError", "UnsupportedFormatVersionError",
    "InsufficientSharedMemoryError",
]


class SharedBridgeError(Exception):
    """Base class of every error raised by sharedbridge."""


class SegmentNotFoundError(SharedBridgeError, FileNotFoundError):
    """No shared-memory segment has this name (never created, or already unlinked)."""


class SegmentExistsError(SharedBridgeError, FileExistsError):
    """A segment with this name already exists; names are never silently reused."""


class InvalidNameError(SharedBridgeError, ValueError):
    """The name breaks the naming rules of docs/format.md section 1.1."""


class CorruptSegmentError(SharedBridgeError, ValueError):
    """The segment's header failed validation (docs/format.md section 6.2)."""


class NotASharedBridgeSegmentError(CorruptSegmentError):
    """The name belongs to something that is not a SharedBridge segment: wrong magic,
    an object too small to hold the magic, or not a regular shared-memory object at all
    (a directory, FIFO, socket or symbolic link)."""


class CorruptDataError(CorruptSegmentError):
    """An element of the data area holds a value its type cannot have (a 'u' element
    that is not a Unicode scalar value). The message names the segment and the index."""

    def __init__(self, message, segment=None, index=None):
        super().__init__(message)
        self.segment = segment
        self.index = index


class SegmentPermissionError(SharedBridgeError, PermissionError):
    """The segment may not be opened: the OS refused access (EACCES), or it belongs to
    another user and attach() was not given allow_other_owner=True."""


class InsufficientMemoryError(SharedBridgeError, MemoryError):
    """The object does not fit: /dev/shm is full, or the segment is too large to map
    into this process's address space."""


class UnsupportedVersionError(CorruptSegmentError):
    """The segment was written for a newer format than this package understands."""


class TypeMismatchError(SharedBridgeError, TypeError):
    """The type asked for does not match the type recorded in the segment."""


class UnsupportedTypeError(SharedBridgeError, TypeError):
    """The ctypes type cannot live in shared memory (pointers, unions, bit fields...)."""


class SegmentNotReadyError(SharedBridgeError, TimeoutError):
    """The segment was still being initialized by its creator when the timeout expired."""


class LockNotRecoverableError(SharedBridgeError, RuntimeError):
    """The shared lock is permanently unusable (a recovery was never completed)."""


class CorruptLockError(SharedBridgeError, RuntimeError):
    """The bytes of the shared mutex were overwritten (a wrong kind word, a forged or
    stale owner, an unlock the mutex refuses): nothing more is called on it."""


class SegmentInUseError(SharedBridgeError, RuntimeError):
    """An operator action (reset_lock) was refused because other processes map the
    segment; ``pids`` lists them."""

    def __init__(self, message, pids=()):
        super().__init__(message)
        self.pids = tuple(pids)


class LockTimeoutError(SharedBridgeError, TimeoutError):
    """A lock was not acquired in time where a timeout is an error: a .NET
    ``Lock(timeout)`` (LockTimeoutException), reached through sharedbridge.dotnet.
    (Python's acquire(timeout=...) returns False, as multiprocessing's does.)"""


class QueueCompleted(SharedBridgeError, EOFError):
    """The queue was completed (complete(): no more messages): raised by put, and by get
    once every message put before was got (docs/format.md section 11.3). .NET:
    QueueCompletedException."""


class QueueTimeoutError(SharedBridgeError, TimeoutError):
    """A queue's write or read did not happen in time where a timeout is an error: a .NET
    ``SharedQueue.Write``/``Read`` with a timeout (QueueTimeoutException), reached through
    sharedbridge.dotnet. (Python's put/get raise queue.Full/queue.Empty, as multiprocessing's.)"""


class LockRecoveredWarning(RuntimeWarning):
    """A process died while holding a shared lock; this process recovered it.

    The data the lock protects is whatever the dead holder left: writes it completed are
    intact, a write it was doing may be partial.
    """


class SegmentTooLargeError(OSError, InsufficientMemoryError):
    """A segment larger than /dev/shm can ever hold, or than a file can be: an OSError
    (errno EFBIG or ENOSPC: the class multiprocessing raises for such sizes) that is also
    an InsufficientMemoryError (a MemoryError), as sharedbridge raised before."""


# The .NET library's names of the same classes (docs/api.md, "Errors in both languages").
SegmentAccessDeniedError = SegmentPermissionError
QueueCompletedError = QueueCompleted
InvalidSegmentNameError = InvalidNameError
UnsupportedFormatVersionError = UnsupportedVersionError
InsufficientSharedMemoryError = InsufficientMemoryError
