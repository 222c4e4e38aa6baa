"""Raw shared objects: genuine ctypes instances over a segment's data area.

Their class is a cached, dynamically made subclass of the user's ctypes type (same
name, same module, same repr) whose ``__reduce__`` pickles by name: the receiving
process attaches to the same memory instead of getting a copy. The element type of a
segment (element_type) and that unpickling attach (_attach_raw) live here too, below
attach.py, so that pickling a raw object needs nothing from a higher module.

'u' (c_wchar) objects also check what they read and write (docs/format.md section
3.4): an element that is not a Unicode scalar value (a surrogate 0xD800..0xDFFF or
above 0x10FFFF) is CorruptDataError naming the segment and the index, and a lone
surrogate is refused when written (UnicodeEncodeError, a ValueError). Only 'u'
classes get these methods: the other typecodes keep ctypes' own accessors. Raw views
(memoryview, numpy) are raw memory and are not checked.
"""

import ctypes
import importlib
import re
import sys

from .._format import header as H
from .._format import struct_layout
from .._format.typecodes import STRUCT, TYPECODE_TO_TYPE, same_typecode
from .._format.segment_name import base_name
from ..errors import CorruptDataError, TypeMismatchError, UnsupportedTypeError
from .protocol import segment_of
from .unavailable import attach_or_unavailable, signature

# Our shared subclasses (a set, not a class attribute: a Structure field may have any
# non-reserved name, and a class attribute would hide it).
_SHARED_CLASSES = set()


def base_type(obj_type):
    """The user-visible ctypes type behind one of our shared subclasses."""
    return obj_type.__mro__[1] if obj_type in _SHARED_CLASSES else obj_type


_subclass_cache = {}


def _raw_segment(obj):
    """The Segment of a raw shared object, or None (a private ctypes object). Kept in
    the instance dictionary, read from there: a Structure field named _sb_segment would
    hide the attribute."""
    d = getattr(obj, "__dict__", None)
    return d.get("_sb_segment") if d is not None else None


# Every ctypes object answers segment_of (protocol.py) from its instance dictionary:
# ours hold their segment there (raw_object() below), a private one holds none.
for _ctypes_base in (ctypes.Array, ctypes.Structure, ctypes.Union, ctypes._SimpleCData):
    segment_of.register(_ctypes_base, _raw_segment)
del _ctypes_base


def _simple_repr(self):
    try:
        value = self.value
    except CorruptDataError:
        return f"{base_type(type(self)).__name__}(<corrupt {_raw_u32(self, 1)[0]:#x}>)"
    return f"{base_type(type(self)).__name__}({value!r})"


def _raw_reduce(self):
    seg = _raw_segment(self)
    seg.export()
    elem = self._type_ if isinstance(self, ctypes.Array) else base_type(type(self))
    return _attach_raw, (seg.name, type_ref(elem), seg.trusted, signature(seg.header))


def type_ref(cls):
    """What a pickle carries of an element type, beyond what the header records: the
    rows of a multi-dimensional element (("array", length, inner)), and the user's class
    as ("class", module, qualname) when it is not ctypes' own (a Structure, a subclass
    of a simple type such as class MyInt(c_int)); None for a plain simple type. Names,
    not the class itself: a receiver that cannot import the class falls back to the
    type the header describes instead of failing to unpickle (see _pickled_type)."""
    if issubclass(cls, ctypes.Array):
        return ("array", cls._length_, type_ref(cls._type_))
    if cls in _CTYPES_OWN or _import_ref(cls.__module__, cls.__qualname__) is not cls:
        return None         # ctypes' own, or not importable here either (a local class)
    return ("class", cls.__module__, cls.__qualname__)


_CTYPES_OWN = frozenset(TYPECODE_TO_TYPE.values())


def _import_ref(module, qualname):
    """The class *module*.*qualname* if this process has or can import it, else None.
    (The sender checks it finds the very class it names; a receiver's class of the same
    name is checked against the header by _pickled_type.)"""
    try:
        target = sys.modules.get(module) or importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception:
        return None
    return target if isinstance(target, type) else None


def _pickled_type(h, ref):
    """The element type for a pickled type_ref: the user's class if this process can
    import it and it fits the header, else the type the header describes."""
    if ref is not None and ref[0] == "array":
        return element_type(h, _pickled_type(h, ref[2]) * ref[1])
    cls = _import_ref(ref[1], ref[2]) if ref is not None else None
    if cls is not None:
        try:
            return element_type(h, cls)
        except (TypeError, TypeMismatchError, UnsupportedTypeError):
            pass
    return element_type(h, None)


def _segment_name(self):
    return base_name(_raw_segment(self).name)


