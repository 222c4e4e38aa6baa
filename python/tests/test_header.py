"""Header encoding and validation (docs/format.md sections 3-5, 6.3): the bytes writers
write, and every corrupt field of a header (sizes, kinds, lock fields, external locks,
lock-only segments, versions, field tables) is refused with CorruptSegmentError or
UnsupportedVersionError."""

import ctypes
import os
import struct

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from conftest import assert_attach_gives, crc_of, image_of, reseal

# The directory backend run (docs/format.md section 1.3) sets SHAREDBRIDGE_DIR: segments are files there.
SHM = os.environ.get("SHAREDBRIDGE_DIR") or "/dev/shm"


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


def test_array_header_bytes():
    a = sb.Array("d", [1.5, 2.5])
    img = image_of(a)
    assert img[0:8] == b"SHBRIDGE"
    assert struct.unpack_from("<HHIBBHIQQQ", img, 8) == (2, 1, 0x200, 1, ord("d"), 0, 8, 2, 0x200, 16)
    assert struct.unpack_from("<BBHIBBHII", img, 0x30) == (1, 1, 40, 0x1C0, 1, 0, 0, 0, 0)
    assert struct.unpack_from("<I", img, 0x44)[0] == os.getpid()
    assert struct.unpack_from("<Q", img, 0x48)[0] > 0
    assert img[0x60:0x180] == bytes(0x120)                 # type_name, lock_name empty
    assert struct.unpack_from("<II", img, 0x180) == (1, crc_of(img, 0x200))
    assert img[0x188:0x1C0] == bytes(0x38)
    assert struct.unpack_from("<2d", img, 0x200) == (1.5, 2.5)
    assert len(img) == 0x210


def test_struct_header_and_field_table_bytes():
    v = sb.RawValue(Point, 1, 2)
    img = image_of(v)
    assert struct.unpack_from("<I", img, 0x0C)[0] == 0x280
    assert img[0x11] == ord("T") and img[0x60:0x66] == b"Point\0"
    assert struct.unpack_from("<HII", img, 0x3A) == (64, 2, 0x200)
    assert struct.unpack_from("<32sB3xIIIi", img, 0x200) == (b"x".ljust(32, b"\0"), ord("d"), 0, 1, 8, -1)
    assert struct.unpack_from("<32sB3xIIIi", img, 0x240) == (b"y".ljust(32, b"\0"), ord("d"), 8, 1, 8, -1)
    assert struct.unpack_from("<I", img, 0x184)[0] == crc_of(img, 0x280)
    assert struct.unpack_from("<2d", img, 0x280) == (1.0, 2.0)


def test_lock_only_segment_bytes():
    lock = sb.Lock()
    img = image_of(lock)
    assert len(img) == 512
    assert img[0x10] == 3 and img[0x11] == 0
    assert struct.unpack_from("<IQQQ", img, 0x14) == (0, 0, 0x200, 0)
    assert struct.unpack_from("<BBHIB", img, 0x30) == (1, 1, 40, 0x1C0, 2)


def test_lock_only_writer_and_larger_object(forge):
    lock = sb.RLock()
    img = image_of(lock)
    assert len(img) == 512 and img[0x11] == 0
    assert struct.unpack_from("<IQQ", img, 0x14) == (0, 0, 0x200) and img[0x28:0x30] == bytes(8)
    bigger = forge(img + bytes(4096))             # readers accept a larger object
    other = sb.attach(bigger)
    assert isinstance(other, sb.RLock)
    assert other.acquire(timeout=1)
    other.release()
    assert len(other._seg.mm) == 512               # only what the header describes is mapped


def test_lock_only_typecode_must_be_zero_not_ascii_zero(forge):
    img = image_of(sb.Lock())
    img[0x11] = ord("0")
    with pytest.raises(sb.CorruptSegmentError, match="lock-only"):
        sb.attach(forge(reseal(img)), timeout=0.1)


def test_lock_only_smaller_object_is_truncated(forge):
    img = image_of(sb.Lock())
    with pytest.raises(sb.CorruptSegmentError, match="truncated") as e:
        sb.attach(forge(img[:500]), timeout=0.1)
    assert not isinstance(e.value, sb.NotASharedBridgeSegmentError)


def test_external_lock_name_is_recorded():
    lock = sb.RLock()
    a = sb.Array("i", 1, lock=lock)
    img = image_of(a)
    assert img[0x30] == 2 and img[0x31:0x39] == bytes(8)
    assert img[0x80:0x80 + len(lock.name) + 1] == lock.name.encode() + b"\0"


