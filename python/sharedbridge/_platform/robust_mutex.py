"""The robust process-shared pthread mutex embedded at 0x1C0 (docs/format.md section 7).

libc functions are bound once. The non-blocking acquire is ``pthread_mutex_timedlock``
with a deadline already past ({-1, 0}), which glibc runs as ``pthread_mutex_clocklock``
with that deadline (section 7.3), never ``pthread_mutex_trylock``: glibc's trylock leaves
the caller's thread id in a not-recoverable mutex, after which every other acquirer hangs
(section 7.3). It never blocks, so it is called through ``PyDLL`` (no GIL
release/re-acquire: the cheapest ctypes call). Blocking waits use
``pthread_mutex_clocklock`` (CLOCK_MONOTONIC) through ``CDLL`` (the GIL is released) in
50 ms slices, so Ctrl-C still interrupts a blocked acquire and a stale owner is noticed.

The mutex bytes are writable by every process that maps the segment: before every call
the ``__kind`` word is compared with what section 7.2 initializes (glibc aborts the
process on some forged kinds), and a waiter checks every second that the owner recorded
in ``__lock`` is a live thread.
"""

import ctypes
import os
import struct
import sys
import threading
import time
import warnings

from .._format import header as H
from ..errors import CorruptLockError, LockNotRecoverableError, LockRecoveredWarning

EPERM, EBUSY, EDEADLK, ETIMEDOUT, EOWNERDEAD, ENOTRECOVERABLE = 1, 16, 35, 110, 130, 131
CLOCK_MONOTONIC = 1
SLICE_NS = 50_000_000
OWNER_CHECK_NS = 1_000_000_000

# glibc's pthread_mutex_t words (section 7.2), offsets from the start of the mutex.
LOCK_WORD, OWNER_WORD, KIND_WORD = 0, 8, 16
FUTEX_TID_MASK, FUTEX_OWNER_DIED = 0x3FFFFFFF, 0x40000000
KIND_ROBUST_PSHARED = 0x10 | 0x80
OWNER_NOTRECOVERABLE = 0x7FFFFFFE

_libc = ctypes.CDLL(None, use_errno=True)
_pylibc = ctypes.PyDLL(None)


class _PyIntFunction(ctypes._CFuncPtr):
    """A libc function called as PyDLL calls it (the GIL kept), returning its C ``int``.

    PyDLL's functions are this class with ``_restype_ = c_int``; without a restype ctypes
    converts the C int to a Python int directly instead of going through the c_int type's
    getter, which saves 10-40 ns per call (docs/api.md, "The lock's fast path")."""

    _flags_ = ctypes._FUNCFLAG_CDECL | ctypes._FUNCFLAG_PYTHONAPI


def _py_int_function(name):
    return _PyIntFunction((name, _pylibc))


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


try:
    _clocklock = _libc.pthread_mutex_clocklock        # glibc >= 2.30
    _CLOCK_ARGS = (CLOCK_MONOTONIC,)
    _clock_ns = time.monotonic_ns                       # CLOCK_MONOTONIC on Linux
except AttributeError:                                  # older glibc: CLOCK_REALTIME deadlines
    _timedlock = _libc.pthread_mutex_timedlock
    _CLOCK_ARGS = ()
    _clocklock = lambda m, ts: _timedlock(m, ts)        # noqa: E731
    _clock_ns = time.time_ns

# lock_now(m, PAST): the non-blocking acquire of section 7.3. pthread_mutex_timedlock with a
# deadline already past is pthread_mutex_clocklock(m, CLOCK_MONOTONIC, PAST) in glibc (one
# function, whose clock only a wait reads, and a negative deadline returns ETIMEDOUT before
# any wait), with one argument less: a ctypes argument costs 25-70 ns (docs/api.md,
# "The lock's fast path").
lock_now = _py_int_function("pthread_mutex_timedlock")
PAST = ctypes.byref(_Timespec(-1, 0))

# glibc links every held robust mutex into the owning thread's robust list *through the
# mutex memory*: if a held mutex's mapping were unmapped, the next lock operation would
# follow a dangling pointer and crash. Views of mutexes that may still be linked (held
# by a lock object that was collected, or an unlock that failed) stay here, which keeps
# their mappings alive; this costs nothing on the acquire/release path.
PINNED = []
unlock = _py_int_function("pthread_mutex_unlock")
_consistent = _pylibc.pthread_mutex_consistent


