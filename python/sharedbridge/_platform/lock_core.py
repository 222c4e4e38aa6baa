"""The fast path of a shared lock, compiled or through ctypes, with one behaviour.

``LockCore`` is the base of the lock objects (_objects/shared_lock.py): acquire(),
release(), the context manager, and the per-thread ownership record (``_owner``, the
owning thread's ident; ``_depth``, its recursion depth). ``locked_getitem``,
``locked_setitem`` and ``locked_attr(name)`` are the accessors of the synchronized
wrappers (_objects/synchronized.py): one operation on the wrapper's object under its
lock, skipping the mutex when the thread already holds the lock. Their fast path is the
kind check, the non-blocking ``lock_now`` and the checked ``unlock`` of docs/format.md
section 7.3; everything slower goes through ``LockSlowPaths`` below to robust_mutex.py.
A lock also holds one pending wake-up (``_defer_wake(address, ref)``): the FUTEX_WAKE of a
notify, issued after the outermost unlock (docs/format.md section 10.3, notify) by
release(), the accessors and ``_flush_wake()``.

Two implementations:
- ``_fastlock`` (``_fastlock.c``), an optional C extension, built when a compiler and
  the Python headers exist (setup.py for pip, scripts/build_fastlock.py for the source
  tree). About 3x cheaper per locked operation than ctypes.
- ``PyLockCore`` and ``_py_accessor`` below: the same code in Python over ctypes; used
  when the extension is missing, stale, or ``SHAREDBRIDGE_NO_ACCEL=1`` is set.
``BACKEND`` says which one this process uses: ``"c"`` or ``"ctypes"``.
"""

import ctypes
import keyword
import linecache
import os
from _thread import get_ident

from . import futex, robust_mutex

ACCEL_INTERFACE = 10    # INTERFACE in _fastlock.c


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
        recorded: the wrapper unlocks right after); *rc* != 0 is the result of the
        non-blocking attempt."""
        got = self._mx.finish(rc, True, None)
        if got == "recovered":
            self._mx.recover()

    def _unlock_failed(self, rc):
        self._mx.unlock_failed(rc)


# Module globals for the hot paths: one lookup each, no attribute access per call.
_lock_now, _unlock, _PAST = robust_mutex.lock_now, robust_mutex.unlock, robust_mutex.PAST


class PyLockCore(LockSlowPaths):
    """The ctypes implementation; _fastlock.LockCore is the same in C."""

    __slots__ = ("_m", "_kind_view", "_kind", "_owner", "_depth", "_wake_addr", "_wake_ref")

    def _bind(self, mx):
        """Use the mutex of the RobustMutex *mx*; the lock is then unowned."""
        # _m is byref(mutex): a pointer argument made once, which ctypes passes as it is,
        # where the array itself would get a new argument object on every call.
        self._m, self._kind_view, self._kind = ctypes.byref(mx.m), mx.kind_view, mx.kind
        self._owner = None
        self._depth = 0
        self._wake_addr, self._wake_ref = 0, None

    def _defer_wake(self, address, ref):
        """FUTEX_WAKE the u32 at *address* after the outermost release (*ref* keeps its
        mapping alive); a pending wake-up of another word is issued now."""
        if self._wake_addr and self._wake_addr != address:
            self._flush_wake()
        if not self._wake_addr:
            self._wake_addr, self._wake_ref = address, ref

    def _flush_wake(self):
        """Issue the pending wake-up now, if any (after an unlock)."""
        address = self._wake_addr
        if address:
            self._wake_addr = self._wake_ref = None
            futex.wake(address)

    def acquire(self, block=True, timeout=None):
        """Acquire the lock, like multiprocessing.RLock/Lock.acquire.

        block=False: do not wait. timeout (seconds, block=True only): wait at most that
        long. Returns True if acquired, False if not. A holder that died is recovered:
        the call then warns with LockRecoveredWarning and returns True.
        """
        me = get_ident()
        if self._owner == me:
            return self._reacquire(block, timeout)
        if self._kind_view[0] != self._kind:
            self._check_kind()
        rc = _lock_now(self._m, _PAST)
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
        if self._wake_addr:
            self._flush_wake()
        if rc:
            self._unlock_failed(rc)

    __enter__ = acquire

    def __exit__(self, exc_type, exc, tb):
        # release(), written out: a `with` block then costs one Python call less, a
        # measurable share of it on the ctypes path (docs/api.md, "The lock's fast path").
        if self._owner != get_ident():
            self._not_owner()
        depth = self._depth - 1
        if depth:
            self._depth = depth
            return
        self._owner = None
        self._depth = 0
        rc = _unlock(self._m)
        if self._wake_addr:
            self._flush_wake()
        if rc:
            self._unlock_failed(rc)


# ------------------------------------------------------------------ locked accessors
# A synchronized wrapper has ``_obj`` (its ctypes object), ``_lock`` (its lock) and
# ``_sblock`` (the same lock when it is a LockCore, else None). Each accessor runs one
# operation on _obj: with a LockCore, directly when this thread holds the lock already
# (acquire() or ``with``), else between the non-blocking lock_now and the checked
# unlock, recording no ownership (nothing else runs in between); with any other lock
# (multiprocessing.Lock...) inside ``with wrapper._lock:``, as multiprocessing does.
#
# The Python fast path is written once, here, and compiled around each operation (as
# collections.namedtuple compiles its methods), so that the operation runs inline: an
# access is one Python call, with no helper call per access; on the ctypes path a
# Python call is a sizeable share of a locked access (docs/api.md, "The lock's fast path").

_FAST_PATH = """\
def make(name):
    def {function}(self{params}):
        lk = self._sblock
        if lk is None:
            with self._lock:
                {op}
            return None         # only if the lock's __exit__ suppressed an error
        if lk._depth and lk._owner == get_ident():
            {op}
        m = lk._m
        if lk._kind_view[0] != lk._kind:
            lk._check_kind()
        rc = _lock_now(m, _PAST)
        if rc:
            lk._contended(rc)
        try:
            {op}
        finally:
            rc = _unlock(m)
            if lk._wake_addr:
                lk._flush_wake()
            if rc:
                lk._unlock_failed(rc)
    return {function}
