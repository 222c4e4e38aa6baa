"""The sharedbridge API in one process: creation, locks, names, attach, lifecycle."""

import ctypes
import gc
import multiprocessing
import os
import pickle
import stat
import threading

import pytest

import sharedbridge as sb
from conftest import shm_exists


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


class Inner(ctypes.Structure):
    _fields_ = [("a", ctypes.c_short), ("b", ctypes.c_double * 3)]


class Outer(ctypes.Structure):
    _fields_ = [("tag", ctypes.c_char * 5), ("inner", Inner), ("pair", Point * 2),
                ("flag", ctypes.c_bool), ("n", ctypes.c_int64)]


def mapping_range(obj):
    seg = obj._sb_segment
    base = ctypes.addressof(ctypes.c_char.from_buffer(seg.mm))
    return base, base + seg.size


# --- names -----------------------------------------------------------------------------

def test_generated_name_format():
    a = sb.RawArray("i", 3)
    assert a.name.startswith("sb_") and len(a.name) == 19
    int(a.name[3:], 16)
    assert a.name[3:] == a.name[3:].lower()
    assert shm_exists(a.name)


@pytest.mark.parametrize("bad", ["", "/x", "a/b", "has space", ".hidden", "sem.x",
                                 "é", "a" * 256, "nul\0"])
def test_invalid_names_are_refused_before_the_os(bad):
    with pytest.raises(sb.InvalidNameError) as e:
        sb.RawArray("i", 1, name=bad)
    assert isinstance(e.value, ValueError)
    with pytest.raises(sb.InvalidNameError):
        sb.attach(bad)


def test_explicit_name_mode_0600_and_taken_name(seg_name):
    a = sb.Array("d", 2, name=seg_name)
    assert a.name == seg_name
    mode = stat.S_IMODE(os.stat(f"/dev/shm/{seg_name}").st_mode)
    assert mode == 0o600
    with pytest.raises(sb.SegmentExistsError) as e:
        sb.Array("d", 2, name=seg_name)
    assert isinstance(e.value, FileExistsError)
    assert "already exists" in str(e.value)


def test_unknown_name(seg_name):
    with pytest.raises(sb.SegmentNotFoundError) as e:
        sb.attach(seg_name)
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(sb.SegmentNotFoundError):
        sb.unlink(seg_name)


# --- raw objects are real ctypes objects in the segment ---------------------------------

def test_raw_array_is_a_ctypes_array_inside_the_mapping():
    a = sb.RawArray("q", [1, 2, 3])
    assert isinstance(a, ctypes.c_longlong * 3)
    lo, hi = mapping_range(a)
    assert lo <= ctypes.addressof(a) < hi
    mv = memoryview(a)
    assert mv.format == "<q" and mv.shape == (3,)
    a[1] = 42
    assert mv.cast("B").cast("q")[1] == 42


def test_raw_value_and_struct_value():
    v = sb.RawValue("d", 2.5)
    assert isinstance(v, ctypes.c_double) and v.value == 2.5
    assert repr(v) == "c_double(2.5)"
    p = sb.RawValue(Point, 4, 6)
    assert isinstance(p, Point) and (p.x, p.y) == (4.0, 6.0)


def test_writes_are_visible_through_a_second_mapping():
    a = sb.RawArray("i", 4)
    b = sb.attach(a.name)
    assert b is not a
    a[2] = 7
    assert b[2] == 7
    b[0] = -1
    assert a[0] == -1


# --- locks -----------------------------------------------------------------------------

def test_default_lock_is_embedded_recursive():
    a = sb.Array("i", 3)
    h = sb.header_of(a)
    assert (h.lock_kind, h.lock_type, h.lock_offset) == (1, 1, 0x1C0)
    lock = a.get_lock()
    assert isinstance(lock, sb.RLock) and lock.name == a.name
    with a:
        with a.get_lock():
            a[0] += 1
    assert a.acquire() is True
    assert a.acquire(False) is True     # recursive
    a.release()
    a.release()
    assert a[0] == 1


