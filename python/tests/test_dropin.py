"""Drop-in behaviour that CPython's own shared-ctypes tests never check (docs/api.md,
"Drop-in details"): descriptors per object, segments made in workers, objects returned
from workers, copy, isinstance, the exception class for impossible sizes."""

import copy
import ctypes
import errno
import multiprocessing.sharedctypes as mpsc
import pickle

import pytest

import sharedbridge as sb
import mp_workers
from conftest import run_python

START_METHODS = ("fork", "spawn", "forkserver")


def test_a_thousand_values_under_ulimit_256_keep_no_descriptor():
    # "Descriptors and limits": no file descriptor is kept per object (libc mmap,
    # descriptor closed). A thousand live objects are four times what 256 descriptors
    # could hold.
    proc = run_python(
        "import os, resource, sharedbridge as sb\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
        "before = len(os.listdir('/proc/self/fd'))\n"
        "objs = [sb.Value('i', i) for i in range(1000)]\n"
        "after = len(os.listdir('/proc/self/fd'))\n"
        "assert sum(o.value for o in objs) == 1000 * 999 // 2\n"
        "print(after - before)\n", timeout=120)
    assert int(proc.stdout) <= 0


WORKERS = r'''
import concurrent.futures, multiprocessing as mp, os, signal, sys, time
import sharedbridge as sb

KEEP = None

def make_value(x):
    return sb.Value('i', x), os.getpid()

def make_raw(x):
    return sb.RawArray('d', [x] * 3), os.getpid()

def init_worker():
    global KEEP                       # per-worker arrays kept in a global
    KEEP = sb.RawArray('i', 4)

def pid_with_global(_):
    return os.getpid(), KEEP.name

def main(method):
    ctx = mp.get_context(method)
    pids = set()
    # On the ctypes path a SIGTERM that lands as a worker enters a blocking call is not
    # handled until the call returns (docs/api.md, Endings: only the compiled path re-sends
    # it), so there the pools end by close + join before __exit__'s terminate.
    terminate = sb.lock_backend() == "c"
    with ctx.Pool(2) as pool:                      # __exit__ terminates (SIGTERM)
        v, pid = pool.apply(make_value, (3,))
        pids.add(pid)
        assert v.value == 3 and isinstance(v, sb.Synchronized)
        with v:
            v.value += 1
        for i, (a, pid) in enumerate(pool.map(make_raw, range(4))):
            assert a[:] == [float(i)] * 3
            pids.add(pid)
        if not terminate:
            pool.close()
            pool.join()
    pool.join()
    with ctx.Pool(2, initializer=init_worker) as pool:
        names = set(pool.map(pid_with_global, range(4)))
        pids.update(p for p, _ in names)
        pool.close()                               # ordinary ending: close + join
        pool.join()
    with ctx.Pool(1, initializer=init_worker, maxtasksperchild=1) as pool:
        pids.update(p for p, _ in pool.map(pid_with_global, range(2)))
        if not terminate:
            pool.close()
            pool.join()
    pool.join()
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        a, pid = ex.submit(make_raw, 7).result(timeout=60)
        pids.add(pid)
        assert a[:] == [7.0] * 3
    print(' '.join(map(str, sorted(pids))))

if __name__ == '__main__':
    main(sys.argv[1])
'''


@pytest.mark.parametrize("method", START_METHODS)
def test_objects_returned_from_workers_and_nothing_leaks(method):
    # "Endings of workers", "Pickling and ownership": an object a worker returns arrives
    # with its memory; worker segments (returned, kept in globals by a Pool initializer)
    # are gone after close/join, maxtasksperchild and terminate (SIGTERM).
    from conftest import segments_created_by, SHM
    import os
    proc = run_python(WORKERS, method, timeout=120)
    pids = [int(p) for p in proc.stdout.split()]
    assert pids
    left = set()
    for pid in pids:
        left |= segments_created_by(pid)
    for name in left:
        os.unlink(os.path.join(SHM, name))
    assert not left, f"worker segments leaked: {sorted(left)}"


def test_pickle_round_trip_in_one_process():
    # "Pickling and ownership": the creator's object dropped right after pickling can
    # still be unpickled.
    for make in (lambda: sb.Value("i", 5), lambda: sb.RawValue("d", 2.5),
                 lambda: sb.Array("i", [1, 2]), lambda: sb.RawArray("c", b"ab"), sb.Lock):
        back = pickle.loads(pickle.dumps(make()))
        assert not isinstance(back, sb.UnavailableObject)