def _close(self):
    """Give up this object's claim now (see sharedbridge.close); this object and
    every view of it stay usable."""
    _raw_segment(self).close()


def _unlink(self):
    """Remove the segment's name now, whoever created it."""
    _raw_segment(self).unlink()


def _raw_copy(self):
    """copy.copy: an independent private ctypes object of the same type and contents,
    as multiprocessing gives (pickling by name would give another view of the memory)."""
    return base_type(type(self)).from_buffer_copy(self)


def _raw_deepcopy(self, memo=None):
    # multiprocessing: TypeError ("cannot pickle 'mmap.mmap' object").
    raise TypeError(
        f"cannot deepcopy a shared {base_type(type(self)).__name__} object (as in "
        "multiprocessing): use copy.copy(obj) for a private copy, or sharedbridge.copy(obj) "
        "for a new shared one")


# What raw objects add to their ctypes type, like the synchronized wrappers offer;
# a Structure field of the same name wins (the segment is then reachable through the
# module functions sharedbridge.close(obj) / header_of(obj)).
_EXTRAS = {
    "name": property(_segment_name, doc="name of the shared-memory segment"),
    "close": _close,
    "unlink": _unlink,
}


# --- 'u' elements (docs/format.md section 3.4) ----------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
_ARRAY_GETITEM = ctypes.Array.__getitem__
_ARRAY_SETITEM = ctypes.Array.__setitem__
_SIMPLE_VALUE = ctypes._SimpleCData.__dict__["value"]


def _is_scalar_value(v):
    return v < 0xD800 or 0xDFFF < v <= 0x10FFFF


def _raw_u32(obj, n):
    return (ctypes.c_uint32 * n).from_address(ctypes.addressof(obj))


def _corrupt_u(obj, index, v, field=None):
    seg = _raw_segment(obj)
    name = seg.name if seg is not None else None
    where = "the value" if index is None else f"element {index}"
    if field is not None:
        where += f" of field {field!r}"
    return CorruptDataError(
        f"corrupt data in segment {name!r}: {where} of a 'u' (c_wchar) object holds "
        f"{v:#x}, which is not a Unicode scalar value (0..0x10FFFF without the surrogates "
        "0xD800..0xDFFF); a conforming writer never stores it", name, index)


def _check_u_elements(self, index):
    """Raise CorruptDataError for the first non-scalar element among those *index*
    (an int or a slice) selects; return quietly if there is none."""
    n = len(self)
    if isinstance(index, slice):
        indexes = range(*index.indices(n))
    else:
        try:
            i = index.__index__()
        except (AttributeError, TypeError):
            return
        if i < 0:
            i += n
        if not 0 <= i < n:
            return
        indexes = (i,)
    raw = _raw_u32(self, n)
    for i in indexes:
        v = raw[i]
        if not _is_scalar_value(v):
            raise _corrupt_u(self, i, v)


def _check_u_prefix(self):
    """Like _check_u_elements for the elements .value reads (up to the first NUL)."""
    raw = _raw_u32(self, len(self))
    for i, v in enumerate(raw):
        if v == 0:
            return
        if not _is_scalar_value(v):
            raise _corrupt_u(self, i, v)


def _refuse_surrogates(value):
    """Writers store only Unicode scalar values: a lone surrogate is refused."""
    if isinstance(value, str):
        m = _SURROGATE.search(value)
        if m:
            raise UnicodeEncodeError(
                "utf-32", value, m.start(), m.start() + 1,
                "a lone surrogate is not a Unicode scalar value: a 'u' element cannot hold it")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_surrogates(item)


def check_u_initial(obj, count):
    """Refuse a private c_wchar object (initial values, copy()) that holds an element
    which is not a Unicode scalar value, before any segment is made."""
    for i, v in enumerate(_raw_u32(obj, count)):
        if not _is_scalar_value(v):
            text = chr(v) if v <= 0x10FFFF else ""
            raise UnicodeEncodeError(
                "utf-32", text, 0, 1,
                f"element {i} is {v:#x}, not a Unicode scalar value: a 'u' element cannot "
                "hold it")


