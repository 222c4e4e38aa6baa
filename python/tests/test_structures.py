"""Structures shared by name (docs/format.md section 4, the field table): which field
names, type names and nestings writers accept, what readers refuse in a field table, and
field names that clash with the library's own attributes. Every forged object is named
pyh_<pid>_<n> and removed by its test."""

import ctypes
import os
import pickle
import struct

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from sharedbridge._format import struct_layout
from conftest import image_of, reseal


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


def header_image(fields=(), typecode="T", element_size=None, count=1, kind=H.KIND_ARRAY,
                 type_name="S"):
    """A sealed header + zeroed data for a hand-made field table (entries as StructField)."""
    header_size = H.header_size_for(len(fields))
    h = H.SegmentHeader(
        version=1, compat_version=1, header_size=header_size, kind=kind, typecode=typecode,
        element_size=element_size, element_count=count, data_offset=header_size,
        data_size=element_size * count, lock_kind=0, lock_abi=0, lock_size=0,
        lock_offset=0, lock_type=0, fields=tuple(fields), creator_pid=os.getpid(),
        creator_start_time=0, created_unix_ns=0, type_name=type_name, lock_name="")
    img = H.encode(h)
    struct.pack_into("<I", img, 0x180, 1)
    img += bytes(h.data_size)
    return reseal(img)


# --- field names -------------------------------------------------------------------------

def test_duplicate_field_names_are_refused_by_writers():
    class Base(ctypes.Structure):
        _fields_ = [("x", ctypes.c_int)]

    class Derived(Base):
        _fields_ = [("x", ctypes.c_double)]

    with pytest.raises(sb.UnsupportedTypeError, match="two fields named 'x'"):
        sb.RawValue(Derived)


def test_duplicate_field_names_in_one_parent_are_corrupt(forge):
    img = image_of(sb.RawValue(Point))
    img[0x240:0x241] = b"x"                             # y -> x
    with pytest.raises(sb.CorruptSegmentError, match="appears twice"):
        sb.attach(forge(reseal(img)), timeout=0.1)


def test_one_name_in_different_parents_is_fine():
    class Outer(ctypes.Structure):
        _fields_ = [("x", ctypes.c_int), ("p", Point), ("y", Point)]

    v = sb.RawValue(Outer)
    v.p.x = 1.5
    again = sb.attach(v.name)
    assert again.p.x == 1.5 and [f.name for f in sb.header_of(again).fields] == \
        ["x", "p", "x", "y", "y", "x", "y"]


@pytest.mark.parametrize("field", sorted(H.RESERVED_FIELD_NAMES) + ["__x", "__", "__init__"])
def test_reserved_field_names_are_refused_by_writers(field):
    cls = type("R", (ctypes.Structure,), {})
    try:
        cls._fields_ = [(field, ctypes.c_int)]
    except Exception:
        pytest.skip(f"ctypes itself refuses a field named {field!r}")
    with pytest.raises(sb.UnsupportedTypeError, match="reserved"):
        sb.RawArray(cls, 1)


@pytest.mark.parametrize("field", ["_fields_", "_objects", "_layout_", "__dict__", "__x"])
def test_reserved_field_names_are_corrupt_for_readers(forge, field):
    img = header_image([H.StructField(field, "i", 0, 1, 4, -1)], element_size=4)
    with pytest.raises(sb.CorruptSegmentError, match=f"field name '{field}' is reserved"):
        sb.attach(forge(img), timeout=0.1)


@pytest.mark.parametrize("field", ["a" * 32, "1x", "x-y", "caf\u00e9", "x y"])
def test_field_names_must_be_short_ascii_identifiers(field):
    cls = type("N", (ctypes.Structure,), {"_fields_": [(field, ctypes.c_int)]})
    with pytest.raises(sb.UnsupportedTypeError, match="identifier"):
        sb.RawValue(cls)


class Clashing(ctypes.Structure):
    """Field names that are legal in the format but are also attribute names of
    ctypes classes, of raw objects or of the synchronized wrappers."""
    _fields_ = [("from_buffer", ctypes.c_int), ("_sb_segment", ctypes.c_int),
                ("name", ctypes.c_int), ("acquire", ctypes.c_int), ("get_obj", ctypes.c_int),
                ("_lock", ctypes.c_int), ("value", ctypes.c_int), ("mro", ctypes.c_int)]


@pytest.mark.parametrize("maker", ["Value", "RawValue", "RawArray"])
def test_fields_named_like_library_attributes(maker, pyh_name):
    name = pyh_name()      # a raw structure's .name is its field: keep the segment name
    made = getattr(sb, maker)(Clashing, *((1,) if maker == "RawArray" else ()), name=name)
    for obj in (made, sb.attach(name), sb.attach(name, Clashing)):
        raw = obj.get_obj() if isinstance(obj, sb.SynchronizedBase) else obj
        elem = raw[0] if maker == "RawArray" else raw
        elem.from_buffer, elem._sb_segment, elem.acquire, elem.mro = 1, 2, 3, 4
        assert (elem.from_buffer, elem._sb_segment, elem.acquire, elem.mro) == (1, 2, 3, 4)
        if isinstance(obj, sb.SynchronizedBase):
            with obj:
                obj.value = 7                   # a field property of the wrapper
            assert obj.value == 7 and obj.get_obj().name == 0
            assert obj.name == name             # the wrapper's own attributes win
        assert sb.header_of(obj).type_name == "Clashing"
        assert pickle.loads(pickle.dumps(obj)) is not None


