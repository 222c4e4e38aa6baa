"""sharedbridge: multiprocessing.sharedctypes over named POSIX shared memory.

Drop-in replacements for multiprocessing.sharedctypes' Array, Value, RawArray,
RawValue, copy and synchronized, for multiprocessing's Event, Condition, Semaphore,
BoundedSemaphore and Barrier, and for its Queue, SimpleQueue and JoinableQueue, and
n-dimensional arrays (ndarray, from_numpy) that numpy, PyTorch (DLPack) and .NET view in
place, whose objects live in named segments with a
self-describing header (docs/format.md) that the .NET SharedBridge library reads too.
Objects pickle by name, so they travel to any process; locks are robust (a holder that
dies is recovered). Pure standard library; numpy is optional (as_numpy).

This module is the public surface. Underneath, in layers that only import downward
(scripts/check_python_layers.py checks it): errors, then _format (the binary contract),
_platform (the operating system), _objects (what users get), then this module.
"""

import os as _os

from ._format.header import SegmentHeader, StructField
from ._objects.attach import attach
from ._objects.lifetimes import ReapedSegment, reap
from ._objects.numpy_view import as_numpy
from ._objects.ndarray import SharedNDArray, from_numpy, ndarray
from ._objects.protocol import require_segment as _require_segment
from ._objects.protocol import segment_of
from ._objects.shared_lock import Lock, RLock, SharedLock, reset_lock
from ._objects.sharedctypes import Array, RawArray, RawValue, Value, copy
from ._objects.sync import Barrier, BoundedSemaphore, Condition, Event, Semaphore
from ._objects.queues import JoinableQueue, Queue, SimpleQueue
from ._objects.unavailable import UnavailableObject
from ._objects.synchronized import (Synchronized, SynchronizedArray, SynchronizedBase,
                                    SynchronizedString, synchronized)
from ._platform import lock_core as _lock_core
from ._platform.segment import open_segment as _open_segment
from ._platform import segment as _segment
from ._format.segment_name import get_name_prefix, qualify as _qualify, set_name_prefix
from ._platform.wake import get_spin_budget, set_spin_budget
# Queue messages: an explicit typecode for a scalar (docs/api.md, "Queue messages").
from ._objects.queue_messages import scalar

from .errors import (CorruptDataError, CorruptLockError, CorruptSegmentError,
                     InsufficientMemoryError, InsufficientSharedMemoryError, InvalidNameError,
                     InvalidSegmentNameError, LockNotRecoverableError, LockRecoveredWarning,
                     LockTimeoutError, NotASharedBridgeSegmentError, QueueCompleted,
                     QueueCompletedError, QueueTimeoutError, SegmentAccessDeniedError,
                     SegmentExistsError, SegmentInUseError, SegmentNotFoundError,
                     SegmentNotReadyError, SegmentPermissionError, SegmentTooLargeError,
                     SharedBridgeError, TypeMismatchError, UnsupportedFormatVersionError,
                     UnsupportedTypeError, UnsupportedVersionError)

# The one version of the Python and .NET packages (pyproject.toml and Directory.Build.props read it).
with open(_os.path.join(_os.path.dirname(__file__), "VERSION"), encoding="ascii") as _f:
    __version__ = _f.read().strip()
del _f


def unlink(name, *, dir=None):
    """Remove the segment name *name* (the memory stays valid where it is mapped); *dir*:
    the directory backend's directory (default SHAREDBRIDGE_DIR, else /dev/shm)."""
    _segment.unlink(_qualify(name, dir))


def header_of(obj_or_name, *, allow_other_owner=False, dir=None):
    """The validated SegmentHeader of a shared object, lock or segment name.
    allow_other_owner: as for attach(). Looking at a name never takes part in a
    last-closer segment's lifetime (it neither holds nor unlinks it). dir: for a name,
    the directory backend's directory (default SHAREDBRIDGE_DIR, else /dev/shm)."""
    if isinstance(obj_or_name, str):
        return _open_segment(_qualify(obj_or_name, dir), allow_other_owner=allow_other_owner,
                             join=False).header
    return _require_segment(obj_or_name).header


def lock_backend():
    """Which fast path the locks and synchronized accessors use in this process: "c"
    (the optional compiled extension sharedbridge._platform._fastlock, about 3x cheaper
    per locked operation) or "ctypes" (standard library only: no compiler or Python
    headers were there when it was installed, or SHAREDBRIDGE_NO_ACCEL=1 was set before
    the import). Both behave the same."""
    return _lock_core.BACKEND


def close(obj):
    """Give up *obj*'s claim on its segment now (claims belong to objects: docs/api.md,
    "Lifetimes"): for a lifetime="creator" segment the object that created it unlinks
    the name (an object attached to it, even in the creating process, never does); for a
    "last-closer" one this process releases its hold when its last object of the segment
    closes, and unlinks the name if it was the last process to hold it; "persistent"
    ones stay. Every object and view keeps working; other processes that already
    attached are unaffected. A queue also leaves the data segments it kept for reuse
    (docs/format.md section 11.5), as its close() does."""
    leave_kept = getattr(obj, "_leave_kept_data_segments", None)
    if leave_kept is not None:
        leave_kept()
    _require_segment(obj).close()



__all__ = [
    "Array", "Value", "RawArray", "RawValue", "copy", "synchronized", "attach", "Lock",
    "RLock", "lock_backend", "Event", "Semaphore", "BoundedSemaphore", "Condition", "Barrier", "reset_lock",
    "Queue", "SimpleQueue", "JoinableQueue", "QueueCompleted", "QueueCompletedError",
    "QueueTimeoutError",
    "as_numpy", "ndarray", "from_numpy", "SharedNDArray", "unlink", "close", "header_of", "reap", "ReapedSegment", "SegmentHeader",
    "set_spin_budget", "get_spin_budget", "set_name_prefix", "get_name_prefix",
    "StructField",
    "Synchronized", "SynchronizedArray", "SynchronizedBase", "SynchronizedString",
    "SharedBridgeError", "SegmentNotFoundError", "SegmentExistsError", "InvalidNameError",
    "CorruptSegmentError", "UnsupportedVersionError", "TypeMismatchError",
    "UnsupportedTypeError", "SegmentNotReadyError", "LockNotRecoverableError",
    "LockRecoveredWarning", "NotASharedBridgeSegmentError", "CorruptDataError",
    "SegmentPermissionError", "InsufficientMemoryError", "CorruptLockError",
    "SegmentInUseError", "SegmentTooLargeError", "UnavailableObject", "SegmentInfo",
    "list_segments", "inspect_segment", "LockTimeoutError",
    # The .NET library's names of the same classes (docs/api.md, "Errors in both languages").
    "SegmentAccessDeniedError", "InvalidSegmentNameError", "UnsupportedFormatVersionError",
    "InsufficientSharedMemoryError",
    # Queue messages.
    "scalar",
]

# Pipe (Python only): multiprocessing.Pipe's connections over queue segments (docs/api.md, "Pipe").
from ._objects.pipes import Connection, Pipe  # noqa: E402

__all__ += ["Pipe", "Connection"]

# Loaded on first use (PEP 562): the survey (`sharedbridge ls`, inspect) needs dataclasses and
# typing, which would otherwise be a quarter of every process's import time.
_LAZY = {"SegmentInfo": "survey", "list_segments": "survey", "inspect_segment": "survey"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sharedbridge' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"._objects.{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