@pytest.mark.parametrize("factory,lock_type", [(sb.Lock, 2), (sb.RLock, 1)])
def test_named_lock_as_lock_argument(factory, lock_type):
    lock = factory()
    s = sb.Array("c", b"hello", lock=lock)
    v = sb.Value("i", 1, lock=lock)
    assert s.get_lock() is lock and v.get_lock() is lock
    for obj in (s, v):
        h = sb.header_of(obj)
        assert (h.lock_kind, h.lock_name, h.lock_type) == (2, lock.name, 0)
    assert sb.header_of(lock).lock_type == lock_type
    assert sb.header_of(lock).kind == 3
    with lock:
        s.value = b"HI"
        v.value += 1
    assert (s.value, v.value) == (b"HI", 2)


def test_multiprocessing_lock_is_process_local_kind():
    lock = multiprocessing.RLock()
    a = sb.Array("i", 2, lock=lock)
    assert a.get_lock() is lock
    assert sb.header_of(a).lock_kind == 3
    with a:
        a[0] = 5
    a[1] += 3
    assert a[:] == [5, 3]
    assert type(a).__name__ == "SynchronizedArray"
    assert isinstance(a, sb.SynchronizedArray)


def test_lock_false_and_invalid_lock():
    raw = sb.Array("i", 2, lock=False)
    assert isinstance(raw, ctypes.c_int * 2)
    assert sb.header_of(raw).lock_kind == 0
    with pytest.raises(AttributeError, match="has no method 'acquire'"):
        sb.Array("i", 2, lock=0)
    with pytest.raises(AttributeError):
        sb.Value("i", lock="yes")


def test_lock_release_errors_and_nonrecursive_reacquire():
    r, l = sb.RLock(), sb.Lock()
    with pytest.raises(AssertionError):
        r.release()
    with pytest.raises(ValueError):
        l.release()
    assert l.acquire()
    assert l.acquire(False) is False
    assert l.acquire(timeout=0.01) is False
    with pytest.raises(RuntimeError, match="deadlock"):
        l.acquire()
    l.release()
    assert l.acquire(timeout=0) is True
    l.release()


def test_lock_is_exclusive_between_threads():
    lock = sb.RLock()
    held, release = threading.Event(), threading.Event()

    def holder():
        with lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    assert lock.acquire(block=False) is False
    assert lock.acquire(timeout=0.1) is False
    release.set()
    assert lock.acquire(timeout=5) is True
    lock.release()
    t.join()


def test_threads_increment_exactly():
    a = sb.Array("q", 1)

    def work():
        for _ in range(2000):
            with a.get_lock():
                a[0] += 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a[0] == 8000


# --- structures and attach ---------------------------------------------------------------

def test_point_header_matches_the_spec_example():
    A = sb.Array(Point, [(1.875, -6.25)], lock=False)
    h = sb.header_of(A)
    assert (h.typecode, h.element_size, h.type_name, h.header_size) == ("T", 16, "Point", 0x280)
    assert h.fields == (sb.StructField("x", "d", 0, 1, 8, -1), sb.StructField("y", "d", 8, 1, 8, -1))


def test_attach_rebuilds_nested_structures_from_the_field_table():
    v = sb.Value(Outer, lock=False)
    v.tag = b"abc"
    v.inner.a = -3
    v.inner.b[2] = 2.5
    v.pair[1].y = 9.0
    v.flag = True
    v.n = 1 << 40
    other = sb.attach(v.name)
    cls = type(other).__mro__[1]
    assert cls is not Outer and cls.__name__ == "Outer"
    assert ctypes.sizeof(cls) == ctypes.sizeof(Outer)
    assert (other.tag, other.inner.a, other.inner.b[2], other.pair[1].y, other.flag, other.n) \
        == (b"abc", -3, 2.5, 9.0, True, 1 << 40)
    typed = sb.attach(v.name, Outer)
    assert isinstance(typed, Outer) and typed.inner.b[2] == 2.5


def test_attach_gives_back_what_was_created():
    lock = sb.RLock()
    cases = [
        (sb.Array("i", [1, 2]), sb.SynchronizedArray),
        (sb.Array("c", b"xy"), sb.SynchronizedString),
        (sb.Value("d", 1.5), sb.Synchronized),
        (sb.Value(Point, 1, 2), sb.SynchronizedBase),
        (sb.Array("i", 2, lock=lock), sb.SynchronizedArray),
        (sb.RawArray("u", "ab"), ctypes.Array),
        (sb.RawValue("?", True), ctypes.c_bool),
    ]
    for obj, expected in cases:
        got = sb.attach(obj.name)
        assert isinstance(got, expected), (obj, got)
    assert type(sb.attach(sb.Value(Point, 1, 2).name)).__name__ == "SynchronizedPoint"
    assert isinstance(sb.attach(lock.name), sb.RLock)
    assert sb.attach(lock.name) is lock   # one lock object per mutex in a process