# --- type names (docs/format.md section 4.1) ---------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("Point", "Point"), ("9Lives", "_9Lives"), ("a-b.c d", "a_b_c_d"),
    ("caf\u00e9", "caf_"), ("x" * 40, "x" * 31), ("1" + "y" * 40, "_1" + "y" * 29)])
def test_type_name_is_derived_from_the_class_name(name, expected):
    cls = type(name, (ctypes.Structure,), {"_fields_": [("v", ctypes.c_int)]})
    assert struct_layout.type_name_of(cls) == expected
    assert sb.header_of(sb.RawValue(cls)).type_name == expected


# --- the field table's geometry ----------------------------------------------------------

@pytest.mark.parametrize("offset,fmt,value,fragment", [
    (0x3A, "<H", 64, "field table"),            # field_entry_size alone
    (0x40, "<I", 0x200, "field table"),         # field_table_offset alone
    (0x3C, "<I", 1, "field table"),             # field_count alone
])
def test_a_field_table_on_a_non_struct_is_corrupt(forge, offset, fmt, value, fragment):
    img = image_of(sb.RawArray("d", 2))
    struct.pack_into(fmt, img, offset, value)
    with pytest.raises(sb.CorruptSegmentError, match=fragment):
        sb.attach(forge(reseal(img)), timeout=0.1)


@pytest.mark.parametrize("offset,fmt,value", [
    (0x3A, "<H", 63), (0x3A, "<H", 0), (0x40, "<I", 0x240), (0x40, "<I", 0x1C0),
    (0x40, "<I", 0), (0x3C, "<I", 0)])
def test_struct_field_table_geometry(forge, offset, fmt, value):
    img = image_of(sb.RawValue(Point))
    if (offset, value) == (0x40, 0x240):
        # a table that would fit at 0x240 (header grown to hold it): still refused
        struct.pack_into("<I", img, 0x0C, 0x2C0)
        struct.pack_into("<QQ", img, 0x20, 0x2C0, 16)
        img[0x240:0x2C0] = img[0x200:0x280]
        img += bytes(0x40)
    struct.pack_into(fmt, img, offset, value)
    with pytest.raises(sb.CorruptSegmentError, match="field table"):
        sb.attach(forge(reseal(img)), timeout=0.1)


def test_larger_field_entries_are_accepted(forge):
    """field_entry_size > 64: readers ignore the extra bytes of each entry."""
    img = image_of(sb.RawValue(Point, 1.0, 2.0))
    new = bytearray(img[:0x200]) + img[0x200:0x240] + b"\x07" * 64 + img[0x240:0x280] + bytes(64)
    struct.pack_into("<I", new, 0x0C, 0x300)
    struct.pack_into("<H", new, 0x3A, 128)
    struct.pack_into("<QQ", new, 0x20, 0x300, 16)
    new += img[0x280:0x290]
    got = sb.attach(forge(reseal(new)), timeout=0.1)
    assert (got.x, got.y) == (1.0, 2.0)


# --- nesting depth -----------------------------------------------------------------------

def nested_type(levels):
    """A structure whose innermost c_int field is at depth *levels*."""
    cls = type("L0", (ctypes.Structure,), {"_fields_": [("v", ctypes.c_int)]})
    for i in range(1, levels):
        cls = type(f"L{i}", (ctypes.Structure,), {"_fields_": [("s", cls)]})
    return cls


def _depths(fields):
    depth = []
    for f in fields:
        depth.append(1 if f.parent == -1 else depth[f.parent] + 1)
    return depth


def _chain(levels):
    """Field-table entries of nested_type(levels), made by hand."""
    entries = [H.StructField(f"s{i}", "T", 0, 1, 4, i - 1) for i in range(levels - 1)]
    entries.append(H.StructField("v", "i", 0, 1, 4, levels - 2))
    return entries


def test_writers_allow_depth_16_and_refuse_17():
    deep = sb.RawValue(nested_type(16))
    again = sb.attach(deep.name)
    inner = again
    for _ in range(15):
        inner = inner.s
    inner.v = 5
    assert max(_depths(sb.header_of(again).fields)) == 16
    with pytest.raises(sb.UnsupportedTypeError, match="nested 17 structures deep"):
        sb.RawValue(nested_type(17))


def test_writers_refuse_very_deep_types_without_recursion_error():
    with pytest.raises(sb.UnsupportedTypeError, match="deep"):
        struct_layout.describe(nested_type(400))


def test_readers_accept_depth_16_and_refuse_17(forge):
    ok = forge(header_image(_chain(16), element_size=4))
    assert sb.header_of(ok).element_size == 4
    bad = forge(header_image(_chain(17), element_size=4))
    with pytest.raises(sb.CorruptSegmentError, match="nested 17 structures deep"):
        sb.attach(bad, timeout=0.1)
