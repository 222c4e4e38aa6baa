"""The typed messages of a queue (docs/format.md section 11.4; docs/api.md, "Queue
messages"): what each Python object is sent as, what comes back, the exact bytes of each
message type, zero-copy decoding, and decoding of hostile descriptors and data.

golden_messages() lists fixed messages with their bytes written out from the spec (not
produced by the encoder): the golden message vectors reuse it.

Run as a script (``python test_queue_messages.py --fuzz SEED CASES``) it is the fuzzer's
child: decoding under a memory limit, reporting every outcome that is not a value or a
CorruptDataError.
"""

import ctypes
import enum
import os
import pickle
import random
import struct
import subprocess
import sys
import textwrap

import pytest

import sharedbridge as sb
from sharedbridge._objects import queue_messages as Q
from sharedbridge.errors import CorruptDataError

try:
    from conftest import child_env
except ImportError:         # the fuzzer's child, run as a script
    child_env = None

try:
    import numpy as np
except ImportError:
    np = None
needs_numpy = pytest.mark.skipif(np is None, reason="numpy is not installed for this "
                                 "interpreter (the n-d array tests need it; "
                                 "test_array_without_numpy covers its absence)")

QUEUE = "sbt_pc_queue"


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


class Item(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int), ("pos", Point), ("tag", ctypes.c_char * 3),
                ("ok", ctypes.c_bool)]


class Wide(ctypes.Structure):
    _fields_ = [("n", ctypes.c_short), ("ch", ctypes.c_wchar), ("pts", Point * 2),
                ("word", ctypes.c_wchar * 3)]


class Packed(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("a", ctypes.c_ubyte), ("b", ctypes.c_double)]


class PackedNest(ctypes.Structure):
    _pack_ = 2
    _fields_ = [("c", ctypes.c_char), ("p", Packed * 2), ("u", ctypes.c_wchar),
                ("q", ctypes.c_int64)]


class Bits(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int, 3), ("b", ctypes.c_int, 5)]


class Colour(enum.IntEnum):
    RED = 1


class Label(str):
    pass


def _entry(name, typecode, offset, count, item_size, parent):
    return struct.pack("<32sB3xIIIi12x", name.encode(), ord(typecode), offset, count,
                       item_size, parent)


def _struct_desc(count, size, type_name):
    return struct.pack("<II32s", count, size, type_name.encode())


POINT_DESC = (_struct_desc(2, 16, "Point") + _entry("x", "d", 0, 1, 8, -1)
              + _entry("y", "d", 8, 1, 8, -1))
ITEM_DESC = (_struct_desc(6, 32, "Item") + _entry("id", "i", 0, 1, 4, -1)
             + _entry("pos", "T", 8, 1, 16, -1) + _entry("x", "d", 0, 1, 8, 1)
             + _entry("y", "d", 8, 1, 8, 1) + _entry("tag", "c", 24, 3, 1, -1)
             + _entry("ok", "?", 27, 1, 1, -1))
OOB = bytes(range(256)) * 16          # 4096 bytes: exactly the out-of-band threshold


def golden_messages():
    """Fixed messages: (label, object to send, tag, descriptor, data, object a Python
    reader gets back), the bytes written out from docs/format.md section 11.4. Entries
    that need numpy are left out when it is missing."""
    h = bytes.fromhex
    out = [
        ("bytes", b"hello", 1, b"", b"hello", b"hello"),
        ("str", "h\u00e9llo \u20ac", 2, b"", h("68c3a96c6c6f20e282ac"), "h\u00e9llo \u20ac"),
        ("bool", True, 3, h("3f00000000000000"), h("01"), True),
        ("int", -5, 3, h("7100000000000000"), h("fbffffffffffffff"), -5),
        ("float", 1.5, 3, h("6400000000000000"), h("000000000000f83f"), 1.5),
        ("scalar i", sb.scalar("i", -2), 3, h("6900000000000000"), h("feffffff"), -2),
        ("scalar u", sb.scalar("u", "\u20ac"), 3, h("7500000000000000"), h("ac200000"),
         "\u20ac"),
        ("scalar c", sb.scalar("c", b"A"), 3, h("6300000000000000"), h("41"), b"A"),
        ("scalar f", sb.scalar("f", 0.25), 3, h("6600000000000000"), h("0000803e"), 0.25),
        ("record Point", Point(1.5, -2.0), 4, POINT_DESC, h("000000000000f83f00000000000000c0"),
         (1.5, -2.0)),
        ("record Item", Item(7, Point(0.5, 1.0), b"ab", True), 4, ITEM_DESC,
         h("07000000" "00000000" "000000000000e03f" "000000000000f03f" "616200" "01"
           "00000000"), (7, (0.5, 1.0), b"ab", True)),
        # pickle protocol 5 of (1, 'a'): the same bytes on CPython 3.8 to 3.13.
        ("pickle", (1, "a"), 6, h("00000000" "00000000" "1400000000000000"),
         h("80059509000000000000004b018c01619486942e"), (1, "a")),
        # One out-of-band buffer (4096 bytes) after a 22-byte pickle, at offset 24.
        ("pickle out of band", [b"x", pickle.PickleBuffer(OOB)], 6,
         h("01000000" "00000000" "1600000000000000" "0010000000000000"),
         h("8005950b000000000000005d9428430178949798652e") + b"\0\0" + OOB, [b"x", OOB]),
    ]
    if np is not None:
        out += [
            ("array int32 2x3", np.arange(6, dtype="<i4").reshape(2, 3), 5,
             h("69" "02" "0000" "00000000" "0200000000000000" "0300000000000000"),
             h("000000000100000002000000030000000400000005000000"),
             np.arange(6, dtype="<i4").reshape(2, 3)),
            ("array 0-d double", np.array(2.5), 5, h("64" "00" "0000" "00000000"),
             h("0000000000000440"), np.array(2.5)),
            ("array of structures", np.array([(1.0, 2.0), (3.0, 4.0)], dtype=np.dtype(Point)),
             5, h("54" "01" "0000" "00000000" "0200000000000000")
             + _struct_desc(2, 16, "") + POINT_DESC[40:],
             h("000000000000f03f000000000000004000000000000008400000000000001040"),
             np.array([(1.0, 2.0), (3.0, 4.0)], dtype=np.dtype(Point))),
        ]
    return out


