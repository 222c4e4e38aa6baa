"""Encode, decode and validate the segment header (docs/format.md sections 2-4, 6.2).

The header is untrusted input: :func:`decode` works on a private copy of the bytes,
checks every field and bound, and returns an immutable :class:`SegmentHeader` that the
rest of the package uses instead of re-reading shared memory.
"""

import os
import re
import struct
import zlib
from collections import namedtuple

from ..errors import (CorruptSegmentError, InvalidNameError, NotASharedBridgeSegmentError,
                      UnsupportedVersionError)
from .segment_name import base_name, validate_name
from .typecodes import STRUCT, TYPECODE_SIZE

MAGIC = b"SHBRIDGE"
# The newest format version this package reads (section 6.3); it writes version 7 for
# the n-dimensional array (kind 9, section 12), version 6 for the queue (kind 8, section
# 11; version 6: reusable out-of-line data segments, 11.5), version 4 for the
# synchronization kinds, whose protocol version 4 changed (the sleepers word), and for the
# other kinds what a version-3 writer writes (2, or 1 as compat_version).
FORMAT_VERSION = 7
# version = compat_version of an n-dimensional array segment (section 12.1).
NDARRAY_VERSION = 7
# compat_version of a queue segment this package writes (section 11.1).
QUEUE_VERSION = 6
# The lowest compat_version of a queue (a version-5 writer's queue stays readable, 6.3).
QUEUE_MIN_VERSION = 5
# From this compat_version on, a queue's producers may make reusable (last-closer) data
# segments (section 11.5); in a queue of a lower one they make single-use ones (6.3).
QUEUE_REUSE_VERSION = 6
# The lowest compat_version of the synchronization kinds (section 10).
SYNC_VERSION = 2
# compat_version of semaphores and barriers with a holder table (section 10.1).
HOLDER_TABLE_VERSION = 3
# compat_version from which waiters register in the sleepers word (section 10.3).
SLEEPERS_VERSION = 4
MAX_SLOTS = 1024
FIXED_SIZE = 0x200
IDENTITY_END = 0x180
MAX_HEADER_SIZE = 1 << 20
FIELD_ENTRY_SIZE = 64
FIELD_TABLE_OFFSET = 0x200
LOCK_OFFSET = 0x1C0
MAX_STRUCT_DEPTH = 16        # a top-level field has depth 1 (docs/format.md section 4)

# Field names no writer writes and no reader accepts (docs/format.md section 4): besides these, any
# name starting with "__". They are ctypes' own class attributes.
RESERVED_FIELD_NAMES = frozenset((
    "_fields_", "_pack_", "_anonymous_", "_swappedbytes_", "_objects", "_b_base_",
    "_b_needsfree_", "_type_", "_length_", "_align_", "_layout_"))


def is_reserved_field_name(name):
    return name.startswith("__") or name in RESERVED_FIELD_NAMES

KIND_ARRAY, KIND_VALUE, KIND_LOCK = 1, 2, 3
# Synchronization kinds (section 10): a 64-byte data area of sixteen u32 words.
KIND_EVENT, KIND_SEMAPHORE, KIND_CONDITION, KIND_BARRIER = 4, 5, 6, 7
SYNC_KINDS = (KIND_EVENT, KIND_SEMAPHORE, KIND_CONDITION, KIND_BARRIER)
SYNC_WORDS = 16
SYNC_VALUE_MAX = 0x7FFFFFFF            # a semaphore's max_value, a barrier's parties (10.2)
TABLE_KINDS = (KIND_SEMAPHORE, KIND_BARRIER)
# The queue (section 11): 256 bytes of words, then a ring of `capacity` bytes.
KIND_QUEUE = 8
QUEUE_WORDS_SIZE = 256
MIN_QUEUE_CAPACITY = 4096
MAX_QUEUE_CAPACITY = 1 << 40
# The n-dimensional array (section 12): an array whose header records its shape.
KIND_NDARRAY = 9
MAX_NDIM = 32
NDIM_OFFSET = 0x058                  # ndim (u32), then shape_offset (u32): section 3.1
# Every dimension, and the product of the non-zero ones times element_size (section 12.1).
MAX_NDARRAY_BYTES = (1 << 63) - 1
MAX_KIND = KIND_NDARRAY
# What the tools and the errors call each kind.
KIND_NAMES = {KIND_ARRAY: "array", KIND_VALUE: "value", KIND_LOCK: "lock", KIND_EVENT: "event",
              KIND_SEMAPHORE: "semaphore", KIND_CONDITION: "condition", KIND_BARRIER: "barrier",
              KIND_QUEUE: "queue", KIND_NDARRAY: "ndarray"}