"""


def _py_accessor(function, params, op, name=None):
    """The fast path above as *function*(self*params*) running the statement *op*
    (which returns); *name*, if any, is visible to *op*."""
    source = _FAST_PATH.format(function=function, params=params, op=op)
    filename = f"<sharedbridge._platform.lock_core fast path: {op}>"
    # Registered for tracebacks, as a file's lines would be (mtime None: kept).
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {}
    exec(compile(source, filename, "exec"), globals(), namespace)
    accessor = namespace["make"](name)
    accessor.__qualname__ = function
    return accessor


_py_attrs = {}


def _py_locked_attr(name):
    """A property of a wrapper class: its object's attribute *name* under the lock."""
    if not isinstance(name, str):
        raise TypeError("locked_attr(name): name must be a str")
    prop = _py_attrs.get(name)
    if prop is None:
        if name.isascii() and name.isidentifier() and not keyword.iskeyword(name):
            target = f"self._obj.{name}"                    # an attribute access, inline
            get = _py_accessor("get", "", f"return {target}")
            put = _py_accessor("set", ", value", f"{target} = value; return")
        else:                                               # any other field name
            get = _py_accessor("get", "", "return getattr(self._obj, name)", name)
            put = _py_accessor("set", ", value", "setattr(self._obj, name, value); return", name)
        prop = _py_attrs[name] = property(
            get, put, doc=f"the {name} field, read and written under the lock")
    return prop


if accel is not None:
    class LockCore(accel.LockCore, LockSlowPaths):
        """PyLockCore in C (_fastlock.c)."""
        __slots__ = ()

    # The compiled twins of _FAST_PATH: the same fast path, slow paths and results.
    locked_getitem, locked_setitem = accel.locked_getitem, accel.locked_setitem
    locked_attr = accel.locked_attr
else:
    LockCore = PyLockCore
    locked_getitem = _py_accessor("__getitem__", ", key", "return self._obj[key]")
    locked_setitem = _py_accessor("__setitem__", ", key, value", "self._obj[key] = value; return")
    locked_attr = _py_locked_attr
