"""Hardening rulings (issue 7) A, B and C: header rules, the error vocabulary and hostile
segments. Every forged object is named pyh_<pid>_<n> and removed by its test."""

import ctypes
import os
import pickle
import socket
import stat
import struct
import threading
import time
import zlib

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from sharedbridge._format import struct_layout
from sharedbridge._platform.segment import create as create_segment
from conftest import run_python, shm_exists

SHM = "/dev/shm"


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


class Nested(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int), ("p", Point), ("c", ctypes.c_char * 3)]


def crc_of(buf, header_size):
    return zlib.crc32(bytes(buf[:0x180]) + bytes(buf[0x200:header_size]))


def image_of(obj_or_name):
    name = obj_or_name if isinstance(obj_or_name, str) else obj_or_name.name
    with open(f"{SHM}/{name}", "rb") as f:
        return bytearray(f.read())


def reseal(img):
    """Recompute header_crc32, so that the rule under test (not the checksum) fires."""
    header_size = struct.unpack_from("<I", img, 0x0C)[0]
    struct.pack_into("<I", img, 0x184, crc_of(img, header_size))
    return img


@pytest.fixture
def forge(pyh_name):
    """forge(data, size=None) writes *data* as a new shared-memory object (then sized to
    *size* if given) and returns its name; every forged object is removed afterwards."""
    made = []

    def make(data, size=None):
        name = pyh_name()
        fd = os.open(f"{SHM}/{name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        made.append(name)
        try:
            os.write(fd, bytes(data))
            if size is not None:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)
        return name

    yield make
    for name in made:
        if os.path.lexists(f"{SHM}/{name}"):
            os.unlink(f"{SHM}/{name}")


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


# --- B. the error vocabulary -----------------------------------------------------------

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


# --- A.1 lock-only segments ---------------------------------------------------------------

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


# --- A.2 order of checks on open -------------------------------------------------------

def assert_at_once(fn, exc, match=None):
    """fn() raises *exc* without waiting for the (long) ready timeout."""
    t0 = time.monotonic()
    with pytest.raises(exc, match=match) as e:
        fn()
    assert time.monotonic() - t0 < 2
    return e.value


@pytest.mark.parametrize("size", range(1, 8))
def test_one_to_seven_bytes_is_not_a_sharedbridge_segment(forge, size):
    name = forge(b"SHBRIDGE"[:size])
    assert_at_once(lambda: sb.attach(name, timeout=10), sb.NotASharedBridgeSegmentError, name)


@pytest.mark.parametrize("data,size", [
    (b"NOTOURS!", None), (b"NOTOURS!", 8), (b"\x7fELF", 4096), (b"SHBRIDGf", 600),
    (bytes(8), 100),                     # all-zero magic but too small to be ours
    (bytes(8), 511),
])
def test_wrong_magic_is_refused_at_once(forge, data, size):
    name = forge(data, size)
    err = assert_at_once(lambda: sb.attach(name, timeout=10), sb.NotASharedBridgeSegmentError,
                         "wrong magic|only|not a SharedBridge")
    assert name in str(err)
    assert isinstance(err, sb.CorruptSegmentError) and isinstance(err, ValueError)


def test_zero_magic_with_nonzero_state_is_not_ours(forge):
    img = bytearray(600)
    struct.pack_into("<I", img, 0x180, 1)
    name = forge(img)
    assert_at_once(lambda: sb.attach(name, timeout=10), sb.NotASharedBridgeSegmentError)


def test_zero_magic_and_zero_state_waits_for_the_creator(forge):
    real = image_of(sb.Array("i", [8, 9]))
    name = forge(bytes(len(real)))
    with pytest.raises(sb.SegmentNotReadyError, match="still initializing"):
        sb.attach(name, timeout=0.1)

    def publish():               # the creator writes everything, magic and state last
        with open(f"{SHM}/{name}", "r+b") as f:
            f.seek(8)
            f.write(bytes(real[8:0x180]))
            f.seek(0x184)
            f.write(bytes(real[0x184:]))
            f.seek(0)
            f.write(bytes(real[:8]))
            f.flush()
            f.seek(0x180)
            f.write(bytes(real[0x180:0x184]))

    timer = threading.Timer(0.1, publish)
    timer.start()
    try:
        assert sb.attach(name, timeout=5)[:] == [8, 9]
    finally:
        timer.join()