def test_external_lock_named_after_itself_is_corrupt(forge, pyh_name):
    lock = sb.RLock()
    img = image_of(sb.Value("i", 1, lock=lock))
    name = pyh_name()
    img[0x80:0x180] = name.encode().ljust(256, b"\0")
    with open(f"{SHM}/{name}", "xb") as f:
        f.write(reseal(img))
    try:
        with pytest.raises(sb.CorruptSegmentError, match="own name"):
            sb.attach(name, timeout=0.1)
    finally:
        os.unlink(f"{SHM}/{name}")


def test_external_lock_must_be_an_embedded_lock_of_this_abi(forge):
    lock = sb.RLock()
    v = sb.Value("i", 1, lock=lock)
    no_lock = sb.RawArray("i", 1)
    img = image_of(v)
    img[0x80:0x180] = no_lock.name.encode().ljust(256, b"\0")
    name = forge(reseal(img))
    with pytest.raises(sb.CorruptSegmentError, match="no embedded lock") as e:
        sb.attach(name, timeout=0.1)
    assert name in str(e.value) and no_lock.name in str(e.value)
    assert not isinstance(e.value, sb.TypeMismatchError)
    other_abi = image_of(lock)
    other_abi[0x31] = 2 if other_abi[0x31] == 1 else 1
    other_abi[0x32:0x34] = struct.pack("<H", 48 if other_abi[0x31] == 2 else 40)
    foreign_lock = forge(reseal(other_abi))
    img[0x80:0x180] = foreign_lock.encode().ljust(256, b"\0")
    name = forge(reseal(img))
    with pytest.raises(sb.CorruptSegmentError, match="lock_abi") as e:
        sb.attach(name, timeout=0.1)
    assert name in str(e.value) and foreign_lock in str(e.value)


def test_writers_zero_the_lock_region_and_readers_ignore_it(forge):
    lock_size = H.native_lock_abi()[1]
    for obj in (sb.Lock(), sb.Array("i", 1), sb.RawArray("i", 1), sb.Value("i", lock=sb.RLock())):
        img = image_of(obj)
        start = 0x1C0 + lock_size if img[0x30] == 1 else 0x1C0
        assert img[start:0x200] == bytes(0x200 - start)
    img = image_of(sb.Array("i", [3]))
    img[0x1C0 + lock_size:0x200] = b"\xAB" * (0x40 - lock_size)
    got = sb.attach(forge(img), timeout=0.1)          # no reader check, no crc over it
    with got:
        assert got[0] == 3
    img = image_of(sb.RawArray("i", [4]))
    img[0x1C0:0x200] = b"\xCD" * 0x40
    assert sb.attach(forge(img), timeout=0.1)[0] == 4


def _put(fmt, offset, value):
    return lambda b: struct.pack_into(fmt, b, offset, value)


# (id, mutation of a 'd' x 2 array image with an embedded lock, message fragment)
ARRAY_MUTATIONS = [
    ("version0", _put("<H", 0x08, 0), "version"),
    ("header_size_unaligned", _put("<I", 0x0C, 0x210), "header_size"),
    ("header_size_small", _put("<I", 0x0C, 0x1C0), "header_size"),
    ("header_size_huge", _put("<I", 0x0C, 0x7FFFFFC0), "header_size"),
    ("header_size_past_object", _put("<I", 0x0C, 0x240), "header_size"),
    ("kind0", _put("<B", 0x10, 0), "kind"),
    ("kind4", _put("<B", 0x10, 4), "kind"),
    ("typecode_unknown", _put("<B", 0x11, ord("x")), "typecode"),
    ("typecode_zero", _put("<B", 0x11, 0), "typecode"),
    ("typecode_struct_without_table", _put("<B", 0x11, ord("T")), "field table"),
    ("element_size", _put("<I", 0x14, 4), "element_size"),
    ("element_count_huge", _put("<Q", 0x18, 2**62), "data_size"),
    ("count_and_size_huge", lambda b: struct.pack_into("<QQQ", b, 0x18, 2**61, 0x200, 2**64 - 8),
     "data_size"),
    ("count_size_past_object", lambda b: struct.pack_into("<QQQ", b, 0x18, 2**40, 0x200, 2**43),
     "data area"),
    ("data_offset_unaligned", _put("<Q", 0x20, 0x208), "data area"),
    ("data_offset_before_header", _put("<Q", 0x20, 0x1C0), "data area"),
    ("data_offset_past_object", _put("<Q", 0x20, 0x10000), "data area"),
    ("data_size", _put("<Q", 0x28, 8), "data_size"),
    ("lock_kind", _put("<B", 0x30, 7), "lock"),
    ("lock_abi", _put("<B", 0x31, 9), "lock_abi"),
    ("lock_size", _put("<H", 0x32, 24), "lock fields"),
    ("lock_offset", _put("<I", 0x34, 0x100), "lock fields"),
    ("lock_type", _put("<B", 0x38, 3), "lock fields"),
    ("lock_kind_none_with_lock_fields", _put("<B", 0x30, 0), "lock fields"),
    ("external_without_name", lambda b: b.__setitem__(slice(0x30, 0x39), bytes([2] + [0] * 8)),
     "lock_name"),
    ("lock_name_with_embedded_lock", lambda b: b.__setitem__(slice(0x80, 0x83), b"abc"),
     "lock fields"),
    ("lock_name_not_terminated", lambda b: b.__setitem__(slice(0x80, 0x180), b"a" * 256),
     "NUL"),
    ("type_name_not_terminated", lambda b: b.__setitem__(slice(0x60, 0x80), b"A" * 32), "NUL"),
    ("type_name_for_non_struct", lambda b: b.__setitem__(slice(0x60, 0x63), b"Foo"), "type_name"),
    ("field_count_for_non_struct", _put("<I", 0x3C, 1), "field table"),
    ("state_unknown", _put("<I", 0x180, 7), "state"),
]