def assemble(encoded):
    """The data bytes a writer puts into the ring for *encoded* (parts at their offsets,
    zero bytes between them), checking the Encoded invariants on the way."""
    data = bytearray(encoded.data_length)
    end = 0
    assert len(encoded.parts) == len(encoded.offsets)
    for part, offset in zip(encoded.parts, encoded.offsets):
        view = memoryview(part)
        assert view.c_contiguous
        assert offset % 8 == 0 and offset >= end
        end = offset + view.nbytes
        data[offset:end] = view.cast("B")
    assert end == encoded.data_length
    return data


def send(obj):
    """(Encoded, decoded object, data) of a round trip through the codec."""
    e = Q.encode(obj)
    data = assemble(e)
    return e, Q.decode(e.tag, memoryview(e.descriptor), memoryview(data), name=QUEUE), data


def _plain(value):
    if isinstance(value, ctypes.Structure):
        return tuple(_plain(getattr(value, f[0])) for f in value._fields_)
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- golden bytes ---------------------------------------------------------------------

@pytest.mark.parametrize("case", golden_messages(), ids=lambda c: c[0])
def test_golden_encoding(case):
    label, obj, tag, desc, data, _back = case
    e = Q.encode(obj)
    assert (e.tag, bytes(e.descriptor), bytes(assemble(e))) == (tag, desc, data)
    assert len(data) == e.data_length


@pytest.mark.parametrize("case", golden_messages(), ids=lambda c: c[0])
def test_golden_decoding(case):
    label, _obj, tag, desc, data, back = case
    got = Q.decode(tag, memoryview(desc), memoryview(bytearray(data)), name=QUEUE)
    if np is not None and isinstance(back, np.ndarray):
        assert got.dtype == back.dtype and got.shape == back.shape
        assert got.tobytes() == back.tobytes()
    else:
        assert _plain(got) == back and type(_plain(got)) is type(back)


# --- what each Python object becomes ----------------------------------------------------

@pytest.mark.parametrize("obj, tag, back", [
    (b"", 1, b""), (bytearray(b"ab\0c"), 1, b"ab\0c"), (memoryview(b"hello")[1:4], 1, b"ell"),
    (memoryview(b"abcdef")[::2], 1, b"ace"),                 # not contiguous: copied
    (memoryview(bytearray(range(6))).cast("B", (2, 3)), 1, bytes(range(6))),
    ("", 2, ""), ("\U0001F600 \u00e9", 2, "\U0001F600 \u00e9"),
    (False, 3, False), (0, 3, 0), (2**63 - 1, 3, 2**63 - 1), (-2**63, 3, -2**63),
    (-0.0, 3, -0.0), (float("inf"), 3, float("inf")),
    (2**63, 6, 2**63), (-2**63 - 1, 6, -2**63 - 1),          # beyond int64: pickled
    ("a\ud800b", 6, "a\ud800b"),                             # not UTF-8 text: pickled
    (None, 6, None), ((1, [2.5, "x"], {"k": b"v"}), 6, (1, [2.5, "x"], {"k": b"v"})),
    (Colour.RED, 6, Colour.RED), (Label("x"), 6, Label("x")),  # subclasses keep their class
    (3 + 4j, 6, 3 + 4j),
])
def test_python_objects(obj, tag, back):
    e, got, _ = send(obj)
    assert e.tag == tag
    assert got == back and type(got) is type(back)