@pytest.mark.parametrize("size", [8, 9, 300, 511])
def test_magic_with_8_to_511_bytes_is_truncated(forge, size):
    img = image_of(sb.Array("i", 1))
    name = forge(img[:size])
    err = assert_at_once(lambda: sb.attach(name, timeout=10), sb.CorruptSegmentError,
                         "truncated")
    assert not isinstance(err, sb.NotASharedBridgeSegmentError)


@pytest.mark.parametrize("state,outcome", [(0, sb.SegmentNotReadyError), (1, None), (2, None),
                                           (3, sb.CorruptSegmentError),
                                           (0xFFFFFFFF, sb.CorruptSegmentError)])
def test_state_word(forge, state, outcome):
    img = image_of(sb.Array("i", [4]))
    struct.pack_into("<I", img, 0x180, state)
    name = forge(img)
    if outcome is None:
        assert sb.attach(name, timeout=0.1)[0] == 4
    else:
        with pytest.raises(outcome):
            sb.attach(name, timeout=0.1)


def test_magic_is_checked_before_the_state(forge):
    img = image_of(sb.Array("i", [4]))
    img[0:8] = b"FOREIGN!"
    struct.pack_into("<I", img, 0x180, 0)          # would wait if the state came first
    name = forge(img)
    assert_at_once(lambda: sb.attach(name, timeout=10), sb.NotASharedBridgeSegmentError)


def _cleanup_path(path):
    if os.path.islink(path) or not os.path.isdir(path):
        if os.path.lexists(path):
            os.unlink(path)
    else:
        os.rmdir(path)


@pytest.mark.parametrize("what", ["fifo", "directory", "socket", "symlink", "dangling_symlink"])
def test_not_a_regular_file_is_not_a_sharedbridge_segment(pyh_name, what):
    name = pyh_name()
    path = f"{SHM}/{name}"
    target = sb.RawArray("i", 1) if "symlink" in what else None
    sock = None
    try:
        if what == "fifo":
            os.mkfifo(path, 0o600)
        elif what == "directory":
            os.mkdir(path, 0o700)
        elif what == "socket":
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(path)
        elif what == "symlink":
            os.symlink(f"{SHM}/{target.name}", path)
        else:
            os.symlink(f"{SHM}/{name}_nowhere", path)
        for fn in (lambda: sb.attach(name, timeout=10), lambda: sb.header_of(name)):
            err = assert_at_once(fn, sb.NotASharedBridgeSegmentError)
            assert name in str(err)
    finally:
        if sock is not None:
            sock.close()
        _cleanup_path(path)


# --- A.3 versions ------------------------------------------------------------------------

@pytest.mark.parametrize("version,compat,outcome", [
    (1, 1, None), (2, 1, None), (7, 1, None), (2, 2, None), (3, 3, None),
    (4, 4, sb.UnsupportedVersionError), (1, 4, sb.UnsupportedVersionError),
    (2, 4, sb.UnsupportedVersionError), (3, 4, sb.UnsupportedVersionError),
    (1, 2, sb.CorruptSegmentError),
    (1, 0, sb.CorruptSegmentError),
    (0, 0, sb.CorruptSegmentError), (0, 1, sb.CorruptSegmentError),
])
def test_version_and_compat_version(forge, version, compat, outcome):
    img = image_of(sb.RawArray("i", [6]))
    struct.pack_into("<HH", img, 8, version, compat)
    name = forge(reseal(img))
    if outcome is None:
        assert sb.attach(name, timeout=0.1)[0] == 6
    else:
        with pytest.raises(outcome):
            sb.attach(name, timeout=0.1)


# --- A.4 zero-length arrays, field tables ----------------------------------------------

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


# --- A.5 nesting depth ------------------------------------------------------------------

