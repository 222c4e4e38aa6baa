"""Structure <-> field table (docs/format.md section 4).

:func:`describe` turns a ctypes Structure class into field-table entries; :func:`rebuild`
makes a Structure class from entries read from a header; :func:`same_layout` is the
format's "layouts match" rule.
"""

import ctypes
import re
import sys

from ..errors import TypeMismatchError, UnsupportedTypeError
from .header import MAX_STRUCT_DEPTH, StructField, is_reserved_field_name
from .typecodes import (STRUCT, TYPECODE_TO_TYPE, refuse_pointer, same_typecode,
                        typecode_of_simple)

_CFIELD = type(type("_Probe", (ctypes.Structure,), {"_fields_": [("x", ctypes.c_int)]}).x)
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,30}\Z")
_TYPE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_]")
# Padding fields of a rebuilt packed Structure start with this; a field table never holds
# such a name (names starting with "__" are reserved, docs/format.md section 4), and
# describe() leaves them out of a class rebuild() marked _sb_padded_ (only of those: a
# user's own field of that name is refused as reserved).
_PAD = "__pad_"


def type_name_of(cls):
    """The informational type_name: the class name, reduced to identifier characters
    and cut to 31 bytes."""
    name = _TYPE_NAME_CHARS.sub("_", cls.__name__)[:31]
    if name and name[0].isdigit():
        name = "_" + name[:30]
    return name


# What to do instead, for every type the field table cannot describe: the bytes are
# shareable, and the user's own class can be laid over them in each process.
BYTES_ADVICE = ("share the bytes instead: arr = RawArray('B', ctypes.sizeof({t})) and "
                "{t}.from_buffer(arr) in each process (.NET then sees a byte array)")


def _unsupported(cls, why, advice=True):
    text = f"cannot share {cls.__name__}: {why}"
    if advice:
        text += " " + BYTES_ADVICE.format(t=cls.__name__)
    return UnsupportedTypeError(text)


def _struct_fields(cls):
    """(name, type, extra...) of a Structure class including its Structure bases."""
    if issubclass(cls, ctypes.BigEndianStructure) and ctypes.BigEndianStructure is not ctypes.Structure:
        raise _unsupported(cls, "it is a BigEndianStructure, and a segment holds native "
                                "(little-endian) values only, which .NET reads as they are; "
                                "use a Structure, or")
    chain = []
    for klass in reversed(cls.__mro__):
        if "_fields_" in klass.__dict__:
            chain.extend(klass.__dict__["_fields_"])
    return chain


def element_of(ftype):
    """Unwrap (nested) ctypes arrays: (innermost type, total count)."""
    count = 1
    while isinstance(ftype, type) and issubclass(ftype, ctypes.Array):
        count *= ftype._length_
        ftype = ftype._type_
    return ftype, count


def check_element_type(ctype):
    """Typecode of a non-structure element type, or STRUCT; raise for anything else."""
    if not isinstance(ctype, type):
        raise TypeError(f"{ctype!r} is neither a typecode nor a ctypes type")
    refuse_pointer(ctype)
    if issubclass(ctype, ctypes.Union):
        raise _unsupported(ctype, "it is a Union, whose fields overlap, and the field table "
                                  "(docs/format.md section 4) describes fields that never "
                                  "overlap; use a Structure with one field per member, or")
    if issubclass(ctype, ctypes.Structure):
        return STRUCT
    if issubclass(ctype, ctypes._SimpleCData):
        return typecode_of_simple(ctype)
    raise UnsupportedTypeError(f"cannot share {ctype!r}: not a simple ctypes type or a Structure")


def describe(cls):
    """Field-table entries (a tuple of StructField) of a Structure class."""
    if ctypes.sizeof(cls) == 0:
        raise _unsupported(cls, "it has no fields (size 0), and a shared structure has at "
                                "least one field (docs/format.md section 4); give it a field",
                           advice=False)
    entries = []
    # The offsets are ctypes' own (a _pack_ or _align_ included): the writer records the
    # real layout, and a reader checks it against its type (docs/format.md section 4).
    _describe_into(cls, -1, entries, 1)
    return tuple(entries)