LOCK_NONE, LOCK_EMBEDDED, LOCK_EXTERNAL, LOCK_PROCESS_LOCAL = 0, 1, 2, 3
LOCK_TYPE_NONE, LOCK_TYPE_RECURSIVE, LOCK_TYPE_ERRORCHECK = 0, 1, 2
STATE_INITIALIZING, STATE_READY, STATE_RETIRED = 0, 1, 2

# lifetime (byte 0x039, format version 2; docs/format.md sections 3.1 and 8).
LIFETIME_CREATOR, LIFETIME_LAST_CLOSER, LIFETIME_PERSISTENT = 0, 1, 2
LIFETIME_NAMES = ("creator", "last-closer", "persistent")
LIFETIME_OFFSET = 0x039


def lifetime_from_name(lifetime):
    """The header byte (SegmentHeader.lifetime_code) for a lifetime name ("creator", "last-closer", "persistent")."""
    try:
        return LIFETIME_NAMES.index(lifetime)
    except ValueError:
        raise ValueError(f"invalid lifetime {lifetime!r}: use 'creator', 'last-closer' or "
                         "'persistent'") from None


# The former name of lifetime_from_name: obsolete, use lifetime_from_name
# (lifetime_code is the header field's name).
lifetime_code = lifetime_from_name


def compat_version_for(lifetime, kind=1):
    """compat_version a version-4 writer records: 4 for the synchronization kinds (a
    version-3 reader's waiters do not register as sleepers, so a version-4 notifier
    would not wake them), 2 for last-closer (a version-1 reader would not take part in
    the protocol), otherwise 1 (docs/format.md section 6.3)."""
    if kind == KIND_NDARRAY:
        return NDARRAY_VERSION
    if kind == KIND_QUEUE:
        return QUEUE_VERSION
    if kind in SYNC_KINDS:
        return SLEEPERS_VERSION
    return 2 if lifetime == LIFETIME_LAST_CLOSER else 1


def writer_version(compat):
    """version a version-4 writer records: compat_version where it is 3 or more (the
    synchronization kinds: 4), else 2, the bytes of a version-2 writer (section 6.3)."""
    return max(2, compat)

# Control-region offsets (mutable words, accessed in place, never through the copy).
STATE_OFFSET = 0x180
CRC_OFFSET = 0x184
RECOVERY_COUNT_OFFSET = 0x188
LAST_RECOVERED_PID_OFFSET = 0x190

_IDENTITY = struct.Struct("<8sHHIBBHIQQQBBHIBBHIIIQq8x32s256s")
_NDIM = struct.Struct("<II")         # ndim, shape_offset at 0x058 (reserved before kind 9)
_FIELD = struct.Struct("<32sB3xIIIi12x")
assert _IDENTITY.size == IDENTITY_END and _FIELD.size == FIELD_ENTRY_SIZE

# lock_abi -> sizeof(pthread_mutex_t) (docs/format.md section 3.1).
LOCK_ABI_SIZES = {1: 40, 2: 48}
_MACHINE_ABI = {"x86_64": 1, "amd64": 1, "aarch64": 2, "arm64": 2}


def native_lock_abi():
    """(lock_abi, lock_size) of this machine, or (0, 0) if it has no defined mutex ABI."""
    abi = _MACHINE_ABI.get(os.uname().machine.lower(), 0)
    return abi, LOCK_ABI_SIZES.get(abi, 0)


_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*\Z")
_NAME_CHARS = re.compile(rb"[A-Za-z0-9_.\-]+\Z")

StructField = namedtuple("StructField", "name typecode offset count item_size parent")
StructField.__doc__ = "One field-table entry (docs/format.md section 4)."


# An immutable record with named fields: a namedtuple rather than a frozen dataclass, whose
# module (with inspect) would be a quarter of the package's import time.
_SegmentHeaderFields = namedtuple(
    "SegmentHeader",
    "version compat_version header_size kind typecode element_size element_count data_offset "
    "data_size lock_kind lock_abi lock_size lock_offset lock_type fields creator_pid "
    "creator_start_time created_unix_ns type_name lock_name state lifetime_code shape",
    # state; lifetime_code (the lifetime byte, .lifetime is its name); shape: kind 9's
    # dimensions (a tuple of ints, () for rank 0; section 12), None otherwise
    defaults=(STATE_READY, LIFETIME_CREATOR, None))


