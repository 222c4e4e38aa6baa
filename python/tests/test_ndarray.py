"""N-dimensional arrays (docs/format.md section 12, docs/api.md "N-dimensional arrays"):
the header a writer writes, sharedbridge.ndarray / from_numpy / attach across real
processes (fork and spawn; ranks 0, 1, 3 and 8; several dtypes, structures included),
pickling by name through a Pool, locks, lifetimes, the standard-library path without
numpy, DLPack with numpy and PyTorch, and what `sharedbridge ls`/`inspect` show. The
hostile kind-9 headers are in test_header.py (with the other corrupt headers) and in
the fuzzer (test_fuzz.py)."""

import ctypes
import gc
import itertools
import json
import math
import multiprocessing
import os
import pickle
import struct
import subprocess
import sys

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from sharedbridge._objects import dlpack
from conftest import HAVE_NUMPY, SHM, child_env, crc_of, image_of, needs_numpy, run_python
from ndarray_workers import Pt, change, read_then_write, snapshot, write_pattern

try:
    import torch
except ImportError:
    torch = None
if HAVE_NUMPY:
    import numpy as np

needs_torch = pytest.mark.skipif(
    torch is None, reason=f"PyTorch is not installed for Python {sys.version.split()[0]} "
    "(apt-get install python3-torch gives it to Debian's /usr/bin/python3 only)")

METHODS = ["fork", "spawn"]
SHAPES = {0: (), 1: (5,), 3: (2, 3, 4), 8: (2, 1, 3, 1, 2, 1, 1, 2)}
_counter = itertools.count()


@pytest.fixture
def tname():
    """tname() -> a fresh sbt_tnpy_<pid>_<n> name; every one made is removed afterwards."""
    made = []

    def make():
        made.append(f"sbt_tnpy_{os.getpid()}_{next(_counter)}")
        return made[-1]
    yield make
    gc.collect()
    for n in made:
        try:
            os.unlink(f"{SHM}/{n}")
        except FileNotFoundError:
            pass


def _maps_name(name):
    """True if this process still maps the segment *name* (/proc/self/maps, which shows
    the resolved path of the segment directory)."""
    path = os.path.join(os.path.realpath(SHM), name)
    with open("/proc/self/maps") as f:
        return any(path in line for line in f)


# --- the bytes a writer writes (section 12.1) -------------------------------------------

def test_header_bytes_of_a_three_dimensional_array(tname):
    a = sb.ndarray((2, 3, 4), "d", name=tname())
    img = image_of(a)
    assert struct.unpack_from("<HHIBBHIQQQ", img, 8) == (7, 7, 0x240, 9, ord("d"), 0, 8, 24,
                                                         0x240, 192)
    assert struct.unpack_from("<II", img, 0x58) == (3, 0x200)
    assert struct.unpack_from("<3Q", img, 0x200) == (2, 3, 4)
    assert img[0x218:0x240] == bytes(0x28)                   # padding: zero
    assert struct.unpack_from("<I", img, 0x184)[0] == crc_of(img, 0x240)   # covers the shape
    assert len(img) == 0x240 + 192
    h = sb.header_of(a)
    assert (h.kind, h.shape, h.ndim, h.version, h.compat_version) == (9, (2, 3, 4), 3, 7, 7)


def test_header_bytes_of_a_structure_and_of_rank_0(tname):
    s = sb.ndarray((5, 2), Pt, name=tname(), lock=False)
    img = image_of(s)
    assert img[0x11] == ord("T") and struct.unpack_from("<HI", img, 0x3A) == (64, 2)
    assert struct.unpack_from("<II", img, 0x58) == (2, 0x280)          # after the table
    assert struct.unpack_from("<I", img, 0x0C)[0] == 0x2C0
    assert struct.unpack_from("<2Q", img, 0x280) == (5, 2)
    assert struct.unpack_from("<I", img, 0x184)[0] == crc_of(img, 0x2C0)
    z = sb.ndarray((), "f", name=tname(), lock=False)
    img = image_of(z)
    assert struct.unpack_from("<I", img, 0x0C)[0] == 0x200
    assert struct.unpack_from("<II", img, 0x58) == (0, 0x200)
    assert struct.unpack_from("<QQQ", img, 0x18) == (1, 0x200, 4)
    e = sb.ndarray((3, 0, 2), "h", name=tname(), lock=False)
    assert struct.unpack_from("<Q", image_of(e), 0x18)[0] == 0
    assert (e.shape, e.size, e.nbytes) == ((3, 0, 2), 0, 0)


