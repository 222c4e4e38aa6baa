"""synchronized() and the wrapper classes of multiprocessing.sharedctypes.

Synchronized, SynchronizedArray, SynchronizedString and Synchronized<Struct> behave as
in multiprocessing.sharedctypes (get_obj, get_lock, acquire, release, the context
manager, accessors under the lock). With a sharedbridge lock the element and value
accessors inline the lock's fast path; with any other lock (multiprocessing.Lock...)
they use ``with lock:``.
"""

import ctypes
import multiprocessing.sharedctypes as _mpsc
from _thread import get_ident

from .._platform import robust_mutex
from .._platform.lock_core import accel
from .raw_object import base_type, segment_of
from .shared_lock import RLock, SharedLock
from .unavailable import UnavailableObject, unavailable

# Module globals for the hot paths: one lookup each, no attribute access per call.
_lock_now, _unlock = robust_mutex.lock_now, robust_mutex.unlock
_CLOCK, _PAST = robust_mutex.CLOCK_MONOTONIC, robust_mutex.PAST


def synchronized(obj, lock=None, ctx=None):
    """Return a process-safe wrapper for the ctypes object obj which uses lock to
    synchronize access; lock=None creates a new named sharedbridge RLock.

    A structure's wrapper has one locked property per field, except for fields named
    like the wrapper's own attributes (get_obj, get_lock, acquire, release, name, close,
    unlink, ...): those stay the wrapper's, and the field is read through get_obj()."""
    assert not isinstance(obj, SynchronizedBase), 'object already synchronized'
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock)
        return SynchronizedArray(obj, lock)
    cls = base_type(type(obj))
    try:
        scls = _struct_wrappers[cls]
    except KeyError:
        # One locked property per field, except where a field is named like the
        # wrapper's own API or internals (get_obj, acquire, name, _lock...): the wrapper
        # keeps working and such a field is reached through get_obj().
        names = [spec[0] for klass in reversed(cls.__mro__)
                 for spec in klass.__dict__.get("_fields_", ())]
        ns = {n: _locked_field(n) for n in names
              if isinstance(n, str) and n not in _WRAPPER_NAMES}
        scls = _struct_wrappers[cls] = type("Synchronized" + cls.__name__,
                                            (SynchronizedBase,), ns)
    return scls(obj, lock)


_struct_wrappers = {}


def _locked_property(name):
    # Like the inlined accessors: a thread that already holds a sharedbridge lock
    # (even a non-recursive Lock) reads and writes without re-acquiring it.
    def get(self):
        lk = self._sblock
        if lk is not None and lk._depth and lk._owner == get_ident():
            return getattr(self._obj, name)
        with self._lock:
            return getattr(self._obj, name)

    def set(self, value):
        lk = self._sblock
        if lk is not None and lk._depth and lk._owner == get_ident():
            setattr(self._obj, name, value)
            return
        with self._lock:
            setattr(self._obj, name, value)

    return property(get, set, doc=f"the {name} field, read and written under the lock")


class SynchronizedBase(_mpsc.SynchronizedBase):
    """A ctypes object and the lock that guards it; get_obj(), get_lock(), acquire(),
    release() and the context manager as in multiprocessing.sharedctypes."""

    def __init__(self, obj, lock=None, ctx=None):
        self._obj = obj
        self._lock = lock if lock else RLock()
        if isinstance(self._lock, SharedLock):
            # The subclasses' element/value accessors inline the lock's fast path.
            self._sblock = self._lock
            self._m = self._lock._m
        else:
            self._sblock = self._m = None
            foreign = _FOREIGN_LOCK_VARIANT.get(type(self))
            if foreign is not None:
                self.__class__ = foreign
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __reduce__(self):
        # By name: the object and the lock each attach in the receiving process.
        return _rebuild_synchronized, (self._obj, self._lock)

    def __copy__(self):
        # multiprocessing: RuntimeError (assert_spawning) for copy and deepcopy alike.
        raise RuntimeError(
            f"{type(self).__name__} objects cannot be copied with the copy module (as in "
            "multiprocessing): copy.copy(obj.get_obj()) gives a private copy, "
            "sharedbridge.copy(obj.get_obj()) a new shared one, and pickling shares this "
            "object by name")

    def __deepcopy__(self, memo=None):
        self.__copy__()

    def get_obj(self):
        return self._obj

    def get_lock(self):
        return self._lock

    @property
    def name(self):
        """Name of the segment holding the object (None for a private ctypes object)."""
        seg = segment_of(self._obj)
        return seg.name if seg is not None else None

    def close(self):
        """Give up this object's claim now (see sharedbridge.close); this object
        and every view of it stay usable."""
        seg = segment_of(self._obj)
        if seg is not None:
            seg.close()

    def unlink(self):
        """Remove the segment's name now, whoever created it."""
        segment_of(self._obj).unlink()

    def __repr__(self):
        return '<%s wrapper for %s>' % (type(self).__name__, self._obj)


# Attributes of every wrapper: a Structure field of one of these names gets no property.
_WRAPPER_NAMES = frozenset(dir(SynchronizedBase)) | {
    "_obj", "_lock", "_sblock", "_m", "acquire", "release"}


