"""Packed structures (docs/format.md section 4): a ctypes Structure with _pack_, a numpy
structured dtype with explicit offsets or align=False. The writer records ctypes' (numpy's)
real offsets; a reader checks them against its type. multiprocessing.Array(P, n) of a
packed P is the reference for values, sizes and slicing."""

import ctypes
import itertools
import multiprocessing
import os

import pytest

import sharedbridge as sb

try:
    import numpy as np
except ImportError:
    np = None
needs_numpy = pytest.mark.skipif(np is None, reason="numpy is not installed for this "
                                 "interpreter")

_counter = itertools.count()


@pytest.fixture
def name():
    """Fresh names (prefix sbp22_); every one made is removed after the test."""
    made = []

    def make():
        made.append(f"sbp22_{os.getpid()}_{next(_counter)}")
        return made[-1]
    yield make
    for n in made:
        try:
            os.unlink(f"/dev/shm/{n}")
        except FileNotFoundError:
            pass


class P1(ctypes.Structure):                 # a c_char and an unaligned int: 5 bytes
    _pack_ = 1
    _fields_ = [("a", ctypes.c_char), ("b", ctypes.c_int)]


class P2(ctypes.Structure):                 # every alignment capped at 2: 20 bytes
    _pack_ = 2
    _fields_ = [("flag", ctypes.c_bool), ("d", ctypes.c_double), ("h", ctypes.c_short),
                ("i", ctypes.c_uint32 * 2)]


class P4(ctypes.Structure):                 # a double at 4 with _pack_ = 4: 12 bytes
    _pack_ = 4
    _fields_ = [("n", ctypes.c_int), ("x", ctypes.c_double)]


class Nested(ctypes.Structure):             # packed inside natural, natural inside packed
    _fields_ = [("tag", ctypes.c_ubyte), ("inner", P1 * 2), ("pt", P4), ("ch", ctypes.c_wchar)]


class OuterPacked(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("k", ctypes.c_ubyte), ("nested", Nested), ("q", ctypes.c_int64)]


PACKED = [P1, P2, P4, Nested, OuterPacked]
IDS = [c.__name__ for c in PACKED]


def fill(arr):
    """Writes values into every field of every element through the ctypes fields."""
    for k, item in enumerate(arr):
        _fill(item, k)


def _fill(obj, k):
    for fname, ftype in obj._fields_:
        value = getattr(obj, fname)
        if isinstance(value, ctypes.Structure):
            _fill(value, k + 1)
        elif isinstance(value, ctypes.Array):
            for j in range(len(value)):
                if isinstance(value[j], ctypes.Structure):
                    _fill(value[j], k + j)
                else:
                    value[j] = k * 10 + j
        else:
            setattr(obj, fname, {bytes: bytes([65 + k % 26]), bool: k % 2 == 1,
                                 str: chr(0x41 + k), float: k + 0.25}.get(type(value), k - 3))


def plain(value):
    if isinstance(value, ctypes.Structure):
        return tuple((f[0], plain(getattr(value, f[0]))) for f in value._fields_
                     if not f[0].startswith("__pad_"))
    if isinstance(value, (ctypes.Array, list)):
        return [plain(v) for v in value]
    return value


@pytest.mark.parametrize("cls", PACKED, ids=IDS)
def test_array_of_a_packed_structure_behaves_like_multiprocessing(cls, name):
    theirs = multiprocessing.Array(cls, 4)
    ours = sb.Array(cls, 4, name=name())
    for arr in (theirs, ours):
        with arr.get_lock():
            fill(arr)
    assert ctypes.sizeof(ours.get_obj()) == ctypes.sizeof(theirs.get_obj()) \
        == 4 * ctypes.sizeof(cls)
    assert bytes(memoryview(ours.get_obj()).cast("B")) == \
        bytes(memoryview(theirs.get_obj()).cast("B"))
    assert len(ours) == len(theirs) == 4
    for index in (0, -1, slice(None), slice(1, 3), slice(None, None, 2), slice(3, 0, -2)):
        assert plain(ours[index]) == plain(theirs[index]), index
        assert type(ours[index]).__name__ == type(theirs[index]).__name__
    ours[1:3] = theirs[2:4]
    theirs[1:3] = theirs[2:4]
    assert plain(ours[:]) == plain(theirs[:])
    sb.close(ours)


@pytest.mark.parametrize("cls", PACKED, ids=IDS)
def test_the_header_records_the_real_offsets_and_a_reader_rebuilds_them(cls, name):
    n = name()
    ours = sb.RawArray(cls, 3, name=n)
    fill(ours)
    h = sb.header_of(ours)
    assert h.element_size == ctypes.sizeof(cls)
    top = [f for f in h.fields if f.parent == -1]
    assert [(f.name, f.offset) for f in top] == \
        [(f[0], getattr(cls, f[0]).offset) for f in cls._fields_]
    by_name = sb.attach(n)                          # no class: rebuilt from the field table
    assert ctypes.sizeof(type(by_name[0])) == ctypes.sizeof(cls)
    assert [plain(x) for x in by_name] == [plain(x) for x in ours]
    assert [getattr(type(by_name[0]), f[0]).offset for f in cls._fields_] == \
        [getattr(cls, f[0]).offset for f in cls._fields_]
    by_name[2] = type(by_name[0]).from_buffer_copy(bytes(cls()))   # writes land where
    #                                                                the writer reads
    assert plain(ours[2]) == plain(cls())
    assert plain(sb.attach(n, cls)[1]) == plain(ours[1])     # with the class: checked
    sb.close(by_name)
    sb.close(ours)