def nested_type(levels):
    """A structure whose innermost c_int field is at depth *levels*."""
    cls = type("L0", (ctypes.Structure,), {"_fields_": [("v", ctypes.c_int)]})
    for i in range(1, levels):
        cls = type(f"L{i}", (ctypes.Structure,), {"_fields_": [("s", cls)]})
    return cls


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


def test_readers_accept_depth_16_and_refuse_17(forge):
    ok = forge(header_image(_chain(16), element_size=4))
    assert sb.header_of(ok).element_size == 4
    bad = forge(header_image(_chain(17), element_size=4))
    with pytest.raises(sb.CorruptSegmentError, match="nested 17 structures deep"):
        sb.attach(bad, timeout=0.1)


# --- A.6 'u' and '?' elements ------------------------------------------------------------

def poke_u32(obj, index, value):
    raw = obj.get_obj() if hasattr(obj, "get_obj") else obj
    (ctypes.c_uint32 * 1).from_address(ctypes.addressof(raw) + 4 * index)[0] = value


@pytest.mark.parametrize("bad", [0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0x110000, 0xFFFFFFFF])
@pytest.mark.parametrize("maker", ["RawArray", "Array", "attached"])
def test_u_array_reads_of_non_scalar_values_are_corrupt_data(maker, bad):
    made = (sb.RawArray if maker == "RawArray" else sb.Array)("u", "abcd")
    a = sb.attach(made.name) if maker == "attached" else made
    poke_u32(a, 2, bad)
    assert a[0] == "a" and a[1] == "b" and a[3] == "d" and a[0:2] == "ab" and a[-1] == "d"
    reads = [lambda: a[2], lambda: a[-2], lambda: a[:], lambda: a[1:4], lambda: a[::2],
             lambda: list(a), lambda: [c for c in a]]
    raw = a.get_obj() if isinstance(a, sb.SynchronizedBase) else a
    reads.append(lambda: raw.value)
    for read in reads:
        with pytest.raises(sb.CorruptDataError) as e:
            read()
        assert e.value.index == 2 and e.value.segment == a.name
        assert a.name in str(e.value) and "element 2" in str(e.value)
        assert isinstance(e.value, ValueError)
    with pytest.raises(IndexError):
        a[4]
    poke_u32(a, 2, 0x10FFFF)                        # the largest scalar value is fine
    assert a[2] == "\U0010ffff"


def test_u_value_reads(pyh_name):
    for v in (sb.RawValue("u", "x"), sb.Value("u", "x")):
        other = sb.attach(v.name)
        for bad in (0xD800, 0x110000):
            poke_u32(v, 0, bad)
            for obj in (v, other):
                with pytest.raises(sb.CorruptDataError, match="the value") as e:
                    obj.value
                assert e.value.index is None and v.name in str(e.value)
        poke_u32(v, 0, 0x1F600)
        assert v.value == other.value == "\U0001F600"
    raw = sb.RawValue("u", "x")
    poke_u32(raw, 0, 0xD800)
    assert "corrupt 0xd800" in repr(raw)


def test_u_writers_refuse_lone_surrogates(pyh_name):
    a = sb.Array("u", "abcd")
    raw = sb.RawArray("u", 4)
    v = sb.Value("u", "x")
    for target in (a, raw):
        with pytest.raises(UnicodeEncodeError):
            target[0] = "\ud800"
        with pytest.raises(ValueError):
            target[0:2] = "x\udfff"
        with pytest.raises(ValueError):
            target[0:2] = ["x", "\udc00"]
    with pytest.raises(ValueError):
        raw.value = "ok\ud800"
    with pytest.raises(ValueError):
        v.value = "\ud800"
    assert a[:] == "abcd" and raw[:] == "\0" * 4 and v.value == "x"
    a[0:2] = "\U0001F600z"
    assert a[:2] == "\U0001F600z"
    names = [pyh_name() for _ in range(4)]
    for make in (lambda n: sb.Array("u", "a\ud800", name=n),
                 lambda n: sb.RawValue("u", "\udc00", name=n),
                 lambda n: sb.copy((ctypes.c_wchar * 2)("a", "\ud800"), name=n),
                 lambda n: sb.RawArray(ctypes.c_wchar, ["\ud800"], name=n)):
        name = names.pop()
        with pytest.raises(ValueError):
            make(name)
        assert not shm_exists(name)