def test_float_nan_and_bool_are_exact_types():
    assert send(float("nan"))[1] != send(float("nan"))[1]          # a NaN, not None
    e, got, _ = send(True)
    assert got is True and e.descriptor[0] == ord("?")
    assert send(1)[0].descriptor[0] == ord("q") and type(send(1)[1]) is int


def test_string_that_is_not_utf8_is_corrupt():
    for bad in (b"\xff", b"a\xc3", b"\xed\xa0\x80", b"\xc0\xaf"):   # surrogate, overlong
        with pytest.raises(CorruptDataError, match=f"{QUEUE}.*not UTF-8"):
            Q.decode(2, b"", memoryview(bad), name=QUEUE)


# --- scalar() -----------------------------------------------------------------------------

@pytest.mark.parametrize("typecode, value, back", [
    ("b", -128, -128), ("B", 255, 255), ("h", -32768, -32768), ("H", 65535, 65535),
    ("i", 2**31 - 1, 2**31 - 1), ("I", 2**32 - 1, 2**32 - 1), ("l", -1, -1),
    ("L", 2**64 - 1, 2**64 - 1), ("q", 7, 7), ("Q", 2**64 - 1, 2**64 - 1),
    ("f", 0.1, struct.unpack("<f", struct.pack("<f", 0.1))[0]), ("d", 0.1, 0.1),
    ("f", 3, 3.0), ("?", True, True), ("?", 0, False), ("c", b"\xff", b"\xff"),
    ("u", "\U0001F600", "\U0001F600"),
])
def test_scalar_round_trip(typecode, value, back):
    e, got, data = send(sb.scalar(typecode, value))
    assert e.tag == 3 and e.descriptor == bytes([ord(typecode)]) + bytes(7)
    assert len(data) == {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "f": 4, "u": 4,
                         "c": 1, "?": 1}.get(typecode, 8)
    assert got == back and type(got) is type(back)


@pytest.mark.parametrize("typecode, value, error", [
    ("b", 128, OverflowError), ("B", -1, OverflowError), ("H", 65536, OverflowError),
    ("i", -2**31 - 1, OverflowError), ("Q", 2**64, OverflowError), ("q", 2**63, OverflowError),
    ("f", 1e39, OverflowError), ("d", 10**400, OverflowError),
    ("i", 1.5, TypeError), ("d", "1", TypeError), ("q", "1", TypeError), ("?", 2, TypeError),
    ("c", "a", TypeError), ("u", b"a", TypeError), ("T", 1, TypeError), ("z", 1, TypeError),
    ("c", b"ab", ValueError), ("u", "ab", ValueError), ("u", "\ud800", ValueError),
])
def test_scalar_refuses_values_that_do_not_fit(typecode, value, error):
    with pytest.raises(error):
        sb.scalar(typecode, value)


def test_scalar_is_a_value():
    s = sb.scalar("h", 300)
    assert (s.typecode, s.value) == ("h", 300) and repr(s) == "scalar('h', 300)"
    assert s == sb.scalar("h", 300) and s != sb.scalar("i", 300)
    assert pickle.loads(pickle.dumps(s)) == s
    assert send([s])[1] == [s]                              # inside a pickle: itself


# --- records ----------------------------------------------------------------------------

def test_record_round_trip_and_class_cache():
    e, got, data = send(Wide(-3, "\u20ac", (Point(1, 2), Point(3, 4)), "ab\U0001F600"))
    assert e.tag == 4
    assert (got.n, got.ch, got.pts[1].y, got.word) == (-3, "\u20ac", 4.0, "ab\U0001F600")
    assert type(got).__name__ == "Wide" and type(got) is not Wide
    data[:2] = b"\0\0"
    assert got.n == -3                                      # a copy of the data
    again = send(Wide())[1]
    assert type(again) is type(got)                         # one class per field table
    assert ctypes.sizeof(type(got)) == ctypes.sizeof(Wide)


def test_record_class_is_the_attach_class():
    seg = sb.RawValue(Item, name=f"{QUEUE}_item")
    try:
        attached = sb.attach(f"{QUEUE}_item")
        assert isinstance(attached, type(send(Item())[1]))   # attach subclasses it
    finally:
        sb.unlink(f"{QUEUE}_item")


def test_shared_structure_travels_by_name():
    shared = sb.RawValue(Point, 1.0, 2.0, name=f"{QUEUE}_point")
    try:
        e, got, _ = send(shared)
        assert e.tag == 6 and sb.header_of(got).type_name == "Point"
        got.x = 5.0
        assert shared.x == 5.0                              # the same shared memory
        e, got, _ = send(Item(pos=shared))                  # a private copy: a record
        assert e.tag == 4 and got.pos.x == 5.0
    finally:
        sb.unlink(f"{QUEUE}_point")