def test_encode_decode_round_trip(tname):
    h = sb.header_of(sb.ndarray((4, 1, 2), Pt, name=tname()))
    raw = H.encode(h)
    struct.pack_into("<I", raw, 0x184, H.checksum(raw, h.header_size))
    assert H.decode(bytes(raw[:512]), bytes(raw[512:]), h.total_size, 1) == h


def test_other_kinds_keep_their_version_and_ignore_the_new_words(tname):
    a = sb.RawArray("i", [1, 2], name=tname())
    assert struct.unpack_from("<HH", image_of(a), 8) == (2, 1)
    assert struct.unpack_from("<II", image_of(a), 0x58) == (0, 0)
    assert sb.header_of(a).shape is None and sb.header_of(a).ndim is None


# --- the API in one process --------------------------------------------------------------

def test_attributes_and_shapes(tname):
    a = sb.ndarray([2, 3], "i", name=tname())
    assert (a.shape, a.ndim, a.size, a.nbytes, a.itemsize, a.typecode, a.ctype) == (
        (2, 3), 2, 6, 24, 4, "i", ctypes.c_int)
    assert len(a) == 2 and a.name.startswith("sbt_tnpy_") and a.lifetime == "creator"
    b = sb.ndarray(7, ctypes.c_uint16, name=tname())
    assert (b.shape, b.typecode) == ((7,), "H")
    c = sb.ndarray((2,), ctypes.c_float * 3, name=tname())        # rows: a last dimension
    assert (c.shape, c.typecode) == ((2, 3), "f")
    z = sb.ndarray((), "d", name=tname())
    with pytest.raises(TypeError, match="0-dimensional"):
        len(z)
    assert "shape=(2, 3)" in repr(a)
    top = sb.ndarray((1,) * 31 + (2,), "b", name=tname())      # the largest rank
    assert top.ndim == 32 and top.memoryview().ndim == 32
    assert sb.header_of(top.name).shape == (1,) * 31 + (2,)


@pytest.mark.parametrize("shape,dtype,error,fragment", [
    ((-1, 2), "d", ValueError, "negative"),
    ((1,) * 33, "d", ValueError, "33 dimensions"),
    ((2**31, 2**31, 2**2), "d", ValueError, "2\\^63 - 1 bytes"),
    ("ab", "d", TypeError, "shape"),
    ((2.5,), "d", TypeError, "shape"),
    ((2,), "x", TypeError, "dtype|typecode"),
    ((2,), ctypes.c_char_p, sb.UnsupportedTypeError, "pointer"),
    ((2,), ctypes.c_longdouble, sb.UnsupportedTypeError, "c_longdouble"),
])
def test_invalid_shapes_and_types(tname, shape, dtype, error, fragment):
    with pytest.raises(error, match=fragment):
        sb.ndarray(shape, dtype, name=tname())


