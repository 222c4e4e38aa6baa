"""The robust process-shared pthread mutex embedded at 0x1C0 (docs/format.md section 7).

libc functions are bound once. ``pthread_mutex_trylock``/``unlock`` never block, so
they are called through ``PyDLL`` (no GIL release/re-acquire: the cheapest ctypes call);
blocking waits use ``pthread_mutex_clocklock`` through ``CDLL`` (the GIL is released) in
50 ms slices, so Ctrl-C still interrupts a blocked acquire.
"""

import ctypes
import os
import struct
import time
import warnings

from . import _header as H
from .errors import LockNotRecoverableError, LockRecoveredWarning

EPERM, EBUSY, EDEADLK, ETIMEDOUT, EOWNERDEAD, ENOTRECOVERABLE = 1, 16, 35, 110, 130, 131
CLOCK_MONOTONIC = 1
SLICE_NS = 50_000_000

_libc = ctypes.CDLL(None, use_errno=True)
_pylibc = ctypes.PyDLL(None)

trylock = _pylibc.pthread_mutex_trylock
unlock = _pylibc.pthread_mutex_unlock
unlock.restype = None   # callers hold the mutex (tracked in Python); skip the int result
_consistent = _pylibc.pthread_mutex_consistent
try:
    _clocklock = _libc.pthread_mutex_clocklock      # glibc >= 2.30
    _CLOCK_ARGS = (CLOCK_MONOTONIC,)
    _clock_ns = time.monotonic_ns                     # CLOCK_MONOTONIC on Linux
except AttributeError:                                # older glibc: CLOCK_REALTIME deadlines
    _timedlock = _libc.pthread_mutex_timedlock
    _CLOCK_ARGS = ()
    _clocklock = lambda m, ts: _timedlock(m, ts)      # noqa: E731
    _clock_ns = time.time_ns


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def init_mutex(mm, lock_type, lock_size):
    """Initialize the mutex at 0x1C0 of a segment being created (section 7.2)."""
    m = (ctypes.c_char * lock_size).from_buffer(mm, H.LOCK_OFFSET)
    attr = (ctypes.c_char * 64)()   # sizeof(pthread_mutexattr_t) is 4; room to spare
    calls = (
        (_libc.pthread_mutexattr_init, (attr,)),
        (_libc.pthread_mutexattr_setpshared, (attr, 1)),
        (_libc.pthread_mutexattr_setrobust, (attr, 1)),
        (_libc.pthread_mutexattr_settype, (attr, lock_type)),
        (_libc.pthread_mutex_init, (m, attr)),
        (_libc.pthread_mutexattr_destroy, (attr,)),
    )
    for fn, args in calls:
        rc = fn(*args)
        if rc:
            raise OSError(rc, f"{fn.__name__}: {os.strerror(rc)}")


def mutex_view(mm, lock_size):
    """A ctypes object over the mutex bytes, passed as the pthread_mutex_t* argument."""
    return (ctypes.c_char * lock_size).from_buffer(mm, H.LOCK_OFFSET)


def wait(m, rc, block, timeout):
    """Finish an acquire whose trylock returned *rc* != 0.

    Returns True when the caller now holds the mutex, False when not acquired (busy
    with block=False, or the timeout expired). Handles EOWNERDEAD (returns
    ``"recovered"``: the caller must call :func:`recover` before anything else).
    """
    if rc == EBUSY:
        if not block:
            return False
        deadline = None if timeout is None else _clock_ns() + max(0.0, timeout) * 1e9
        ts = _Timespec()
        pts = ctypes.byref(ts)
        while True:
            now = _clock_ns()
            until = now + SLICE_NS
            if deadline is not None:
                if now >= deadline:
                    rc = trylock(m)     # one last try: a zero timeout still gets a free lock
                    if rc == EBUSY:
                        return False
                    break
                until = min(until, int(deadline))
            ts.tv_sec, ts.tv_nsec = divmod(until, 1_000_000_000)
            rc = _clocklock(m, *_CLOCK_ARGS, pts)
            if rc != ETIMEDOUT:
                break
    if rc == 0:
        return True
    if rc == EOWNERDEAD:
        return "recovered"
    if rc == ENOTRECOVERABLE:
        raise LockNotRecoverableError(
            "the shared lock is not recoverable (a previous owner died and its recovery "
            "was never completed): recreate the segment")
    if rc == EDEADLK:
        raise RuntimeError("deadlock: this thread already holds this non-recursive Lock; "
                           "use RLock() for a lock the same thread may take twice")
    raise OSError(rc, f"pthread mutex acquire failed: {os.strerror(rc)}")


def recover(m, mm, name):
    """The EOWNERDEAD protocol of section 7.3: make the mutex consistent, count the
    recovery in the control region, then warn. The caller holds the mutex."""
    rc = _consistent(m)
    if rc:
        unlock(m)
        raise OSError(rc, f"pthread_mutex_consistent failed: {os.strerror(rc)}")
    count = struct.unpack_from("<Q", mm, H.RECOVERY_COUNT_OFFSET)[0] + 1
    struct.pack_into("<QI", mm, H.RECOVERY_COUNT_OFFSET, count, os.getpid())
    try:
        warnings.warn(LockRecoveredWarning(
            f"the lock of segment {name!r} was held by a process that died; it was "
            f"recovered (recovery #{count}). The data it protects may hold a partial "
            "update from the dead process: check it"), stacklevel=3)
    except BaseException:
        unlock(m)    # warnings turned into errors: do not leave the lock held
        raise
