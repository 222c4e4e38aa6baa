"""Create and open .NET SharedBridge objects from Python, and convert objects between the
two languages (the same segment, the same robust lock)."""

import os

from .. import attach as _py_attach
from .. import header_of
from .._format import header as H
from .._format.segment_name import dir_of
from .._objects.lifetimes import resolve_lifetime
from .._objects.protocol import require_segment
from .error_map import errors
from .loader import sb_or_load
from .views import as_numpy

_NET_TYPE_NAMES = {"b": "SByte", "B": "Byte", "h": "Int16", "H": "UInt16", "i": "Int32",
                   "I": "UInt32", "l": "Int64", "L": "UInt64", "q": "Int64", "Q": "UInt64",
                   "f": "Single", "d": "Double", "?": "Boolean"}


def _net_element_type(typecode, net_type):
    if net_type is not None:
        return net_type
    if typecode == "u":
        from System.Text import Rune
        return Rune
    if typecode == "T":
        raise TypeError("a structure segment needs its .NET struct type: pass net_type= "
                        "(a [StructLayout(Sequential)] struct with the same fields)")
    import System
    return getattr(System, _NET_TYPE_NAMES[typecode])


# The kinds whose .NET class is not generic: kind -> the SharedBridge class name (docs/format.md
# section 2.2's kinds; arrays, values and n-dimensional arrays are generic over their element).
_PLAIN_KINDS = {H.KIND_LOCK: "SharedLock", H.KIND_EVENT: "SharedEvent",
                H.KIND_SEMAPHORE: "SharedSemaphore", H.KIND_CONDITION: "SharedCondition",
                H.KIND_BARRIER: "SharedBarrier", H.KIND_QUEUE: "SharedQueue"}


def open(name, net_type=None, *, ready_timeout=None, allow_other_owner=False, dir=None):
    """Open the existing segment *name*, of any kind, as the .NET object its header describes:
    ``SharedArray<T>``, ``SharedValue<T>``, ``SharedTensor<T>`` (an n-dimensional array),
    ``SharedCharArray`` ('c' arrays), ``SharedLock``, ``SharedEvent``, ``SharedSemaphore``
    (bounded or not), ``SharedCondition``, ``SharedBarrier`` or ``SharedQueue``.
    T is *net_type* or the .NET type of the typecode (structures need *net_type*; the other
    kinds take none: a *net_type* for them is a TypeError). *dir*: the directory backend's
    directory (default SHAREDBRIDGE_DIR, else /dev/shm; docs/format.md section 1.3), given
    to .NET as ``OpenOptions.Directory``."""
    sb = sb_or_load()
    with errors():
        options = _open_options(sb, ready_timeout, allow_other_owner, dir)
        h = header_of(name, allow_other_owner=allow_other_owner, dir=dir)
        plain = _PLAIN_KINDS.get(h.kind)
        if plain is not None:
            if net_type is not None:
                raise TypeError(f"{name!r} is a {plain} segment (kind {h.kind}), which has no "
                                f"element type: open it without net_type")
            return getattr(sb, plain).Open(name, options)
        if h.kind == H.KIND_ARRAY and h.typecode == "c" and net_type is None:
            return sb.SharedCharArray.Open(name, options)
        element = _net_element_type(h.typecode, net_type)
        if h.kind == H.KIND_NDARRAY:
            return sb.SharedTensor[element].Open(name, options)
        generic = sb.SharedArray if h.kind == H.KIND_ARRAY else sb.SharedValue
        return generic[element].Open(name, options)


attach = open       # the name it had first; the Python package's own verb


def _open_options(sb, ready_timeout, allow_other_owner, directory=None):
    from System import TimeSpan
    timeout = None if ready_timeout is None else TimeSpan.FromSeconds(float(ready_timeout))
    return sb.OpenOptions(timeout, bool(allow_other_owner), None,
                          None if directory is None else os.fspath(directory))


