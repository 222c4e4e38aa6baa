"""Named robust locks: Lock() and RLock(), and the lock embedded in a synchronized object.

They behave like multiprocessing.Lock / multiprocessing.RLock (acquire(block=True,
timeout=None), release(), context manager) but live in a named segment, so they can be
passed by name to any process, including Pool workers and .NET, and they survive the
death of a holder: the next acquirer recovers them (LockRecoveredWarning, .recoveries).

The pthread mutex is owned by a thread. Each lock object also tracks its owning thread
and recursion depth in Python so that nested use (``with arr.get_lock(): arr[i] += 1``)
costs one pthread call pair, not three.
"""

import os
import weakref
from _thread import get_ident

from .._format import header as H
from .._format.header_spec import new_header
from .._format.segment_name import base_name, dir_of, in_same_dir, qualify
from .._platform import robust_mutex
from .._platform.lock_core import LockCore
from .._platform.process_info import process_start_time, processes_mapping
from .._platform.segment import create, open_segment
from ..errors import (CorruptSegmentError, SegmentInUseError, TypeMismatchError,
                      UnsupportedVersionError)
from .lifetimes import resolve_lifetime
from .protocol import segment_of
from .unavailable import attach_or_unavailable, signature

_live_locks = weakref.WeakSet()

def _forget_owners_in_child():
    # A fork child has only the forking thread, and it does not own the parent's
    # pthread mutexes: drop the ownership records it inherited.
    for lock in list(_live_locks):
        lock._owner = None
        lock._depth = 0


os.register_at_fork(after_in_child=_forget_owners_in_child)


class SharedLock(LockCore):
    """Base of Lock and RLock: a robust mutex inside a segment. acquire(), release() and
    the context manager are LockCore's (compiled or ctypes: _platform/lock_core.py)."""

    _lock_type = 0
    __slots__ = ("_seg", "_mx", "__weakref__")

    def __init__(self, name=None, *, lifetime=None, keep=False, dir=None):
        header = new_header(H.KIND_LOCK, creator_start_time=process_start_time(),
                            lifetime=resolve_lifetime(lifetime, keep), lock_kind=H.LOCK_EMBEDDED,
                            lock_type=self._lock_type)
        seg = create(qualify(name, dir), header,
                     lambda mm: robust_mutex.init_mutex(mm, self._lock_type, header.lock_size))
        self._setup(seg)

    def _setup(self, seg):
        self._seg = seg
        self._mx = robust_mutex.RobustMutex(seg.mm, seg.header.lock_type,
                                            seg.header.lock_size, seg.name)
        # The fast paths (LockCore, the synchronized wrappers' accessors) use the
        # mutex directly; the lock is unowned.
        self._bind(self._mx)
        seg.lock_ref = weakref.ref(self)
        _live_locks.add(self)

    @property
    def name(self):
        """The name of the segment holding the mutex."""
        return base_name(self._seg.name)

    @property
    def recoveries(self):
        """How many times this lock was recovered from a dead holder, by any process
        (recovery_count in the segment's control region)."""
        return self._seg.read_u64(H.RECOVERY_COUNT_OFFSET)

    def __del__(self):
        # getattr: __init__ may have failed before _setup (name taken, invalid name...).
        if getattr(self, "_depth", 0):
            try:
                robust_mutex.PINNED.append(self._m)
            except Exception:      # interpreter shutdown: the process is exiting anyway
                pass

    def _held_by_me(self):
        return self._owner == get_ident()

    def _release_save(self):
        """Release the lock completely (whatever the recursion depth) for a condition
        wait, then issue this thread's deferred wake-up (docs/format.md section 10.3,
        wait step 1); returns the depth for _acquire_restore. The caller holds it."""
        depth = self._depth
        self._owner = None
        self._depth = 0
        rc = robust_mutex.unlock(self._m)
        self._flush_wake()
        if rc:
            self._mx.unlock_failed(rc)
        return depth

    def _acquire_restore(self, depth):
        """Acquire the lock again after _release_save, to the saved depth."""
        self.acquire()
        self._depth = depth

    @property
    def state(self):
        """'free', 'held', 'owner dead', 'not recoverable' or 'corrupt' (for tools: the
        state changes as soon as it is read)."""
        return self._mx.state()

    def close(self):
        """Give up this lock object's claim on its segment now (see
        sharedbridge.close)."""
        self._seg.close()

    def unlink(self):
        """Remove the lock's name now."""
        self._seg.unlink()

    def __reduce__(self):
        self._seg.export()
        return _attach_lock, (self._seg.name, self._seg.trusted, signature(self._seg.header))

    def __repr__(self):
        owner = "unowned" if self._owner is None else f"owned by thread {self._owner}"
        return f"<sharedbridge.{type(self).__name__} {self.name!r} {owner}>"


segment_of.register(SharedLock, lambda lock: lock._seg)

class RLock(SharedLock):
    """A recursive, robust, named lock (lock_type 1), usable as ``lock=``.

    RLock(name=None, *, lifetime=None, keep=False): name=None generates sb_...; lifetime
    and keep as for RawArray (by default the creating process unlinks the name when the
    lock is closed or collected).
    """

    _lock_type = H.LOCK_TYPE_RECURSIVE
    __slots__ = ()

    def _reacquire(self, block, timeout):
        self._depth += 1
        return True

    def _not_owner(self):
        raise AssertionError("attempt to release recursive lock not owned by thread")