def _caller_stacklevel():
    """warnings.warn's stacklevel, for a warning issued in the caller of this function,
    that points at the first frame outside the sharedbridge package (the user's line,
    whether the lock's fast path is compiled or Python)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith("sharedbridge."):
        frame, level = frame.f_back, level + 1
    return level


def expected_kind(lock_type):
    """The ``__kind`` word of a mutex initialized per section 7.2."""
    return lock_type | KIND_ROBUST_PSHARED


def init_mutex(mm, lock_type, lock_size):
    """Initialize the mutex at 0x1C0 of a segment (section 7.2; also the reset of 7.4)."""
    mm[H.LOCK_OFFSET:H.LOCK_OFFSET + lock_size] = bytes(lock_size)
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


class RobustMutex:
    """The mutex of one segment: views of its bytes and the slow paths of the protocol.

    The lock objects copy ``m``, ``kind_word`` (or ``kind_view``) and ``kind`` into their
    own slots for the fast path (kind check, ``lock_now``, ``unlock``) and call the
    methods here for everything else.
    """

    __slots__ = ("m", "kind_word", "kind_view", "kind", "lock_word", "owner_word", "mm", "name",
                 "size", "lock_type")

    def __init__(self, mm, lock_type, lock_size, name):
        self.mm = mm
        self.name = name
        self.size = lock_size
        self.lock_type = lock_type
        self.m = (ctypes.c_char * lock_size).from_buffer(mm, H.LOCK_OFFSET)
        self.lock_word = ctypes.c_uint32.from_buffer(mm, H.LOCK_OFFSET + LOCK_WORD)
        self.owner_word = ctypes.c_int32.from_buffer(mm, H.LOCK_OFFSET + OWNER_WORD)
        self.kind_word = ctypes.c_int32.from_buffer(mm, H.LOCK_OFFSET + KIND_WORD)
        # The same word for the ctypes fast path (lock_core.PyLockCore): kind_view[0] reads
        # it as a memoryview item: 15 ns cheaper than the c_int32 .value on CPython 3.13.
        self.kind_view = memoryview((ctypes.c_int32 * 1).from_buffer(
            mm, H.LOCK_OFFSET + KIND_WORD)).cast("B").cast("i").toreadonly()
        self.kind = expected_kind(lock_type)

    # ------------------------------------------------------------------ checks

    def check_kind(self):
        kind = self.kind_word.value
        if kind != self.kind:
            raise CorruptLockError(
                f"the lock of segment {self.name!r} is corrupt: its pthread mutex kind is "
                f"{kind:#x}, not the robust process-shared {self.kind:#x} it was created with "
                "(another process overwrote the mutex). Nothing was called on it; if no "
                f"process uses the segment, sharedbridge.reset_lock({self.name!r}) "
                "re-initializes it")

    def stale_owner(self):
        """The owner thread id recorded in the lock word if no such thread exists (a
        forged or stale owner, section 7.2), else 0."""
        word = self.lock_word.value
        tid = word & FUTEX_TID_MASK
        if not tid or word & FUTEX_OWNER_DIED or tid == threading.get_native_id():
            return 0
        if os.path.exists(f"/proc/{tid}"):
            return 0
        # A real owner that dies is marked FUTEX_OWNER_DIED before its id disappears:
        # the same word after the check means nobody will ever release it.
        return tid if self.lock_word.value == word else 0

    def raise_stale_owner(self, tid):
        raise CorruptLockError(
            f"the lock of segment {self.name!r} is held by thread {tid}, which does not exist "
            "(the lock word was overwritten, or its owner's robust-list entry was lost): it "
            "will never be released. If no process uses the segment, "
            f"sharedbridge.reset_lock({self.name!r}) re-initializes it")

    def state(self):
        """A word for tools: 'free', 'held', 'owner dead', 'not recoverable' or 'corrupt'."""
        if self.kind_word.value != self.kind or self.stale_owner():
            return "corrupt"
        if self.owner_word.value == OWNER_NOTRECOVERABLE:
            return "not recoverable"
        word = self.lock_word.value
        if word & FUTEX_OWNER_DIED:
            return "owner dead"
        return "held" if word & FUTEX_TID_MASK else "free"

    # ------------------------------------------------------------------ slow paths

    def finish(self, rc, block, timeout):
        """Finish an acquire whose non-blocking attempt returned *rc* != 0.

        Returns True when the caller now holds the mutex, False when not acquired (busy
        with block=False, or the timeout expired), ``"recovered"`` after EOWNERDEAD (the
        caller must call :meth:`recover` before anything else).
        """
        if rc in (ETIMEDOUT, EBUSY):
            if not block:
                return False
            rc = self._wait(timeout)
            if rc is None:
                return False
        if rc == 0:
            return True
        if rc == EOWNERDEAD:
            return "recovered"
        if rc == ENOTRECOVERABLE:
            raise LockNotRecoverableError(
                f"the lock of segment {self.name!r} is not recoverable: a process recovered "
                "it from a dead owner without completing the recovery. Copy the data to a new "
                "segment, or, once no process uses it, reset it with "
                f"sharedbridge.reset_lock({self.name!r})")
        if rc == EDEADLK:
            raise RuntimeError("deadlock: this thread already holds this non-recursive Lock; "
                               "use RLock() for a lock the same thread may take twice")
        raise OSError(rc, f"acquiring the lock of segment {self.name!r} failed: "
                          f"{os.strerror(rc)}")

    def _wait(self, timeout):
        """Wait in slices; the acquire's result code, or None when the timeout expired."""
        deadline = None if timeout is None else _clock_ns() + max(0.0, timeout) * 1e9
        ts = _Timespec()
        pts = ctypes.byref(ts)
        next_owner_check = _clock_ns() + OWNER_CHECK_NS
        while True:
            now = _clock_ns()
            until = now + SLICE_NS
            if deadline is not None:
                if now >= deadline:
                    return None
                until = min(until, int(deadline))
            if now >= next_owner_check:
                tid = self.stale_owner()
                if tid:
                    self.raise_stale_owner(tid)
                next_owner_check = now + OWNER_CHECK_NS
            ts.tv_sec, ts.tv_nsec = divmod(until, 1_000_000_000)
            self.check_kind()
            rc = _clocklock(self.m, *_CLOCK_ARGS, pts)
            if rc != ETIMEDOUT:
                return rc

    def try_lock(self):
        """Acquire without waiting, for a short look under the lock (the reaper reading a
        queue's records, section 8): True if held now (a dead owner's lock is recovered
        as section 7.3 says, without the warning: the caller only reads), False if it is
        busy (held by another thread, or this one). Release with unlock(self.m)."""
        self.check_kind()
        rc = lock_now(self.m, PAST)
        if rc in (EBUSY, ETIMEDOUT, EDEADLK):
            return False
        got = self.finish(rc, False, None) if rc else True
        if got == "recovered":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LockRecoveredWarning)
                self.recover()
            return True
        return got

    def recover(self):
        """The EOWNERDEAD protocol of section 7.3: make the mutex consistent, count the
        recovery in this segment's control region, then warn. The caller holds it."""
        rc = _consistent(self.m)
        if rc:
            self.release_after_error()
            raise OSError(rc, f"pthread_mutex_consistent on the lock of {self.name!r} failed: "
                              f"{os.strerror(rc)}")
        count = self.count_recovery()
        try:
            warnings.warn(LockRecoveredWarning(
                f"the lock of segment {self.name!r} was held by a process that died; it was "
                f"recovered (recovery #{count}). The data it protects may hold a partial "
                "update from the dead process: check it"), stacklevel=_caller_stacklevel())
        except BaseException:
            self.release_after_error()    # warnings turned into errors: do not keep it held
            raise

    def count_recovery(self):
        count = struct.unpack_from("<Q", self.mm, H.RECOVERY_COUNT_OFFSET)[0] + 1
        struct.pack_into("<QI", self.mm, H.RECOVERY_COUNT_OFFSET, count, os.getpid())
        return count

    def release_after_error(self):
        unlock(self.m)      # best effort: an error is already being reported

    def unlock_failed(self, rc):
        PINNED.append(self.m)     # it may still be linked in this thread's robust list
        if rc == EPERM:
            raise CorruptLockError(
                f"unlocking the lock of segment {self.name!r} failed: this thread does not own "
                "the pthread mutex any more (another process overwrote its lock word)")
        raise CorruptLockError(
            f"unlocking the lock of segment {self.name!r} failed: {os.strerror(rc)} "
            f"(errno {rc})")

    def reset(self):
        """Section 7.4 step 4: re-initialize the mutex; the caller checked that nobody
        else maps the segment."""
        init_mutex(self.mm, self.lock_type, self.size)
        self.count_recovery()