class CheckedWcharField:
    """A c_wchar (or c_wchar array) field of a structure rebuilt from a field table:
    the ctypes field, but reads raise CorruptDataError for an element that is not a
    Unicode scalar value and writes refuse lone surrogates. Keeps ``offset`` and
    ``size`` of the ctypes field (the layout is unchanged)."""

    __slots__ = ("_field", "_name", "_count", "offset", "size")

    def __init__(self, field, name, count):
        self._field = field
        self._name = name
        self._count = count
        self.offset = field.offset
        self.size = field.size

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        try:
            v = self._field.__get__(obj, cls)
        except ValueError:
            v = None
        if v is None or _SURROGATE.search(v):
            raw = (ctypes.c_uint32 * self._count).from_address(
                ctypes.addressof(obj) + self.offset)
            for i, code in enumerate(raw):
                if code == 0 and self._count > 1:
                    break
                if not _is_scalar_value(code):
                    raise _corrupt_u(_root(obj), i, code, self._name)
        return v

    def __set__(self, obj, value):
        _refuse_surrogates(value)
        self._field.__set__(obj, value)


def _root(obj):
    """The object owning the memory of a (nested) structure instance."""
    while getattr(obj, "_b_base_", None) is not None:
        obj = obj._b_base_
    return obj


def _u_array_getitem(self, index):
    try:
        v = _ARRAY_GETITEM(self, index)
    except ValueError:          # ctypes: "character U+110000 is not in range"
        _check_u_elements(self, index)
        raise
    if _SURROGATE.search(v):
        _check_u_elements(self, index)
    return v


def _u_array_setitem(self, index, value):
    _refuse_surrogates(value)
    _ARRAY_SETITEM(self, index, value)


def _u_array_value_property(base):
    desc = next(k.__dict__["value"] for k in base.__mro__ if "value" in k.__dict__)

    def get(self):
        try:
            v = desc.__get__(self, type(self))
        except ValueError:
            _check_u_prefix(self)
            raise
        if _SURROGATE.search(v):
            _check_u_prefix(self)
        return v

    def set(self, value):
        _refuse_surrogates(value)
        desc.__set__(self, value)

    return property(get, set, doc="the string up to the first NUL")


def _u_value_get(self):
    try:
        v = _SIMPLE_VALUE.__get__(self, type(self))
    except ValueError:
        v = None
    if v is None or _SURROGATE.search(v):
        raw = _raw_u32(self, 1)[0]
        if not _is_scalar_value(raw):
            raise _corrupt_u(self, None, raw)
    return v


def _u_value_set(self, value):
    _refuse_surrogates(value)
    _SIMPLE_VALUE.__set__(self, value)


def _u_methods(base):
    """The checking accessors of a c_wchar value or c_wchar array class, else {}."""
    if base is ctypes.c_wchar or (isinstance(base, type) and issubclass(base, ctypes.c_wchar)):
        return {"value": property(_u_value_get, _u_value_set)}
    if issubclass(base, ctypes.Array) and base._type_ is ctypes.c_wchar:
        return {"__getitem__": _u_array_getitem, "__setitem__": _u_array_setitem,
                "value": _u_array_value_property(base)}
    return {}


def _shared_subclass(base):
    try:
        return _subclass_cache[base]
    except KeyError:
        pass
    ns = {"__reduce__": _raw_reduce, "__copy__": _raw_copy, "__deepcopy__": _raw_deepcopy,
          "__module__": base.__module__,
          "__qualname__": base.__qualname__, "__doc__": base.__doc__}
    if base.__bases__ == (ctypes._SimpleCData,):
        # ctypes' repr: 'c_int(5)' for its own types, '<MyInt object at ...>' for a
        # user's subclass (which the subclass's default repr already gives).
        ns["__repr__"] = _simple_repr
    ns.update((attr, extra) for attr, extra in _EXTRAS.items() if not hasattr(base, attr))
    sub = type(base.__name__, (base,), ns)
    # Set after the class exists: ctypes adds c_wchar arrays' own 'value' while making
    # the class, over anything given in the namespace.
    for attr, method in _u_methods(base).items():
        setattr(sub, attr, method)
    _same_pointer_type(sub, base)
    _subclass_cache[base] = sub
    _SHARED_CLASSES.add(sub)
    return sub


def _same_pointer_type(sub, base):
    """ctypes.pointer(raw) and POINTER(type(raw)) give POINTER(base), as for an object of
    the user's type: pointer(RawValue('i'))[0] is an int, as in multiprocessing (a
    pointer to a subclass of a simple type would return the object, not its value)."""
    pointer_type = ctypes.POINTER(base)
    cache = getattr(ctypes, "_pointer_type_cache", None)
    if sys.version_info < (3, 14) and cache is not None:
        cache[sub] = pointer_type
    else:                                   # 3.14 keeps it on the class
        try:
            sub.__pointer_type__ = pointer_type
        except (AttributeError, TypeError):
            pass