def test_value_and_raw_value_of_packed_structures(name):
    # What raised UnsupportedTypeError ("not C natural alignment") before.
    v = sb.Value(P2, True, 2.5, -3, (7, 8), name=name())
    assert (v.flag, v.d, v.h, list(v.i)) == (True, 2.5, -3, [7, 8])
    with v.get_lock():
        v.d += 1
    back = sb.attach(v.name)
    assert back.d == 3.5 and ctypes.sizeof(back.get_obj()) == ctypes.sizeof(P2) == 20
    raw = sb.RawValue(OuterPacked, name=name())
    raw.nested.inner[1].b = -123456
    raw.q = 2**40
    other = sb.attach(raw.name, OuterPacked)
    assert (other.nested.inner[1].b, other.q) == (-123456, 2**40)
    for obj in (back, v, other, raw):
        sb.close(obj)


class P1Aligned(ctypes.Structure):          # P1 without _pack_: b at 4, 8 bytes
    _fields_ = [("a", ctypes.c_char), ("b", ctypes.c_int)]


class P1Wide(ctypes.Structure):             # same size as P4, y at 4 but an int
    _pack_ = 4
    _fields_ = [("n", ctypes.c_int), ("x", ctypes.c_int), ("z", ctypes.c_int)]


class P4Moved(ctypes.Structure):            # P4's size and names, x at 8 instead of 4
    _fields_ = [("n", ctypes.c_int), ("pad", ctypes.c_int), ("x", ctypes.c_double)]


class P4Shifted(ctypes.Structure):          # P4's fields, sizes and size; x one byte later
    _pack_ = 1
    _fields_ = [("n", ctypes.c_int), ("x", ctypes.c_double)]


@pytest.mark.parametrize("cls, written, fragment", [
    (P1Aligned, P1, r"\(8 bytes\).*\(5 bytes\).*field 'b' is at byte offset 1 in the "
                    r"segment, at 4 in the type"),
    (P1, P1Aligned, r"\(5 bytes\).*\(8 bytes\).*field 'b' is at byte offset 4 in the "
                    r"segment, at 1 in the type"),
    (P1Wide, P4, r"field 'x' is typecode 'd' x 1 of 8 bytes in the segment, typecode "
                 r"'i' x 1 of 4 bytes in the type"),
], ids=["natural_for_packed", "packed_for_natural", "same_size_other_type"])
def test_a_type_whose_offsets_disagree_is_refused_naming_the_field(cls, written, fragment,
                                                                   name):
    seg = sb.RawArray(written, 2, name=name())
    with pytest.raises(sb.TypeMismatchError, match=fragment):
        sb.attach(seg.name, cls)
    sb.close(seg)


def test_same_size_and_names_at_other_offsets_is_refused(name):
    # P4Shifted is 12 bytes like P4, but _pack_ = 1 puts x at 4 as well: same layout,
    # accepted; a twin of P4 whose x sits at 8 (16 bytes) is not.
    seg = sb.RawValue(P4, 1, 2.5, name=name())
    assert sb.attach(seg.name, P4Shifted).x == 2.5
    with pytest.raises(sb.TypeMismatchError, match=r"field 1 is 'x' in the segment, 'pad' "
                                                   r"in the type"):
        sb.attach(seg.name, P4Moved)
    sb.close(seg)


@needs_numpy
def test_numpy_packed_and_explicit_dtypes(name):
    packed = np.dtype([("a", "u1"), ("b", "<f8"), ("c", "<i2", (2,))])       # align=False
    explicit = np.dtype({"names": ["x", "y"], "formats": ["<i4", "<f4"],
                         "offsets": [2, 7], "itemsize": 12})
    for dt in (packed, explicit):
        arr = sb.ndarray((2, 3), dt, name=name())
        view = arr.numpy()
        assert view.dtype.itemsize == dt.itemsize
        assert [view.dtype.fields[f][1] for f in dt.names] == [dt.fields[f][1] for f in dt.names]
        view[dt.names[1]][1, 2] = 4.5
        again = sb.attach(arr.name)
        other = again.numpy()
        assert other[dt.names[1]][1, 2] == 4.5 and other.dtype.itemsize == dt.itemsize
        del view, other
        sb.close(again)
        sb.close(arr)
    # ctypes packed structures as the element of an n-d array, and from_numpy of one.
    arr = sb.ndarray((2,), P2, name=name())
    view = arr.numpy()
    assert view.dtype.itemsize == 20 and view.dtype.fields["d"][1] == P2.d.offset
    del view
    sb.close(arr)
    src = np.zeros(3, dtype=packed)
    src["b"] = [1.5, 2.5, 3.5]
    copy = sb.from_numpy(src, name=name())
    back = sb.attach(copy.name)
    got = back.numpy()
    assert list(got["b"]) == [1.5, 2.5, 3.5]
    del got
    sb.close(back)
    sb.close(copy)


def test_queue_carries_packed_records(name):
    q = sb.Queue(4, name=name())
    q.put(OuterPacked(k=9, q=-5))
    got = q.get(timeout=10)
    assert (got.k, got.q) == (9, -5) and ctypes.sizeof(got) == ctypes.sizeof(OuterPacked)
    # A record (tag 4) that .NET reads too, not a pickle: the class is rebuilt from the table.
    assert type(got) is not OuterPacked and type(got).__name__ == "OuterPacked"
    q.close()
