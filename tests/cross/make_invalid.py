#!/usr/bin/env python3
"""Regenerate tests/cross/vectors/invalid/: header bytes every reader must classify the same way.

Each case is a rule of docs/format.md broken once (or, for "ok" cases, an edge the rules
allow), built from a valid header by an encoder written here from the spec alone (not the
sharedbridge package). Files per case:
  <id>.json   {"id", "rule", "expect", "size", "special", "lock": <companion id or null>}
  <id>.bin    the object's first bytes (the rest of the object, up to "size", is zero)
expect is the error class every reader must report on open: not-sharedbridge,
unsupported-version, corrupt, not-found, initializing, permission, or ok. "special" asks the
test to put something other than a plain object at the name (fifo, dir, symlink,
other-owner). Segment names are fixed (sbinv_<id>, lock companions sbinv_<id>_l) because
kind-2 headers record the lock segment's name.

Run: python3 tests/cross/make_invalid.py (no PYTHONPATH needed), then review the diff.
"""
import json
import os
import shutil
import struct
import zlib

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors", "invalid")

IDENTITY = struct.Struct("<8sHHIBBHIQQQBBHIBBHIIIQq8x32s256s")
FIELD = struct.Struct("<32sB3xIIIi12x")
SIZES = {"c": 1, "u": 4, "b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "l": 8, "L": 8,
         "q": 8, "Q": 8, "f": 4, "d": 8, "?": 1}
MUTEX = 0x1C0
CREATED = 1_767_225_600 * 1_000_000_000


def name_of(case_id):
    return "sbinv_" + case_id


def align64(x):
    return (x + 63) & ~63


def header(kind=1, typecode="d", count=4, lock_kind=0, lock_type=0, fields=(), type_name="",
           lock_name="", state=1, version=1, compat=1, lifetime=0, **overrides):
    """A valid header (bytes 0 .. header_size-1) per docs/format.md section 3, version 1
    unless asked (byte 0x039 is *lifetime*, reserved in version 1); *overrides* replace
    identity fields by name before the checksum is computed."""
    f = dict(magic=b"SHBRIDGE", version=version, compat=compat,
             header_size=align64(0x200 + 64 * len(fields)), kind=kind,
             typecode=0 if kind == 3 else ord(typecode), flags=0,
             element_size=0 if kind == 3 else (
                 SIZES[typecode] if typecode != "T" else overrides.pop("struct_size")),
             element_count=0 if kind == 3 else (1 if kind == 2 else count),
             lock_kind=lock_kind, lock_abi=1 if lock_kind == 1 else 0,
             lock_size=40 if lock_kind == 1 else 0, lock_offset=MUTEX if lock_kind == 1 else 0,
             lock_type=lock_type, field_entry_size=64 if fields else 0, field_count=len(fields),
             field_table_offset=0x200 if fields else 0, creator_pid=1, start=0,
             created=CREATED, type_name=type_name.encode(), lock_name=lock_name.encode())
    f["data_offset"] = f["header_size"]
    f["data_size"] = f["element_size"] * f["element_count"]
    f.update(overrides)
    buf = bytearray(f["header_size"] if f["header_size"] >= 0x200 and f["header_size"] % 64 == 0
                    and f["header_size"] < 1 << 16 else align64(0x200 + 64 * len(fields)))
    IDENTITY.pack_into(buf, 0, f["magic"], f["version"], f["compat"], f["header_size"], f["kind"],
                       f["typecode"], f["flags"], f["element_size"], f["element_count"],
                       f["data_offset"], f["data_size"], f["lock_kind"], f["lock_abi"],
                       f["lock_size"], f["lock_offset"], f["lock_type"], lifetime, f["field_entry_size"],
                       f["field_count"], f["field_table_offset"], f["creator_pid"], f["start"],
                       f["created"], f["type_name"], f["lock_name"])
    for i, (fname, code, offset, cnt, item, parent) in enumerate(fields):
        FIELD.pack_into(buf, 0x200 + 64 * i, fname.encode(), ord(code), offset, cnt, item, parent)
    if f["lock_kind"] == 1 and f["lock_type"]:
        # A freshly initialized glibc x86_64 robust process-shared mutex: only __kind is set.
        struct.pack_into("<i", buf, MUTEX + 16, f["lock_type"] | 0x90)
    struct.pack_into("<I", buf, 0x180, state)
    struct.pack_into("<I", buf, 0x184, crc(buf))
    return buf, f["data_offset"] + f["data_size"]


def crc(buf):
    hs = struct.unpack_from("<I", buf, 0x0C)[0]
    return zlib.crc32(bytes(buf[0:0x180]) + bytes(buf[0x200:hs]))


