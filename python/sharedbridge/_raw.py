"""Raw shared objects: genuine ctypes instances over a segment's data area.

Their class is a cached, dynamically made subclass of the user's ctypes type (same
name, same module, same repr) whose ``__reduce__`` pickles by name: the receiving
process attaches to the same memory instead of getting a copy.
"""

import ctypes
import sys

from . import _header as H

def _base_type(obj_type):
    """The user-visible ctypes type behind one of our shared subclasses."""
    return obj_type.__mro__[1] if obj_type.__dict__.get("_sb_shared") else obj_type


_subclass_cache = {}


def _simple_repr(self):
    return f"{_base_type(type(self)).__name__}({self.value!r})"


def _raw_reduce(self):
    seg = self._sb_segment
    elem = self._type_ if isinstance(self, ctypes.Array) else _base_type(type(self))
    from ._attach import _rebuild_raw
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


def _close(self):
    """The creator unlinks the segment's name now (unless keep=True); this object and
    every view of it stay usable."""
    self._sb_segment.close()


def _unlink(self):
    """Remove the segment's name now, whoever created it."""
    self._sb_segment.unlink()


# What raw objects add to their ctypes type, like the synchronized wrappers offer;
# a Structure field of the same name wins (the segment is then reachable through the
# module functions sharedbridge.close(obj) / header_of(obj)).
_EXTRAS = {
    "name": property(_segment_name, doc="name of the shared-memory segment"),
    "close": _close,
    "unlink": _unlink,
}


def _shared_subclass(base):
    try:
        return _subclass_cache[base]
    except KeyError:
        pass
    ns = {"__reduce__": _raw_reduce, "_sb_shared": True, "__module__": base.__module__,
          "__qualname__": base.__qualname__, "__doc__": base.__doc__}
    if issubclass(base, ctypes._SimpleCData):
        ns["__repr__"] = _simple_repr
    ns.update((attr, extra) for attr, extra in _EXTRAS.items() if not hasattr(base, attr))
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
