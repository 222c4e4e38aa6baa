"""Seeded header fuzzer (docs/security.md, "What it must never achieve"): hostile segments
opened in a child process.

Valid segments of several shapes (an array of every typecode, values, a structure with
a nested structure and fixed arrays, lock-only segments, external locks) are made with
the package; their bytes are then mutated (byte flips, interesting values in every
header and field-table field, text fields, state and versions, data values of 'u' and
'?' elements, truncation and growth of the object), the CRC is recomputed (most of the
time) or left stale, and the result is written into a real shared-memory object. A
child process (fuzz_child.py) opens it with sharedbridge.attach, reads everything and
reports the outcome: ``ok`` or the sharedbridge exception class. A crash (the child dies),
a hang (no answer within HANG_SECONDS: the child is killed) or an exception outside
sharedbridge's hierarchy fails the test; so does a case that changed the object.

The normal suite runs a short, fixed-seed run. A long run:

    SB_FUZZ_CASES=20000 SB_FUZZ_SEED=7 python -m pytest python/tests/test_fuzz.py -s

(-s prints the outcome counts; SB_FUZZ_SEED defaults to 1.)
"""

import ctypes
import os
import random
import select
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from conftest import PYTHON_DIR, SHM, child_env

CASES = int(os.environ.get("SB_FUZZ_CASES", "400"))
SEED = int(os.environ.get("SB_FUZZ_SEED", "1"))
HANG_SECONDS = 10
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_child.py")


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


class Record(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int), ("pos", Point), ("tag", ctypes.c_char * 5),
                ("hist", ctypes.c_ushort * 3), ("ok", ctypes.c_bool), ("ch", ctypes.c_wchar),
                ("big", ctypes.c_ulonglong)]


SAMPLES = {
    "c": b"abc", "u": "a\u00e9\U0001F600", "b": [-1, 0, 1], "B": [0, 128, 255],
    "h": [-300, 0, 300], "H": [1, 2, 65535], "i": [-7, 8, 2**31 - 1], "I": [1, 2, 2**32 - 1],
    "l": [-(2**63), 0, 2**63 - 1], "L": [0, 1, 2**64 - 1], "q": [1, -1, 5],
    "Q": [3, 4, 5], "f": [0.5, -1.5, 3.25], "d": [1.5, -2.5, 1e300], "?": [True, False, True],
}


def make_shapes(prefix, lock, lock2):
    """{shape: object} of valid segments; the caller keeps the objects alive."""
    shapes = {}
    for code, values in SAMPLES.items():
        shapes[f"raw_{code}"] = sb.RawArray(code, values, name=f"{prefix}src_{ord(code)}")
    shapes["array_d_locked"] = sb.Array("d", [1.0, 2.0], name=f"{prefix}src_ad")
    shapes["array_c_locked"] = sb.Array("c", b"hi", name=f"{prefix}src_ac", lock=lock2)
    shapes["array_u_locked"] = sb.Array("u", "xyz", name=f"{prefix}src_au")
    shapes["array_empty"] = sb.RawArray("q", 0, name=f"{prefix}src_ae")
    shapes["value_d"] = sb.Value("d", 2.5, name=f"{prefix}src_vd")
    shapes["value_u"] = sb.RawValue("u", "\u20ac", name=f"{prefix}src_vu")
    shapes["value_bool"] = sb.RawValue("?", True, name=f"{prefix}src_vb")
    shapes["struct_array"] = sb.RawArray(
        Record, [(1, (0.5, 1.5), b"ab", (1, 2, 3), True, "z", 2**40)] * 2,
        name=f"{prefix}src_sa")
    shapes["struct_value"] = sb.Value(Record, 2, (3.0, 4.0), b"abcd", (9, 8, 7), False, "q", 1,
                                      name=f"{prefix}src_sv")
    shapes["struct_empty"] = sb.RawArray(Record, 0, name=f"{prefix}src_se")
    shapes["lock"] = sb.Lock(name=f"{prefix}src_lk")
    shapes["rlock"] = sb.RLock(name=f"{prefix}src_rl")
    shapes["external_value"] = sb.Value("q", 5, lock=lock, name=f"{prefix}src_ev")
    shapes["external_array"] = sb.Array("i", [1, 2, 3], lock=lock, name=f"{prefix}src_ea")
    # n-dimensional arrays (kind 9, docs/format.md section 12): the shape after the table.
    shapes["ndarray_f"] = sb.ndarray((2, 3, 4), "f", name=f"{prefix}src_nf")
    shapes["ndarray_rank0"] = sb.ndarray((), "d", lock=False, name=f"{prefix}src_n0")
    shapes["ndarray_empty"] = sb.ndarray((3, 0, 2), "i", lock=False, name=f"{prefix}src_ne")
    shapes["ndarray_u"] = sb.ndarray((2, 2), "u", name=f"{prefix}src_nu")
    shapes["ndarray_struct"] = sb.ndarray((2, 1), Record, lock=lock, name=f"{prefix}src_ns")
    return shapes