class SegmentHeader(_SegmentHeaderFields):
    """The validated private copy of a segment header."""

    __slots__ = ()

    @property
    def total_size(self):
        return self.data_offset + self.data_size

    @property
    def ndim(self):
        """The number of dimensions of an n-dimensional array (kind 9), else None."""
        return None if self.shape is None else len(self.shape)

    @property
    def lifetime(self):
        """"creator", "last-closer" or "persistent" (a version-1 segment: "creator",
        whether or not it was kept: version 1 did not record it)."""
        return LIFETIME_NAMES[self.lifetime_code]


def align64(x):
    return (x + 63) & ~63


def header_size_for(field_count, ndim=None):
    """header_size of a segment with *field_count* field-table entries, and for an
    n-dimensional array (kind 9) *ndim* dimensions after them (sections 3.1, 12.1)."""
    if ndim is None:
        return align64(FIXED_SIZE + field_count * FIELD_ENTRY_SIZE)
    return align64(shape_offset_for(field_count) + 8 * ndim)


def shape_offset_for(field_count):
    """Where the shape of an n-dimensional array starts: right after the field table
    (section 12.1)."""
    return FIXED_SIZE + field_count * FIELD_ENTRY_SIZE


def encode(header):
    """The header bytes (0 .. header_size-1) a version-2 writer produces, with state 0
    and header_crc32 0; the creator fills those in last (docs/format.md section 6.1).
    version and compat_version follow the lifetime (section 6.3), not the fields of
    *header*."""
    h = header
    fields = h.fields
    buf = bytearray(h.header_size)
    _IDENTITY.pack_into(
        buf, 0, MAGIC, writer_version(compat_version_for(h.lifetime_code, h.kind)),
        compat_version_for(h.lifetime_code, h.kind),
        h.header_size, h.kind,
        ord(h.typecode) if h.typecode else 0, 0, h.element_size, h.element_count,
        h.data_offset, h.data_size, h.lock_kind, h.lock_abi, h.lock_size, h.lock_offset,
        h.lock_type, h.lifetime_code, FIELD_ENTRY_SIZE if fields else 0, len(fields),
        FIELD_TABLE_OFFSET if fields else 0, h.creator_pid, h.creator_start_time,
        h.created_unix_ns, h.type_name.encode("ascii"), h.lock_name.encode("ascii"))
    table = encode_field_table(fields)
    buf[FIELD_TABLE_OFFSET:FIELD_TABLE_OFFSET + len(table)] = table
    if h.kind == KIND_NDARRAY:
        shape_offset = shape_offset_for(len(fields))
        _NDIM.pack_into(buf, NDIM_OFFSET, len(h.shape), shape_offset)
        struct.pack_into(f"<{len(h.shape)}Q", buf, shape_offset, *h.shape)
    return buf


def encode_field_table(fields):
    """The bytes of field-table entries (docs/format.md section 4), *fields* a sequence
    of StructField."""
    buf = bytearray(len(fields) * FIELD_ENTRY_SIZE)
    for i, f in enumerate(fields):
        _FIELD.pack_into(buf, i * FIELD_ENTRY_SIZE, f.name.encode("ascii"), ord(f.typecode),
                         f.offset, f.count, f.item_size, f.parent)
    return bytes(buf)


def checksum(buf, header_size):
    """CRC-32 of the identity region and the field table (docs/format.md section 3.3)."""
    crc = zlib.crc32(buf[0:IDENTITY_END])
    return zlib.crc32(buf[FIXED_SIZE:header_size], crc)


# The kinds whose data area holds immutable words immutable_words_problem checks.
IMMUTABLE_WORD_KINDS = (KIND_SEMAPHORE, KIND_BARRIER)