def test_record_with_a_bad_character_is_corrupt():
    e = Q.encode(Wide(1, "a", (Point(), Point()), "xyz"))
    data = assemble(e)
    data[Wide.word.offset + 4:Wide.word.offset + 8] = (0xDC00).to_bytes(4, "little")
    with pytest.raises(CorruptDataError, match=r"word item 1 .*0xdc00"):
        Q.decode(4, e.descriptor, memoryview(data), name=QUEUE)


def test_packed_structures_are_records_with_their_real_offsets():
    # docs/format.md section 4: the writer records ctypes' offsets, packed or not.
    e, got, _ = send(Packed(1, 2.5))
    assert e.tag == 4 and (got.a, got.b) == (1, 2.5) and type(got).b.offset == 1
    assert ctypes.sizeof(type(got)) == ctypes.sizeof(Packed) == 9
    e, got, _ = send(PackedNest(b"z", (Packed(1, 0.5), Packed(2, -1.5)), "\u20ac", -7))
    assert e.tag == 4 and ctypes.sizeof(type(got)) == ctypes.sizeof(PackedNest) == 32
    assert (got.c, got.p[1].a, got.p[1].b, got.u, got.q) == (b"z", 2, -1.5, "\u20ac", -7)
    assert [type(got).__dict__[f].offset for f in ("c", "p", "u", "q")] == \
        [PackedNest.c.offset, PackedNest.p.offset, PackedNest.u.offset, PackedNest.q.offset]


def test_structure_the_field_table_cannot_describe_is_pickled():
    e, got, _ = send(Bits(3, 12))
    assert e.tag == 6 and type(got) is Bits and (got.a, got.b) == (3, 12)


# --- n-d arrays -------------------------------------------------------------------------

@needs_numpy
@pytest.mark.parametrize("dtype, typecode", [
    ("?", "?"), ("i1", "b"), ("u1", "B"), ("<i2", "h"), ("<u2", "H"), ("<i4", "i"),
    ("<u4", "I"), ("<i8", "q"), ("<u8", "Q"), ("<f4", "f"), ("<f8", "d"), ("S1", "c"),
    ("<U1", "u"),
])
def test_array_of_every_typecode(dtype, typecode):
    arr = np.arange(24).reshape(2, 3, 4).astype(dtype)
    e, got, data = send(arr)
    assert e.tag == 5 and chr(e.descriptor[0]) == typecode
    assert got.dtype == np.dtype(dtype) and got.shape == (2, 3, 4)
    assert np.array_equal(got, arr)
    assert np.shares_memory(got, np.frombuffer(data, np.uint8))     # zero-copy


@needs_numpy
@pytest.mark.parametrize("arr", [
    np.zeros((0, 3)) if np is not None else None,
    np.zeros((3, 0, 2), dtype="<i4") if np is not None else None,
    np.array(7, dtype="<u2") if np is not None else None,
    np.arange(12.0).reshape(3, 4).T if np is not None else None,      # F order
    np.arange(20)[::3] if np is not None else None,                   # strided
    np.zeros((1,) * 32, dtype="u1") if np is not None else None,      # the most dimensions
], ids=["empty", "empty-3d", "0-d", "transposed", "strided", "32-d"])
def test_array_shapes(arr):
    e, got, _ = send(arr)
    assert e.tag == 5 and e.descriptor[1] == arr.ndim
    assert got.shape == arr.shape and got.dtype == arr.dtype and np.array_equal(got, arr)
    assert got.flags.c_contiguous


@needs_numpy
def test_structured_arrays():
    aligned = np.dtype([("id", "<i4"), ("pos", [("x", "<f8"), ("y", "<f8")]),
                        ("hist", "<u2", (3,)), ("name", "S5"), ("ch", "<U2")], align=True)
    arr = np.zeros(4, dtype=aligned)
    arr["id"] = [1, 2, 3, 4]
    arr["pos"]["y"] = 2.5
    arr["hist"][2] = [7, 8, 9]
    arr["name"][1] = b"abc"
    arr["ch"][3] = "\u20ac!"
    e, got, data = send(arr)
    assert e.tag == 5 and e.descriptor[0] == ord("T")
    assert got.dtype.itemsize == aligned.itemsize and got.tobytes() == arr.tobytes()
    assert list(got["id"]) == [1, 2, 3, 4] and got["pos"]["y"][0] == 2.5
    assert list(got["hist"][2]) == [7, 8, 9] and got["name"][1] == b"abc"
    assert got["ch"][3] == "\u20ac!"
    assert np.shares_memory(got, np.frombuffer(data, np.uint8))
    assert send(arr)[1].dtype is got.dtype                  # one dtype per field table