# The accessors below are the hot path of `arr[i] += 1`. With a sharedbridge lock they
# take the pthread mutex directly (the kind check of docs/format.md section 7.2, then one
# non-blocking clocklock + one unlock ctypes call, no extra Python frame); when this
# thread already holds the lock through acquire()/`with` (lk._depth is non-zero only
# then) they skip locking, as a recursive lock would.


# Each wrapper class also derives from multiprocessing's class of the same name, so that
# isinstance checks written for multiprocessing pass; every method is our own (ours come
# first in the MRO) and multiprocessing's __init__ is never called.

class Synchronized(SynchronizedBase, _mpsc.Synchronized):
    """Wrapper of a simple ctypes value: .value under the lock."""

    @property
    def value(self):
        lk = self._sblock
        if lk._depth and lk._owner == get_ident():
            return self._obj.value
        m = self._m
        if lk._kind_word.value != lk._kind:
            lk._contended(None)
        rc = _lock_now(m, _CLOCK, _PAST)
        if rc:
            lk._contended(rc)
        try:
            return self._obj.value
        finally:
            rc = _unlock(m)
            if rc:
                lk._mx.unlock_failed(rc)

    @value.setter
    def value(self, value):
        lk = self._sblock
        if lk._depth and lk._owner == get_ident():
            self._obj.value = value
            return
        m = self._m
        if lk._kind_word.value != lk._kind:
            lk._contended(None)
        rc = _lock_now(m, _CLOCK, _PAST)
        if rc:
            lk._contended(rc)
        try:
            self._obj.value = value
        finally:
            rc = _unlock(m)
            if rc:
                lk._mx.unlock_failed(rc)


class SynchronizedArray(SynchronizedBase, _mpsc.SynchronizedArray):
    """Wrapper of a ctypes array: len(), indexing and slicing under the lock."""

    def __len__(self):
        return len(self._obj)

    def __getitem__(self, i):
        lk = self._sblock
        if lk._depth and lk._owner == get_ident():
            return self._obj[i]
        m = self._m
        if lk._kind_word.value != lk._kind:
            lk._contended(None)
        rc = _lock_now(m, _CLOCK, _PAST)
        if rc:
            lk._contended(rc)
        try:
            return self._obj[i]
        finally:
            rc = _unlock(m)
            if rc:
                lk._mx.unlock_failed(rc)

    def __setitem__(self, i, value):
        lk = self._sblock
        if lk._depth and lk._owner == get_ident():
            self._obj[i] = value
            return
        m = self._m
        if lk._kind_word.value != lk._kind:
            lk._contended(None)
        rc = _lock_now(m, _CLOCK, _PAST)
        if rc:
            lk._contended(rc)
        try:
            self._obj[i] = value
        finally:
            rc = _unlock(m)
            if rc:
                lk._mx.unlock_failed(rc)

    def __getslice__(self, start, stop):
        return self[start:stop]

    def __setslice__(self, start, stop, values):
        self[start:stop] = values


class SynchronizedString(SynchronizedArray, _mpsc.SynchronizedString):
    """Wrapper of a c_char array: also .value and .raw under the lock."""

    value = _locked_property("value")
    raw = _locked_property("raw")


# Variants for a lock that is not a sharedbridge lock (multiprocessing.Lock, ...):
# same public class names, plain `with lock:` accessors.

class _ForeignItems:
    def __getitem__(self, i):
        with self._lock:
            return self._obj[i]

    def __setitem__(self, i, value):
        with self._lock:
            self._obj[i] = value


class _ForeignSynchronized(Synchronized):
    value = _locked_property("value")


class _ForeignSynchronizedArray(_ForeignItems, SynchronizedArray):
    pass


class _ForeignSynchronizedString(_ForeignItems, SynchronizedString):
    pass


if accel is not None:
    # The compiled twins of the accessors above (_platform/_fastlock.c): the same fast
    # path, slow paths and results; used unless SHAREDBRIDGE_NO_ACCEL=1.
    Synchronized.value = accel.locked_attr("value")
    SynchronizedArray.__getitem__ = accel.locked_getitem
    SynchronizedArray.__setitem__ = accel.locked_setitem
    SynchronizedString.value = accel.locked_attr("value")
    SynchronizedString.raw = accel.locked_attr("raw")
    _locked_field = accel.locked_attr       # a structure wrapper's fields
else:
    _locked_field = _locked_property

_FOREIGN_LOCK_VARIANT = {
    Synchronized: _ForeignSynchronized,
    SynchronizedArray: _ForeignSynchronizedArray,
    SynchronizedString: _ForeignSynchronizedString,
}
for _public, _variant in _FOREIGN_LOCK_VARIANT.items():
    _variant.__name__ = _variant.__qualname__ = _public.__name__


def _rebuild_synchronized(obj, lock):
    # Never raises (unavailable.py): a part that could not be attached stands for all.
    for part in (obj, lock):
        if isinstance(part, UnavailableObject):
            return part
    try:
        return synchronized(obj, lock)
    except Exception as e:
        return unavailable(getattr(segment_of(obj), "name", None), e)