def test_unpickling_a_missing_segment_never_raises():
    # "Pickling and ownership": an exception while unpickling would hang multiprocessing.Pool.
    data = pickle.dumps(sb.Value("i", 1))
    lock_data = pickle.dumps(sb.RLock())
    from sharedbridge._platform import exit_cleanup
    exit_cleanup.release_exported()
    for blob in (data, lock_data):
        got = pickle.loads(blob)
        assert isinstance(got, sb.UnavailableObject)
        with pytest.raises(sb.SegmentNotFoundError):
            got.value
        with pytest.raises(sb.SegmentNotFoundError):
            with got:
                pass
        assert "SegmentNotFoundError" in repr(got)


@pytest.mark.parametrize("make", [
    lambda m: m.RawValue("i", 5), lambda m: m.RawArray("i", [1, 2]),
    lambda m: m.RawArray("c", b"xy"), lambda m: m.Value("d", 1.5, lock=False)])
def test_copy_and_deepcopy_match_multiprocessing(make):
    # "copy": copy.copy is a private copy; deepcopy raises TypeError.
    for m in (mpsc, sb):
        obj = make(m)
        c = copy.copy(obj)
        before = bytes(memoryview(obj).cast("B"))
        ctypes.memset(ctypes.addressof(c), 0x7F, ctypes.sizeof(c))
        assert bytes(memoryview(obj).cast("B")) == before, m
        assert ctypes.sizeof(c) == ctypes.sizeof(obj)
        with pytest.raises(TypeError):
            copy.deepcopy(obj)
    assert sb.segment_of(copy.copy(make(sb))) is None


@pytest.mark.parametrize("fn", [copy.copy, copy.deepcopy])
def test_copying_a_wrapper_is_refused_as_in_multiprocessing(fn):
    for m in (mpsc, sb):
        with pytest.raises(RuntimeError):
            fn(m.Value("i", 1))
        with pytest.raises(RuntimeError):
            fn(m.Array("i", 2))


def test_isinstance_against_multiprocessing_classes():
    # "Types": the wrappers derive from multiprocessing's classes.
    cases = [(lambda m: m.Value("i"), mpsc.Synchronized),
             (lambda m: m.Array("i", 2), mpsc.SynchronizedArray),
             (lambda m: m.Array("c", 2), mpsc.SynchronizedString),
             (lambda m: m.Value("i"), mpsc.SynchronizedBase),
             (lambda m: m.synchronized(m.RawArray("d", 2)), mpsc.SynchronizedArray)]
    for make, cls in cases:
        assert isinstance(make(mpsc), cls) and isinstance(make(sb), cls), cls


def test_impossible_size_is_an_oserror_efbig_like_multiprocessing():
    # multiprocessing raises OSError EFBIG; ours is also still a MemoryError (docs/api.md,
    # InsufficientMemoryError).
    with pytest.raises(OSError) as theirs:
        mpsc.RawArray("b", 2 ** 62)
    with pytest.raises(OSError) as ours:
        sb.RawArray("b", 2 ** 62)
    assert theirs.value.errno == ours.value.errno == errno.EFBIG
    assert isinstance(ours.value, MemoryError) and "/dev/shm" in str(ours.value)


# --- element types multiprocessing accepts (docs/api.md, "Drop-in details") -----------

class _Union(ctypes.Union):
    _fields_ = [("i", ctypes.c_int), ("f", ctypes.c_float)]


class _Bits(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int, 3), ("b", ctypes.c_int, 5)]


class _Big(ctypes.BigEndianStructure):
    _fields_ = [("a", ctypes.c_int)]


class _LongName(ctypes.Structure):
    _fields_ = [("a_field_name_of_forty_characters_long___", ctypes.c_int)]


class _Empty(ctypes.Structure):
    _fields_ = []


class _PackedNatural(ctypes.Structure):
    _pack_ = 4
    _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_short), ("c", ctypes.c_short)]


class _Natural(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_short), ("c", ctypes.c_short)]