def recrc(buf):
    struct.pack_into("<I", buf, 0x184, crc(buf))
    return buf


POINT = [("x", "d", 0, 1, 8, -1), ("y", "d", 8, 1, 8, -1)]


def nested(depth):
    """A structure nested *depth* levels deep: each level holds one double and the next."""
    fields = []
    for level in range(depth):
        parent = -1 if level == 0 else len(fields) - 1
        remaining = depth - level
        if remaining == 1:
            fields.append(("v", "d", 0, 1, 8, parent))
        else:
            fields.append(("n", "T", 0, 1, 8, parent))
    return fields


CASES = []


def case(case_id, expect, rule, built=None, special=None, lock=None, size=None):
    buf, total = built if built is not None else (b"", 0)
    CASES.append(dict(id=case_id, expect=expect, rule=rule, bytes=bytes(buf),
                      size=size if size is not None else total, special=special, lock=lock))


def patch(built, offset, fmt, value, fix_crc=True):
    buf, total = built
    struct.pack_into(fmt, buf, offset, value)
    return (recrc(buf) if fix_crc else buf), total


def build():
    d4 = lambda **kw: header(typecode="d", count=4, **kw)  # noqa: E731
    # --- 6.2 step 3: order of checks ---------------------------------------------------
    case("foreign_text", "not-sharedbridge", "6.2 step 3: magic first; a foreign object",
         (bytearray(b"hello, this is not a segment\n" * 20), 580))
    case("tiny_5_bytes", "not-sharedbridge", "6.2 step 3: size 1 to 7", (bytearray(b"SHBRI"), 5))
    ready = bytearray(512)
    struct.pack_into("<I", ready, 0x180, 1)
    case("zero_magic_ready", "not-sharedbridge", "6.2 step 3: zero magic with state != 0",
         (ready, 512))
    case("zero_magic_initializing", "initializing",
         "6.2 step 3: zero magic, state 0: the creator has not written yet (wait, then time out)",
         (bytearray(512), 512))
    half = bytearray(512)
    half[0:4] = b"SHBR"
    case("magic_half_written_initializing", "initializing",
         "6.2 step 3: zeros and the magic's own bytes, state 0: part of the creator's store, as "
         "pread may see it (wait, then time out)", (half, 512))
    half_ready = bytearray(half)
    struct.pack_into("<I", half_ready, 0x180, 1)
    case("magic_half_written_ready", "not-sharedbridge",
         "6.2 step 3: a part of the magic with a state other than 0 is another program's",
         (half_ready, 512))
    case("magic_truncated", "corrupt", "6.2 step 3: the right magic in an object under 512 bytes",
         (bytearray(b"SHBRIDGE" + bytes(92)), 100))
    case("state_initializing", "initializing", "6.2 step 3: state 0 is waited for",
         patch(d4(), 0x180, "<I", 0, fix_crc=False))
    case("state_3", "corrupt", "6.2 step 3: state other than 0, 1, 2",
         patch(d4(), 0x180, "<I", 3, fix_crc=False))
    case("state_retired_ok", "ok", "6.2 step 3: state 2 (retired) is usable",
         patch(d4(), 0x180, "<I", 2, fix_crc=False))
    # --- versions ---------------------------------------------------------------------------
    case("compat_8", "unsupported-version", "6.3: compat_version above the reader's (7)",
         d4(version=8, compat=8))
    case("compat_8_state_3", "unsupported-version",
         "6.2 step 3: a too-new compat_version wins over a state this reader does not know",
         patch(d4(version=8, compat=8), 0x180, "<I", 3, fix_crc=False))
    case("compat_7_array_ok", "ok", "6.3: a version-7 reader reads compat_version 7",
         d4(version=7, compat=7))
    case("compat_6_array_ok", "ok", "6.3: a version-6 reader reads compat_version 6",
         d4(version=6, compat=6))
    case("compat_5_array_ok", "ok", "6.3: a version-5 reader reads compat_version 5",
         d4(version=5, compat=5))
    case("compat_4_array_ok", "ok", "6.3: a version-4 reader reads compat_version 4",
         d4(version=4, compat=4))
    case("compat_3_array_ok", "ok", "6.3: a version-3 reader reads compat_version 3",
         d4(version=3, compat=3))
    case("compat_2_array_ok", "ok", "6.3: a version-2 reader reads compat_version 2",
         d4(version=2, compat=2))
    # --- lifetime (format version 2, byte 0x039) ----------------------------------------------
    case("lifetime_3", "corrupt", "3.1, 6.2 step 5: lifetime is 0, 1 or 2",
         d4(version=2, compat=1, lifetime=3))
    case("lifetime_255", "corrupt", "3.1, 6.2 step 5: lifetime is 0, 1 or 2",
         d4(version=2, compat=1, lifetime=255))
    case("last_closer_compat_1", "corrupt",
         "6.3: a last-closer segment has compat_version 2 (a version-1 reader must refuse it)",
         d4(version=2, compat=1, lifetime=1))
    case("persistent_ok", "ok", "3.1: lifetime 2 (persistent), compat_version 1",
         d4(version=2, compat=1, lifetime=2))
    case("v1_reserved_lifetime_byte_ok", "ok",
         "6.3: in a version-1 header byte 0x039 is reserved: ignored (covered by the crc)",
         d4(version=1, compat=1, lifetime=7))
    case("compat_0", "corrupt", "6.2 step 5: compat_version >= 1", d4(version=1, compat=0))
    case("version_below_compat", "corrupt", "6.2 step 5: version >= compat_version",
         d4(version=0, compat=1))
    case("newer_writer_ok", "ok", "6.3: version 8 with compat_version 1 is read",
         d4(version=8, compat=1))
    # --- identity fields --------------------------------------------------------------------
    case("bad_crc", "corrupt", "3.3: header_crc32 mismatch",
         patch(d4(), 0x184, "<I", 0xDEADBEEF, fix_crc=False))
    case("header_size_unaligned", "corrupt", "6.2 step 5: header_size a multiple of 64",
         d4(header_size=0x210))
    case("kind_4", "corrupt", "10.1: kind 4 (event) needs compat_version 2 and its own fields",
         d4(kind=4))
    case("kind_0", "corrupt", "6.2 step 5: kind 0 is corrupt", d4(kind=0))
    case("kind_10", "unsupported-version",
         "6.2 step 5, 6.3: an unknown kind is refused as written by a newer SharedBridge",
         d4(kind=10))
    # --- 6.2 step 5: the order of checks around an unknown kind -------------------------------
    # magic, compat_version, version, state (step 3), header_size, header_crc32, then kind:
    # an unknown kind is "upgrade" whatever else is wrong after it, "corrupt" when a check
    # before it fails.
    case("kind_10_lifetime_3", "unsupported-version",
         "6.2 step 5: the kind is checked before the lifetime byte",
         d4(kind=10, version=2, compat=2, lifetime=3))
    case("kind_10_typecode_x", "unsupported-version",
         "6.2 step 5: the kind is checked before the typecode and every later field",
         patch(d4(kind=10), 0x011, "<B", ord("x")))
    case("kind_10_lock_type_3", "unsupported-version",
         "6.2 step 5: the kind is checked before the lock fields",
         patch(d4(kind=10), 0x038, "<B", 3))
    case("kind_10_bad_crc", "corrupt",
         "6.2 step 5: header_crc32 is checked before the kind (damaged bytes name no writer)",
         patch(d4(kind=10), 0x184, "<I", 0xDEADBEEF, fix_crc=False))
    case("kind_10_header_size_unaligned", "corrupt",
         "6.2 step 5: header_size is checked before the kind",
         d4(kind=10, header_size=0x210))
    case("kind_10_version_below_compat", "corrupt",
         "6.2 step 5: version >= compat_version is checked before the kind",
         d4(kind=10, version=1, compat=2))
    case("kind_10_state_3", "corrupt", "6.2 step 3: the state word is checked before the kind",
         patch(d4(kind=10), 0x180, "<I", 3, fix_crc=False))
    case("kind_10_compat_8", "unsupported-version", "6.2 step 3: a too-new compat_version first",
         patch(d4(kind=10, version=8, compat=8), 0x184, "<I", 0xDEADBEEF, fix_crc=False))
    case("kind_10_data_past_object", "unsupported-version",
         "6.2 step 5: the object-size bound of data_offset + data_size comes after the kind",
         d4(kind=10), size=0x200 + 16)
    case("kind_10_header_past_object", "corrupt",
         "6.2 step 5: header_size <= the object size comes before the kind",
         d4(kind=10, header_size=0x240, data_offset=0x240), size=0x200)
    case("kind_0_lifetime_3", "corrupt", "6.2 step 5: kind 0 is corrupt, whatever else is wrong",
         d4(kind=0, version=2, compat=2, lifetime=3))
    case("array_header_size_0x240_ok", "ok",
         "6.3: a larger header_size and data_offset are optional information for kinds 1 to 3 "
         "(a newer writer's, compat_version unchanged)",
         d4(version=8, compat=1, header_size=0x240, data_offset=0x240))
    case("creator_pid_max_u32_ok", "ok",
         "3.1, 8: creator_pid is a u32: 0xFFFFFFFF is read as recorded and names no process",
         d4(version=2, compat=1, creator_pid=0xFFFFFFFF))
    # --- synchronization kinds (section 10) -------------------------------------------------
    def sync(kind, words=None, **kw):
        """A synchronization header; a semaphore's and a barrier's .bin go on with the first
        24 bytes of the data area (section 9: the rest of the object is zero), whose
        immutable words (10.2) are *words*: {offset in the data area: u32}, by default a
        valid unbounded semaphore of value 1 or a barrier of 2 parties."""
        buf, total = header(**{**dict(kind=kind, typecode="I", count=16, lock_kind=1,
                                      lock_type=1 if kind == 6 else 2, version=2, compat=2),
                               **kw})
        if words is None:
            words = {5: {12: 1, 16: 0x7FFFFFFF, 20: 0}, 7: {12: 2}}.get(kind, {})
        if words:
            data = struct.unpack_from("<Q", buf, 0x020)[0]
            buf = buf + bytearray(max(0, data + 24 - len(buf)))
            for offset, value in words.items():
                struct.pack_into("<I", buf, data + offset, value)
        return buf, total
    for kind, label in ((4, "event"), (5, "semaphore"), (6, "condition"), (7, "barrier")):
        case(f"{label}_ok", "ok", f"10.1: a valid {label} header (kind {kind})", sync(kind))
        case(f"{label}_compat_1", "corrupt", "10.1: the synchronization kinds need compat_version 2",
             sync(kind, version=1, compat=1))
    # format version 3: the holder table of semaphores and barriers (10.1, 10.2)
    v3 = dict(version=3, compat=3)
    case("semaphore_table_ok", "ok", "10.1: a version-3 semaphore with 64 table entries",
         sync(5, count=16 + 4 * 64, **v3))
    case("barrier_table_ok", "ok", "10.1: a version-3 barrier with 3 table entries",
         sync(7, count=16 + 4 * 3, **v3))
    case("semaphore_v3_no_table_ok", "ok", "10.1: slots 0 is valid (nothing recorded)",
         sync(5, count=16, **v3))
    case("semaphore_table_1025", "corrupt", "10.1: at most 1024 table entries",
         sync(5, count=16 + 4 * 1025, **v3))
    case("barrier_table_ragged", "corrupt", "10.1: element_count is 16 + 4 * slots",
         sync(7, count=18, **v3))
    case("semaphore_table_compat_2", "corrupt",
         "10.1: a holder table needs compat_version 3 (a version-2 segment has 16 words)",
         sync(5, count=16 + 4 * 2))
    case("event_table", "corrupt", "10.1: only semaphores and barriers have a holder table",
         sync(4, count=16 + 4 * 2, **v3))
    # format version 4: the sleepers word (10.2); the header rules of version 3 otherwise
    v4 = dict(version=4, compat=4)
    for kind, label in ((4, "event"), (6, "condition")):
        case(f"{label}_v4_ok", "ok", f"10.1: a version-4 {label} header", sync(kind, **v4))
    case("semaphore_v4_table_ok", "ok", "10.1: a version-4 semaphore with 64 table entries",
         sync(5, count=16 + 4 * 64, **v4))
    case("barrier_v4_table_ok", "ok", "10.1: a version-4 barrier with 3 table entries",
         sync(7, count=16 + 4 * 3, **v4))
    case("event_v4_table", "corrupt", "10.1: only semaphores and barriers have a holder table",
         sync(4, count=16 + 4 * 2, **v4))
    # the immutable words of the data area, validated by every open (10.2, 6.2 step 6)
    case("barrier_parties_0", "corrupt", "10.2: a barrier's parties is 1 to 0x7FFFFFFF",
         sync(7, count=16 + 4 * 3, words={12: 0}, **v4))
    case("barrier_parties_2_31", "corrupt", "10.2: a barrier's parties is 1 to 0x7FFFFFFF",
         sync(7, count=16 + 4 * 3, words={12: 0x80000000}, **v4))
    case("semaphore_bounded_2", "corrupt", "10.2: a semaphore's bounded is 0 or 1",
         sync(5, count=16 + 4 * 64, words={12: 1, 16: 0x7FFFFFFF, 20: 2}, **v4))
    case("semaphore_unbounded_max_5", "corrupt",
         "10.2: an unbounded semaphore's max_value is 0x7FFFFFFF",
         sync(5, count=16 + 4 * 64, words={12: 1, 16: 5, 20: 0}, **v4))
    case("semaphore_max_value_2_31", "corrupt", "10.2: max_value at most 0x7FFFFFFF",
         sync(5, count=16 + 4 * 64, words={12: 1, 16: 0x80000000, 20: 1}, **v4))
    case("semaphore_bounded_5_ok", "ok", "10.2: a bounded semaphore (BoundedSemaphore(5))",
         sync(5, count=16 + 4 * 64, words={12: 5, 16: 5, 20: 1}, **v4))
    # header_size and data_offset of kinds 4 to 9 are exact (6.3); larger for kinds 1 to 3
    for kind, label in ((4, "event"), (5, "semaphore"), (6, "condition"), (7, "barrier")):
        case(f"{label}_header_size_0x240", "corrupt",
             "6.3, 10.1: header_size and data_offset of kinds 4 to 7 are exactly 0x200, never "
             "larger (a longer header raises compat_version)",
             sync(kind, count=16 if kind in (4, 6) else 16 + 4 * 3, header_size=0x240,
                  data_offset=0x240, **v4))
    # --- n-dimensional arrays (format version 7, section 12) -----------------------------------
    def nd(shape, typecode="f", fields=(), ndim=None, shape_offset=None, count=None, pad=b"",
           **kw):
        """A kind-9 header: ndim and shape_offset at 0x058, the shape after the field table."""
        so = 0x200 + 64 * len(fields)
        n = len(shape) if ndim is None else ndim
        prod = 1
        for d in shape:
            prod *= d
        hs = align64(so + 8 * len(shape) + len(pad))
        args = dict(kind=9, typecode=typecode, count=prod if count is None else count,
                    version=7, compat=7, fields=fields, header_size=hs, data_offset=hs)
        if fields:
            args.update(type_name="Point", struct_size=16)
        args.update(kw)
        buf, total = header(**args)
        if len(buf) < so + 8 * len(shape) + len(pad):
            buf += bytearray(so + 8 * len(shape) + len(pad) - len(buf))
        struct.pack_into("<II", buf, 0x058, n, so if shape_offset is None else shape_offset)
        for k, d in enumerate(shape):
            struct.pack_into("<Q", buf, so + 8 * k, d & 0xFFFFFFFFFFFFFFFF)
        buf[so + 8 * len(shape):so + 8 * len(shape) + len(pad)] = pad
        return recrc(buf), total
    case("ndarray_rank3_ok", "ok", "12.1: a float32 array of shape [2, 3, 4]", nd([2, 3, 4]))
    case("ndarray_rank0_ok", "ok", "12.1: rank 0 holds one element", nd([], typecode="d"))
    case("ndarray_rank8_ok", "ok", "12.1: rank 8", nd([2, 1, 2, 1, 2, 1, 2, 3], typecode="h"))
    case("ndarray_struct_ok", "ok", "12.1: structure elements, the shape after the field table",
         nd([2, 2], typecode="T", fields=POINT))
    case("ndarray_zero_dim_ok", "ok", "12.1: a dimension of 0 makes an empty array",
         nd([3, 0, 5], typecode="B"))
    case("ndarray_locked_ok", "ok", "12.1: a lock as an array's", nd([4, 4], lock_kind=1, lock_type=2,
                                                                     version=7, compat=7))
    case("ndarray_ndim_33", "corrupt", "12.1: ndim <= 32", nd([1] * 33, typecode="B"))
    case("ndarray_ndim_disagrees", "corrupt",
         "12.1: header_size is align64(shape_offset + 8 * ndim)", nd([2] * 9, ndim=17, typecode="B"))
    case("ndarray_shape_offset_wrong", "corrupt",
         "12.1: shape_offset is 0x200 + the field table", nd([2, 3], shape_offset=0x240))
    case("ndarray_header_size_wrong", "corrupt", "12.1: header_size exactly",
         nd([2, 3], header_size=0x280, data_offset=0x280))
    case("ndarray_product_overflows", "corrupt",
         "12.1: the product of the dimensions times element_size without overflow",
         nd([1 << 32, 1 << 32, 4], count=0))
    case("ndarray_zero_dim_product_overflows", "corrupt",
         "12.1: the product of the non-zero dimensions is bounded even when another dimension is 0 "
         "(element_count 0 is the product of all dimensions)",
         nd([1 << 32, 0, 1 << 32, 2], typecode="B", count=0))
    case("ndarray_bytes_overflow_wraps", "corrupt",
         "12.1: the product times element_size at most 2^63 - 1, without overflow (2^62 doubles: "
         "element_count is the product, data_size the 64-bit wrap of 8 * 2^62 = 0)",
         nd([1 << 62], typecode="d", data_size=0))
    case("ndarray_empty_largest_dimension_ok", "ok",
         "12.1: a dimension of 2^63 - 1 beside a 0 (bytes 1 * (2^63 - 1), at the bound)",
         nd([(1 << 63) - 1, 0], typecode="B", count=0))
    case("ndarray_empty_bytes_above_bound", "corrupt",
         "12.1: the non-zero product times element_size above 2^63 - 1 (2 * (2^63 - 1)), though a 0 "
         "dimension empties the array",
         nd([(1 << 63) - 1, 0], typecode="h", count=0))
    case("ndarray_data_offset_beyond_header_ok", "ok",
         "12.1: data_offset is a multiple of 64 >= header_size (writers use header_size)",
         nd([2, 3], data_offset=0x280))
    case("ndarray_padding_ignored_ok", "ok",
         "12.1: a reader ignores the bytes between the shape and header_size",
         nd([2, 3], pad=b"\xff" * 8))
    case("ndarray_dimension_2_63", "corrupt", "12.1: every dimension at most 2^63 - 1",
         nd([1 << 63, 0], typecode="B", count=0))
    case("ndarray_count_disagrees", "corrupt", "12.1: element_count is the product of the shape",
         nd([2, 3], count=7))
    case("ndarray_data_size_disagrees", "corrupt", "12.1: data_size = element_size * element_count",
         nd([2, 3], data_size=28))
    case("ndarray_compat_6", "corrupt", "12.1: an n-dimensional array has compat_version 7",
         nd([2, 3], version=7, compat=6))
    buf, total = nd([64, 64])
    case("ndarray_object_too_small", "corrupt", "5, 12.1: the object holds data_offset + data_size",
         (buf, total), size=total - 4096)
    # --- queues (format versions 5 and 6, section 11.1) ----------------------------------------
    def queue(capacity=4096, max_messages=0x7FFFFFFF, flavour=0, **kw):
        """A queue header followed by the immutable words of its control block (11.2)."""
        buf, total = header(**{**dict(kind=8, typecode="B", count=256 + capacity, lock_kind=1,
                                      lock_type=2, version=6, compat=6), **kw})
        data = struct.unpack_from("<Q", buf, 0x020)[0]
        buf = buf + bytearray(data + 256 - len(buf))
        struct.pack_into("<II", buf, data + 128, max_messages, flavour)
        return buf, total
    case("queue_ok", "ok", "11.1: a valid queue header (kind 8), a ring of 4096 bytes", queue())
    case("queue_joinable_bounded_ok", "ok", "11.1, 11.2: a JoinableQueue of at most 10 messages",
         queue(capacity=1 << 16, max_messages=10, flavour=2, lifetime=1))
    case("queue_capacity_not_power_of_2", "corrupt", "11.1: the ring's size is a power of two",
         queue(capacity=6144))
    case("queue_capacity_2048", "corrupt", "11.1: the ring holds at least 4096 bytes",
         queue(capacity=2048))
    case("queue_typecode_I", "corrupt", "11.1: a queue's typecode is B", queue(typecode="I"))
    case("queue_data_offset_not_header_size", "corrupt",
         "11.1: a queue's data_offset is header_size (0x200), though 0x240 would pass section 6.2",
         queue(data_offset=0x240))
    case("queue_no_lock", "corrupt", "11.1: a queue has its own lock",
         queue(lock_kind=0, lock_type=0))
    case("queue_recursive_lock", "corrupt", "11.1: a queue's lock is error-checking",
         queue(lock_type=1))
    case("queue_header_size_0x240", "corrupt",
         "6.3, 11.1: a queue's header_size and data_offset are exactly 0x200, never larger",
         queue(header_size=0x240, data_offset=0x240))
    case("queue_max_messages_0", "corrupt", "11.2: max_messages is 1 to 0x7FFFFFFF",
         queue(max_messages=0))
    case("queue_compat_4", "corrupt", "11.1: a queue has compat_version 5 or 6",
         queue(version=6, compat=4))
    case("queue_compat_5_ok", "ok", "6.3: a version-6 reader reads a version-5 queue",
         queue(version=5, compat=5))
    case("queue_compat_8", "unsupported-version", "6.3: a queue of a newer format",
         queue(version=8, compat=8))
    case("queue_compat_7", "unsupported-version",
         "11.1: a queue of compat_version 7 (queues are of version 5 or 6 in format version 7)",
         queue(version=7, compat=7))
    case("event_typecode_d", "corrupt", "10.1: typecode I", sync(4, typecode="d"))
    case("semaphore_count_8", "corrupt", "10.1: element_count 16 (+ 4 * slots)", sync(5, count=8))
    case("event_recursive_lock", "corrupt", "10.1: an event's own lock is error-checking",
         sync(4, lock_type=1))
    case("condition_errorcheck_lock", "corrupt", "10.1: a condition's own lock is recursive",
         sync(6, lock_type=2))
    case("barrier_no_lock", "corrupt", "10.1: lock_kind 1", sync(7, lock_kind=0, lock_type=0))
    case("event_data_offset_not_header_size", "corrupt",
         "10.1: a synchronization segment's data_offset is header_size (0x200), though 0x240 would "
         "pass section 6.2", sync(4, data_offset=0x240))
    case("semaphore_external_lock", "corrupt", "10.1: only a condition uses lock_kind 2",
         sync(5, lock_kind=2, lock_type=0, lock_name="sbinv_semaphore_external_lock_l"))
    case("typecode_x", "corrupt", "3.4: unknown typecode", patch(d4(), 0x11, "<B", ord("x")))
    case("element_size_wrong", "corrupt", "6.2 step 5: element_size equals the typecode's size",
         d4(element_size=4, data_size=16))
    case("value_count_2", "corrupt", "6.2 step 5: a value has element_count 1",
         header(kind=2, typecode="i", element_count=2, data_size=8))
    case("data_size_mismatch", "corrupt", "3.1: data_size = element_size * element_count",
         d4(data_size=24))
    case("data_past_object", "corrupt", "5: data_offset + data_size <= object size",
         d4(), size=0x200 + 16)
    case("data_offset_unaligned", "corrupt", "3.1: data_offset a multiple of 64",
         d4(data_offset=0x220), size=0x220 + 32)
    case("zero_length_array_ok", "ok", "5: zero-length arrays are valid", header(count=0))
    case("zero_length_struct_array_ok", "ok", "5: zero-length arrays are valid, T included",
         header(typecode="T", count=0, fields=POINT, type_name="Point", struct_size=16))
    case("larger_object_ok", "ok", "5: the object may be larger than data_offset + data_size",
         d4(), size=0x200 + 32 + 4096)
    # --- lock-only (kind 3) -----------------------------------------------------------------
    case("lock_only_ok", "ok", "5: a lock-only segment", header(kind=3, lock_kind=1, lock_type=2))
    case("lock_only_larger_ok", "ok", "5: a lock-only object larger than 512 bytes is accepted",
         header(kind=3, lock_kind=1, lock_type=1), size=4096)
    case("lock_only_typecode_ascii_0", "corrupt", "3.1: the lock-only typecode is byte 0x00",
         patch(header(kind=3, lock_kind=1, lock_type=2), 0x11, "<B", ord("0")))
    case("lock_only_without_lock", "corrupt", "6.2 step 5: a lock-only segment has lock_kind 1",
         header(kind=3, lock_kind=0))
    case("lock_only_with_data", "corrupt", "5: lock-only segments have no elements",
         header(kind=3, lock_kind=1, lock_type=2, element_count=1))
    # --- embedded lock ----------------------------------------------------------------------
    case("lock_abi_aarch64", "corrupt", "6.2 step 5: lock_abi must be the reader's own",
         d4(lock_kind=1, lock_type=1, lock_abi=2, lock_size=48))
    case("lock_type_3", "corrupt", "3.1: lock_type 1 or 2 with an embedded lock",
         d4(lock_kind=1, lock_type=3))
    case("lock_fields_without_lock", "corrupt", "7.1: lock fields are zero without an embedded lock",
         d4(lock_kind=0, lock_type=1))
    case("lock_region_tail_ok", "ok", "7.1: readers ignore the lock region past the mutex",
         patch(d4(lock_kind=1, lock_type=1), MUTEX + 48, "<Q", 0x1122334455667788,
               fix_crc=False))
    case("lock_name_unterminated", "corrupt", "2: text fields are NUL-terminated",
         d4(lock_kind=2, lock_name="a" * 256))
    # --- external lock (kind 2) ---------------------------------------------------------------
    case("external_empty_name", "corrupt", "7.1: an external lock names its lock segment",
         d4(lock_kind=2, lock_name=""))
    case("external_names_itself", "corrupt", "7.1: a lock_name naming the segment itself",
         d4(lock_kind=2, lock_name=name_of("external_names_itself")))
    case("external_missing", "not-found", "7.1: a lock segment that is gone is an unknown name",
         d4(lock_kind=2, lock_name=name_of("external_missing") + "_l"))
    case("external_lock_has_no_mutex", "corrupt",
         "6.2 step 7: the lock segment must have an embedded lock",
         d4(lock_kind=2, lock_name=name_of("external_lock_has_no_mutex") + "_l"),
         lock="raw_array")
    case("external_ok", "ok", "7.1: an external lock in a lock-only segment",
         d4(lock_kind=2, lock_name=name_of("external_ok") + "_l"), lock="lock_only")
    # --- field table --------------------------------------------------------------------------
    t = lambda fields, size=16, **kw: header(  # noqa: E731
        typecode="T", count=2, fields=fields, type_name=kw.pop("type_name", "Point"),
        struct_size=size, **kw)
    case("struct_ok", "ok", "4: the docs' Point", t(POINT))
    case("struct_without_fields", "corrupt", "4: typecode T needs at least one field",
         t([], field_entry_size=0, field_count=0, field_table_offset=0))
    case("struct_item_size_wrong", "corrupt", "4: item_size equals the typecode's size",
         t([("x", "d", 0, 1, 4, -1), ("y", "d", 8, 1, 8, -1)]))
    case("struct_duplicate_names", "corrupt", "4: field names unique within a parent",
         t([("x", "d", 0, 1, 8, -1), ("x", "d", 8, 1, 8, -1)]))
    case("struct_same_name_other_parent_ok", "ok",
         "4: the same name under different parents is fine",
         t([("x", "d", 0, 1, 8, -1), ("p", "T", 8, 1, 8, -1), ("x", "d", 0, 1, 8, 1)]))
    case("struct_entry_size_32", "corrupt", "4: field_entry_size >= 64",
         t(POINT, field_entry_size=32))
    case("struct_table_offset_0x240", "corrupt", "4: field_table_offset is 0x200",
         t(POINT, field_table_offset=0x240, header_size=0x2C0))
    case("fields_on_double", "corrupt", "4: no field table unless typecode is T",
         d4(field_count=1, field_entry_size=64, field_table_offset=0x200))
    case("struct_depth_16_ok", "ok", "4: nesting depth 16 is allowed",
         t(nested(16), size=8, type_name="Deep"))
    case("struct_depth_17", "corrupt", "4: nesting depth above 16",
         t(nested(17), size=8, type_name="Deep"))
    case("struct_reserved_dunder", "corrupt", "4: reserved field names (__...)",
         t([("__class__", "d", 0, 1, 8, -1), ("y", "d", 8, 1, 8, -1)]))
    case("struct_reserved_fields_", "corrupt", "4: reserved field names (_fields_)",
         t([("_fields_", "d", 0, 1, 8, -1), ("y", "d", 8, 1, 8, -1)]))
    case("struct_underscore_name_ok", "ok", "4: a leading single underscore is an identifier",
         t([("_x", "d", 0, 1, 8, -1), ("y_", "d", 8, 1, 8, -1)]))
    case("struct_overlap", "corrupt", "4: fields never overlap",
         t([("x", "d", 0, 1, 8, -1), ("y", "d", 4, 1, 8, -1)]))
    case("type_name_not_identifier", "corrupt", "6.2 step 5: type_name is an identifier",
         t(POINT, type_name="a-b"))
    case("type_name_on_double", "corrupt", "6.2 step 5: type_name only with typecode T",
         d4(type_name="Point"))
    # --- not a regular file / not ours ------------------------------------------------------
    case("fifo", "not-sharedbridge", "6.2 step 2: a FIFO at the name", special="fifo")
    case("directory", "not-sharedbridge", "6.2 step 1: a directory at the name", special="dir")
    case("symlink", "not-sharedbridge", "6.2 step 1: a symbolic link at the name (O_NOFOLLOW)",
         special="symlink")
    case("other_owner", "permission", "1.2: a segment owned by another user",
         d4(), special="other-owner")


COMPANIONS = {
    "raw_array": lambda: header(typecode="i", count=2),
    "lock_only": lambda: header(kind=3, lock_kind=1, lock_type=2),
}


def main():
    build()
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    for c in CASES:
        meta = {k: c[k] for k in ("id", "expect", "rule", "size", "special", "lock")}
        with open(os.path.join(OUT, c["id"] + ".json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        with open(os.path.join(OUT, c["id"] + ".bin"), "wb") as f:
            f.write(c["bytes"])
    for cid, make in COMPANIONS.items():
        buf, total = make()
        with open(os.path.join(OUT, "companion_" + cid + ".bin"), "wb") as f:
            f.write(bytes(buf))
        with open(os.path.join(OUT, "companion_" + cid + ".json"), "w") as f:
            json.dump({"id": cid, "size": total}, f)
            f.write("\n")
    print(f"{len(CASES)} cases in {OUT}")


if __name__ == "__main__":
    main()