@pytest.mark.parametrize("mutate,fragment", [m[1:] for m in ARRAY_MUTATIONS],
                         ids=[m[0] for m in ARRAY_MUTATIONS])
def test_corrupt_array_fields(forge, mutate, fragment):
    img = image_of(sb.Array("d", [1.5, 2.5]))
    mutate(img)
    struct.pack_into("<I", img, 0x184, crc_of(img, 0x200))   # so the field check, not the crc, fires
    with pytest.raises(sb.CorruptSegmentError, match=fragment):
        sb.attach(forge(img), timeout=0.2)


def _field(index, offset_in_entry, fmt, value):
    return _put(fmt, 0x200 + 64 * index + offset_in_entry, value)


class Nested(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int), ("p", Point), ("c", ctypes.c_char * 3)]


STRUCT_MUTATIONS = [
    ("field_count_huge", _put("<I", 0x3C, 0xFFFFFFFF), "field table"),
    ("field_count_past_header", _put("<I", 0x3C, 6), "field table"),
    ("field_entry_size_small", _put("<H", 0x3A, 32), "field table"),
    ("field_table_offset", _put("<I", 0x40, 0x100), "field table"),
    ("field_name_empty", _field(0, 0, "<B", 0), "empty"),
    ("field_name_not_identifier", _field(0, 0, "<B", ord("1")), "characters"),
    ("field_name_not_terminated", lambda b: b.__setitem__(slice(0x200, 0x220), b"n" * 32), "NUL"),
    ("field_typecode", _field(0, 32, "<B", ord("z")), "typecode"),
    ("field_item_size", _field(0, 44, "<I", 2), "item_size"),
    ("field_count_zero", _field(0, 40, "<I", 0), "count"),
    ("field_past_struct", _field(0, 36, "<I", 60), "past"),
    ("field_past_parent", _field(2, 36, "<I", 12), "past"),
    ("field_offsets_not_increasing", _field(1, 36, "<I", 0), "overlaps"),
    ("fields_overlap", _field(1, 36, "<I", 2), "overlaps"),
    ("nested_fields_overlap", _field(3, 36, "<I", 4), "overlaps"),
    ("struct_entry_without_children", lambda b: (struct.pack_into("<I", b, 0x3C, 2),
                                                 b.__setitem__(slice(0x280, 0x300), bytes(128))),
     "has no fields"),
    ("parent_not_struct", _field(2, 48, "<i", 0), "parent"),
    ("parent_out_of_range", _field(2, 48, "<i", 9), "parent"),
    ("type_name_bad_chars", lambda b: b.__setitem__(slice(0x60, 0x62), b"N-"), "characters"),
]


@pytest.mark.parametrize("mutate,fragment", [m[1:] for m in STRUCT_MUTATIONS],
                         ids=[m[0] for m in STRUCT_MUTATIONS])