def test_attach_with_a_wrong_type_is_a_type_mismatch():
    a = sb.RawArray("i", 2)
    with pytest.raises(sb.TypeMismatchError, match="'d'"):
        sb.attach(a.name, "d")
    with pytest.raises(sb.TypeMismatchError):
        sb.attach(a.name, Point)
    p = sb.RawValue(Point)

    class Other(ctypes.Structure):
        _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_float)]

    with pytest.raises(sb.TypeMismatchError, match="Other"):
        sb.attach(p.name, Other)
    assert sb.attach(a.name, ctypes.c_int)[:] == [0, 0]


def test_typed_open_equivalences():
    for made, asked in (("l", "q"), ("q", "l"), ("L", "Q"), ("Q", "L")):
        a = sb.RawArray(made, [1])
        assert sb.attach(a.name, asked)[0] == 1
    for made, asked in (("c", "B"), ("B", "c"), ("u", "I"), ("I", "u"), ("b", "B"), ("i", "f")):
        a = sb.RawArray(made, 1)
        with pytest.raises(sb.TypeMismatchError):
            sb.attach(a.name, asked)


@pytest.mark.parametrize("bad", [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_wchar_p,
                                 ctypes.POINTER(ctypes.c_int), ctypes.py_object])
def test_pointer_types_are_refused(bad):
    with pytest.raises(sb.UnsupportedTypeError, match="pointer"):
        sb.RawArray(bad, 2)
    with pytest.raises(TypeError):
        sb.Value(bad)

    class WithPointer(ctypes.Structure):
        _fields_ = [("n", ctypes.c_int), ("p", bad)]

    with pytest.raises(sb.UnsupportedTypeError, match="pointer"):
        sb.RawValue(WithPointer)


def test_unions_and_bitfields_are_refused():
    # Packed structures are shared (test_packed.py).
    class U(ctypes.Union):
        _fields_ = [("i", ctypes.c_int), ("f", ctypes.c_float)]

    class Bits(ctypes.Structure):
        _fields_ = [("a", ctypes.c_int, 3)]

    for cls, word in ((U, "Union"), (Bits, "bit field")):
        with pytest.raises(sb.UnsupportedTypeError, match=word):
            sb.RawValue(cls)


# --- pickling by name ---------------------------------------------------------------------

def test_every_object_pickles_by_name():
    objs = [sb.Array("i", [1, 2]), sb.Value("d", 2.0), sb.RawArray(Point, 2),
            sb.RawValue("i", 3), sb.Array("c", b"ab"), sb.Value(Point, 1, 2), sb.RLock()]
    for obj in objs:
        data = pickle.dumps(obj)
        assert len(data) < 400, "pickled by value?"
        back = pickle.loads(data)
        assert back.name == obj.name
    arr = pickle.loads(pickle.dumps(objs[0]))
    arr[0] = 99
    assert objs[0][0] == 99
    assert type(pickle.loads(pickle.dumps(objs[2]))._type_) is type(Point)


def test_real_multiprocessing_cannot_pickle_but_we_can():
    real = multiprocessing.Array("i", 2)
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(real)
    pickle.dumps(sb.Array("i", 2))


# --- lifecycle -----------------------------------------------------------------------------

def test_creator_unlinks_when_collected():
    a = sb.Array("i", 2)
    name = a.name
    assert shm_exists(name)
    del a
    gc.collect()
    assert not shm_exists(name)


def test_close_unlinks_but_keeps_the_object_usable():
    a = sb.Array("d", [1.0, 2.0])
    mv = memoryview(a.get_obj()).cast("B").cast("d")
    name = a.name
    b = sb.attach(name)
    a.close()
    assert not shm_exists(name)
    assert sb.header_of(b).state == 1       # b's private copy; the live word is now 2
    assert b._obj._sb_segment.read_state() == 2
    a[0] = 5.0
    assert b[0] == 5.0 and mv[0] == 5.0
    with pytest.raises(sb.SegmentNotFoundError):
        sb.attach(name)