def immutable_words_problem(kind, buf, offset):
    """What breaks section 10.2 in the immutable words of a semaphore's or a barrier's
    data area at *offset* of *buf* (``bounded``, ``max_value``; ``parties``), or None (also
    for every other kind). Every open that maps the data area checks them (section 6.2
    step 6); the objects keep their own validated copy."""
    if kind == KIND_SEMAPHORE:
        max_value, bounded = struct.unpack_from("<II", buf, offset + 16)
        if bounded > 1 or max_value > SYNC_VALUE_MAX or (
                not bounded and max_value != SYNC_VALUE_MAX):
            return f"semaphore with bounded {bounded}, max_value {max_value}"
    elif kind == KIND_BARRIER:
        parties = struct.unpack_from("<I", buf, offset + 12)[0]
        if not 1 <= parties <= SYNC_VALUE_MAX:
            return f"barrier with parties {parties} (1 to {SYNC_VALUE_MAX})"
    return None


def _corrupt(what):
    return CorruptSegmentError(
        f"corrupt SharedBridge header: {what}; the segment was damaged or written by a "
        "non-conforming program: recreate it")


def _text(raw, what, pattern=_IDENTIFIER, allow_empty=True, corrupt=_corrupt):
    end = raw.find(b"\0")
    if end < 0:
        raise corrupt(f"{what} is not NUL-terminated")
    text = raw[:end]
    if not text:
        if allow_empty:
            return ""
        raise corrupt(f"{what} is empty")
    if pattern is not None and not pattern.match(text):
        raise corrupt(f"{what} {text!r} has characters outside the allowed set")
    return text.decode("ascii")


def decode_type_name(raw, corrupt=_corrupt):
    """The type_name of a 32-byte text field (empty or an identifier: section 4.1)."""
    return _text(raw, "type_name", corrupt=corrupt)


def peek_header_size(fixed):
    """header_size from the first 512 bytes, bounded before anything else reads it."""
    return struct.unpack_from("<I", fixed, 0x0C)[0]


# The decode cache (decode_image, below): decoding is a pure function of its arguments
# (the header bytes, the object's size, the state word, the name: nothing else it checks
# varies within a process), so a header whose exact bytes were validated before is not
# validated again.
# Only successful decodes are kept (an exception is never cached: a refused header is
# refused afresh each time), one per name with the exact bytes of the private copy and the
# object size it was decoded with: any changed byte, another size or another name is a
# miss and decodes from scratch (a hit compares the bytes, which costs less than hashing
# them). The SegmentHeader is frozen and holds only tuples, ints and strs: no caller can
# change a cached one. Bounded: at most _CACHE_ENTRIES names (the oldest goes first) and
# headers of at most _CACHE_MAX_BYTES bytes (larger ones, long field tables, are decoded
# every time).
_CACHE_ENTRIES = 128
_CACHE_MAX_BYTES = 4096


def decode(fixed, table, object_size, state, name=None):
    """Validate a header copy and return a SegmentHeader.

    *fixed* is a private copy of bytes 0..511, *table* of bytes 512..header_size-1 (may
    be shorter when header_size is out of bounds: that is reported as corrupt),
    *object_size* the fstat size of the object, *state* the state word that was read and
    *name* the segment's name (named in the errors). Raises CorruptSegmentError (or
    NotASharedBridgeSegmentError, UnsupportedVersionError) on any violation.
    """
    return _decode_named(bytes(fixed), bytes(table), object_size, state, name)


def _decode_named(fixed, table, object_size, state, name):
    try:
        return _decode(fixed, table, object_size, state, name)
    except CorruptSegmentError as e:
        if name is not None:
            msg = str(e)
            prefix = "corrupt SharedBridge header:"
            e.args = (msg.replace(prefix, f"corrupt SharedBridge header of {name!r}:", 1)
                      if msg.startswith(prefix) else f"segment {name!r}: {msg}",)
        raise


def _decode_image(image, object_size, name):
    return _decode_named(image[:FIXED_SIZE], image[FIXED_SIZE:], object_size,
                         struct.unpack_from("<I", image, STATE_OFFSET)[0], name)


# name -> (image, object_size, SegmentHeader): decode_image's cache (above).
_decoded = {}