def test_corrupt_field_tables(forge, mutate, fragment):
    v = sb.RawValue(Nested)
    img = image_of(v)
    header_size = struct.unpack_from("<I", img, 0x0C)[0]
    mutate(img)
    struct.pack_into("<I", img, 0x184, crc_of(img, header_size))
    with pytest.raises(sb.CorruptSegmentError, match=fragment):
        sb.attach(forge(img), timeout=0.2)


def test_nested_table_is_preorder():
    h = sb.header_of(sb.RawValue(Nested))
    assert [(f.name, f.typecode, f.offset, f.count, f.item_size, f.parent) for f in h.fields] == [
        ("a", "i", 0, 1, 4, -1), ("p", "T", 8, 1, 16, -1), ("x", "d", 0, 1, 8, 1),
        ("y", "d", 8, 1, 8, 1), ("c", "c", 24, 3, 1, -1)]
    assert h.element_size == 32


def test_bad_magic_and_bad_crc_and_new_version(forge):
    img = image_of(sb.Array("i", 1))
    bad = bytearray(img)
    bad[0:8] = b"NOTOURS!"
    with pytest.raises(sb.CorruptSegmentError, match="not a SharedBridge segment"):
        sb.attach(forge(bad), timeout=0.2)
    bad = bytearray(img)
    bad[0x5A] = 1         # reserved byte: readers ignore it, but it is covered by the crc
    with pytest.raises(sb.CorruptSegmentError, match="crc32"):
        sb.attach(forge(bad), timeout=0.2)
    newer = bytearray(img)
    struct.pack_into("<HH", newer, 8, 9, 8)     # this package reads up to version 7
    struct.pack_into("<I", newer, 0x184, crc_of(newer, 0x200))
    with pytest.raises(sb.UnsupportedVersionError, match="upgrade"):
        sb.attach(forge(newer), timeout=0.2)


def test_newer_minor_version_is_accepted(forge):
    img = image_of(sb.Array("i", [5]))
    struct.pack_into("<H", img, 8, 3)       # version 3, compat_version still 1
    img[0x12] = 1                           # flags: reserved for later, ignored
    img[0x5A] = 9                           # reserved byte, ignored (but checksummed)
    struct.pack_into("<I", img, 0x184, crc_of(img, 0x200))
    got = sb.attach(forge(img), timeout=0.2)
    assert got[:] == [5] and sb.header_of(got).version == 3


@pytest.mark.parametrize("version,compat,outcome", [
    (1, 1, None), (2, 1, None), (7, 1, None), (2, 2, None), (3, 3, None), (4, 4, None),
    (5, 5, None), (4, 5, sb.CorruptSegmentError), (6, 6, None), (5, 6, sb.CorruptSegmentError),
    (7, 7, None), (6, 7, sb.CorruptSegmentError),
    (8, 8, sb.UnsupportedVersionError), (1, 8, sb.UnsupportedVersionError),
    (2, 8, sb.UnsupportedVersionError), (7, 8, sb.UnsupportedVersionError),
    (3, 4, sb.CorruptSegmentError),
    (1, 2, sb.CorruptSegmentError),
    (1, 0, sb.CorruptSegmentError),
    (0, 0, sb.CorruptSegmentError), (0, 1, sb.CorruptSegmentError),
])
def test_version_and_compat_version(forge, version, compat, outcome):
    img = image_of(sb.RawArray("i", [6]))
    struct.pack_into("<HH", img, 8, version, compat)
    name = forge(reseal(img))
    assert_attach_gives(name, outcome, 6)


def test_truncated_data_area(forge):
    img = image_of(sb.Array("d", 100))
    with pytest.raises(sb.CorruptSegmentError, match="data area"):
        sb.attach(forge(img[:600]), timeout=0.2)


def test_truncated_field_table(forge):
    img = image_of(sb.RawValue(Nested))
    with pytest.raises(sb.CorruptSegmentError, match="header_size"):
        sb.attach(forge(img[:0x240]), timeout=0.2)


def test_decoded_header_is_a_private_copy():
    a = sb.RawArray("i", 3)
    seg = a._sb_segment
    struct.pack_into("<Q", seg.mm, 0x18, 2**40)      # scribble on the shared header
    assert sb.header_of(a).element_count == 3
    assert len(a) == 3


def test_encode_decode_round_trip():
    h = sb.header_of(sb.Value(Nested))
    raw = H.encode(h)
    struct.pack_into("<I", raw, 0x184, H.checksum(raw, h.header_size))
    again = H.decode(bytes(raw[:512]), bytes(raw[512:]), h.total_size, 1)
    assert again == h


