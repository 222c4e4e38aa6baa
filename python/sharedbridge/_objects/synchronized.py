"""synchronized() and the wrapper classes of multiprocessing.sharedctypes.

Synchronized, SynchronizedArray, SynchronizedString and Synchronized<Struct> behave as
in multiprocessing.sharedctypes (get_obj, get_lock, acquire, release, the context
manager, accessors under the lock). The accessors are the lock's (``locked_getitem``,
``locked_setitem``, ``locked_attr``: _platform/lock_core.py, compiled or ctypes): with a
sharedbridge lock its fast path, with any other lock (multiprocessing.Lock...) ``with
lock:``.
"""

import ctypes
import multiprocessing.sharedctypes as _mpsc

from .._format.segment_name import base_name
from .._platform.lock_core import locked_attr, locked_getitem, locked_setitem
from .raw_object import base_type, segment_of
from .shared_lock import RLock, SharedLock
from .unavailable import UnavailableObject, unavailable


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
        ns = {n: locked_attr(n) for n in names
              if isinstance(n, str) and n not in _WRAPPER_NAMES}
        scls = _struct_wrappers[cls] = type("Synchronized" + cls.__name__,
                                            (SynchronizedBase,), ns)
    return scls(obj, lock)


_struct_wrappers = {}


class SynchronizedBase(_mpsc.SynchronizedBase):
    """A ctypes object and the lock that guards it; get_obj(), get_lock(), acquire(),
    release() and the context manager as in multiprocessing.sharedctypes."""

    def __init__(self, obj, lock=None, ctx=None):
        self._obj = obj
        self._lock = lock if lock else RLock()
        # The accessors take the fast path of a sharedbridge lock (lock_core.py).
        self._sblock = self._lock if isinstance(self._lock, SharedLock) else None
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
        return base_name(seg.name) if seg is not None else None

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


# The segment of a wrapper is its object's (protocol.py).
segment_of.register(SynchronizedBase, lambda wrapper: segment_of(wrapper._obj))


# Attributes of every wrapper: a Structure field of one of these names gets no property.
_WRAPPER_NAMES = frozenset(dir(SynchronizedBase)) | {
    "_obj", "_lock", "_sblock", "acquire", "release"}


# Each wrapper class also derives from multiprocessing's class of the same name, so that
# isinstance checks written for multiprocessing pass; every method is our own (ours come
# first in the MRO) and multiprocessing's __init__ is never called.

class Synchronized(SynchronizedBase, _mpsc.Synchronized):
    """Wrapper of a simple ctypes value: .value under the lock."""

    value = locked_attr("value")


class SynchronizedArray(SynchronizedBase, _mpsc.SynchronizedArray):
    """Wrapper of a ctypes array: len(), indexing and slicing under the lock."""

    def __len__(self):
        return len(self._obj)

    # The hot path of `arr[i] += 1` (a locked read, then a locked write).
    __getitem__ = locked_getitem
    __setitem__ = locked_setitem

    def __getslice__(self, start, stop):
        return self[start:stop]

    def __setslice__(self, start, stop, values):
        self[start:stop] = values


class SynchronizedString(SynchronizedArray, _mpsc.SynchronizedString):
    """Wrapper of a c_char array: also .value and .raw under the lock."""

    value = locked_attr("value")
    raw = locked_attr("raw")


def _rebuild_synchronized(obj, lock):
    # Never raises (unavailable.py): a part that could not be attached stands for all.
    for part in (obj, lock):
        if isinstance(part, UnavailableObject):
            return part
    try:
        return synchronized(obj, lock)
    except Exception as e:
        return unavailable(getattr(segment_of(obj), "name", None), e)