class Lock(SharedLock):
    """A non-recursive, robust, named lock (lock_type 2, error-checking), usable as ``lock=``.

    Unlike multiprocessing.Lock, a thread that acquires it a second time does not hang:
    block=False or a timeout returns False, a plain blocking acquire raises RuntimeError.
    """

    _lock_type = H.LOCK_TYPE_ERRORCHECK
    __slots__ = ()

    def _reacquire(self, block, timeout):
        if block and timeout is None:
            raise RuntimeError("deadlock: this thread already holds this Lock; use RLock() "
                               "for a lock the same thread may take twice")
        return False

    def _not_owner(self):
        raise ValueError("cannot release a Lock this thread does not hold (sharedbridge "
                         "locks are owned by the acquiring thread)")


_CLASS_FOR_TYPE = {H.LOCK_TYPE_RECURSIVE: RLock, H.LOCK_TYPE_ERRORCHECK: Lock}


def lock_from_segment(seg):
    """The lock object of a segment with an embedded mutex; one object per segment per
    process, so ownership tracking is shared by everything using that mutex."""
    existing = seg.lock_ref() if seg.lock_ref is not None else None
    if existing is not None:
        return existing
    if seg.header.lock_kind != H.LOCK_EMBEDDED:
        raise TypeMismatchError(f"segment {seg.name!r} has no embedded lock")
    lock = _CLASS_FOR_TYPE[seg.header.lock_type].__new__(_CLASS_FOR_TYPE[seg.header.lock_type])
    lock._setup(seg)
    return lock


def reset_lock(name, *, allow_other_owner=False, dir=None):
    """Reset the shared lock of segment *name* (docs/format.md section 7.4): an operator's
    action for a lock that is not recoverable or whose mutex bytes are corrupt.

    Refused with SegmentInUseError while any other process maps the segment. Returns
    True when the mutex was re-initialized (counted as a recovery), False when it was
    healthy and nothing was done. Never done implicitly by the library.
    """
    seg = open_segment(qualify(name, dir), allow_other_owner=allow_other_owner)
    h = seg.header
    if h.lock_kind == H.LOCK_EXTERNAL:
        raise TypeMismatchError(f"segment {name!r} uses the lock of segment {h.lock_name!r}: "
                                "reset that one")
    if h.lock_kind != H.LOCK_EMBEDDED:
        raise TypeMismatchError(f"segment {name!r} has no shared lock to reset")
    others = [pid for pid in processes_mapping(seg.inode, dir_of(seg.name))
              if pid != os.getpid()]
    if others:
        raise SegmentInUseError(
            f"segment {name!r} is mapped by process(es) {', '.join(map(str, others))}: a lock "
            "is never reset under its users; stop them first", others)
    lock = lock_from_segment(seg)
    if lock._mx.state() not in ("not recoverable", "corrupt"):
        return False
    lock._mx.reset()
    lock._owner = None
    lock._depth = 0
    return True


def _attach_lock(name, allow_other_owner=False, expect=None):
    # Never raises: see unavailable.py.
    return attach_or_unavailable(name, _lock_opened_by_name, allow_other_owner, expect)


# Section 10.1: a condition's lock segment (lock_kind 2) is never one of these kinds, whose
# mutex guards the object's own words (the event, the semaphore, the barrier, the queue).
NOT_A_CONDITION_LOCK = {H.KIND_EVENT: "an event", H.KIND_SEMAPHORE: "a semaphore",
                        H.KIND_BARRIER: "a barrier", H.KIND_QUEUE: "a queue"}


def _lock_opened_by_name(seg):
    """lock_from_segment for a Lock/RLock opened by its name (unpickling): a lock-only
    segment or the embedded lock of an array, a value, an ndarray or a condition, not the
    internal lock of the kinds above (section 10.1: a user holding it would block every
    operation of that object), as .NET's SharedLock.Open."""
    what = NOT_A_CONDITION_LOCK.get(seg.header.kind)
    if what is None:
        return lock_from_segment(seg)
    kind = seg.header.kind
    seg.close()
    raise TypeMismatchError(
        f"type mismatch: segment {seg.name!r} is {what} segment (kind {kind}), not a lock: "
        f"its mutex guards the {what.split()[1]}'s own words (docs/format.md section 10.1); "
        "open it with sharedbridge.attach(name)")


def open_external_lock(name, lock_name, timeout, allow_other_owner, join=True, kind=None):
    """The segment holding the lock of segment *name* (lock_kind 2, docs/format.md
    section 7.1): it must hold an embedded mutex of this machine's ABI, else *name* is
    corrupt; for a condition (*kind*), it must not be an event, a semaphore, a barrier or
    a queue (section 10.1). A missing lock segment stays SegmentNotFoundError.
    join=False only looks (tools)."""
    try:
        # In the directory of the segment that names it (docs/format.md section 1.3).
        lock_seg = open_segment(in_same_dir(name, lock_name), timeout, allow_other_owner,
                                join)
    except UnsupportedVersionError:
        raise
    except CorruptSegmentError as e:
        raise CorruptSegmentError(
            f"corrupt SharedBridge segment {name!r}: it uses the lock of segment "
            f"{lock_name!r}, which is not a valid lock segment ({e})") from e
    if lock_seg.header.lock_kind != H.LOCK_EMBEDDED:
        raise CorruptSegmentError(
            f"corrupt SharedBridge segment {name!r}: it uses the lock of segment "
            f"{lock_name!r}, which has no embedded lock (lock_kind "
            f"{lock_seg.header.lock_kind})")
    if kind == H.KIND_CONDITION and lock_seg.header.kind in NOT_A_CONDITION_LOCK:
        what = NOT_A_CONDITION_LOCK[lock_seg.header.kind]
        lock_seg.close()
        raise CorruptSegmentError(
            f"corrupt SharedBridge segment {name!r}: it is a condition on the lock of segment "
            f"{lock_name!r}, which is {what}: that mutex guards the object's own words, so a "
            "condition may not use it (docs/format.md section 10.1); recreate the condition on "
            "a Lock, an RLock, an Array or a Value")
    return lock_seg