def is_natural(entries, size):
    """True if the entries (a valid field table: every 'T' entry has children) and the
    element *size* are exactly C natural alignment (docs/format.md section 4)."""
    offsets, sizes = natural_layout(entries)
    return sizes[-1] == size and all(
        e.offset == o and (e.typecode != STRUCT or e.item_size == sizes[i])
        for i, (e, o) in enumerate(zip(entries, offsets)))


def natural_layout(entries):
    """Natural alignment from the entries' sizes alone: (the offset of each entry,
    {parent index: size of that structure}, -1 being the element structure)."""
    align = [f.item_size if f.typecode != STRUCT else 1 for f in entries]
    for i in reversed(range(len(entries))):         # children come after their parent
        p = entries[i].parent
        if p >= 0:
            align[p] = max(align[p], align[i])
    ends, widest, offsets = {}, {}, []
    for i, f in enumerate(entries):
        offset = _align_up(ends.get(f.parent, 0), align[i])
        offsets.append(offset)
        ends[f.parent] = offset + f.count * f.item_size
        widest[f.parent] = max(widest.get(f.parent, 1), align[i])
    return offsets, {p: _align_up(end, widest[p]) for p, end in ends.items()}


def _align_up(x, a):
    return (x + a - 1) // a * a


def _describe_into(cls, parent, entries, depth):
    # depth of this structure's fields: checked before recursing, so a type nested
    # deeper than the format allows is refused up front, never by a RecursionError.
    seen = set()
    padded = cls.__dict__.get("_sb_padded_", False)
    for spec in _struct_fields(cls):
        name, ftype = spec[0], spec[1]
        if padded and name.startswith(_PAD):        # a gap of a rebuilt packed layout
            continue
        if len(spec) > 2:
            raise _unsupported(cls, f"field {name!r} is a bit field, and the field table "
                                    "describes whole bytes only (.NET has no bit fields); "
                                    "use a whole integer field and mask it, or")
        if isinstance(name, str) and name.isascii() and len(name) > 31 \
                and _FIELD_NAME.match(name[:31]) and name.isidentifier():
            raise _unsupported(cls, f"field name {name!r} is an identifier of {len(name)} "
                                    "characters, and the field table stores at most 31 (docs/format.md section 4); "
                                    "rename the field, or")
        if not isinstance(name, str) or not name.isascii() or not _FIELD_NAME.match(name):
            raise UnsupportedTypeError(
                f"{cls.__name__} field name {name!r} must be an ASCII identifier of at most "
                "31 characters")
        if is_reserved_field_name(name):
            raise UnsupportedTypeError(
                f"{cls.__name__} field name {name!r} is reserved (names starting with '__' "
                "and ctypes' own attributes such as _fields_ cannot be shared)")
        if name in seen:
            raise UnsupportedTypeError(
                f"{cls.__name__} has two fields named {name!r}: field names must be unique")
        seen.add(name)
        if depth > MAX_STRUCT_DEPTH:
            raise UnsupportedTypeError(
                f"{cls.__name__}.{name} is nested {depth} structures deep: format version 1 "
                f"allows at most {MAX_STRUCT_DEPTH} levels")
        item, count = element_of(ftype)
        code = check_element_type(item)
        if count == 0 or ctypes.sizeof(item) == 0:
            raise _unsupported(cls, f"field {name!r} has size 0, and every field of a shared "
                                    "structure has at least one byte; remove the field",
                               advice=False)
        offset = _field_descriptor(cls, name).offset
        index = len(entries)
        entries.append(StructField(name, code, offset, count, ctypes.sizeof(item), parent))
        if code == STRUCT:
            _describe_into(item, index, entries, depth + 1)


def _field_descriptor(cls, name):
    # From the class dictionaries, not getattr: a field may be named like a ctypes
    # class method (from_buffer...), which getattr would not return on every version.
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return getattr(cls, name)