# (element type, words of the reason, words of what to use instead)
REFUSED = {
    "union": (_Union, "Union, whose fields overlap", "from_buffer"),
    "bit_field": (_Bits, "bit field", "mask it"),
    "big_endian": (_Big, "BigEndianStructure", "use a Structure"),
    "big_endian_simple": (ctypes.c_int.__ctype_be__, "big-endian", "native type"),
    "long_double": (ctypes.c_longdouble, "80-bit", "c_double"),
    "long_field_name": (_LongName, "40 characters", "rename the field"),
    "empty_structure": (_Empty, "no fields", "give it a field"),
    "wchar_rows": (ctypes.c_wchar * 2, "rows of c_wchar", "flat Array('u'"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_types_multiprocessing_accepts_are_refused_with_why_and_what_instead(case):
    ctype, why, instead = REFUSED[case]
    makers = [lambda m: m.RawValue(ctype * 2), lambda m: m.RawArray(ctype, 2),
              lambda m: m.Array(ctype, 2)]
    if not issubclass(ctype, ctypes.Array):     # RawValue(c_wchar * 2) is one row: fine
        makers.append(lambda m: m.RawValue(ctype))
    for make in makers:
        make(mpsc)              # multiprocessing accepts every one of them
        with pytest.raises(sb.UnsupportedTypeError) as e:
            make(sb)
        assert why in str(e.value) and instead in str(e.value), str(e.value)


def test_the_advised_byte_array_carries_a_refused_type():
    # What the refusals advise: share the bytes, lay the user's class over them.
    arr = sb.RawArray("B", ctypes.sizeof(_Union))
    _Union.from_buffer(arr).f = 1.5
    other = _Union.from_buffer(sb.attach(arr.name))
    assert other.f == 1.5 and other.i == ctypes.c_int.from_buffer(ctypes.c_float(1.5)).value


def test_packed_structure_with_the_natural_layout_is_shared_as_natural():
    # _pack_ that moves nothing: accepted, recorded exactly as the unpacked structure.
    obj = sb.RawValue(_PackedNatural, 1, 2, 3)
    assert (obj.a, obj.b, obj.c) == (1, 2, 3)
    twin = sb.RawValue(_Natural)
    h, t = sb.header_of(obj), sb.header_of(twin)
    assert (h.fields, h.element_size) == (t.fields, t.element_size)
    back = sb.attach(obj.name)
    assert (back.a, back.b, back.c) == (1, 2, 3)


@pytest.mark.parametrize("make, flat", [
    (lambda m: m.Array(ctypes.c_int * 2, [(1, 2), (3, 4), (5, 6)]), "i"),
    (lambda m: m.RawArray(ctypes.c_double * 3, 2), "d"),
    (lambda m: m.RawValue((ctypes.c_short * 2) * 3), "h"),
    (lambda m: m.RawArray(mp_workers.Point * 2, 2), mp_workers.Point),
])
def test_two_dimensional_elements_are_flat_arrays_of_the_inner_type(make, flat):
    theirs, ours = (unwrap(make(m)) for m in (mpsc, sb))
    assert type(ours).__name__ == type(theirs).__name__
    assert bytes(memoryview(ours).cast("B")) == bytes(memoryview(theirs).cast("B"))
    rows, per_row = len(ours), len(ours[0])
    # What .NET attachers see: the header of a flat array of the innermost type.
    h, twin = sb.header_of(ours), sb.header_of(sb.RawArray(flat, rows * per_row))
    keys = ("kind", "typecode", "element_size", "element_count", "data_size", "fields")
    assert [getattr(h, k) for k in keys] == [getattr(twin, k) for k in keys]
    assert len(unwrap(sb.attach(ours.name, ours._type_))) == rows
    assert len(unwrap(sb.attach(ours.name))) == rows * per_row   # by name alone: flat
    with pytest.raises(sb.TypeMismatchError):
        sb.attach(ours.name, ours._type_._type_ * (rows * per_row + 1))


def unwrap(obj):
    return obj.get_obj() if hasattr(obj, "get_obj") else obj


class MyInt(ctypes.c_int):
    pass


def test_subclass_of_a_simple_type_keeps_its_class_when_pickled():
    # The segment records 'i'; the pickle names the class (spawn children: test_parity).
    value = pickle.loads(pickle.dumps(sb.RawValue(MyInt, 3)))
    assert isinstance(value, MyInt) and repr(value).startswith("<MyInt object at")
    assert type(pickle.loads(pickle.dumps(sb.RawArray(MyInt, [1, 2])))[0]) is MyInt
    assert isinstance(pickle.loads(pickle.dumps(sb.Value(MyInt, 4))).get_obj(), MyInt)
    created = sb.RawValue(MyInt, 5)
    assert sb.header_of(created).typecode == "i"
    assert isinstance(sb.attach(created.name, MyInt), MyInt)
    assert repr(sb.attach(created.name)) == "c_int(5)"      # by name alone: the base type


def test_a_class_the_receiver_cannot_import_falls_back_to_the_recorded_type():
    class Local(ctypes.c_int):          # '<locals>' in its qualname: not importable
        pass

    obj = sb.RawValue(Local, 9)
    back = pickle.loads(pickle.dumps(obj))
    assert not isinstance(back, Local) and repr(back) == "c_int(9)"
