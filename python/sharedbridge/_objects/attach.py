"""attach(name): rebuild the object a segment holds from its header alone."""

import ctypes

from . import _header as H
from . import _layout
from ._locks import lock_from_segment
from ._raw import _raw_object
from ._segment import open_segment
from ._synchronized import synchronized
from ._typecodes import STRUCT, TYPECODE_TO_TYPE
from .errors import CorruptSegmentError, TypeMismatchError, UnsupportedVersionError

_CANONICAL = {"l": "q", "L": "Q"}

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


def attach(name, typecode_or_type=None, *, timeout=5.0, allow_other_owner=False):
    """Open the existing segment *name* and rebuild the object it holds.

    Returns what the creator made: a synchronized wrapper (embedded or external lock),
    a raw ctypes array/object (no lock, or a process-local lock that other processes
    cannot reach), or a Lock/RLock for a lock-only segment. Structures are rebuilt from
    the field table unless *typecode_or_type* gives the class (then checked against
    the recorded layout). Attaching never unlinks anything.

    A segment owned by another user is refused (SegmentPermissionError) unless
    allow_other_owner=True: only attach to other users' segments you trust. Objects
    attached that way carry the permission when pickled to other processes.
    """
    seg = open_segment(name, timeout, allow_other_owner)
    h = seg.header
    if h.kind == H.KIND_LOCK:
        if typecode_or_type is not None:
            raise TypeMismatchError(f"type mismatch: {name!r} is a lock, not {typecode_or_type!r}")
        return lock_from_segment(seg)
    raw = _raw_object(seg, _element_type(h, typecode_or_type))
    if h.lock_kind == H.LOCK_EMBEDDED:
        return synchronized(raw, lock_from_segment(seg))
    if h.lock_kind == H.LOCK_EXTERNAL:
        return synchronized(raw, lock_from_segment(
            _open_external_lock(name, h.lock_name, timeout, allow_other_owner)))
    return raw


def _open_external_lock(name, lock_name, timeout, allow_other_owner):
    """The segment holding the lock of segment *name* (lock_kind 2, rulings A.11): it
    must hold an embedded mutex of this machine's ABI, else *name* is corrupt. A
    missing lock segment stays SegmentNotFoundError."""
    try:
        lock_seg = open_segment(lock_name, timeout, allow_other_owner)
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
    return lock_seg


def _rebuild_raw(name, struct_cls, allow_other_owner=False):
    seg = open_segment(name, allow_other_owner=allow_other_owner)
    return _raw_object(seg, _element_type(seg.header, struct_cls))
