"""Array, Value, RawArray, RawValue and copy over new named segments.

Same signatures, defaults, results and exceptions as multiprocessing.sharedctypes, plus
keyword-only ``name=``, ``lifetime=`` and ``keep=`` (docs/api.md). Raw objects are
genuine ctypes instances whose
memory is the segment's data area (memoryview, ctypes.addressof and numpy.frombuffer
see the shared memory without a copy). Their class is a cached subclass of the ctypes
type whose ``__reduce__`` pickles by name, so every object can be sent to any process
(fork, spawn, forkserver, Pool, ProcessPoolExecutor) and the receiver attaches to the
same memory.
"""

import ctypes

from .._format import header as H
from .._format import struct_layout
from .._format.header_spec import new_header
from .._format.segment_name import external_lock_name, qualify
from .._format.typecodes import STRUCT, TYPECODE_SIZE, TYPECODE_TO_TYPE
from .._platform import robust_mutex
from .._platform.process_info import process_start_time
from .._platform.segment import create
from .protocol import segment_of
from .raw_object import base_type, check_u_initial, raw_object, row_parts
from .lifetimes import resolve_lifetime
from .shared_lock import SharedLock, lock_from_segment
from .synchronized import synchronized

__all__ = ["RawValue", "RawArray", "Value", "Array", "copy"]


#
# Element types
#


def _resolve(typecode_or_type):
    """(row type, typecode, array length or None) for a typecode or ctypes type; a
    ctypes array type (allowed by RawValue/Value) yields its length. The row type is
    the element type, or itself an array type (a multi-dimensional element, stored as
    a flat array of its innermost type; see raw_object.row_parts)."""
    if isinstance(typecode_or_type, str):
        try:
            return TYPECODE_TO_TYPE[typecode_or_type], typecode_or_type, None
        except KeyError:
            raise TypeError(
                f"unknown typecode {typecode_or_type!r}: use one of "
                f"{''.join(TYPECODE_TO_TYPE)!r} or a ctypes type") from None
    row = typecode_or_type
    length = None
    if isinstance(row, type) and issubclass(row, ctypes.Array):
        length = row._length_
        row = row._type_
    code = struct_layout.check_element_type(struct_layout.element_of(row)[0])
    row_parts(row)
    return row, code, length


def _create_raw(row, code, kind, rows, initial, lock_fields, name, lifetime, keep, dir=None):
    """Create a segment holding *rows* rows (elements, or arrays of them) initialized
    from the private ctypes object *initial* (or zero) and return the raw shared
    object. *lifetime* and *keep* are the create's arguments (lifetimes.resolve_lifetime)."""
    elem_type, per_row = row_parts(row)
    count = rows * per_row
    if code == STRUCT:
        fields = struct_layout.describe(elem_type)
        type_name = struct_layout.type_name_of(elem_type)
        element_size = ctypes.sizeof(elem_type)
    else:
        fields, type_name, element_size = (), "", TYPECODE_SIZE[code]
    if code == "u" and initial is not None:
        check_u_initial(initial, count)
    key = qualify(name, dir)
    lock_kind, lock_type, lock_name = lock_fields
    if lock_kind == H.LOCK_EXTERNAL:
        lock_name = external_lock_name(lock_name, key)
    header = new_header(
        kind, creator_start_time=process_start_time(), lifetime=resolve_lifetime(lifetime, keep),
        typecode=code, element_size=element_size, element_count=count, fields=fields,
        type_name=type_name, lock_kind=lock_kind, lock_type=lock_type, lock_name=lock_name,
        what="Array and Value with a lock", advice="; use lock=False")
    header_size = header.header_size

    def init(mm):
        if header.lock_abi:
            robust_mutex.init_mutex(mm, lock_type, header.lock_size)
        if initial is not None and header.data_size:
            ctypes.memmove(ctypes.addressof(mm) + header_size, ctypes.addressof(initial),
                           header.data_size)

    seg = create(key, header, init)
    return raw_object(seg, row)


_NO_LOCK = (H.LOCK_NONE, H.LOCK_TYPE_NONE, "")
_EMBEDDED_RLOCK = (H.LOCK_EMBEDDED, H.LOCK_TYPE_RECURSIVE, "")