def read_image(name):
    with open(f"{SHM}/{name}", "rb") as f:
        return bytes(f.read())


# (offset, struct format, name) of every integer field of the fixed header.
HEADER_FIELDS = [
    (0x00, "<Q", "magic"), (0x08, "<H", "version"), (0x0A, "<H", "compat_version"),
    (0x0C, "<I", "header_size"), (0x10, "<B", "kind"), (0x11, "<B", "typecode"),
    (0x12, "<H", "flags"), (0x14, "<I", "element_size"), (0x18, "<Q", "element_count"),
    (0x20, "<Q", "data_offset"), (0x28, "<Q", "data_size"), (0x30, "<B", "lock_kind"),
    (0x31, "<B", "lock_abi"), (0x32, "<H", "lock_size"), (0x34, "<I", "lock_offset"),
    (0x38, "<B", "lock_type"), (0x39, "<B", "reserved"), (0x3A, "<H", "field_entry_size"),
    (0x3C, "<I", "field_count"), (0x40, "<I", "field_table_offset"),
    (0x44, "<I", "creator_pid"), (0x48, "<Q", "creator_start_time"),
    (0x50, "<q", "created_unix_ns"), (0x58, "<I", "ndim"), (0x5C, "<I", "shape_offset"),
    (0x180, "<I", "state"), (0x184, "<I", "header_crc32"),
]
ENTRY_FIELDS = [(32, "<B", "typecode"), (36, "<I", "offset"), (40, "<I", "count"),
                (44, "<I", "item_size"), (48, "<i", "parent")]
INTERESTING = [
    0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 40, 48, 63, 64, 65, 127, 128, 255, 256,
    0x1C0, 0x1FF, 0x200, 0x201, 0x240, 0x280, 0x2C0, 0x300, 4096, 1 << 20, (1 << 20) + 64,
    0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32,
    2**62, 2**63 - 1, 2**63, 2**64 - 1, int.from_bytes(H.MAGIC, "little"),
] + [ord(c) for c in "cubBhHiIlLqQfd?T0z"]
TYPECODES = [ord(c) for c in "cubBhHiIlLqQfd?T0z"] + [0, 0xFF]
NAMES = ["", "x", "y", "id", "pos", "_fields_", "_pack_", "_objects", "__init__", "__x",
         "from_buffer", "_sb_segment", "name", "value", "acquire", "get_obj", "mro", "9a",
         "a-b", "a" * 31, "A" * 32, "caf\u00e9".encode("latin-1").decode("latin-1")]


def _put_int(buf, offset, fmt, value):
    size = struct.calcsize(fmt)
    if offset + size > len(buf):
        return
    value &= (1 << (8 * size)) - 1
    if fmt[-1] in "bhilq":
        value -= (1 << (8 * size)) if value >= 1 << (8 * size - 1) else 0
    struct.pack_into(fmt, buf, offset, value)


def _put_text(buf, offset, width, text):
    raw = text.encode("latin-1") if isinstance(text, str) else text
    buf[offset:offset + width] = raw[:width].ljust(width, b"\0")


def _interesting(rng, context):
    if rng.random() < 0.3:
        return rng.choice(context) + rng.choice((-64, -8, -1, 0, 1, 8, 64))
    return rng.choice(INTERESTING)