def decode_image(image, object_size, name=None):
    """decode() of a header read in one piece: *image* is the private copy of bytes
    0..header_size-1 (a bytes object of 512 to _CACHE_MAX_BYTES bytes), whose state word is
    the state. The one cached decode (attach reads every header of up to _CACHE_MAX_BYTES
    in one piece; decode() serves the rest)."""
    entry = _decoded.get(name)
    if entry is not None and entry[1] == object_size and entry[0] == image:
        return entry[2]
    header = _decode_image(image, object_size, name)
    if (type(image) is bytes and len(image) <= _CACHE_MAX_BYTES
            and type(object_size) is int and (name is None or type(name) is str)):
        if len(_decoded) >= _CACHE_ENTRIES and name not in _decoded:
            _decoded.pop(next(iter(_decoded), None), None)
        _decoded[name] = (image, object_size, header)
    return header


def clear_decode_cache():
    """Forget every cached decode (tests)."""
    _decoded.clear()


def _decode(fixed, table, object_size, state, name):
    if len(fixed) < FIXED_SIZE:
        raise _corrupt(f"the object is {object_size} bytes, smaller than the 512-byte header")
    (magic, version, compat, header_size, kind, typecode, _flags, element_size,
     element_count, data_offset, data_size, lock_kind, lock_abi, lock_size, lock_offset,
     lock_type, lifetime, field_entry_size, field_count, field_table_offset, creator_pid,
     start_time, created_ns, type_name_raw, lock_name_raw) = _IDENTITY.unpack_from(fixed, 0)
    if magic != MAGIC:
        raise NotASharedBridgeSegmentError(
            "not a SharedBridge segment (wrong magic): this name belongs to another program")
    if compat > FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"unsupported format version: the segment needs a reader of format version "
            f"{compat} or newer, this sharedbridge reads version {FORMAT_VERSION}: upgrade "
            "sharedbridge")
    if compat < 1 or version < compat:
        raise _corrupt(f"version {version} / compat_version {compat}")
    if state not in (STATE_READY, STATE_RETIRED):
        raise _corrupt(f"state {state}")
    # Section 6.2 step 5 fixes the order up to the kind: header_size, then the checksum
    # (damaged bytes say nothing about who wrote them), then the kind (an unknown one is a
    # newer writer's, whatever else its header holds); the rest in any order.
    if (header_size % 64 or header_size < FIXED_SIZE or header_size > MAX_HEADER_SIZE
            or header_size > object_size or len(table) != header_size - FIXED_SIZE):
        raise _corrupt(f"header_size {header_size} (object is {object_size} bytes)")
    stored_crc = struct.unpack_from("<I", fixed, CRC_OFFSET)[0]
    if checksum(bytes(fixed) + bytes(table), header_size) != stored_crc:
        raise _corrupt("header_crc32 does not match")
    if kind > MAX_KIND:
        raise UnsupportedVersionError(
            f"unknown segment kind {kind}: written by a newer SharedBridge, upgrade "
            f"sharedbridge (this one knows kinds 1 to {MAX_KIND})")
    if kind == 0:
        raise _corrupt("kind 0")
    if version < 2:
        lifetime = LIFETIME_CREATOR      # reserved in version 1: ignored (section 6.3)
    elif lifetime >= len(LIFETIME_NAMES):
        raise _corrupt(f"lifetime {lifetime} is not 0 (creator), 1 (last-closer) or "
                       "2 (persistent)")
    elif compat < compat_version_for(lifetime):
        raise _corrupt(f"compat_version {compat} for a last-closer segment (must be >= 2)")
    if kind in SYNC_KINDS:
        _check_sync(kind, compat, typecode, element_size, element_count, lock_kind, lock_type)
        if header_size != FIXED_SIZE or data_offset != header_size:    # section 10.1's table
            raise _corrupt(f"kind {kind} with header_size {header_size} and data_offset "
                           f"{data_offset} (both must be {FIXED_SIZE})")
    elif kind == KIND_QUEUE:
        _check_queue(compat, typecode, _flags, element_size, element_count, data_offset,
                     header_size, lock_kind, lock_type)
    code = chr(typecode)
    if kind == KIND_LOCK:
        if typecode or element_size or element_count or data_size:
            raise _corrupt("a lock-only segment with an element type or data")
        code = ""
    elif code == STRUCT:
        if element_size == 0:
            raise _corrupt("a structure of size 0")
    elif code not in TYPECODE_SIZE:
        raise _corrupt(f"typecode {typecode:#04x}")
    elif element_size != TYPECODE_SIZE[code]:
        raise _corrupt(f"element_size {element_size} for typecode {code!r}")
    if kind == KIND_VALUE and element_count != 1:
        raise _corrupt(f"element_count {element_count} for a value")
    shape = None
    if kind == KIND_NDARRAY:
        shape = _check_ndarray(fixed, table, compat, _flags, header_size, element_size,
                               element_count, field_count, field_entry_size)
    if data_size != element_size * element_count:
        raise _corrupt(f"data_size {data_size} != element_size {element_size} "
                       f"x element_count {element_count}")
    if data_offset % 64 or data_offset < header_size or data_offset + data_size > object_size:
        raise _corrupt(f"data area {data_offset}+{data_size} does not fit the "
                       f"{object_size}-byte object after the {header_size}-byte header")
    lock_name = _text(lock_name_raw, "lock_name", pattern=_NAME_CHARS)
    _check_lock(kind, lock_kind, lock_abi, lock_size, lock_offset, lock_type, lock_name)
    if lock_kind == LOCK_EXTERNAL and lock_name == (base_name(name) if name else name):
        raise _corrupt(f"lock_name {lock_name!r} is the segment's own name (an external "
                       "lock must live in another segment)")
    type_name = _text(type_name_raw, "type_name")
    if code != STRUCT and type_name:
        raise _corrupt("type_name set for a non-structure")
    if code == STRUCT:
        fields = _decode_fields(fixed, table, header_size, element_size, field_entry_size,
                                field_count, field_table_offset)
    else:
        if field_count or field_entry_size or field_table_offset:
            raise _corrupt("a field table for a non-structure")
        fields = ()
    return SegmentHeader(
        version=version, compat_version=compat, header_size=header_size, kind=kind,
        typecode=code, element_size=element_size, element_count=element_count,
        data_offset=data_offset, data_size=data_size, lock_kind=lock_kind,
        lock_abi=lock_abi, lock_size=lock_size, lock_offset=lock_offset,
        lock_type=lock_type, fields=fields, creator_pid=creator_pid,
        creator_start_time=start_time, created_unix_ns=created_ns,
        type_name=type_name, lock_name=lock_name, state=state, lifetime_code=lifetime,
        shape=shape)


