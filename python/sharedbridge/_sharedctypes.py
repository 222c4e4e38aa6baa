"""Array, Value, RawArray, RawValue, copy, synchronized and attach over named segments.

Same signatures, defaults, results and exceptions as multiprocessing.sharedctypes, plus
keyword-only ``name=`` and ``keep=``. Raw objects are genuine ctypes instances whose
memory is the segment's data area (memoryview, ctypes.addressof and numpy.frombuffer
see the shared memory without a copy). Their class is a cached subclass of the ctypes
type whose ``__reduce__`` pickles by name, so every object can be sent to any process
(fork, spawn, forkserver, Pool, ProcessPoolExecutor) and the receiver attaches to the
same memory.
"""

import ctypes
import sys
import time
import os
from _thread import get_ident

from . import _header as H
from . import _layout
from . import _mutex
from ._locks import RLock, _SharedLock, lock_from_segment
from ._segment import create, open_segment, process_start_time
from ._typecodes import STRUCT, TYPECODE_SIZE, TYPECODE_TO_TYPE
from .errors import CorruptSegmentError, TypeMismatchError, UnsupportedTypeError

__all__ = ["RawValue", "RawArray", "Value", "Array", "copy", "synchronized", "attach"]

_trylock = _mutex.trylock
_unlock = _mutex.unlock
_CANONICAL = {"l": "q", "L": "Q"}

#
# Element types
#


def _resolve(typecode_or_type):
    """(element ctypes type, typecode, array length or None) for a typecode or ctypes
    type; a ctypes array type (allowed by RawValue/Value) yields its length."""
    if isinstance(typecode_or_type, str):
        try:
            return TYPECODE_TO_TYPE[typecode_or_type], typecode_or_type, None
        except KeyError:
            raise TypeError(
                f"unknown typecode {typecode_or_type!r}: use one of "
                f"{''.join(TYPECODE_TO_TYPE)!r} or a ctypes type") from None
    ctype = typecode_or_type
    length = None
    if isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
        length = ctype._length_
        ctype = ctype._type_
        if isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
            raise UnsupportedTypeError(
                "multi-dimensional arrays cannot be shared: use a flat array of "
                "rows*columns elements")
    return ctype, _layout.check_element_type(ctype), length


def _base_type(obj_type):
    """The user-visible ctypes type behind one of our shared subclasses."""
    return obj_type.__mro__[1] if obj_type.__dict__.get("_sb_shared") else obj_type


#
# Raw objects: cached subclasses of ctypes types that pickle by name
#

_subclass_cache = {}


def _simple_repr(self):
    return f"{_base_type(type(self)).__name__}({self.value!r})"


def _raw_reduce(self):
    seg = self._sb_segment
    elem = self._type_ if isinstance(self, ctypes.Array) else _base_type(type(self))
    return _rebuild_raw, (seg.name, _importable(elem))


def _importable(cls):
    """*cls* if pickle can find it by reference (so the receiver gets the very same
    Structure class), else None (the receiver rebuilds it from the field table)."""
    if not (isinstance(cls, type) and issubclass(cls, ctypes.Structure)):
        return None
    module = sys.modules.get(cls.__module__)
    target = module
    for part in cls.__qualname__.split("."):
        target = getattr(target, part, None)
    return cls if target is cls else None


def _segment_name(self):
    return self._sb_segment.name


def _shared_subclass(base):
    try:
        return _subclass_cache[base]
    except KeyError:
        pass
    ns = {"__reduce__": _raw_reduce, "_sb_shared": True, "__module__": base.__module__,
          "__qualname__": base.__qualname__, "__doc__": base.__doc__}
    if issubclass(base, ctypes._SimpleCData):
        ns["__repr__"] = _simple_repr
    if not hasattr(base, "name"):      # a Structure field called "name" wins
        ns["name"] = property(_segment_name, doc="name of the shared-memory segment")
    sub = _subclass_cache[base] = type(base.__name__, (base,), ns)
    return sub


def _raw_object(seg, elem_type):
    h = seg.header
    base = elem_type * h.element_count if h.kind == H.KIND_ARRAY else elem_type
    obj = _shared_subclass(base).from_buffer(seg.mm, h.data_offset)
    obj._sb_segment = seg
    return obj


def _segment_of(obj):
    return getattr(obj, "_sb_segment", None)


#
# Creating segments
#