@pytest.mark.parametrize("source", ["array", "struct", "external", "lock"])
def test_random_corruption_never_crashes(forge, source):
    """Seeded random byte changes anywhere in the header (with the checksum recomputed,
    so the field checks are what stands in the way): attach either refuses with
    CorruptSegmentError or returns an object that works within its memory."""
    import random
    lock = sb.RLock()
    obj = {"array": lambda: sb.Array("d", [1.0, 2.0, 3.0]),
           "struct": lambda: sb.RawArray(Nested, 2),
           "external": lambda: sb.Value("q", 5, lock=lock),
           "lock": lambda: lock}[source]()
    pristine = image_of(obj)
    header_size = struct.unpack_from("<I", pristine, 0x0C)[0]
    rng = random.Random(source + os.environ.get("SB_FUZZ_SEED", ""))
    refused = accepted = 0
    for _ in range(int(os.environ.get("SB_FUZZ_ROUNDS", "150"))):
        img = bytearray(pristine)
        for _ in range(rng.choice((1, 1, 2, 4))):
            pos = rng.randrange(header_size)
            if 0x1C0 <= pos < 0x200:
                continue                       # the mutex bytes belong to pthreads
            img[pos] = rng.choice((0, 1, 0xFF, rng.randrange(256)))
        if rng.random() < 0.9:
            struct.pack_into("<I", img, 0x184, crc_of(img, header_size))
        name = forge(img)
        try:
            got = sb.attach(name, timeout=0.05)
        except (sb.CorruptSegmentError, sb.SegmentNotReadyError, sb.SegmentNotFoundError,
                sb.TypeMismatchError):
            refused += 1
        else:
            accepted += 1
            inner = got.get_obj() if hasattr(got, "get_obj") else got
            if isinstance(inner, ctypes.Array):
                inner[:]
            del got, inner
        os.unlink(f"{SHM}/{name}")
    assert refused > 0


@pytest.mark.parametrize("typecode", list("cubBhHiIlLqQfd?") + [Point, Nested])
@pytest.mark.parametrize("maker", ["RawArray", "Array"])
def test_zero_length_arrays(typecode, maker):
    obj = getattr(sb, maker)(typecode, 0)
    h = sb.header_of(obj)
    assert (h.kind, h.element_count, h.data_size) == (1, 0, 0)
    assert os.stat(f"{SHM}/{obj.name}").st_size == h.header_size
    again = sb.attach(obj.name)
    assert len(again) == 0 and again[:] in ([], b"", "")
    raw = again.get_obj() if hasattr(again, "get_obj") else again
    assert len(raw) == 0


# --- n-dimensional arrays (kind 9, docs/format.md section 12.1) ---------------------------

def _ndarray_image(shape=(2, 3, 4), dtype="d"):
    """The bytes of a new kind-9 segment (the object is made, read, then removed)."""
    a = sb.ndarray(shape, dtype, lock=False)
    img = image_of(a)
    a.unlink()
    return img


def _dims(*dims):
    return lambda b: struct.pack_into(f"<{len(dims)}Q", b, 0x200, *dims)


# (id, mutation of the image of a 'd' array of shape (2, 3, 4): header_size 0x240, the
# shape at 0x200, data at 0x240; message fragment). Each is resealed (checksum), so that
# the kind-9 rule, not the checksum, refuses it.
NDARRAY_MUTATIONS = [
    ("ndim_33", _put("<I", 0x58, 33), "ndim 33"),
    ("ndim_4_reads_padding_as_a_0", _put("<I", 0x58, 4), "element_count"),
    ("ndim_2", _put("<I", 0x58, 2), "element_count"),
    ("ndim_9_past_header_size", _put("<I", 0x58, 9), "header_size"),
    ("shape_offset_0", _put("<I", 0x5C, 0), "shape_offset"),
    ("shape_offset_inside_the_shape", _put("<I", 0x5C, 0x208), "shape_offset"),
    ("header_size_larger", _put("<I", 0x0C, 0x280), "header_size"),
    ("dimension_above_2_63", _dims(2**63, 3, 4), "2\\^63"),
    ("product_overflows", lambda b: (_dims(2**32, 2**32, 1)(b),
                                     struct.pack_into("<QQQ", b, 0x18, 0, 0x240, 0)),
     "overflows"),
    ("product_times_size_overflows", lambda b: (_dims(2**30, 2**30, 2**3)(b),
                                                struct.pack_into("<Q", b, 0x18, 2**63)),
     "overflows"),
    ("zero_dimension_does_not_hide_an_overflow", lambda b: (
        _dims(3, 0, 2**62)(b), struct.pack_into("<QQQ", b, 0x18, 0, 0x240, 0)), "overflows"),
    ("element_count_disagrees", _put("<Q", 0x18, 25), "element_count"),
    ("element_count_and_data_size_of_another_shape",
     lambda b: struct.pack_into("<QQQ", b, 0x18, 12, 0x240, 96), "element_count"),
    ("data_size_disagrees", _put("<Q", 0x28, 8), "data_size"),
    ("object_too_small_for_the_shape", lambda b: (
        _dims(2**20, 2**20, 1)(b), struct.pack_into("<QQQ", b, 0x18, 2**40, 0x240, 2**43)),
     "data area"),
    ("compat_version_6", lambda b: struct.pack_into("<HH", b, 8, 6, 6), "compat_version"),
    ("flags", _put("<H", 0x12, 1), "flags"),
]