def _check_ndarray(fixed, table, compat, flags, header_size, element_size, element_count,
                   field_count, field_entry_size):
    """The header rules of the n-dimensional array (section 12.1); returns the shape.
    element_size is already checked against the typecode (non-zero)."""
    if compat < NDARRAY_VERSION:
        raise _corrupt(f"kind {KIND_NDARRAY} (an n-dimensional array) with compat_version "
                       f"{compat}: it needs compat_version {NDARRAY_VERSION}")
    if flags:
        raise _corrupt(f"flags {flags:#x} for an n-dimensional array (must be 0)")
    ndim, shape_offset = _NDIM.unpack_from(fixed, NDIM_OFFSET)
    if ndim > MAX_NDIM:
        raise _corrupt(f"ndim {ndim} (an n-dimensional array has at most {MAX_NDIM} "
                       "dimensions)")
    expected = FIXED_SIZE + field_count * field_entry_size
    if shape_offset != expected:
        raise _corrupt(f"shape_offset {shape_offset:#x} (it must be {expected:#x}, right "
                       "after the field table)")
    if header_size != align64(shape_offset + 8 * ndim):
        raise _corrupt(f"header_size {header_size} for {ndim} dimensions at shape_offset "
                       f"{shape_offset:#x} (it must be {align64(shape_offset + 8 * ndim)})")
    # The shape lies in the private copy of bytes 0x200..header_size-1 (table).
    shape = struct.unpack_from(f"<{ndim}Q", table, shape_offset - FIXED_SIZE)
    product, nonzero = 1, element_size
    for n in shape:
        if n > MAX_NDARRAY_BYTES:
            raise _corrupt(f"shape {list(shape)}: dimension {n} is above 2^63 - 1")
        if n:
            nonzero *= n        # bounded at every step: never grows past 2^126
            if nonzero > MAX_NDARRAY_BYTES:
                raise _corrupt(f"shape {list(shape)} of {element_size}-byte elements: the "
                               "product overflows 2^63 - 1 bytes")
        product *= n            # 0 once a dimension is 0; else at most nonzero
    if element_count != product:
        raise _corrupt(f"element_count {element_count} is not the product {product} of "
                       f"shape {list(shape)}")
    return shape