def _create_raw(elem_type, code, kind, count, initial, lock_fields, name, keep):
    """Create a segment holding *count* elements initialized from the private ctypes
    object *initial* (or zero) and return the raw shared object."""
    if code == STRUCT:
        fields = _layout.describe(elem_type)
        type_name = _layout.type_name_of(elem_type)
        element_size = ctypes.sizeof(elem_type)
    else:
        fields, type_name, element_size = (), "", TYPECODE_SIZE[code]
    lock_kind, lock_type, lock_name = lock_fields
    abi, lock_size = H.native_lock_abi() if lock_kind == H.LOCK_EMBEDDED else (0, 0)
    if lock_kind == H.LOCK_EMBEDDED and not abi:
        raise OSError("an embedded shared lock needs Linux glibc on x86_64 or aarch64; "
                      "use lock=False")
    header_size = H.header_size_for(len(fields))
    header = H.SegmentHeader(
        version=1, compat_version=1, header_size=header_size, kind=kind, typecode=code,
        element_size=element_size, element_count=count, data_offset=header_size,
        data_size=element_size * count, lock_kind=lock_kind, lock_abi=abi,
        lock_size=lock_size, lock_offset=H.LOCK_OFFSET if abi else 0,
        lock_type=lock_type, fields=fields, creator_pid=os.getpid(),
        creator_start_time=process_start_time(), created_unix_ns=time.time_ns(),
        type_name=type_name, lock_name=lock_name)

    def init(mm):
        if abi:
            _mutex.init_mutex(mm, lock_type, lock_size)
        if initial is not None and header.data_size:
            mm[header_size:header_size + header.data_size] = ctypes.string_at(
                ctypes.addressof(initial), header.data_size)

    seg = create(name, header, init, keep=keep)
    return _raw_object(seg, elem_type)


_NO_LOCK = (H.LOCK_NONE, H.LOCK_TYPE_NONE, "")
_EMBEDDED_RLOCK = (H.LOCK_EMBEDDED, H.LOCK_TYPE_RECURSIVE, "")


def _lock_fields(lock):
    """Header lock fields for Array/Value's lock argument (multiprocessing's rules)."""
    if lock is False:
        return _NO_LOCK
    if lock in (True, None):
        return _EMBEDDED_RLOCK
    if isinstance(lock, _SharedLock):
        return (H.LOCK_EXTERNAL, H.LOCK_TYPE_NONE, lock.name)
    if not hasattr(lock, "acquire"):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return (H.LOCK_PROCESS_LOCAL, H.LOCK_TYPE_NONE, "")


def _array_parts(typecode_or_type, size_or_initializer):
    elem, code, length = _resolve(typecode_or_type)
    if length is not None:
        raise UnsupportedTypeError(
            "multi-dimensional arrays cannot be shared: use a flat array of "
            "rows*columns elements")
    if isinstance(size_or_initializer, int):
        elem * size_or_initializer      # ctypes' own errors for negative/huge sizes
        return elem, code, size_or_initializer, None
    initial = (elem * len(size_or_initializer))(*size_or_initializer)
    return elem, code, len(size_or_initializer), initial


def _value_parts(typecode_or_type, args):
    elem, code, length = _resolve(typecode_or_type)
    if length is None:
        return elem, code, H.KIND_VALUE, 1, elem(*args)
    return elem, code, H.KIND_ARRAY, length, (elem * length)(*args)


def RawArray(typecode_or_type, size_or_initializer, *, name=None, keep=False):
    """Return a ctypes array allocated from a new named shared-memory segment.

    typecode_or_type is a ctypes type or an array-module typecode ('cubBhHiIlLqQfd'
    and '?'); size_or_initializer is a length (zero-filled) or a sequence of initial
    values. name=None generates 'sb_...' (readable as .name). The creating process
    unlinks the segment when the object is collected or at exit, unless keep=True.
    """
    elem, code, count, initial = _array_parts(typecode_or_type, size_or_initializer)
    return _create_raw(elem, code, H.KIND_ARRAY, count, initial, _NO_LOCK, name, keep)


def RawValue(typecode_or_type, *args, name=None, keep=False):
    """Return a ctypes object allocated from a new named shared-memory segment;
    *args are passed to the type's constructor. See RawArray for name and keep."""
    elem, code, kind, count, initial = _value_parts(typecode_or_type, args)
    return _create_raw(elem, code, kind, count, initial, _NO_LOCK, name, keep)