class Mutator:
    def __init__(self, rng, names):
        self.rng = rng
        self.names = names          # lock segment name, raw (lockless) segment name

    def mutate(self, pristine, shape, case_name):
        rng = self.rng
        img = bytearray(pristine)
        header_size = struct.unpack_from("<I", img, 0x0C)[0]
        data_offset, data_size = struct.unpack_from("<QQ", img, 0x20)
        field_count = struct.unpack_from("<I", img, 0x3C)[0]
        context = [len(img), header_size, data_offset, data_size, data_offset + data_size,
                   struct.unpack_from("<I", img, 0x14)[0]]
        ops = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            op = rng.choice(("flip", "flip", "field", "field", "field", "entry", "entry",
                             "text", "state", "data") + (("dim", "dim") if img[0x10] == 9 else ()))
            ops.append(op)
            if op == "flip":
                pos = rng.randrange(header_size)
                if 0x1C0 <= pos < 0x1E8:
                    continue                   # the mutex itself belongs to pthreads
                if rng.random() < 0.5:
                    img[pos] ^= 1 << rng.randrange(8)
                else:
                    img[pos] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
            elif op == "field":
                offset, fmt, _ = rng.choice(HEADER_FIELDS)
                value = rng.choice(TYPECODES) if offset == 0x11 else _interesting(rng, context)
                _put_int(img, offset, fmt, value)
            elif op == "entry":
                index = rng.randrange(max(field_count, 1) + 1)
                base = H.FIELD_TABLE_OFFSET + 64 * index
                if base + 64 > len(img):
                    continue
                what = rng.random()
                if what < 0.3:
                    name = rng.choice(NAMES)
                    if field_count > 1 and rng.random() < 0.3:     # a sibling's name
                        other = H.FIELD_TABLE_OFFSET + 64 * rng.randrange(field_count)
                        name = bytes(img[other:other + 32]).split(b"\0")[0]
                    _put_text(img, base, 32, name)
                else:
                    offset, fmt, _ = rng.choice(ENTRY_FIELDS)
                    if offset == 32:
                        value = rng.choice(TYPECODES)
                    elif offset == 48:
                        value = rng.choice((-2, -1, 0, 1, 2, index - 1, index, index + 1,
                                            2**31 - 1, -2**31))
                    else:
                        value = _interesting(rng, context)
                    _put_int(img, base + offset, fmt, value)
            elif op == "text":
                if rng.random() < 0.5:
                    _put_text(img, 0x60, 32, rng.choice(NAMES + ["Point", "Struct"]))
                else:
                    lock_name = rng.choice([
                        "", case_name, self.names[0], self.names[1], case_name + "_none",
                        "a/b", "sem.x", ".x", "n" * 255, "n" * 256, "\xff"])
                    _put_text(img, 0x80, 256, lock_name)
                    if rng.random() < 0.5:
                        img[0x30] = 2                      # lock_kind external
                        img[0x31:0x39] = bytes(8)
            elif op == "state":
                _put_int(img, 0x180, "<I", rng.choice((0, 1, 2, 3, 0xFFFFFFFF)))
                if rng.random() < 0.3:
                    struct.pack_into("<HH", img, 0x08, rng.choice((0, 1, 2, 0xFFFF)),
                                     rng.choice((0, 1, 2, 0xFFFF)))
            elif op == "dim":           # one dimension of an n-dimensional array's shape
                ndim, shape_offset = struct.unpack_from("<II", img, 0x58)
                pos = shape_offset + 8 * rng.randrange(max(ndim, 1))
                if H.FIXED_SIZE <= pos <= header_size - 8:
                    _put_int(img, pos, "<Q", _interesting(rng, context))
            elif op == "data" and data_size:
                pos = data_offset + rng.randrange(data_size)
                if shape.endswith("u") or "struct" in shape:
                    pos -= (pos - data_offset) % 4
                    _put_int(img, pos, "<I", rng.choice((0xD800, 0xDFFF, 0x110000, 0xFFFFFFFF,
                                                         0x10FFFF, 0x41)))
                else:
                    img[pos] = rng.choice((2, 0x7F, 0xFF, 0))
        if rng.random() < 0.85:                                # a consistent checksum
            size = struct.unpack_from("<I", img, 0x0C)[0]
            if not (H.FIXED_SIZE <= size <= len(img)):
                size = header_size
            crc = zlib.crc32(bytes(img[:0x180]) + bytes(img[0x200:size]))
            struct.pack_into("<I", img, 0x184, crc)
        size = len(img)
        if rng.random() < 0.2:                                 # truncation / growth
            ops.append("size")
            total = len(img)
            size = rng.choice([
                0, rng.randrange(1, 8), 8, rng.randrange(8, 512), 511, 512,
                max(0, header_size - 1), header_size, max(0, total - 1), rng.randrange(total),
                total + rng.choice((1, 63, 64, 4096, rng.randrange(1, 1 << 16)))])
        return bytes(img), size, ops


