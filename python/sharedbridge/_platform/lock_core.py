"""The fast path of a shared lock, compiled or through ctypes, with one behaviour.

``LockCore`` is the base of the lock objects (_objects/shared_lock.py): acquire(),
release(), the context manager, and the per-thread ownership record (``_owner``, the
owning thread's ident; ``_depth``, its recursion depth) that lets the synchronized
accessors skip the mutex when the thread already holds it. Its fast path is the kind
check, the non-blocking ``lock_now`` and the checked ``unlock`` of docs/format.md
section 7.3; everything slower goes through ``LockSlowPaths`` below to robust_mutex.py.

Two implementations:
- ``_fastlock`` (``_fastlock.c``), an optional C extension, built when a compiler and
  the Python headers exist (setup.py for pip, scripts/build_fastlock.py for the source
  tree). About 3x cheaper per locked operation than ctypes.
- ``PyLockCore`` below: the same code in Python over ctypes; used when the extension is
  missing, stale, or ``SHAREDBRIDGE_NO_ACCEL=1`` is set.
``BACKEND`` says which one this process uses: ``"c"`` or ``"ctypes"``.
"""

import os
from _thread import get_ident

from . import robust_mutex

ACCEL_INTERFACE = 2     # INTERFACE in _fastlock.c


def _load_accelerator():
    if os.environ.get("SHAREDBRIDGE_NO_ACCEL", "") not in ("", "0"):
        return None
    try:
        from . import _fastlock
    except ImportError:
        return None
    if getattr(_fastlock, "INTERFACE", None) != ACCEL_INTERFACE:
        return None       # built from another version of _fastlock.c: not used
    return _fastlock


accel = _load_accelerator()
BACKEND = "c" if accel is not None else "ctypes"


class LockSlowPaths:
    """Everything but the fast path, shared by both implementations; the lock object
    provides ``_mx`` (a robust_mutex.RobustMutex), ``_reacquire`` and ``_not_owner``."""

    __slots__ = ()

    def _check_kind(self):
        self._mx.check_kind()

    def _finish_acquire(self, rc, block, timeout):
        """acquire() after the non-blocking attempt returned *rc* != 0: True when the
        caller now holds the mutex (recovered if its holder died), False if not."""
        got = self._mx.finish(rc, block, timeout)
        if not got:
            return False
        if got == "recovered":
            self._mx.recover()
        return True

    def _contended(self, rc):
        """Slow path of a synchronized wrapper's single operation (no ownership is
        recorded: the wrapper unlocks right after). *rc* is the result of the
        non-blocking attempt, or None when the kind check failed."""
        if rc is None:
            self._mx.check_kind()
        got = self._mx.finish(rc, True, None)
        if got == "recovered":
            self._mx.recover()

    def _unlock_failed(self, rc):
        self._mx.unlock_failed(rc)


# Module globals for the hot paths: one lookup each, no attribute access per call.
_lock_now, _unlock = robust_mutex.lock_now, robust_mutex.unlock
_CLOCK, _PAST = robust_mutex.CLOCK_MONOTONIC, robust_mutex.PAST


class PyLockCore(LockSlowPaths):
    """The ctypes implementation; _fastlock.LockCore is the same in C."""

    __slots__ = ("_m", "_kind_word", "_kind", "_owner", "_depth")

    def _bind(self, mx):
        """Use the mutex of the RobustMutex *mx*; the lock is then unowned."""
        self._m, self._kind_word, self._kind = mx.m, mx.kind_word, mx.kind
        self._owner = None
        self._depth = 0

    def acquire(self, block=True, timeout=None):
        """Acquire the lock, like multiprocessing.RLock/Lock.acquire.

        block=False: do not wait. timeout (seconds, block=True only): wait at most that
        long. Returns True if acquired, False if not. A holder that died is recovered:
        the call then warns with LockRecoveredWarning and returns True.
        """
        me = get_ident()
        if self._owner == me:
            return self._reacquire(block, timeout)
        if self._kind_word.value != self._kind:
            self._check_kind()
        rc = _lock_now(self._m, _CLOCK, _PAST)
        if rc and not self._finish_acquire(rc, block, timeout):
            return False
        self._owner = me
        self._depth = 1
        return True

    def release(self):
        """Release the lock; the calling thread must hold it."""
        if self._owner != get_ident():
            self._not_owner()
        depth = self._depth - 1
        if depth:
            self._depth = depth
            return
        self._owner = None
        self._depth = 0
        rc = _unlock(self._m)
        if rc:
            self._unlock_failed(rc)

    __enter__ = acquire

    def __exit__(self, *exc_info):
        self.release()


if accel is not None:
    class LockCore(accel.LockCore, LockSlowPaths):
        """PyLockCore in C (_fastlock.c)."""
        __slots__ = ()
else:
    LockCore = PyLockCore