def Array(typecode_or_type, size_or_initializer, *, lock=True, name=None, keep=False,
          ctx=None):
    """The same as RawArray() except that, depending on lock, a process-safe
    synchronization wrapper may be returned instead of a raw ctypes array.

    lock=True (default) or None: a robust recursive lock embedded in the segment.
    lock=a sharedbridge Lock/RLock (or another object's get_lock()): that shared lock.
    lock=any other object with acquire(), e.g. multiprocessing.Lock(): that lock (it
    travels to child processes only the way multiprocessing allows).
    lock=False: the raw array, unsynchronized.
    """
    elem, code, count, initial = _array_parts(typecode_or_type, size_or_initializer)
    fields = _lock_fields(lock)
    obj = _create_raw(elem, code, H.KIND_ARRAY, count, initial, fields, name, keep)
    return _wrap_new(obj, lock, fields)


def Value(typecode_or_type, *args, lock=True, name=None, keep=False, ctx=None):
    """The same as RawValue() except that, depending on lock, a process-safe
    synchronization wrapper may be returned instead of a raw ctypes object.
    See Array for lock, name and keep."""
    elem, code, kind, count, initial = _value_parts(typecode_or_type, args)
    fields = _lock_fields(lock)
    obj = _create_raw(elem, code, kind, count, initial, fields, name, keep)
    return _wrap_new(obj, lock, fields)


def _wrap_new(obj, lock, fields):
    if fields[0] == H.LOCK_NONE:
        return obj
    if fields[0] == H.LOCK_EMBEDDED:
        lock = lock_from_segment(obj._sb_segment)
    return synchronized(obj, lock)


def copy(obj, *, name=None, keep=False):
    """Return a ctypes object allocated from a new shared-memory segment which is a
    copy of the ctypes object obj."""
    base = _base_type(type(obj))
    elem, code, length = _resolve(base)
    if length is None:
        kind, count = H.KIND_VALUE, 1
    else:
        kind, count = H.KIND_ARRAY, length
    return _create_raw(elem, code, kind, count, obj, _NO_LOCK, name, keep)


def synchronized(obj, lock=None, ctx=None):
    """Return a process-safe wrapper for the ctypes object obj which uses lock to
    synchronize access; lock=None creates a new named sharedbridge RLock."""
    assert not isinstance(obj, SynchronizedBase), 'object already synchronized'
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock)
        return SynchronizedArray(obj, lock)
    cls = _base_type(type(obj))
    try:
        scls = _struct_wrappers[cls]
    except KeyError:
        names = [spec[0] for klass in reversed(cls.__mro__)
                 for spec in klass.__dict__.get("_fields_", ())]
        ns = {n: _locked_property(n) for n in names}
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


#
# Synchronized wrappers (the classes of multiprocessing.sharedctypes)
#


class SynchronizedBase:
    """A ctypes object and the lock that guards it; get_obj(), get_lock(), acquire(),
    release() and the context manager as in multiprocessing.sharedctypes."""

    def __init__(self, obj, lock=None, ctx=None):
        self._obj = obj
        self._lock = lock if lock else RLock()
        if isinstance(self._lock, _SharedLock):
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

    def get_obj(self):
        return self._obj

    def get_lock(self):
        return self._lock

    @property
    def name(self):
        """Name of the segment holding the object (None for a private ctypes object)."""
        seg = _segment_of(self._obj)
        return seg.name if seg is not None else None

    def close(self):
        """The creator unlinks the segment's name now (unless keep=True); this object
        and every view of it stay usable."""
        seg = _segment_of(self._obj)
        if seg is not None:
            seg.close()

    def unlink(self):
        """Remove the segment's name now, whoever created it."""
        _segment_of(self._obj).unlink()

    def __repr__(self):
        return '<%s wrapper for %s>' % (type(self).__name__, self._obj)


# The accessors below are the hot path of `arr[i] += 1`. With a sharedbridge lock they
# take the pthread mutex directly (one trylock + one unlock ctypes call, no extra
# Python frame); when this thread already holds the lock through acquire()/`with`
# (lk._depth is non-zero only then) they skip locking, as a recursive lock would.


class Synchronized(SynchronizedBase):
    """Wrapper of a simple ctypes value: .value under the lock."""

    @property
    def value(self):
        lk = self._sblock
        if lk._depth and lk._owner == get_ident():
            return self._obj.value
        m = self._m
        rc = _trylock(m)
        if rc:
            lk._contended(rc)
        try:
            return self._obj.value
        finally:
            _unlock(m)

    @value.setter
    def value(self, value):
        lk = self._sblock
        if lk._depth and lk._owner == get_ident():
            self._obj.value = value
            return
        m = self._m
        rc = _trylock(m)
        if rc:
            lk._contended(rc)
        try:
            self._obj.value = value
        finally:
            _unlock(m)