class FuzzChild:
    """The child process, restarted after a crash or a hang."""

    def __init__(self):
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=child_env(), cwd=PYTHON_DIR, bufsize=0)

    def ask(self, name):
        """(outcome, detail): the child's answer, or ("crash", ...) / ("hang", ...)."""
        if self.proc is None:
            self.start()
        try:
            self.proc.stdin.write(name.encode() + b"\n")
        except BrokenPipeError:
            return self._dead()
        line = b""
        deadline = time.monotonic() + HANG_SECONDS
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready = select.select([self.proc.stdout], [], [], max(0.0, left))[0]
            if not ready:
                self.proc.kill()
                return self._dead("hang")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return self._dead()
            line += chunk
        outcome, _, detail = line.decode().rstrip("\n").partition("\t")
        return outcome, detail

    def _dead(self, kind="crash"):
        self.proc.stdin.close()
        rc = self.proc.wait(10)
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.proc = None
        return kind, f"exit status {rc}; stderr: {err[-2000:]}"

    def stop(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(10)
            self.proc.stdout.close()
            self.proc.stderr.close()
            self.proc = None


def write_case(name, data, size):
    fd = os.open(f"{SHM}/{name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, data[:size])
        if size > len(data):
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


def unchanged(name, data, size):
    """The object as written, outside the lock region and the control words a lock
    recovery may update (0x180..0x1FF)."""
    now = read_image(name)
    expected = data[:size] + bytes(max(0, size - len(data)))
    if len(now) != len(expected):
        return False
    return now[:0x180] == expected[:0x180] and now[0x200:] == expected[0x200:]


def run_fuzz(cases, seed):
    prefix = f"pyh_{os.getpid()}_fz"
    lock = sb.RLock(name=f"{prefix}lock")
    lock2 = sb.Lock(name=f"{prefix}lock2")
    lockless = sb.RawArray("i", 1, name=f"{prefix}raw")
    shapes = make_shapes(prefix, lock, lock2)
    pristine = {shape: read_image(obj.name) for shape, obj in shapes.items()}
    for obj in shapes.values():          # only the images are needed (not the lock)
        sb.close(obj)
    del shapes
    rng = random.Random(seed)
    mutator = Mutator(rng, (lock.name, lockless.name))
    child = FuzzChild()
    counts = Counter()
    failures = []
    order = sorted(pristine)
    try:
        for k in range(cases):
            shape = rng.choice(order)
            name = f"{prefix}{k}"
            data, size, ops = mutator.mutate(pristine[shape], shape, name)
            write_case(name, data, size)
            try:
                outcome, detail = child.ask(name)
                if outcome not in ("crash", "hang") and not unchanged(name, data, size):
                    outcome, detail = "changed", "the object changed while being opened"
            finally:
                os.unlink(f"{SHM}/{name}")
            counts[outcome] += 1
            if outcome in ("crash", "hang", "changed") or outcome.startswith("foreign:"):
                failures.append((k, shape, ops, outcome, detail, data[:size].hex()))
    finally:
        child.stop()
    return counts, failures


def test_header_fuzz():
    t0 = time.monotonic()
    counts, failures = run_fuzz(CASES, SEED)
    elapsed = time.monotonic() - t0
    print(f"\nheader fuzz: seed {SEED}, {CASES} cases in {elapsed:.1f} s: "
          + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    assert not failures, "\n".join(
        f"case {k} ({shape}, {ops}): {outcome}: {detail}\n  image: {image[:2048]}"
        for k, shape, ops, outcome, detail, image in failures[:5])
    assert sum(counts.values()) == CASES
    library = {n for n in dir(sb.errors) if isinstance(getattr(sb.errors, n), type)
               and issubclass(getattr(sb.errors, n), sb.SharedBridgeError)}
    assert set(counts) <= library | {"ok"}
    assert counts["ok"] > 0 and counts["CorruptSegmentError"] > 0


def test_fuzz_child_reports_crashes_hangs_and_foreign_exceptions(pyh_name):
    """The harness itself: a child that dies or stops answering is seen."""
    child = FuzzChild()
    child.start()
    try:
        assert child.ask(pyh_name())[0] == "SegmentNotFoundError"
        assert child.ask("not a name")[0] == "InvalidNameError"
        child.proc.send_signal(9)
        assert child.ask(pyh_name())[0] == "crash"
        child.start()
        child.proc.send_signal(19)                 # SIGSTOP: it can no longer answer
        global HANG_SECONDS
        saved, HANG_SECONDS = HANG_SECONDS, 0.5
        try:
            assert child.ask(pyh_name())[0] == "hang"
        finally:
            HANG_SECONDS = saved
    finally:
        child.stop()