@pytest.mark.parametrize("mutate,fragment", [m[1:] for m in NDARRAY_MUTATIONS],
                         ids=[m[0] for m in NDARRAY_MUTATIONS])
def test_corrupt_ndarray_fields(forge, mutate, fragment):
    img = _ndarray_image()
    mutate(img)
    name = forge(reseal(img))
    with pytest.raises(sb.CorruptSegmentError, match=fragment) as e:
        sb.attach(name, timeout=0.2)
    assert type(e.value) is sb.CorruptSegmentError
    assert sb.inspect_segment(name).status == "corrupt"      # the tools say so too


def test_corrupt_ndarray_of_structures_and_truncated_objects(forge):
    img = _ndarray_image((2,), Point)                          # shape right after the table
    assert struct.unpack_from("<II", img, 0x58) == (1, 0x280)
    bad = bytearray(img)
    struct.pack_into("<I", bad, 0x5C, 0x200)                   # over the field table
    with pytest.raises(sb.CorruptSegmentError, match="shape_offset"):
        sb.attach(forge(reseal(bad)), timeout=0.2)
    img = _ndarray_image()
    with pytest.raises(sb.CorruptSegmentError, match="data area"):
        sb.attach(forge(img[:0x240 + 100]), timeout=0.2)      # cut inside the data
    with pytest.raises(sb.CorruptSegmentError, match="header_size"):
        sb.attach(forge(img[:0x220]), timeout=0.2)            # cut inside the shape
    bad = bytearray(img)
    struct.pack_into("<Q", bad, 0x208, 5)                      # the shape without resealing
    with pytest.raises(sb.CorruptSegmentError, match="crc32"):
        sb.attach(forge(bad), timeout=0.2)


def test_valid_ndarray_images_and_newer_ones(forge):
    img = _ndarray_image((3, 0, 2), "b")        # empty, and 3 x 2^61 x 1 byte: in bounds
    struct.pack_into("<Q", img, 0x200 + 16, 2**61)
    assert sb.attach(forge(reseal(img)), timeout=0.2).shape == (3, 0, 2**61)
    img = _ndarray_image()
    img[0x218] = 7                # padding after the shape: ignored (but checksummed)
    assert sb.attach(forge(reseal(img)), timeout=0.2).shape == (2, 3, 4)
    newer = _ndarray_image()
    struct.pack_into("<HH", newer, 8, 8, 8)
    with pytest.raises(sb.UnsupportedVersionError, match="upgrade"):
        sb.attach(forge(reseal(newer)), timeout=0.2)
    unknown = _ndarray_image()
    unknown[0x10] = 10
    with pytest.raises(sb.UnsupportedVersionError, match="unknown segment kind 10"):
        sb.attach(forge(reseal(unknown)), timeout=0.2)
    array = image_of(sb.RawArray("d", [1.5]))                  # kind 1: the words are reserved
    struct.pack_into("<II", array, 0x58, 99, 0x1234)
    assert sb.attach(forge(reseal(array)), timeout=0.2)[0] == 1.5


def test_queue_newer_than_this_package_s_queues_is_refused(forge):
    """Format version 7 is the n-dimensional array's: a queue of a compat_version above the
    queue format this package implements is refused as unsupported, not read by older
    rules (docs/format.md section 6.3)."""
    q = sb.Queue()
    img = image_of(q)
    q.close()
    sb.close(q)
    struct.pack_into("<HH", img, 8, H.QUEUE_VERSION + 1, H.QUEUE_VERSION + 1)
    with pytest.raises(sb.UnsupportedVersionError, match="queue"):
        sb.attach(forge(reseal(img)), timeout=0.2)