class SynchronizedArray(SynchronizedBase):
    """Wrapper of a ctypes array: len(), indexing and slicing under the lock."""

    def __len__(self):
        return len(self._obj)

    def __getitem__(self, i):
        lk = self._sblock
        if lk._depth and lk._owner == get_ident():
            return self._obj[i]
        m = self._m
        rc = _trylock(m)
        if rc:
            lk._contended(rc)
        try:
            return self._obj[i]
        finally:
            _unlock(m)

    def __setitem__(self, i, value):
        lk = self._sblock
        if lk._depth and lk._owner == get_ident():
            self._obj[i] = value
            return
        m = self._m
        rc = _trylock(m)
        if rc:
            lk._contended(rc)
        try:
            self._obj[i] = value
        finally:
            _unlock(m)

    def __getslice__(self, start, stop):
        return self[start:stop]

    def __setslice__(self, start, stop, values):
        self[start:stop] = values


class SynchronizedString(SynchronizedArray):
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


_FOREIGN_LOCK_VARIANT = {
    Synchronized: _ForeignSynchronized,
    SynchronizedArray: _ForeignSynchronizedArray,
    SynchronizedString: _ForeignSynchronizedString,
}
for _public, _variant in _FOREIGN_LOCK_VARIANT.items():
    _variant.__name__ = _variant.__qualname__ = _public.__name__


def _rebuild_synchronized(obj, lock):
    return synchronized(obj, lock)


#
# Attaching by name
#

_rebuilt_structs = {}


def _element_type(h, requested):
    """The ctypes element type for header *h*, checked against *requested*."""
    if requested is None:
        if h.typecode != STRUCT:
            return TYPECODE_TO_TYPE[h.typecode]
        key = (h.fields, h.element_size, h.type_name)
        if key not in _rebuilt_structs:
            _rebuilt_structs[key] = _layout.rebuild(h.fields, h.element_size, h.type_name)
        return _rebuilt_structs[key]
    recorded = ("structure " + (h.type_name or "?")) if h.typecode == STRUCT \
        else f"typecode {h.typecode!r}"
    if isinstance(requested, str):
        if requested not in TYPECODE_TO_TYPE:
            raise TypeError(f"unknown typecode {requested!r}")
        if _CANONICAL.get(requested, requested) != _CANONICAL.get(h.typecode, h.typecode):
            raise TypeMismatchError(f"type mismatch: asked for typecode {requested!r}, "
                                    f"the segment holds {recorded}")
        return TYPECODE_TO_TYPE[requested]
    code = _layout.check_element_type(requested)
    if code == STRUCT:
        if (h.typecode != STRUCT or ctypes.sizeof(requested) != h.element_size
                or not _layout.same_layout(_layout.describe(requested), h.fields)):
            raise TypeMismatchError(
                f"type mismatch: asked for structure {requested.__name__} "
                f"({ctypes.sizeof(requested)} bytes), the segment holds {recorded} "
                f"({h.element_size} bytes) with a different layout")
        return requested
    if _CANONICAL.get(code, code) != _CANONICAL.get(h.typecode, h.typecode):
        raise TypeMismatchError(f"type mismatch: asked for {requested.__name__} "
                                f"(typecode {code!r}), the segment holds {recorded}")
    return requested


def attach(name, typecode_or_type=None, *, timeout=5.0):
    """Open the existing segment *name* and rebuild the object it holds.

    Returns what the creator made: a synchronized wrapper (embedded or external lock),
    a raw ctypes array/object (no lock, or a process-local lock that other processes
    cannot reach), or a Lock/RLock for a lock-only segment. Structures are rebuilt from
    the field table unless *typecode_or_type* gives the class (then checked against
    the recorded layout). Attaching never unlinks anything.
    """
    seg = open_segment(name, timeout)
    h = seg.header
    if h.kind == H.KIND_LOCK:
        if typecode_or_type is not None:
            raise TypeMismatchError(f"type mismatch: {name!r} is a lock, not {typecode_or_type!r}")
        return lock_from_segment(seg)
    raw = _raw_object(seg, _element_type(h, typecode_or_type))
    if h.lock_kind == H.LOCK_EMBEDDED:
        return synchronized(raw, lock_from_segment(seg))
    if h.lock_kind == H.LOCK_EXTERNAL:
        lock_seg = open_segment(h.lock_name, timeout)
        if lock_seg.header.lock_kind != H.LOCK_EMBEDDED:
            raise CorruptSegmentError(
                f"segment {name!r} uses the lock of {h.lock_name!r}, which has no lock")
        return synchronized(raw, lock_from_segment(lock_seg))
    return raw


def _rebuild_raw(name, struct_cls):
    seg = open_segment(name)
    return _raw_object(seg, _element_type(seg.header, struct_cls))