@needs_numpy
def test_packed_structured_arrays():
    # A packed dtype (align=False, or explicit offsets) travels as tag 5 with its offsets.
    packed = np.dtype([("a", "u1"), ("b", "<f8"), ("c", "<i2", (2,))])
    explicit = np.dtype({"names": ["x", "y"], "formats": ["<i4", "<f4"],
                         "offsets": [2, 7], "itemsize": 12})
    for dt in (packed, explicit):
        arr = np.zeros(3, dtype=dt)
        for k, name in enumerate(dt.names):
            arr[name] = k + 7
        arr[dt.names[0]][1] = 3
        e, got, _ = send(arr)
        assert e.tag == 5 and e.descriptor[0] == ord("T")
        assert got.dtype.itemsize == dt.itemsize and got.tobytes() == arr.tobytes()
        assert [got.dtype.fields[n][1] for n in dt.names] == \
            [dt.fields[n][1] for n in dt.names]


def test_a_packed_description_is_a_record():
    # A field table that is not natural alignment (x at 0, y at 4, 16 bytes) is valid.
    desc = _struct_desc(2, 16, "P") + _entry("x", "i", 0, 1, 4, -1) \
        + _entry("y", "d", 4, 1, 8, -1)
    data = bytearray(16)
    struct.pack_into("<id", data, 0, -5, 2.5)
    got = Q.decode(4, desc, memoryview(data), name=QUEUE)
    assert (got.x, got.y) == (-5, 2.5) and ctypes.sizeof(type(got)) == 16
    assert type(got).y.offset == 4