@needs_numpy
@pytest.mark.parametrize("dtype,fragment", [
    ("c16", "complex128"), ("f2", "float16"), ("O", "object"),
    (">f8", "byte order"),
    ({"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [0, 2]},
     "structured"),                                         # overlapping fields
])
def test_numpy_dtypes_without_a_typecode_are_refused(tname, dtype, fragment):
    with pytest.raises(sb.UnsupportedTypeError, match=fragment):
        sb.ndarray((2,), dtype, name=tname())


@needs_numpy
def test_numpy_dtypes_map_to_typecodes(tname):
    for dtype, code in [("f4", "f"), (np.float64, "d"), ("int16", "h"), (np.uint64, "Q"),
                        (bool, "?"), ("i1", "b"), ("u4", "I"), ("S1", "c"), ("U1", "u")]:
        a = sb.ndarray((2,), dtype, name=tname(), lock=False)
        assert a.typecode == code, dtype
        assert a.numpy().dtype == np.dtype(dtype)
        a.close()
    sub = sb.ndarray((2,), "(3,)f4", name=tname())            # a subarray dtype: more dims
    assert (sub.shape, sub.typecode) == ((2, 3), "f")


@needs_numpy
def test_numpy_view_is_zero_copy_and_outlives_the_object(tname):
    a = sb.ndarray((2, 3), "f", name=tname())
    v = a.numpy()
    w = np.asarray(a)
    assert np.shares_memory(sb.as_numpy(a), v) and sb.as_numpy(a).shape == (2, 3)
    assert v.dtype == np.float32 and v.shape == (2, 3) and np.shares_memory(v, w)
    v[1, 2] = 5.5
    assert a[1, 2] == 5.5 and w[1, 2] == 5.5
    a[0] = [1, 2, 3]
    assert v[0].tolist() == [1, 2, 3] and a.tolist()[0] == [1, 2, 3]
    other = sb.attach(a.name)
    assert other.numpy().tolist() == v.tolist()
    name = a.name
    a.close()
    del a, other, w
    gc.collect()
    assert not os.path.exists(f"{SHM}/{name}")          # the creator's name is gone
    assert v.tolist() == [[1, 2, 3], [0, 0, 5.5]]            # the memory stays valid


@needs_numpy
def test_from_numpy_copies_once_in_c_order(tname):
    src = np.arange(60, dtype=np.int64).reshape(3, 4, 5)
    for arr in (src, src[:, ::2, 1:], src.T, np.asfortranarray(src)):
        a = sb.from_numpy(arr, name=tname())
        assert a.shape == arr.shape and a.typecode == "q"
        assert (a.numpy() == arr).all() and a.numpy().flags.c_contiguous
        assert not np.shares_memory(a.numpy(), src)
        a.close()
    swapped = sb.from_numpy(np.arange(4, dtype=">i4"), name=tname())
    assert swapped.typecode == "i" and swapped.numpy().tolist() == [0, 1, 2, 3]
    scalar = sb.from_numpy(np.float64(2.5), name=tname())
    assert scalar.shape == () and scalar.numpy()[()] == 2.5
    listed = sb.from_numpy([[1.0, 2.0]], name=tname())
    assert listed.shape == (1, 2) and listed.typecode == "d"
    with pytest.raises(sb.UnsupportedTypeError):
        sb.from_numpy(np.zeros(2, np.complex64), name=tname())


STRUCTURED = None
if HAVE_NUMPY:
    STRUCTURED = np.dtype([("x", "<f8"), ("n", "<i2"), ("tag", "S3"), ("v", "<f4", (2,))],
                          align=True)


@needs_numpy
def test_structured_dtype_round_trip(tname):
    src = np.zeros((2, 2), STRUCTURED)
    src["x"] = [[1, 2], [3, 4]]
    src["tag"] = b"abc"
    src["v"][1, 1] = (7, 8)
    a = sb.from_numpy(src, name=tname())
    h = sb.header_of(a)
    assert h.typecode == "T" and [f.name for f in h.fields] == ["x", "n", "tag", "v"]
    assert a.numpy().dtype == STRUCTURED and a.numpy().tobytes() == src.tobytes()
    assert a.numpy()["v"][1, 1].tolist() == [7, 8] and a.numpy()["tag"][0, 0] == b"abc"
    again = sb.attach(a.name, STRUCTURED)
    assert again.numpy().tobytes() == src.tobytes()
    assert a.memoryview().shape == (2, 2, STRUCTURED.itemsize)     # bytes of each element


def test_memoryview_without_numpy_views(tname):
    a = sb.ndarray((2, 3), "d", name=tname())
    mv = a.memoryview()
    assert (mv.format, mv.shape, mv.ndim) == ("d", (2, 3), 2)
    mv[1, 2] = 4.5
    assert sb.attach(a.name).memoryview()[1, 2] == 4.5
    z = sb.ndarray((), "q", name=tname()).memoryview()
    assert (z.ndim, z.shape) == (0, ())
    z[()] = -3
    assert z[()] == -3
    assert sb.ndarray((2, 0, 3), "i", name=tname()).memoryview().shape == (0,)   # flat, empty
    u = sb.ndarray((2,), "u", name=tname()).memoryview()
    assert u.format == "I"                       # code points: memoryview has no 'u'
    pts = sb.ndarray((2, 2), Pt, name=tname())
    s = pts.memoryview()
    assert (s.format, s.shape) == ("B", (2, 2, 16))
    flat = pts.as_ctypes()                      # the fields, without numpy
    flat[3].x, flat[3].y = 2.5, -4
    again = sb.attach(pts.name).as_ctypes()
    assert (len(again), again[3].x, again[3].y) == (4, 2.5, -4)
    line = sb.ndarray((3,), "i", name=tname())
    line[2] = 7
    assert list(line) == [0, 0, 7] and line.tolist() == [0, 0, 7]
    assert sb.ndarray((2,), "?", name=tname()).memoryview().format == "?"
    assert sb.ndarray((2,), "c", name=tname()).memoryview().format == "c"


# --- locks --------------------------------------------------------------------------------

def test_lock_forms(tname):
    a = sb.ndarray((2,), "d", name=tname())
    lock = a.get_lock()
    assert isinstance(lock, sb.RLock) and lock is a.get_lock()
    with lock:
        with a.get_lock():                               # recursive, like Array's
            a.memoryview()[0] = 1
    raw = sb.ndarray((2,), "d", name=tname(), lock=False)
    with pytest.raises(AttributeError, match="no lock"):
        raw.get_lock()
    shared = sb.Lock(name=tname())
    b = sb.ndarray((2,), "d", name=tname(), lock=shared)
    assert b.get_lock() is shared
    assert sb.header_of(b).lock_name == shared.name
    attached = sb.attach(b.name).get_lock()
    assert attached.name == shared.name
    local = multiprocessing.Lock()
    c = sb.ndarray((2,), "d", name=tname(), lock=local)
    assert c.get_lock() is local and sb.header_of(c).lock_kind == H.LOCK_PROCESS_LOCAL
    with pytest.raises(AttributeError, match="no lock"):
        sb.attach(c.name).get_lock()
    with pytest.raises(AttributeError, match="acquire"):
        sb.ndarray((2,), "d", name=tname(), lock=object())


def test_lock_across_processes(tname):
    a = sb.ndarray((1,), "q", name=tname())
    code = (
        "import sys, sharedbridge as sb\n"
        "a = sb.attach(sys.argv[1])\n"
        "mv = a.memoryview()\n"
        "for _ in range(2000):\n"
        "    with a.get_lock():\n"
        "        mv[0] += 1\n")
    children = [subprocess.Popen([sys.executable, "-c", code, a.name], env=child_env())
                for _ in range(2)]
    mv = a.memoryview()
    for _ in range(2000):
        with a.get_lock():
            mv[0] += 1
    for c in children:
        assert c.wait(timeout=60) == 0
    assert mv[0] == 6000


# --- typed attach (section 12.2) ----------------------------------------------------------

def test_typed_attach_checks_type_and_shape(tname):
    a = sb.ndarray((2, 3), "f", name=tname())
    assert sb.attach(a.name, "f").shape == (2, 3)
    assert sb.attach(a.name, ctypes.c_float, shape=[2, 3]).typecode == "f"
    with pytest.raises(sb.TypeMismatchError, match="typecode 'd'.*typecode 'f'"):
        sb.attach(a.name, "d")
    with pytest.raises(sb.TypeMismatchError, match=r"shape \(3, 2\).*shape \(2, 3\)"):
        sb.attach(a.name, shape=(3, 2))
    flat = sb.RawArray("f", 6, name=tname())
    with pytest.raises(sb.TypeMismatchError, match="not one"):
        sb.attach(flat.name, shape=(6,))
    s = sb.ndarray((3,), Pt, name=tname())
    assert sb.attach(s.name, Pt).ctype is Pt
    assert sb.attach(s.name).ctype.__name__ == "Pt"           # rebuilt from the table

    class Other(ctypes.Structure):
        _fields_ = [("x", ctypes.c_double), ("z", ctypes.c_int64)]
    with pytest.raises(sb.TypeMismatchError, match="layout"):
        sb.attach(s.name, Other)


# --- real processes: ranks, dtypes, both directions, pickling through a Pool -------------

def _samples(tname):
    """[(array, shape, dtype descr, values)] for every rank and dtype of the matrix."""
    cases = []
    for rank, shape in SHAPES.items():
        n = math.prod(shape)
        for dtype in ("f4", "f8", "i2", "u8", "?", STRUCTURED, Pt):
            if dtype is Pt:
                arr = sb.ndarray(shape, Pt, name=tname())
                v = arr.numpy()
                v["x"] = (np.arange(n) * 1.5).reshape(shape)
                v["y"] = (np.arange(n) - 3).reshape(shape)
            elif dtype is STRUCTURED:
                src = np.zeros(n, STRUCTURED)
                src["x"] = np.arange(n) / 4
                src["n"] = -np.arange(n)
                src["tag"] = [b"t%d" % (i % 10) for i in range(n)]
                src["v"] = np.arange(2 * n).reshape(n, 2)
                arr = sb.from_numpy(src.reshape(shape), name=tname())
            elif dtype == "?":
                arr = sb.from_numpy((np.arange(n) % 3 == 0).reshape(shape), name=tname())
            else:
                arr = sb.from_numpy((np.arange(n) * 3 + 1).astype(dtype).reshape(shape),
                                    name=tname())
            v = arr.numpy()
            cases.append((arr, shape, v.dtype.descr, snapshot(v)))
    return cases


@needs_numpy
@pytest.mark.parametrize("method", METHODS)
def test_ranks_and_dtypes_across_processes(tname, method):
    cases = _samples(tname)
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        # By name: the child attaches, checks shape, dtype and the values the parent wrote,
        # and writes under the lock; the parent sees the write.
        jobs = [pool.apply_async(read_then_write, (arr.name, shape, descr, values))
                for arr, shape, descr, values in cases]
        for (arr, *_), job in zip(cases, jobs):
            after = job.get(timeout=120)            # the child is done: then read
            assert snapshot(arr.numpy()) == after, arr
        # The parent writes again; the array itself is pickled by name through the Pool.
        for arr, *_ in cases:
            change(arr.numpy())
        jobs = [pool.apply_async(read_then_write, (arr, shape, descr, snapshot(arr.numpy())))
                for arr, shape, descr, _ in cases]
        for (arr, *_), job in zip(cases, jobs):
            after = job.get(timeout=120)            # the child is done: then read
            assert snapshot(arr.numpy()) == after, arr
        pool.close()
        pool.join()


@pytest.mark.parametrize("method", METHODS)
def test_standard_library_path_across_processes(tname, method):
    """Without numpy in the child's code: the memoryview, shape and pickling by name."""
    a = sb.ndarray((2, 3, 4), "d", name=tname())
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as pool:
        assert pool.apply(write_pattern, (a,)) == (2, 3, 4)
        mv = a.memoryview()
        assert mv[1, 2, 3] == 23.5 and mv[0, 0, 0] == 0.5
        mv[0, 0, 0] = -1.0
        assert pool.apply(write_pattern, (a.name,)) == (2, 3, 4)
        assert mv[0, 0, 0] == 0.5
        pool.close()
        pool.join()


def test_pickle_by_name_in_one_process(tname):
    a = sb.ndarray((2, 2), "i", name=tname())
    a.memoryview()[1, 1] = 9
    b = pickle.loads(pickle.dumps(a))
    assert type(b) is sb.SharedNDArray and b.name == a.name and b.memoryview()[1, 1] == 9
    s = sb.ndarray((2,), Pt, name=tname())
    assert pickle.loads(pickle.dumps(s)).ctype is Pt        # the user's class, importable


def test_unpickling_a_gone_array_gives_an_unavailable_object(tname):
    a = sb.ndarray((2,), "d", name=tname())
    data = pickle.dumps(a)
    a.unlink()
    got = pickle.loads(data)
    assert isinstance(got, sb.UnavailableObject)
    with pytest.raises(sb.SegmentNotFoundError):
        got.shape


# --- lifetimes ------------------------------------------------------------------------------

def test_lifetimes(tname):
    with sb.ndarray((2,), "d", name=tname()) as a:
        mv = a.memoryview()
        name = a.name
        assert os.path.exists(f"{SHM}/{name}")
    assert not os.path.exists(f"{SHM}/{name}")          # the creator's close unlinks
    mv[1] = 3.0                                             # the memory stays valid
    keep = sb.ndarray((2,), "d", name=tname(), lifetime="persistent")
    keep.close()
    assert os.path.exists(f"{SHM}/{keep.name}")
    keep.unlink()
    assert not os.path.exists(f"{SHM}/{keep.name}")
    with pytest.raises(ValueError, match="lifetime"):
        sb.ndarray((2,), "d", name=tname(), lifetime="forever")


def test_last_closer_across_processes(tname):
    a = sb.ndarray((3,), "i", name=tname(), lifetime="last-closer")
    code = (
        "import sys, sharedbridge as sb\n"
        "a = sb.attach(sys.argv[1])\n"
        "assert a.lifetime == 'last-closer' and a.shape == (3,)\n"
        "a.memoryview()[2] = 42\n"
        "print('attached', flush=True)\n"
        "sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", code, a.name], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert child.stdout.readline().strip() == "attached"
        name = a.name
        a.close()
        del a
        gc.collect()
        assert os.path.exists(f"{SHM}/{name}")           # the child still holds it
        assert sb.attach(name).memoryview()[2] == 42
        gc.collect()
    finally:
        child.stdin.write("\n")
        child.stdin.close()
        assert child.wait(timeout=60) == 0
    assert not os.path.exists(f"{SHM}/{name}")            # the last closer removed it


def test_persistent_array_outlives_its_creator(tname):
    name = tname()
    run_python("import sys, sharedbridge as sb\n"
               "a = sb.ndarray((2, 2), 'h', name=sys.argv[1], lifetime='persistent')\n"
               "a.memoryview()[1, 0] = 7\n", name, keep=(name,))
    a = sb.attach(name)
    assert a.shape == (2, 2) and a.memoryview()[1, 0] == 7
    a.unlink()


# --- without numpy ------------------------------------------------------------------------

NO_NUMPY = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" or name.startswith("numpy."):
            raise ImportError("numpy is blocked for this test")
sys.meta_path.insert(0, _Block())
import ctypes, gc, pickle, sharedbridge as sb
from sharedbridge._objects import dlpack
name = sys.argv[1]
a = sb.ndarray((2, 3), "f", name=name)
mv = a.memoryview()
assert (mv.format, mv.shape) == ("f", (2, 3))
mv[1, 2] = 2.5
a[0, 1] = 1.5
assert a[0, 1] == 1.5 and a.tolist() == [[0.0, 1.5, 0.0], [0.0, 0.0, 2.5]]
b = sb.attach(name)
assert b.memoryview()[1, 2] == 2.5 and pickle.loads(pickle.dumps(b)).shape == (2, 3)
for call, error in [(a.numpy, ImportError), (lambda: a.dtype, ImportError),
                    (lambda: sb.from_numpy([1]), ImportError),
                    (lambda: sb.ndarray((2,), "float32"), TypeError)]:
    try:
        call()
    except error as e:
        assert "numpy" in str(e), e
    else:
        raise AssertionError(call)
capsule = a.__dlpack__()                    # no consumer here: never used, then deleted
assert dlpack.live_exports() == 1
del capsule
gc.collect()
assert dlpack.live_exports() == 0
assert "numpy" not in sys.modules
print("ok")
"""


def test_without_numpy(tname):
    assert run_python(NO_NUMPY, tname()).stdout.strip() == "ok"


# --- DLPack -------------------------------------------------------------------------------

@needs_numpy
@pytest.mark.parametrize("code", ["f", "d", "b", "h", "i", "q", "B", "H", "I", "Q"])
def test_numpy_from_dlpack_is_zero_copy(tname, code):
    a = sb.ndarray((2, 3, 4), code, name=tname(), lock=False)
    a.numpy()[...] = np.arange(24).reshape(2, 3, 4)
    x = np.from_dlpack(a)
    assert x.shape == (2, 3, 4) and x.dtype == a.numpy().dtype
    assert x.__array_interface__["data"][0] == a.numpy().__array_interface__["data"][0]
    assert x.tolist() == a.numpy().tolist()
    a.numpy()[1, 2, 3] = 5                  # numpy 1.x marks DLPack imports read-only
    assert x[1, 2, 3] == 5
    assert a.__dlpack_device__() == (1, 0)


@needs_numpy
def test_dlpack_ranks_and_empty(tname):
    for shape in list(SHAPES.values()) + [(1,) * 31 + (3,)]:
        a = sb.ndarray(shape, "d", name=tname(), lock=False)
        x = np.from_dlpack(a)
        assert x.shape == shape
    e = np.from_dlpack(sb.ndarray((2, 0, 3), "f", name=tname(), lock=False))
    assert e.shape == (2, 0, 3)


def test_dlpack_refuses_structures_and_other_devices(tname):
    s = sb.ndarray((2,), Pt, name=tname())
    with pytest.raises(BufferError, match="structure"):
        s.__dlpack__()
    a = sb.ndarray((2,), "d", name=tname())
    with pytest.raises(BufferError, match="stream"):
        a.__dlpack__(stream=1)
    with pytest.raises(BufferError, match="CPU"):
        a.__dlpack__(dl_device=(2, 0))
    assert dlpack.live_exports() == 0


WRITER = (
    "import sys, sharedbridge as sb\n"
    "a = sb.attach(sys.argv[1])\n"
    "print('attached', flush=True)\n"
    "sys.stdin.readline()\n"
    "a.memoryview()[0, 1] = 1234\n")


def _writer(name):
    """A process that attaches to *name* now and writes element [0, 1] = 1234 on request."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, name], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=child_env())
    assert child.stdout.readline().strip() == "attached"
    return child


def _write_now(child):
    child.stdin.write("\n")
    child.stdin.close()
    assert child.wait(timeout=60) == 0


def _consume(capsule, name):
    """A minimal DLPack consumer (what numpy and torch do in C): read the managed
    structure, rename the capsule as used, return (the structure, its address)."""
    api = ctypes.pythonapi
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = (ctypes.py_object, ctypes.c_char_p)
    api.PyCapsule_SetName.argtypes = (ctypes.py_object, ctypes.c_char_p)
    address = api.PyCapsule_GetPointer(capsule, name)
    api.PyCapsule_SetName(capsule, b"used_" + name)
    return address


def test_versioned_capsule_and_copy(tname):
    a = sb.ndarray((2, 3), "i", name=tname(), lock=False)
    a.memoryview()[1, 2] = 6
    cap = a.__dlpack__(max_version=(1, 2))
    address = _consume(cap, b"dltensor_versioned")
    m = dlpack.DLManagedTensorVersioned.from_address(address)
    t = m.dl_tensor
    assert (m.version.major, m.version.minor, m.flags) == (1, 0, 0)
    assert (t.device.device_type, t.ndim, t.dtype.code, t.dtype.bits, t.dtype.lanes) == (
        1, 2, dlpack.KDL_INT, 32, 1)
    assert [t.shape[k] for k in range(2)] == [2, 3] and [t.strides[k] for k in range(2)] == [3, 1]
    assert t.data == ctypes.addressof(a._seg.mm) + sb.header_of(a).data_offset
    assert ctypes.c_int32.from_address(t.data + 4 * 5).value == 6
    del cap                                  # used: the consumer calls the deleter
    assert dlpack.live_exports() == 1
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(m.deleter)(address)
    assert dlpack.live_exports() == 0
    copy = a.__dlpack__(max_version=(1, 0), copy=True)
    address = _consume(copy, b"dltensor_versioned")
    m = dlpack.DLManagedTensorVersioned.from_address(address)
    assert m.flags == dlpack.FLAG_IS_COPIED and m.dl_tensor.data != t.data
    assert ctypes.c_int32.from_address(m.dl_tensor.data + 20).value == 6
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(m.deleter)(address)
    assert dlpack.live_exports() == 0


@needs_numpy
def test_numpy_dlpack_view_keeps_the_mapping_until_it_is_gone(tname):
    a = sb.ndarray((3, 4), "d", name=tname(), lock=False)
    name = a.name
    a.numpy()[...] = np.arange(12).reshape(3, 4) / 2
    x = np.from_dlpack(a)
    during = dlpack.live_exports()
    child = _writer(name)
    a.close()
    del a
    gc.collect()
    assert not os.path.exists(f"{SHM}/{name}")       # the name went with the creator
    assert _maps_name(name)                              # the memory did not
    assert x.tolist() == (np.arange(12).reshape(3, 4) / 2).tolist()
    _write_now(child)                                    # still shared with the other process
    assert x[0, 1] == 1234
    del x
    gc.collect()
    assert dlpack.live_exports() == during - 1
    assert not _maps_name(name)                          # unmapped once the view is gone


@needs_torch
@pytest.mark.parametrize("code,torch_dtype", [
    ("f", "float32"), ("d", "float64"), ("h", "int16"), ("i", "int32"), ("q", "int64"),
    ("B", "uint8"), ("b", "int8"), ("?", "bool")])
def test_torch_from_dlpack_is_zero_copy(tname, code, torch_dtype):
    if code == "?" and int(torch.__version__.split(".")[0]) < 2:
        pytest.skip(f"torch {torch.__version__} does not import DLPack bool (kDLBool, "
                    "DLPack 0.8): 'Unsupported code 6'; torch 2.0 does")
    a = sb.ndarray((2, 3, 4), code, name=tname(), lock=False)
    mv = a.memoryview()
    mv[1, 2, 3] = True if code == "?" else 7
    t = torch.from_dlpack(a)
    assert t.shape == (2, 3, 4) and t.dtype == getattr(torch, torch_dtype)
    assert t.data_ptr() == ctypes.addressof(a._seg.mm) + sb.header_of(a).data_offset
    assert t[1, 2, 3].item() == (True if code == "?" else 7)
    t[0, 0, 0] = 1
    assert mv[0, 0, 0] == (True if code == "?" else 1)


@needs_torch
def test_torch_view_keeps_the_mapping_until_it_is_gone(tname):
    a = sb.ndarray((4, 5), "f", name=tname(), lock=False)
    name = a.name
    mv = a.memoryview()
    for i in range(4):
        for j in range(5):
            mv[i, j] = i * 5 + j
    del mv
    t = torch.from_dlpack(a)
    during = dlpack.live_exports()
    child = _writer(name)
    a.close()
    del a
    gc.collect()
    assert _maps_name(name) and not os.path.exists(f"{SHM}/{name}")
    assert t.sum().item() == sum(range(20))
    t += 1
    assert t[3, 4].item() == 20
    _write_now(child)                                    # still shared with the other process
    assert t[0, 1].item() == 1234
    del t
    gc.collect()
    assert dlpack.live_exports() == during - 1
    assert not _maps_name(name)


@needs_torch
@pytest.mark.parametrize("rank", sorted(SHAPES))
def test_torch_ranks(tname, rank):
    shape = SHAPES[rank]
    a = sb.ndarray(shape, "d", name=tname(), lock=False)
    t = torch.from_dlpack(a)
    assert tuple(t.shape) == shape and t.is_contiguous()


# --- what the CLI shows (section 12.3) ---------------------------------------------------

def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", "sharedbridge", *args], capture_output=True,
                          text=True, env=child_env(), timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc
    return proc.stdout


def test_cli_shows_kind_shape_and_ndim(tname):
    a = sb.ndarray((2, 3, 4), "f", name=tname())
    z = sb.ndarray((), Pt, name=tname(), lock=False)
    found = {i["name"]: i for i in json.loads(_cli("ls", "--json", "--prefix", "sbt_tnpy_"))}
    assert (found[a.name]["kind"], found[a.name]["shape"], found[a.name]["ndim"],
            found[a.name]["length"]) == ("ndarray", [2, 3, 4], 3, 24)
    assert (found[z.name]["shape"], found[z.name]["ndim"], found[z.name]["length"]) == ([], 0, 1)
    keys = list(found[a.name])
    assert keys[keys.index("length"):keys.index("length") + 3] == ["length", "shape", "ndim"]
    one = json.loads(_cli("inspect", a.name, "--json", "--data", "2"))
    assert (one["kind"], one["shape"], one["ndim"], one["data"]) == ("ndarray", [2, 3, 4], 3,
                                                                    [0.0, 0.0])
    assert one["header"]["kind"] == 9 and one["header"]["version"] == 7
    plain = sb.RawArray("i", 2, name=tname())
    one = json.loads(_cli("inspect", plain.name, "--json"))
    assert one["shape"] is None and one["ndim"] is None
    text = _cli("ls", "--prefix", a.name)
    assert "ndarray" in text and "24 [2, 3, 4]" in text
    text = _cli("inspect", z.name)
    assert "kind: ndarray" in text and "shape: []" in text and "ndim: 0" in text