def _check_sync(kind, compat, typecode, element_size, element_count, lock_kind, lock_type):
    """The header rules of the synchronization kinds (section 10.1)."""
    if compat < SYNC_VERSION:
        raise _corrupt(f"kind {kind} (a synchronization object) with compat_version {compat}: "
                       f"it needs compat_version {SYNC_VERSION}")
    if typecode != ord("I") or element_size != 4:
        raise _corrupt(f"kind {kind} needs typecode 'I' and elements of 4 bytes")
    slots = table_slots(kind, compat, element_count)
    if slots is None:
        raise _corrupt(
            f"kind {kind} with compat_version {compat} and element_count {element_count}: it "
            f"needs {SYNC_WORDS} words" + (
                f" plus 4 per holder-table entry (0 to {MAX_SLOTS} entries) with "
                f"compat_version {HOLDER_TABLE_VERSION}" if kind in TABLE_KINDS else ""))
    own_lock = LOCK_TYPE_RECURSIVE if kind == KIND_CONDITION else LOCK_TYPE_ERRORCHECK
    if not ((lock_kind == LOCK_EMBEDDED and lock_type == own_lock)
            or (kind == KIND_CONDITION and lock_kind == LOCK_EXTERNAL)):
        raise _corrupt(f"kind {kind} with lock_kind {lock_kind} / lock_type {lock_type}")


def queue_capacity(element_count):
    """The ring's bytes of a queue segment (section 11.1), or None when *element_count*
    is not 256 + a power of two between 4096 and 2^40."""
    capacity = element_count - QUEUE_WORDS_SIZE
    if MIN_QUEUE_CAPACITY <= capacity <= MAX_QUEUE_CAPACITY and capacity & (capacity - 1) == 0:
        return capacity
    return None


def _check_queue(compat, typecode, flags, element_size, element_count, data_offset,
                 header_size, lock_kind, lock_type):
    """The header rules of the queue (section 11.1)."""
    if compat > QUEUE_VERSION:
        # FORMAT_VERSION counts the n-dimensional array (section 12); this package's queue
        # code implements the queues of format versions 5 and 6 only (section 6.3).
        raise UnsupportedVersionError(
            f"unsupported format version: a queue of compat_version {compat}; this "
            f"sharedbridge's queues are of format version {QUEUE_VERSION}: upgrade sharedbridge")
    if compat < QUEUE_MIN_VERSION:
        raise _corrupt(f"kind {KIND_QUEUE} (a queue) with compat_version {compat}: it needs "
                       f"compat_version {QUEUE_MIN_VERSION} or more")
    if typecode != ord("B") or element_size != 1 or flags:
        raise _corrupt(f"kind {KIND_QUEUE} needs typecode 'B', elements of 1 byte and flags 0")
    if queue_capacity(element_count) is None:
        raise _corrupt(f"a queue of element_count {element_count}: it needs 256 + a capacity "
                       f"that is a power of two from {MIN_QUEUE_CAPACITY} to 2^40")
    if header_size != FIXED_SIZE or data_offset != header_size:
        raise _corrupt(f"a queue with header_size {header_size} and data_offset {data_offset} "
                       f"(both must be {FIXED_SIZE})")
    if lock_kind != LOCK_EMBEDDED or lock_type != LOCK_TYPE_ERRORCHECK:
        raise _corrupt(f"a queue with lock_kind {lock_kind} / lock_type {lock_type} (it needs "
                       "its own error-checking lock)")