def test_attacher_does_not_unlink_and_keep_keeps(seg_name):
    a = sb.RawArray("i", 2, name=seg_name, keep=True)
    b = sb.attach(seg_name)
    del a, b
    gc.collect()
    assert shm_exists(seg_name)
    sb.unlink(seg_name)
    assert not shm_exists(seg_name)


def test_explicit_unlink_by_an_attacher():
    a = sb.RawArray("i", 2)
    b = sb.attach(a.name)
    b_name = b.name
    sb.unlink(b_name)
    assert not shm_exists(b_name)
    a[0] = 1                     # memory stays valid
    assert b[0] == 1


def test_raw_objects_close_and_unlink_like_the_wrappers():
    raw = sb.RawArray("i", [1, 2])
    name = raw.name
    raw.close()                          # the creator gives up the name...
    assert not shm_exists(name)
    raw[0] = 7                           # ...and the memory stays usable
    assert raw[:] == [7, 2]
    value = sb.RawValue("d", 1.5)
    other = sb.attach(value.name)
    other.unlink()                       # an explicit unlink, from any handle
    assert not shm_exists(value.name)
    with pytest.raises(sb.SegmentNotFoundError):
        other.unlink()

    class Named(ctypes.Structure):
        _fields_ = [("name", ctypes.c_int), ("close", ctypes.c_int)]

    s = sb.RawValue(Named, 3, 4)         # the user's fields win over our extras
    assert (s.name, s.close) == (3, 4)
    sb.close(s)


def test_copy_and_synchronized():
    private = (ctypes.c_int * 3)(4, 5, 6)
    c = sb.copy(private)
    assert isinstance(c, ctypes.c_int * 3) and c[:] == [4, 5, 6] and c.name.startswith("sb_")
    p = sb.copy(Point(1, 2))
    assert (p.x, p.y) == (1.0, 2.0)
    s = sb.synchronized(c)
    assert isinstance(s, sb.SynchronizedArray) and isinstance(s.get_lock(), sb.RLock)
    s[0] += 1
    assert c[0] == 5
    with pytest.raises(AssertionError, match="already synchronized"):
        sb.synchronized(s)
    sp = sb.synchronized(p, sb.Lock())
    assert type(sp).__name__ == "SynchronizedPoint"
    sp.x = 3.0
    assert p.x == 3.0
    assert sb.copy(sb.RawValue("h", -2)).value == -2


def test_another_objects_lock_as_lock_argument():
    first = sb.Array("i", 2)
    second = sb.Value("d", 0.5, lock=first.get_lock())
    h = sb.header_of(second)
    assert (h.lock_kind, h.lock_name) == (2, first.name)
    assert second.get_lock() is first.get_lock()
    with first.get_lock():
        first[0] += 1
        second.value += 1
    attached = sb.attach(second.name)
    assert attached.get_lock() is first.get_lock()     # same mutex, same lock object
    assert attached.value == 1.5


def test_external_lock_segment_must_exist(seg_name):
    lock = sb.RLock(name=seg_name)
    v = sb.Value("i", 1, lock=lock)
    lock.unlink()
    with pytest.raises(sb.SegmentNotFoundError, match=seg_name):
        sb.attach(v.name)
    v.value += 1                     # the objects already open keep working
    assert v.value == 2


def test_more_than_dev_shm_holds_is_a_clean_memory_error(seg_name):
    with pytest.raises(MemoryError, match="/dev/shm is full"):
        sb.Array("d", 10**12, name=seg_name)   # 8 TB: reserved up front, no SIGBUS later
    assert not shm_exists(seg_name)            # the half-made segment is gone


# --- the error vocabulary ----------------------------------------------------------------

@pytest.mark.parametrize("cls,bases", [
    ("NotASharedBridgeSegmentError", (sb.CorruptSegmentError, ValueError)),
    ("CorruptDataError", (sb.CorruptSegmentError, ValueError)),
    ("SegmentPermissionError", (sb.SharedBridgeError, PermissionError)),
    ("InsufficientMemoryError", (sb.SharedBridgeError, MemoryError)),
    ("CorruptLockError", (sb.SharedBridgeError, RuntimeError)),
])
def test_error_classes(cls, bases):
    assert cls in sb.__all__ and cls in sb.errors.__all__
    klass = getattr(sb, cls)
    assert klass is getattr(sb.errors, cls)
    for base in bases:
        assert issubclass(klass, base)