@needs_numpy
@pytest.mark.parametrize("dtype", [
    "complex128", "float16", ">i4", "M8[s]", "S3", "O",
    {"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [0, 2]},   # overlapping
    [("not an identifier", "<i4")],
], ids=str)
def test_arrays_without_a_message_type_are_pickled(dtype):
    arr = np.ones(5, dtype=dtype)
    e, got, _ = send(arr)
    assert e.tag == 6 and got.dtype == arr.dtype and np.array_equal(got, arr)


@needs_numpy
def test_ndarray_subclass_is_pickled():
    m = np.ma.masked_array([1, 2], mask=[0, 1])
    e, got, _ = send(m)
    assert e.tag == 6 and type(got) is type(m) and list(got.mask) == [False, True]


@needs_numpy
def test_numpy_scalars_come_back_as_python_values():
    for value, code, back in [(np.float32(2.5), "f", 2.5), (np.int16(-7), "h", -7),
                              (np.uint64(2**64 - 1), "Q", 2**64 - 1),
                              (np.bool_(True), "?", True), (np.float64(0.5), "d", 0.5)]:
        e, got, _ = send(value)
        assert e.tag == 3 and chr(e.descriptor[0]) == code
        assert got == back and type(got) is type(back)
    assert send(np.complex64(1j))[0].tag == 6
    assert type(send(np.array(np.float32(2.5)))[1]) is np.ndarray   # 0-d array: numpy back


@needs_numpy
def test_numpy_values_given_to_bytes_and_scalar():
    assert send(memoryview(np.zeros((0, 3))))[1] == b""     # a 0 in the shape
    assert send(memoryview(np.arange(6, dtype="<u2").reshape(2, 3).T))[1] == \
        np.arange(6, dtype="<u2").reshape(2, 3).T.tobytes()  # C order of the view
    assert send(sb.scalar("?", np.bool_(True)))[1] is True
    assert send(sb.scalar("h", np.int64(-5)))[1] == -5
    with pytest.raises(TypeError):
        sb.scalar("i", np.float64(1.0))


@needs_numpy
def test_pickled_arrays_travel_out_of_band_without_a_copy():
    big = np.arange(1024, dtype="<f8")                      # 8 KiB: out of band
    small = np.arange(16, dtype="<f8")                      # stays in the pickle
    e, got, data = send({"big": big, "small": small, "f": np.asfortranarray(
        np.arange(1024.0).reshape(32, 32))})
    assert e.tag == 6 and struct.unpack_from("<I", e.descriptor)[0] == 2
    assert e.data_length < len(pickle.dumps(small, protocol=5)) + 2 * big.nbytes + 200
    whole = np.frombuffer(data, np.uint8)
    assert np.array_equal(got["big"], big) and np.shares_memory(got["big"], whole)
    assert got["f"].flags.f_contiguous and np.shares_memory(got["f"], whole)
    assert np.array_equal(got["small"], small) and not np.shares_memory(got["small"], whole)
    assert e.parts[1].obj is big or np.shares_memory(np.asarray(e.parts[1]), big)


def test_pickle_buffer_out_of_band_without_numpy():
    e, got, data = send([pickle.PickleBuffer(bytearray(OOB))])
    assert e.tag == 6 and len(e.parts) == 2
    view = got[0]
    data[e.offsets[1]] = 0xAB
    assert bytes(view[:1]) == b"\xab"                       # a view of the data


def test_array_without_numpy():
    """Without numpy an n-d array message is a memoryview cast to the shape (docs/api.md):
    run in a child in which numpy cannot be imported."""
    code = textwrap.dedent("""
        import sys
        sys.modules["numpy"] = None               # import numpy raises ImportError
        import struct
        from sharedbridge._objects import queue_messages as Q
        def desc(code, shape, tail=b""):
            return struct.pack(f"<BBHI{len(shape)}Q", ord(code), len(shape), 0, 0, *shape) + tail
        m = Q.decode(5, desc("d", (2, 3)), memoryview(struct.pack("<6d", *range(6))), name="q")
        print(m.format, m.shape, m.tolist())
        m = Q.decode(5, desc("u", (2,)), memoryview(struct.pack("<2I", 97, 0x20ac)), name="q")
        print(m.format, m.shape, m.tolist())
        m = Q.decode(5, desc("q", ()), memoryview(struct.pack("<q", -4)), name="q")
        print(m.format, m.shape, m.tolist())
        m = Q.decode(5, desc("h", (3, 0)), memoryview(b""), name="q")
        print(m.format, m.shape, m.tolist())
        point = bytes.fromhex(sys.argv[1])
        m = Q.decode(5, desc("T", (2,), point), memoryview(bytes(range(32))), name="q")
        print(m.format, m.shape, bytes(m.tolist()[1]).hex())
        print("numpy" in sys.modules and sys.modules["numpy"] is not None)
    """)
    out = subprocess.run([sys.executable, "-c", code, POINT_DESC.hex()], env=child_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "d (2, 3) [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]", "I (2,) [97, 8364]", "q () -4",
        "h (0,) []", "B (2, 16) " + bytes(range(16, 32)).hex(), "False"]


def _python38():
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    versions = os.path.join(root, "versions")
    found = sorted(v for v in os.listdir(versions) if v.startswith("3.8.")) \
        if os.path.isdir(versions) else []
    return os.path.join(versions, found[-1], "bin", "python") if found else None


@pytest.mark.skipif(_python38() is None, reason="no CPython 3.8 (pyenv) on this machine")
def test_codec_works_on_python_38():
    """Pickle protocol 5 exists from 3.8: the codec imports and round-trips there."""
    code = textwrap.dedent("""
        import pickle
        from sharedbridge._objects import queue_messages as Q
        for obj in (b"x", "y", 3, 2.5, [1, pickle.PickleBuffer(bytes(5000))]):
            e = Q.encode(obj)
            data = bytearray(e.data_length)
            for p, o in zip(e.parts, e.offsets):
                v = memoryview(p).cast("B")
                data[o:o + v.nbytes] = v
            got = Q.decode(e.tag, e.descriptor, memoryview(data), name="q")
            print(e.tag, type(got).__name__)
    """)
    out = subprocess.run([_python38(), "-c", code], env=child_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "bytes", "2", "str", "3", "int", "3", "float", "6",
                                  "list"]


# --- hostile descriptors and data ---------------------------------------------------------

def _array_desc(code, shape, tail=b"", ndim=None, reserved=(0, 0)):
    return (struct.pack("<BBHI", ord(code), len(shape) if ndim is None else ndim, *reserved)
            + struct.pack(f"<{len(shape)}Q", *shape) + tail)


BAD_POINT = {
    "count 0": _struct_desc(0, 16, "Point"),
    "size 0": _struct_desc(2, 0, "Point") + POINT_DESC[40:],
    "size 2**31": _struct_desc(2, 2**31, "Point") + POINT_DESC[40:],
    "truncated table": POINT_DESC[:-1],
    "type_name not an identifier": _struct_desc(2, 16, "Po-nt") + POINT_DESC[40:],
    "field past the end": _struct_desc(2, 12, "Point") + POINT_DESC[40:],
    "overlap": _struct_desc(2, 16, "P") + _entry("x", "d", 0, 1, 8, -1)
    + _entry("y", "d", 4, 1, 8, -1),
    "unknown field typecode": _struct_desc(1, 8, "P") + _entry("x", "D", 0, 1, 8, -1),
    "reserved name": _struct_desc(1, 8, "P") + _entry("_fields_", "d", 0, 1, 8, -1),
    "forward parent": _struct_desc(1, 8, "P") + _entry("x", "d", 0, 1, 8, 3),
}


HOSTILE = [
    (0, b"", b"", "unknown message type"), (7, b"", b"", "unknown message type"),
    (255, b"", b"", "unknown message type"),
    (1, b"\0", b"x", "descriptor"), (2, bytes(8), b"x", "descriptor"),
    (3, b"q" + bytes(6), bytes(8), "8"), (3, b"q" + bytes(8), bytes(8), "8"),
    (3, b"q\0\0\0\0\0\0\1", bytes(8), "reserved"), (3, b"T" + bytes(7), b"x", "typecode"),
    (3, b"Z" + bytes(7), b"x", "typecode"), (3, b"i" + bytes(7), bytes(8), "bytes of data"),
    (3, b"u" + bytes(7), (0xD800).to_bytes(4, "little"), "Unicode"),
    (3, b"u" + bytes(7), (0x110000).to_bytes(4, "little"), "Unicode"),
    (4, POINT_DESC, bytes(15), "16 bytes"), (4, POINT_DESC + bytes(8), bytes(16), "descriptor"),
    (5, _array_desc("d", (3,)), bytes(16), "bytes of data"),
    (5, _array_desc("d", (3,))[:-1], bytes(24), "descriptor"),
    (5, _array_desc("d", (3,)) + bytes(8), bytes(24), "descriptor"),
    (5, _array_desc("d", (1,) * 33), bytes(8), "33 dimensions"),
    (5, _array_desc("d", (2,), ndim=3), bytes(16), "descriptor"),
    (5, _array_desc("d", (2,), reserved=(1, 0)), bytes(16), "reserved"),
    (5, _array_desc("d", (2,), reserved=(0, 1)), bytes(16), "reserved"),
    (5, _array_desc("x", (2,)), bytes(16), "typecode"),
    (5, _array_desc("d", (2**40, 2**40)), bytes(8), "address"),
    (5, _array_desc("d", (0, 2**63)), b"", "address"),
    (5, _array_desc("B", (2**64 - 1,)), b"x", "address"),
    (5, _array_desc("T", (1,)), bytes(16), "struct description"),
    (5, _array_desc("T", (1,), POINT_DESC), bytes(8), "bytes of data"),
    (6, bytes(15), b"", "descriptor"), (6, struct.pack("<IIQ", 0, 1, 0), b"", "reserved"),
    (6, struct.pack("<IIQ", 1, 0, 2), b"xx", "1 buffers"),
    (6, struct.pack("<IIQQ", 1, 0, 2, 1), b"xxx", "past"),
    (6, struct.pack("<IIQQ", 1, 0, 2, 1), bytes(10), "9 bytes in 10"),
    (6, struct.pack("<IIQ", 0, 0, 5), b"xxxx", "pickle of 5"),
    (6, struct.pack("<IIQ", 0, 0, 0), b"", "pickle of 0"),
    (6, struct.pack("<IIQ", 0, 0, 3), b"xxxx", "4 bytes"),
    (6, struct.pack("<IIQ", 0, 0, 4), b"\x80\x05K\x01", "unpickled"),     # no STOP
    (6, struct.pack("<IIQQ", 2**31, 0, 1, 1), b"N.", "descriptor"),
]


@pytest.mark.parametrize("tag, desc, data, what", [
    pytest.param(*case, id=f"tag{case[0]}-{i}-{case[3]}") for i, case in enumerate(HOSTILE)
] + [pytest.param(4, desc, bytes(16), "struct description", id=f"record-{label}")
     for label, desc in BAD_POINT.items()])
def test_hostile_messages_are_corrupt(tag, desc, data, what):
    with pytest.raises(CorruptDataError, match=QUEUE) as info:
        Q.decode(tag, memoryview(desc), memoryview(bytearray(data)), name=QUEUE)
    assert what in str(info.value)
    assert info.value.segment == QUEUE


def test_unpickling_error_keeps_its_cause():
    stream = pickle.dumps(Point, protocol=5).replace(b"Point", b"Poynt")
    with pytest.raises(CorruptDataError, match="cannot be unpickled: AttributeError") as info:
        Q.decode(6, struct.pack("<IIQ", 0, 0, len(stream)), memoryview(stream), name=QUEUE)
    assert isinstance(info.value.__cause__, AttributeError)


# --- the fuzzer ---------------------------------------------------------------------------

FUZZ_CASES = int(os.environ.get("SB_FUZZ_CASES", "3000"))
FUZZ_SEED = int(os.environ.get("SB_FUZZ_SEED", "1"))
INTERESTING = [0, 1, 2, 7, 8, 31, 32, 33, 0x54, 0x7F, 0x80, 0xFF, 0xFFFF, 2**31 - 1, 2**31,
               2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**63, 2**64 - 1]


def _fuzz_samples():
    samples = [b"bytes", "str \u20ac", True, -3, 2.5, sb.scalar("u", "x"), sb.scalar("H", 9),
               Point(1, 2), Item(), Wide(), (1, "a", [None]),
               [pickle.PickleBuffer(bytes(5000)), b"y"], {"k": 2**70}]
    out = [(e.tag, bytes(e.descriptor), bytes(assemble(e)), 0)
           for e in (Q.encode(s) for s in samples)]
    if np is not None:
        # Pickles that name numpy's functions: their stream is not mutated (keep = its
        # length): numpy's reconstruction trusts its arguments (a forged dtype state
        # crashes it), as pickle lets any stream run any code; tag 6 trusts its producers.
        for obj in [np.arange(12, dtype="<i4").reshape(3, 4), np.zeros(2, dtype=Item),
                    np.zeros(2, dtype=[("s", "S3"), ("w", "<U2", (2,))]), np.array(1.5),
                    {"a": np.arange(600.0)}, np.zeros((0, 3)), np.zeros(2, dtype="c16"),
                    [np.zeros(5, dtype=[("a", "u1"), ("b", "<f8")])]]:
            e = Q.encode(obj)
            keep = struct.unpack_from("<Q", e.descriptor, 8)[0] if e.tag == 6 else 0
            out.append((e.tag, bytes(e.descriptor), bytes(assemble(e)), keep))
    return out


def _mutate(rng, buf, keep=0):
    """*buf* with 1 to 3 mutations; bytes before *keep* only move with truncation."""
    buf = bytearray(buf)
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.35 and len(buf) > keep:
            buf[rng.randrange(keep, len(buf))] ^= 1 << rng.randrange(8)
        elif r < 0.7 and len(buf) >= keep + 8:
            width = rng.choice((1, 2, 4, 8))
            at = rng.randrange(keep, len(buf) - width + 1) & ~(width - 1)
            at = max(at, keep)
            value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
            buf[at:at + width] = value.to_bytes(width, "little")
        elif r < 0.85:
            del buf[rng.randrange(len(buf) + 1):]
        else:
            buf += bytes(rng.randrange(1, 80))
    return bytes(buf)


def _touch(obj):
    """Use the decoded object the way a reader would."""
    if isinstance(obj, ctypes.Structure):
        for f in obj._fields_:
            _touch(getattr(obj, f[0]))
    elif isinstance(obj, ctypes.Array):
        [_touch(v) for v in obj]
    elif isinstance(obj, (list, tuple)):
        [_touch(v) for v in obj]
    elif isinstance(obj, dict):
        [_touch(v) for v in obj.values()]
    elif np is not None and isinstance(obj, np.ndarray):
        obj.tobytes()
        # A numpy array is a raw view, exempt from the 'u' check (docs/format.md section
        # 3.4): numpy itself reports a U item that is not a scalar value (SystemError in
        # tolist), so arrays with U fields are touched as bytes only.
        if "U" in str(obj.dtype.descr):
            return
        # An empty array of shape (2**55, 0) is valid, and its tolist() would be 2**55
        # empty lists: what a reader does with a valid shape is not the codec's business.
        obj.tolist() if obj.size else repr(obj)
    elif isinstance(obj, memoryview):
        obj.tobytes()
    else:
        repr(obj)


def fuzz(seed, cases):
    """Decode *cases* mutated and random messages; return the descriptions of outcomes
    that are neither a value nor a CorruptDataError."""
    rng = random.Random(seed)
    samples = _fuzz_samples()
    bad = []
    for i in range(cases):
        tag, desc, data, keep = rng.choice(samples)
        r = rng.random()
        if r < 0.4:
            desc = _mutate(rng, desc)
        elif r < 0.7:
            data = _mutate(rng, data, keep)
        elif r < 0.85:
            desc, data = _mutate(rng, desc), _mutate(rng, data, keep)
        elif r < 0.95:
            tag = rng.randrange(9)
        else:
            desc = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))
        try:
            _touch(Q.decode(tag, memoryview(desc), memoryview(bytearray(data)), name=QUEUE))
        except CorruptDataError:
            pass
        except Exception as e:
            bad.append(f"case {i}: tag {tag} desc {desc.hex()} data {data[:64].hex()}: "
                       f"{type(e).__name__}: {e}")
    return bad


def test_fuzz_decoding_raises_only_corrupt_data():
    """Mutated and random messages in a child limited to 1 GiB more address space than
    it starts with (an absurd allocation fails there as a MemoryError, which the test
    sees) and to 120 s (a hang)."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--fuzz", str(FUZZ_SEED),
                          str(FUZZ_CASES)], env=child_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"{FUZZ_CASES} cases", \
        out.stdout[-4000:] + out.stderr[-4000:]


def _fuzz_main(seed, cases):
    import resource
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = vm + (1 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    bad = fuzz(seed, cases)
    for line in bad:
        print(line)
    if not bad:
        print(f"{cases} cases")
    return 1 if bad else 0


if __name__ == "__main__" and sys.argv[1:2] == ["--fuzz"]:
    sys.exit(_fuzz_main(int(sys.argv[2]), int(sys.argv[3])))