def test_other_typecodes_keep_ctypes_accessors():
    for typecode in "cbBhHiIlLqQfd?":
        cls = type(sb.RawArray(typecode, 1))
        assert "__getitem__" not in cls.__dict__ and "__setitem__" not in cls.__dict__


def test_bool_reads_every_nonzero_byte_as_true():
    a = sb.RawArray("?", 4)
    s = sb.Array("?", 4)
    v = sb.RawValue("?")
    for obj in (a, s.get_obj(), v):
        raw = (ctypes.c_uint8 * 4).from_address(ctypes.addressof(obj))
        raw[0] = 2
        if obj is not v:
            raw[1], raw[2] = 0xFF, 0
    for obj in (a, s, sb.attach(a.name)):
        assert obj[:] == [True, True, False, False]
        assert obj[0] is True and obj[1] is True and obj[2] is False
    assert v.value is True
    w = sb.Array("?", [5, 0, -1, "x"])              # writers write 0 or 1
    assert bytes(w.get_obj()) == b"\x01\x00\x01\x01"


# --- A.7 / A.8 locks --------------------------------------------------------------------

def test_external_lock_recovery_counts_on_the_lock_segment():
    from test_locks import hold_in_child, kill
    lock = sb.RLock()
    arr = sb.Array("i", 2, lock=lock)
    child = hold_in_child(arr.name)          # takes the lock through the data segment
    kill(child)
    with pytest.warns(sb.LockRecoveredWarning):
        arr[1] += 1
    lock_img, data_img = image_of(lock), image_of(arr)
    assert struct.unpack_from("<QI", lock_img, 0x188) == (1, os.getpid())
    assert data_img[0x188:0x1C0] == bytes(0x38)
    assert lock.recoveries == 1 and arr.get_lock() is lock


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


# --- A.9 mode ----------------------------------------------------------------------------

def test_default_mode_is_0600_whatever_the_umask():
    proc = run_python(
        "import os, stat, sharedbridge as sb\n"
        "os.umask(0o277)\n"
        "a = sb.RawArray('i', 1); l = sb.Lock()\n"
        "print(*[oct(stat.S_IMODE(os.stat('/dev/shm/' + o.name).st_mode)) for o in (a, l)])\n"
        "print(a[0])\n")
    assert proc.stdout.split() == ["0o600", "0o600", "0"]


def _lock_header():
    abi, size = H.native_lock_abi()
    return H.SegmentHeader(
        version=1, compat_version=1, header_size=512, kind=3, typecode="", element_size=0,
        element_count=0, data_offset=512, data_size=0, lock_kind=1, lock_abi=abi,
        lock_size=size, lock_offset=0x1C0, lock_type=1, fields=(), creator_pid=os.getpid(),
        creator_start_time=0, created_unix_ns=0, type_name="", lock_name="")


def test_configured_mode_is_exact_and_checked(pyh_name):
    old = os.umask(0o077)
    try:
        name = pyh_name()
        seg = create_segment(name, _lock_header(), lambda mm: None, mode=0o660)
        assert stat.S_IMODE(os.stat(f"{SHM}/{name}").st_mode) == 0o660
        seg.close()
    finally:
        os.umask(old)
    for bad in (0o1600, 0o4600, 0o10600, 0o400, 0o200, 0o066, -1, "0600", 600.0, True):
        name = pyh_name()
        with pytest.raises(ValueError, match="mode"):
            create_segment(name, _lock_header(), lambda mm: None, mode=bad)
        assert not shm_exists(name)


# --- A.10 names --------------------------------------------------------------------------

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


@pytest.mark.parametrize("name,expected", [
    ("Point", "Point"), ("9Lives", "_9Lives"), ("a-b.c d", "a_b_c_d"),
    ("caf\u00e9", "caf_"), ("x" * 40, "x" * 31), ("1" + "y" * 40, "_1" + "y" * 29)])