def _lock_fields(lock):
    """Header lock fields for Array/Value's lock argument (multiprocessing's rules)."""
    if lock is False:
        return _NO_LOCK
    if lock in (True, None):
        return _EMBEDDED_RLOCK
    if isinstance(lock, SharedLock):
        return (H.LOCK_EXTERNAL, H.LOCK_TYPE_NONE, lock._seg.name)   # its key
    if not hasattr(lock, "acquire"):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return (H.LOCK_PROCESS_LOCAL, H.LOCK_TYPE_NONE, "")


def _array_parts(typecode_or_type, size_or_initializer):
    elem, code, length = _resolve(typecode_or_type)
    if length is not None:          # Array(c_int * 2, 3): rows of an array type
        elem = typecode_or_type
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


def RawArray(typecode_or_type, size_or_initializer, *, name=None, lifetime=None, keep=False,
             dir=None):
    """Return a ctypes array allocated from a new named shared-memory segment.

    typecode_or_type is a ctypes type or an array-module typecode ('cubBhHiIlLqQfd'
    and '?'); size_or_initializer is a length (zero-filled) or a sequence of initial
    values. name=None generates 'sb_...' (readable as .name).
    lifetime: "creator" (default: the creating process unlinks the segment when the
    object is closed or collected, or at exit), "last-closer" (the last process that has
    it open unlinks it, whatever the order, crashes included) or "persistent" (never
    unlinked implicitly). keep=True is an alias of lifetime="persistent".
    dir: keep the segment as a file in this directory (a tmpfs volume shared by
    containers) instead of /dev/shm; default: the SHAREDBRIDGE_DIR environment variable,
    else /dev/shm (docs/format.md section 1.3).
    """
    elem, code, count, initial = _array_parts(typecode_or_type, size_or_initializer)
    return _create_raw(elem, code, H.KIND_ARRAY, count, initial, _NO_LOCK, name, lifetime, keep,
                       dir)


def RawValue(typecode_or_type, *args, name=None, lifetime=None, keep=False, dir=None):
    """Return a ctypes object allocated from a new named shared-memory segment;
    *args are passed to the type's constructor. See RawArray for name, lifetime, keep."""
    elem, code, kind, count, initial = _value_parts(typecode_or_type, args)
    return _create_raw(elem, code, kind, count, initial, _NO_LOCK, name, lifetime, keep,
                       dir)


def Array(typecode_or_type, size_or_initializer, *, lock=True, name=None, lifetime=None,
          keep=False, ctx=None, dir=None):
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
    obj = _create_raw(elem, code, H.KIND_ARRAY, count, initial, fields, name, lifetime, keep, dir)
    return _wrap_new(obj, lock, fields)


def Value(typecode_or_type, *args, lock=True, name=None, lifetime=None, keep=False,
          ctx=None, dir=None):
    """The same as RawValue() except that, depending on lock, a process-safe
    synchronization wrapper may be returned instead of a raw ctypes object.
    See Array for lock, and RawArray for name, lifetime and keep."""
    elem, code, kind, count, initial = _value_parts(typecode_or_type, args)
    fields = _lock_fields(lock)
    obj = _create_raw(elem, code, kind, count, initial, fields, name, lifetime, keep, dir)
    return _wrap_new(obj, lock, fields)


def _wrap_new(obj, lock, fields):
    if fields[0] == H.LOCK_NONE:
        return obj
    if fields[0] == H.LOCK_EMBEDDED:
        lock = lock_from_segment(segment_of(obj))
    return synchronized(obj, lock)


def copy(obj, *, name=None, lifetime=None, keep=False, dir=None):
    """Return a ctypes object allocated from a new shared-memory segment which is a
    copy of the ctypes object obj."""
    base = base_type(type(obj))
    elem, code, length = _resolve(base)
    if length is None:
        kind, count = H.KIND_VALUE, 1
    else:
        kind, count = H.KIND_ARRAY, length
    return _create_raw(elem, code, kind, count, obj, _NO_LOCK, name, lifetime, keep, dir)
