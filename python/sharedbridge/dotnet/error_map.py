"""The .NET SharedBridge exceptions as the Python package's: the table of docs/api.md,
"Errors in both languages" (python/tests/test_error_names.py checks that the two agree
and that every exception of src/Dotnet/SharedBridge/Exceptions.cs has its row)."""

import contextlib
import errno
import threading

from ..errors import (CorruptDataError, CorruptLockError, CorruptSegmentError,
                      InsufficientMemoryError, InvalidNameError, LockNotRecoverableError,
                      LockTimeoutError, NotASharedBridgeSegmentError, QueueCompleted,
                      QueueTimeoutError, SegmentExistsError,
                      SegmentInUseError, SegmentNotFoundError, SegmentNotReadyError,
                      SegmentPermissionError, SharedBridgeError, TypeMismatchError,
                      UnsupportedTypeError, UnsupportedVersionError)

# .NET exception (namespace SharedBridge) -> the Python class it arrives as.
EXCEPTIONS = {
    "SharedBridgeException": SharedBridgeError,
    "SegmentNotFoundException": SegmentNotFoundError,
    "SegmentExistsException": SegmentExistsError,
    "InvalidSegmentNameException": InvalidNameError,
    "CorruptSegmentException": CorruptSegmentError,
    "UnsupportedFormatVersionException": UnsupportedVersionError,
    "NotASharedBridgeSegmentException": NotASharedBridgeSegmentError,
    "CorruptDataException": CorruptDataError,
    "SegmentAccessDeniedException": SegmentPermissionError,
    "TypeMismatchException": TypeMismatchError,
    "UnsupportedTypeException": UnsupportedTypeError,
    "SegmentNotReadyException": SegmentNotReadyError,
    "LockTimeoutException": LockTimeoutError,
    "QueueCompletedException": QueueCompleted,
    "QueueTimeoutException": QueueTimeoutError,
    "LockNotRecoverableException": LockNotRecoverableError,
    "CorruptLockException": CorruptLockError,
    "SegmentInUseException": SegmentInUseError,
    "InsufficientSharedMemoryException": InsufficientMemoryError,
    "BrokenBarrierException": threading.BrokenBarrierError,
}

# The classes built from more than the message (the rest: cls(message)).
_BUILD = {
    SegmentNotFoundError: lambda e, msg: SegmentNotFoundError(errno.ENOENT, msg, str(e.SegmentName)),
    SegmentExistsError: lambda e, msg: SegmentExistsError(errno.EEXIST, msg, str(e.SegmentName)),
    SegmentPermissionError: lambda e, msg: SegmentPermissionError(errno.EACCES, msg),
    CorruptDataError: lambda e, msg: CorruptDataError(msg, str(e.SegmentName), int(e.Index)),
    SegmentInUseError: lambda e, msg: SegmentInUseError(msg, [int(p) for p in e.ProcessIds]),
}


def translate(exc):
    """The Python package's exception for a .NET SharedBridge exception (the nearest mapped
    base class), with ``.dotnet_exception``; None for any other exception."""
    for cls in type(exc).__mro__:
        py_cls = EXCEPTIONS.get(cls.__name__) if cls.__module__ == "SharedBridge" else None
        if py_cls is not None:
            try:
                msg = str(exc.Message)
            except Exception:
                msg = str(exc)
            build = _BUILD.get(py_cls)
            py = build(exc, msg) if build is not None else py_cls(msg)
            py.dotnet_exception = exc
            return py
    return None


@contextlib.contextmanager
def errors():
    """Context manager (and decorator): .NET SharedBridge exceptions raised inside arrive as
    the Python package's exceptions, chained to the .NET one."""
    try:
        yield
    except Exception as e:
        py = translate(e)
        if py is None:
            raise
        raise py from e