def same_layout(a, b):
    """The "layouts match" rule: same entries; names compared case-insensitively."""
    return layout_difference(a, b) is None


def layout_difference(recorded, wanted):
    """None if the field tables match (docs/format.md section 4), else the first
    difference in words: which field, and what the segment and the type say."""
    for i, (x, y) in enumerate(zip(recorded, wanted)):
        if x.name.lower() != y.name.lower():
            return f"field {i} is {x.name!r} in the segment, {y.name!r} in the type"
        if x.offset != y.offset:
            return (f"field {x.name!r} is at byte offset {x.offset} in the segment, at "
                    f"{y.offset} in the type (a different _pack_, _align_ or field order?)")
        if not same_typecode(x.typecode, y.typecode) or (x.count, x.item_size, x.parent) \
                != (y.count, y.item_size, y.parent):
            return (f"field {x.name!r} is {_field_text(x)} in the segment, "
                    f"{_field_text(y)} in the type")
    if len(recorded) != len(wanted):
        return (f"the segment's structure has {len(recorded)} field entries, "
                f"the type {len(wanted)}")
    return None


def _field_text(f):
    return (f"typecode {f.typecode!r} x {f.count} of {f.item_size} bytes"
            + (f" in structure field {f.parent}" if f.parent >= 0 else ""))


def rebuild(fields, element_size, type_name, *, wchar_field):
    """A Structure class with the layout of *fields*, named *type_name*.

    wchar_field(ctypes_field, name, count) gives the descriptor that replaces each 'u'
    field's: the objects layer passes its checked one (docs/format.md section 3.4). A
    parameter, not an import: the layout is the format's business, what a read of a bad
    element does is the objects'.

    A naturally aligned table gives a plain Structure; any other (a packed or explicit
    layout, docs/format.md section 4) a Structure with ``_pack_ = 1`` whose fields sit at
    the recorded offsets, with unnamed padding (``__pad_<offset>`` byte arrays, names a
    field table cannot hold) in the gaps and at the end.

    Raises TypeMismatchError if ctypes cannot reproduce the recorded layout (then the
    caller must pass the class to attach())."""
    children = {}
    for index, f in enumerate(fields):
        children.setdefault(f.parent, []).append(index)
    packed = not is_natural(fields, element_size)

    def build(parent, name, size):
        spec, end = [], 0
        for index in children.get(parent, ()):
            f = fields[index]
            ftype = build(index, f"{type_name or 'Struct'}_{f.name}", f.item_size) \
                if f.typecode == STRUCT else TYPECODE_TO_TYPE[f.typecode]
            if packed and f.offset > end:
                spec.append((f"{_PAD}{end}", ctypes.c_ubyte * (f.offset - end)))
            spec.append((f.name, ftype * f.count if f.count != 1 else ftype))
            end = f.offset + f.count * f.item_size
        attrs = {"_fields_": spec}
        if packed:
            attrs["_sb_padded_"] = True
            if size > end:
                spec.append((f"{_PAD}{end}", ctypes.c_ubyte * (size - end)))
            attrs["_pack_"] = 1
            if sys.version_info >= (3, 14):     # the layout _pack_ has always had on Linux
                attrs["_layout_"] = "ms"
        cls = type(name, (ctypes.Structure,), attrs)
        for index in children.get(parent, ()):
            f = fields[index]
            if f.typecode == "u":       # checked reads and writes (format.md section 3.4)
                setattr(cls, f.name, wchar_field(cls.__dict__[f.name], f.name, f.count))
        return cls

    cls = build(-1, type_name or "Struct", element_size)
    if ctypes.sizeof(cls) != element_size or not same_layout(describe(cls), fields):
        raise TypeMismatchError(
            f"the recorded layout of {type_name or 'the structure'} ({element_size} bytes) "
            "cannot be rebuilt as a ctypes Structure: pass the matching Structure "
            "class to attach(name, cls)")
    return cls