def test_type_name_is_derived_from_the_class_name(name, expected):
    cls = type(name, (ctypes.Structure,), {"_fields_": [("v", ctypes.c_int)]})
    assert struct_layout.type_name_of(cls) == expected
    assert sb.header_of(sb.RawValue(cls)).type_name == expected


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


# --- A.11 external locks ---------------------------------------------------------------

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


# --- A.12 typed open ---------------------------------------------------------------------

def test_typed_open_equivalences():
    for made, asked in (("l", "q"), ("q", "l"), ("L", "Q"), ("Q", "L")):
        a = sb.RawArray(made, [1])
        assert sb.attach(a.name, asked)[0] == 1
    for made, asked in (("c", "B"), ("B", "c"), ("u", "I"), ("I", "u"), ("b", "B"), ("i", "f")):
        a = sb.RawArray(made, 1)
        with pytest.raises(sb.TypeMismatchError):
            sb.attach(a.name, asked)


# --- C. hostile segments -----------------------------------------------------------------

def test_only_the_validated_size_is_mapped_and_nothing_is_resized(forge):
    img = image_of(sb.RawArray("d", [1.0, 2.0]))
    name = forge(img, size=1 << 20)
    got = sb.attach(name, timeout=0.1)
    assert got[:] == [1.0, 2.0]
    assert len(got._sb_segment.mm) == 0x210
    assert os.stat(f"{SHM}/{name}").st_size == 1 << 20
    empty = forge(b"")
    with pytest.raises(sb.SegmentNotReadyError):
        sb.attach(empty, timeout=0.05)
    assert os.stat(f"{SHM}/{empty}").st_size == 0


def test_too_large_to_map_is_insufficient_memory(forge):
    img = image_of(sb.RawArray("B", 1))
    count = 1 << 62
    struct.pack_into("<QQQ", img, 0x18, count, 0x200, count)
    name = forge(reseal(img[:0x200]), size=0x200 + count)
    with pytest.raises(sb.InsufficientMemoryError, match=str(0x200 + count)) as e:
        sb.attach(name, timeout=0.1)
    assert isinstance(e.value, MemoryError) and name in str(e.value)


def test_segment_of_another_user_needs_opt_in():
    a = sb.RawArray("i", [11])
    lock = sb.RLock()
    v = sb.Value("i", 5, lock=lock)
    for obj in (a, lock, v):
        os.chown(f"{SHM}/{obj.name}", 65534, -1)
    for obj in (a, lock, v):
        with pytest.raises(sb.SegmentPermissionError, match="owned by uid 65534") as e:
            sb.attach(obj.name)
        assert "allow_other_owner=True" in str(e.value)
        assert isinstance(e.value, PermissionError)
        with pytest.raises(sb.SegmentPermissionError):
            sb.header_of(obj.name)
    assert sb.attach(a.name, allow_other_owner=True)[0] == 11
    assert sb.header_of(a.name, allow_other_owner=True).element_count == 1
    assert sb.attach(lock.name, allow_other_owner=True) is lock
    got = sb.attach(v.name, allow_other_owner=True)
    with got:
        assert got.value == 5
    # the permission travels with the object to another process
    proc = run_python(
        "import pickle, sys, sharedbridge as sb\n"
        "try:\n"
        "    sb.attach(sys.argv[2])\n"
        "except sb.SegmentPermissionError:\n"
        "    print('refused')\n"
        "obj = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        "with obj: print(obj.value)\n",
        pickle.dumps(got).hex(), v.name)
    assert proc.stdout.split() == ["refused", "5"]


def test_eacces_is_a_permission_error():
    a = sb.RawArray("i", 1)
    proc = run_python(
        "import os, sys, sharedbridge as sb\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "for fn in (lambda: sb.attach(sys.argv[1]), lambda: sb.attach(sys.argv[1], allow_other_owner=True)):\n"
        "    try:\n"
        "        fn()\n"
        "    except sb.SegmentPermissionError as e:\n"
        "        print(type(e).__name__, isinstance(e, PermissionError), sys.argv[1] in str(e))\n",
        a.name)
    assert proc.stdout.split() == ["SegmentPermissionError", "True", "True"] * 2