def row_parts(row):
    """(innermost element type, elements per row) of an element type: a ctypes array
    type as element (Array(c_int * 2, 3)) is a row of several segment elements. Rows of
    c_wchar are refused: their reads would skip the checks of docs/format.md section
    3.4."""
    inner, per_row = struct_layout.element_of(row)
    if inner is not row and isinstance(inner, type) and issubclass(inner, ctypes.c_wchar):
        raise UnsupportedTypeError(
            f"cannot share rows of c_wchar ({row.__name__}): the element checks of 'u' "
            "objects cover one dimension only; use a flat Array('u', rows * columns) and "
            "index it as row * columns + column")
    return inner, per_row


def raw_object(seg, elem_type):
    """The raw shared object over *seg*'s data area: one *elem_type*, or an array of
    them for an array segment (an instance of the cached shared subclass). An array
    type as *elem_type* makes rows: the segment's element_count elements are
    element_count / per_row of them."""
    h = seg.header
    if h.kind == H.KIND_ARRAY:
        base = elem_type * (h.element_count // row_parts(elem_type)[1])
    else:
        base = elem_type
    sub = _shared_subclass(base)
    # The metaclass's from_buffer: a Structure field may be named from_buffer.
    obj = type(sub).from_buffer(sub, seg.mm, h.data_offset)
    obj.__dict__["_sb_segment"] = seg
    return obj


# --- from a header: the element type, and attaching by name when unpickling -------------

_rebuilt_structs = {}


def rebuilt_struct(fields, element_size, type_name):
    """The Structure class of a validated field table, built once per (fields, size,
    name): every attach of a layout, and every queue message of it, gets the same class.
    TypeMismatchError if ctypes cannot rebuild it (struct_layout.rebuild)."""
    key = (fields, element_size, type_name)
    cls = _rebuilt_structs.get(key)
    if cls is None:
        cls = _rebuilt_structs[key] = struct_layout.rebuild(
            fields, element_size, type_name, wchar_field=CheckedWcharField)
    return cls


def element_type(h, requested):
    """The ctypes element type for header *h*, checked against *requested* (None, a
    typecode or a ctypes type): a structure is rebuilt from the field table unless the
    caller gives its class."""
    if isinstance(requested, type) and issubclass(requested, ctypes.Array):
        inner, per_row = row_parts(requested)
        element_type(h, inner)
        if h.kind != H.KIND_ARRAY or h.element_count % per_row:
            raise TypeMismatchError(
                f"type mismatch: asked for rows of {per_row} elements "
                f"({requested.__name__}), the segment holds "
                f"{h.element_count if h.kind == H.KIND_ARRAY else 'one'} element(s)")
        return requested
    if requested is None:
        if h.typecode != STRUCT:
            return TYPECODE_TO_TYPE[h.typecode]
        return rebuilt_struct(h.fields, h.element_size, h.type_name)
    recorded = ("structure " + (h.type_name or "?")) if h.typecode == STRUCT \
        else f"typecode {h.typecode!r}"
    if isinstance(requested, str):
        if requested not in TYPECODE_TO_TYPE:
            raise TypeError(f"unknown typecode {requested!r}")
        if not same_typecode(requested, h.typecode):
            raise TypeMismatchError(f"type mismatch: asked for typecode {requested!r}, "
                                    f"the segment holds {recorded}")
        return TYPECODE_TO_TYPE[requested]
    code = struct_layout.check_element_type(requested)
    if code == STRUCT:
        # The recorded offsets are the writer's real ones (packed or not, docs/format.md
        # section 4): the requested class must have exactly them.
        wanted = struct_layout.describe(requested)
        if h.typecode != STRUCT:
            raise TypeMismatchError(
                f"type mismatch: asked for structure {requested.__name__}, the segment "
                f"holds {recorded}")
        difference = struct_layout.layout_difference(h.fields, wanted)
        if ctypes.sizeof(requested) != h.element_size or difference is not None:
            raise TypeMismatchError(
                f"type mismatch: asked for structure {requested.__name__} "
                f"({ctypes.sizeof(requested)} bytes), the segment holds {recorded} "
                f"({h.element_size} bytes) with a different layout"
                + (f": {difference}" if difference else "")
                + "; pass a class with the segment's field offsets and size")
        return requested
    if not same_typecode(code, h.typecode):
        raise TypeMismatchError(f"type mismatch: asked for {requested.__name__} "
                                f"(typecode {code!r}), the segment holds {recorded}")
    return requested


def _attach_raw(name, ref, allow_other_owner=False, expect=None):
    # What a pickled raw object calls in the receiving process (see _raw_reduce). Never
    # raises (unavailable.py: an exception here can hang multiprocessing.Pool).
    return attach_or_unavailable(
        name, lambda seg: raw_object(seg, _pickled_type(seg.header, ref)), allow_other_owner,
        expect)