def to_dotnet(py_obj, net_type=None):
    """A .NET object for the segment of a Python sharedbridge object of any kind (Array, Value,
    RawArray, RawValue, their synchronized wrappers, Lock, RLock, Event, Semaphore,
    BoundedSemaphore, Condition, Barrier, the queues, n-dimensional arrays; open()): the same
    memory and the same robust
    lock. The .NET object is an opener, never the creator: disposing it unlinks nothing."""
    # The segment's key is "<dir>/<name>" in the directory backend (docs/format.md section 1.3).
    key = require_segment(py_obj).name
    return open(key.rpartition("/")[2], net_type, dir=dir_of(key))


def to_python(net_obj, typecode_or_type=None):
    """The Python package's object for the segment of a .NET SharedBridge object: attach() by
    name (a synchronized wrapper when the segment has a lock: the same robust mutex)."""
    sb_or_load()
    with errors():
        name = str(net_obj.Name)
    return _py_attach(name, typecode_or_type)


def _segment_options(sb, lock, keep, typecode=None, lifetime=None):
    # lifetime= and keep= as in sharedbridge.Array (keep=True: persistent; contradictions
    # are a ValueError), given to .NET as SegmentOptions.Lifetime.
    code = resolve_lifetime(lifetime, keep)
    net_lifetime = (sb.SegmentLifetime.Creator, sb.SegmentLifetime.LastCloser,
                    sb.SegmentLifetime.Persistent)[code]
    return sb.SegmentOptions(synchronized=bool(lock), typeCode=typecode, lifetime=net_lifetime)


def _element_and_code(typecode_or_type):
    """(.NET element type, explicit typecode for SegmentOptions or None) of a typecode or a
    .NET type: 'l'/'L' are recorded as such, every other typecode by the .NET type alone."""
    if isinstance(typecode_or_type, str):
        code = typecode_or_type if typecode_or_type in ("l", "L") else None
        return _net_element_type(typecode_or_type, None), code
    return typecode_or_type, None


def create_array(typecode_or_type, size_or_initializer, *, name=None, lock=True, lifetime=None,
                 keep=False):
    """Create a .NET ``SharedArray<T>`` from Python: *typecode_or_type* is a typecode ('d',
    'i', ...) or a .NET type; *size_or_initializer* a length or a sequence / numpy array
    (copied in through a numpy view when numpy is there: one memcpy, not element by element)."""
    sb = sb_or_load()
    element, code = _element_and_code(typecode_or_type)
    initial = None
    if isinstance(size_or_initializer, int):
        length = size_or_initializer
    else:
        initial = size_or_initializer
        length = len(initial)
    with errors():
        arr = sb.SharedArray[element].Create(name, length,
                                             _segment_options(sb, lock, keep, code, lifetime))
    if initial is not None:
        try:
            as_numpy(arr)[:] = initial
        except ImportError:
            for i, v in enumerate(initial):
                arr.Set(i, v)
    return arr


def create_value(typecode_or_type, value=None, *, name=None, lock=True, lifetime=None,
                 keep=False):
    """Create a .NET ``SharedValue<T>`` holding *value* (default zero)."""
    sb = sb_or_load()
    element, code = _element_and_code(typecode_or_type)
    options = _segment_options(sb, lock, keep, code, lifetime)
    with errors():
        if value is None:
            return sb.SharedValue[element].Create(name, options=options)
        return sb.SharedValue[element].Create(name, value, options)


def create_tensor(typecode_or_type, shape, initial=None, *, name=None, lock=True, lifetime=None,
                  keep=False):
    """Create a .NET ``SharedTensor<T>`` of *shape* (C order) from Python; *initial*, if given,
    is copied in through a numpy view (one copy). numpy, PyTorch (DLPack) and other processes
    see it by name: ``sharedbridge.attach(tensor.Name).numpy()``."""
    sb = sb_or_load()
    element, code = _element_and_code(typecode_or_type)
    from System import Int64
    dims = [int(d) for d in shape]
    with errors():
        tensor = sb.SharedTensor[element].Create(name, _int64_array(Int64, dims),
                                                 _segment_options(sb, lock, keep, code, lifetime))
    if initial is not None:
        as_numpy(tensor)[...] = initial
    return tensor


def _int64_array(Int64, values):
    from System import Array
    arr = Array.CreateInstance(Int64, len(values))
    for i, v in enumerate(values):
        arr[i] = v
    return arr