def table_slots(kind, compat, element_count):
    """Entries of the holder table of a synchronization segment (docs/format.md section
    10.1), or None when element_count is not valid for the kind and compat_version."""
    if element_count == SYNC_WORDS:
        return 0
    extra = element_count - SYNC_WORDS
    if (kind in TABLE_KINDS and compat >= HOLDER_TABLE_VERSION and extra > 0
            and extra % 4 == 0 and extra // 4 <= MAX_SLOTS):
        return extra // 4
    return None


def _check_lock(kind, lock_kind, abi, size, offset, ltype, lock_name):
    if lock_kind == LOCK_EMBEDDED:
        native_abi, native_size = native_lock_abi()
        if abi != native_abi or native_abi == 0:
            raise _corrupt(f"lock_abi {abi}: this machine's mutex layout is {native_abi}; "
                           "a segment cannot be shared between machines")
        if size != native_size or offset != LOCK_OFFSET or ltype not in (1, 2) or lock_name:
            raise _corrupt(f"embedded lock fields size={size} offset={offset} type={ltype}")
        return
    if kind == KIND_LOCK:
        raise _corrupt(f"a lock-only segment with lock_kind {lock_kind}")
    if lock_kind not in (LOCK_NONE, LOCK_EXTERNAL, LOCK_PROCESS_LOCAL):
        raise _corrupt(f"lock_kind {lock_kind}")
    if abi or size or offset or ltype:
        raise _corrupt(f"lock fields set for lock_kind {lock_kind}")
    if lock_kind == LOCK_EXTERNAL:
        try:
            validate_name(lock_name)
        except InvalidNameError:
            raise _corrupt(f"lock_name {lock_name!r} is not a valid segment name") from None
    elif lock_name:
        raise _corrupt(f"lock_name set for lock_kind {lock_kind}")


def _decode_fields(fixed, table, header_size, element_size, entry_size, count, offset):
    if count == 0 or entry_size < FIELD_ENTRY_SIZE or offset != FIELD_TABLE_OFFSET:
        raise _corrupt(f"structure field table: count {count}, entry size {entry_size}, "
                       f"offset {offset}")
    if offset + count * entry_size > header_size:
        raise _corrupt(f"field table of {count} entries does not fit in header_size "
                       f"{header_size}")
    return decode_field_table(bytes(fixed) + bytes(table), offset, entry_size, count,
                              element_size)


def decode_field_table(whole, offset, entry_size, count, element_size, corrupt=_corrupt):
    """The validated field table (a tuple of StructField) of *count* entries of
    *entry_size* bytes at *offset* in the bytes *whole*, for an element of *element_size*
    bytes: every rule of docs/format.md section 4. *whole* must hold them all. A
    violation raises corrupt(what is wrong) (a header's, or a queue message's, error)."""
    fields = []
    sizes = []          # size of each entry's parent scope: item_size for 'T' entries
    open_parents = []   # stack of 'T' entry indexes whose children may still follow
    next_free = {}      # parent index -> end of its previous child
    names = {}          # parent index -> set of its children's names
    depths = []         # nesting depth of each entry (top level: 1)
    for i in range(count):
        raw_name, tc, f_off, f_count, item_size, parent = _FIELD.unpack_from(
            whole, offset + i * entry_size)
        name = _text(raw_name, f"field {i} name", allow_empty=False,
                     corrupt=corrupt)
        if is_reserved_field_name(name):
            raise corrupt(f"field name {name!r} is reserved")
        code = chr(tc)
        if code != STRUCT and (code not in TYPECODE_SIZE or item_size != TYPECODE_SIZE[code]):
            raise corrupt(f"field {name!r}: typecode {tc:#04x} with item_size {item_size}")
        if f_count < 1:
            raise corrupt(f"field {name!r}: count {f_count}")
        if parent != -1:
            while open_parents and open_parents[-1] != parent:
                open_parents.pop()
            if not open_parents:
                raise corrupt(f"field {name!r}: parent {parent} is not an enclosing "
                               "structure entry (entries must be in pre-order)")
            parent_size = sizes[parent]
            depth = depths[parent] + 1
        else:
            open_parents.clear()
            parent_size = element_size
            depth = 1
        if depth > MAX_STRUCT_DEPTH:
            raise corrupt(f"field {name!r} is nested {depth} structures deep (at most "
                           f"{MAX_STRUCT_DEPTH})")
        siblings = names.setdefault(parent, set())
        if name in siblings:
            raise corrupt(f"field name {name!r} appears twice in one structure")
        siblings.add(name)
        depths.append(depth)
        if f_off < next_free.get(parent, 0):
            raise corrupt(f"field {name!r} at offset {f_off} overlaps the field before it "
                           "(offsets must be increasing, fields must not overlap)")
        end = f_off + f_count * item_size
        next_free[parent] = end
        if end > parent_size:
            raise corrupt(f"field {name!r} ends past its structure's {parent_size} bytes")
        fields.append(StructField(name, code, f_off, f_count, item_size, parent))
        sizes.append(item_size if code == STRUCT else 0)
        if code == STRUCT:
            open_parents.append(i)
    childless = {i for i, f in enumerate(fields) if f.typecode == STRUCT} - \
        {f.parent for f in fields}
    if childless:
        raise corrupt(f"structure field {fields[min(childless)].name!r} has no fields")
    return tuple(fields)