SIZE_CHANGER = """
import os, struct, sys, threading, time, zlib
import sharedbridge as sb
name, img = sys.argv[1], bytes.fromhex(sys.argv[2])
path = '/dev/shm/' + name
with open(path, 'xb') as f:
    f.write(img)
stop = False
def churn():                                  # a hostile process resizing the object
    fd = os.open(path, os.O_RDWR)
    sizes = [len(img), 512, len(img) + 4096, 300]
    i = 0
    while not stop:
        size = sizes[i % 4]; i += 1
        os.ftruncate(fd, size)
        os.pwrite(fd, img[:size], 0)      # the header stays (a shrink drops the bytes)
    os.ftruncate(fd, len(img))
    os.close(fd)
t = threading.Thread(target=churn); t.start()
outcomes = {}
try:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            obj = sb.attach(name, timeout=0.01)
            key = 'ok'
            del obj
        except sb.SharedBridgeError as e:
            key = type(e).__name__ + (':changed' if 'changed size' in str(e) else '')
        outcomes[key] = outcomes.get(key, 0) + 1
finally:
    stop = True
    t.join()
    os.unlink(path)
print(sorted(outcomes.items()))
"""


def test_an_object_changing_size_while_attaching_gives_only_library_errors(pyh_name):
    """A hostile process resizes the object in a loop while we attach: every attempt
    ends in success or one of the library's errors (never ValueError from mmap, never
    a crash), and attaching never resizes the object."""
    img = image_of(sb.RawArray("d", 100))
    proc = run_python(SIZE_CHANGER, pyh_name(), bytes(img).hex())
    outcomes = dict(eval(proc.stdout))
    assert sum(outcomes.values()) > 10
    assert set(outcomes) <= {"ok", "CorruptSegmentError", "CorruptSegmentError:changed",
                             "NotASharedBridgeSegmentError", "SegmentNotReadyError"}, outcomes


def test_u_fields_of_rebuilt_structures_are_checked(pyh_name):
    class Inner(ctypes.Structure):
        _fields_ = [("w", ctypes.c_wchar * 3), ("c", ctypes.c_wchar)]

    class Outer(ctypes.Structure):
        _fields_ = [("i", Inner), ("z", ctypes.c_wchar), ("n", ctypes.c_int)]

    name = pyh_name()
    made = sb.RawValue(Outer, ("ab", "c"), "z", 5, name=name)
    got = sb.attach(name)                   # the class is rebuilt from the field table
    assert (got.i.w, got.i.c, got.z, got.n) == ("ab", "c", "z", 5)
    raw = (ctypes.c_uint32 * 5).from_address(ctypes.addressof(made))
    raw[1] = 0x110000
    with pytest.raises(sb.CorruptDataError, match="element 1 of field 'w'") as e:
        got.i.w
    assert name in str(e.value)
    raw[1] = 0
    raw[2] = 0xD800                         # past the NUL: not part of the string read
    assert got.i.w == "a"
    raw[3] = 0xDFFF
    with pytest.raises(sb.CorruptDataError, match="field 'c'"):
        got.i.c
    with pytest.raises(UnicodeEncodeError):
        got.z = "\udc00"
    got.z = "\U0001F600"
    assert got.z == "\U0001F600"
    assert sb.header_of(got).fields[1].typecode == "u"


def test_failed_lock_construction_is_quiet(pyh_name):
    name = pyh_name()
    held = sb.Lock(name=name)
    proc = run_python(
        "import gc, sys, sharedbridge as sb\n"
        "for bad in (sys.argv[1], 'no/slash'):\n"
        "    try:\n"
        "        sb.Lock(name=bad)\n"
        "    except (sb.SegmentExistsError, sb.InvalidNameError) as e:\n"
        "        print(type(e).__name__)\n"
        "gc.collect()\n", name)
    assert proc.stdout.split() == ["SegmentExistsError", "InvalidNameError"]
    assert proc.stderr == ""
    assert held.name == name
