"""The queue segment's data area (docs/format.md section 11): offsets, constants, and the
validation of its immutable words, of its mutable invariants and of a record header.

Pure functions over a buffer (the mapping, or a copy): the ring (_objects/queue_ring.py)
and the tools (survey, reap) use them. Offsets are from the data area's start
(``data_offset``); the ring starts at RING.
"""

import re
import struct

from ..errors import CorruptSegmentError
from .segment_name import base_name, in_same_dir

# The three wait blocks (section 11.2): four u32 each (seq, waiters, signals, sleepers).
R_BLOCK, W_BLOCK, J_BLOCK = 0, 16, 32
WAIT_BLOCK_SLEEPERS = 3          # index of the sleepers word in a wait block
COUNT, UNFINISHED, COMPLETED = 48, 52, 56
HEAD, READ, TAIL, PUTS, GETS = 64, 72, 80, 88, 96
MAX_MESSAGES, FLAVOUR = 128, 132
RING = 256

# u32/u64 word indexes of the same fields (a c_uint32 / c_uint64 view of the 256 bytes).
I_COUNT, I_UNFINISHED, I_COMPLETED = COUNT // 4, UNFINISHED // 4, COMPLETED // 4
Q_HEAD, Q_READ, Q_TAIL, Q_PUTS, Q_GETS = HEAD // 8, READ // 8, TAIL // 8, PUTS // 8, GETS // 8

UNBOUNDED = 0x7FFFFFFF            # max_messages of a queue without maxsize
FLAVOUR_QUEUE, FLAVOUR_SIMPLE, FLAVOUR_JOINABLE, FLAVOUR_PIPE = 0, 1, 2, 3
FLAVOUR_NAMES = ("Queue", "SimpleQueue", "JoinableQueue", "Pipe")

# Records (section 11.3).
RECORD_HEADER = 32
MIN_MESSAGE = 32
MIN_PAD = 8
READY, TAKEN, DONE, PAD = 1, 2, 3, 4
FLAG_OUT_OF_LINE = 1
MAX_TAG = 6
# size, state, tag, flags, reserved, desc_length, taker_pid, taker_start_time, data_length
RECORD = struct.Struct("<IBBBBIIQQ")
PAD_RECORD = struct.Struct("<IB3x")
# The out-of-line reference (section 11.5): created_unix_ns, creator_pid, name_length.
REFERENCE = struct.Struct("<qII")
# count, unfinished, completed, reserved, head, read, tail, puts, gets
STATE = struct.Struct("<IIII5Q")
IMMUTABLE = struct.Struct("<II")
assert RECORD.size == RECORD_HEADER and STATE.size == 56 and STATE.size + COUNT == 104

DEFAULT_CAPACITY = 1 << 20
MIN_CAPACITY = 4096
MAX_CAPACITY = 1 << 40
# The longest queue name: '<queue>.m<16 hex>' must be a valid name (255 bytes).
MAX_QUEUE_NAME = 237


def align8(n):
    return (n + 7) & ~7


def round_capacity(capacity):
    """The ring size for a capacity= argument: the next power of two, at least 4096."""
    if capacity is None:
        return DEFAULT_CAPACITY
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"capacity must be an int (bytes), not {type(capacity).__name__}")
    if capacity <= 0:
        raise ValueError(f"capacity must be > 0 bytes, not {capacity}")
    if capacity > MAX_CAPACITY:
        raise ValueError(f"capacity {capacity} is larger than the largest ring (2**40 bytes)")
    return max(MIN_CAPACITY, 1 << (capacity - 1).bit_length())


def record_size(desc_length, data_length):
    """The size of an inline message record (section 11.3)."""
    return RECORD_HEADER + align8(desc_length) + align8(data_length)


# Section 11.5: a record's `size` is a u32. A message goes inline only when its record is at
# most inline_limit(capacity) bytes (both libraries; a quarter of the ring, so that one large
# message never takes most of it); no record ever exceeds record_limit(capacity) bytes.
MAX_INLINE_RECORD = 1 << 31
MAX_RECORD = (1 << 32) - 8       # the largest multiple of 8 a u32 holds


def inline_limit(capacity):
    """The largest inline record of a ring of *capacity* bytes (section 11.5)."""
    return min(capacity // 4, MAX_INLINE_RECORD)


def record_limit(capacity):
    """The largest record of any kind of a ring of *capacity* bytes (section 11.5)."""
    return min(capacity // 2, MAX_RECORD)


def reference_size(name_length):
    """The bytes of an out-of-line reference naming a segment of *name_length* bytes."""
    return align8(REFERENCE.size + name_length)


def corrupt(name, what):
    return CorruptSegmentError(
        f"the queue segment {name!r} is corrupt: {what} (a process wrote bytes that break "
        "docs/format.md section 11): recreate the queue")


def check_immutable(buf, offset, name):
    """(max_messages, flavour) read from the words at *offset* (the data area), validated
    (section 11.2); the caller keeps them and never reads them again."""
    max_messages, flavour = IMMUTABLE.unpack_from(buf, offset + MAX_MESSAGES)
    if not 1 <= max_messages <= UNBOUNDED:
        raise corrupt(name, f"max_messages {max_messages} (1 to {UNBOUNDED})")
    if flavour > FLAVOUR_PIPE:
        raise corrupt(name, f"flavour {flavour} (0 to {FLAVOUR_PIPE})")
    return max_messages, flavour


def check_state(state, capacity, max_messages, name):
    """Raise the corrupt-segment error if the mutable words *state* (STATE's fields)
    break an invariant of section 11.2; returns *state*."""
    count, unfinished, completed, _, head, read, tail, _, _ = state
    if not head <= read <= tail or tail - head > capacity or (head | read | tail) & 7:
        raise corrupt(name, f"positions head {head}, read {read}, tail {tail} (ring of "
                      f"{capacity} bytes)")
    if count > max_messages or count > (tail - read) // MIN_MESSAGE:
        raise corrupt(name, f"count {count} with {tail - read} bytes of records after read "
                      f"(max_messages {max_messages})")
    if completed > 1:
        raise corrupt(name, f"completed {completed}")
    return state


def check_wait_block(buf, offset, name, which):
    """The words of a wait block (section 10.2 rules): signals and sleepers <= waiters."""
    _, waiters, signals, sleepers = struct.unpack_from("<4I", buf, offset)
    if signals > waiters or sleepers > waiters:
        raise corrupt(name, f"wait block {which}: waiters {waiters}, signals {signals}, "
                      f"sleepers {sleepers}")


def check_record(fields, position, limit, capacity, name):
    """Validate the record header *fields* (RECORD's) at ring position *position*; *limit*
    is the position it must end by (``tail``, or ``read`` behind it). Returns its size."""
    size, state, tag, flags, _, desc_length, _, _, data_length = fields
    offset = position & (capacity - 1)
    if size < MIN_PAD or size & 7 or offset + size > capacity or position + size > limit:
        raise corrupt(name, f"record at position {position}: size {size} (ring offset "
                      f"{offset}, {limit - position} bytes of records left)")
    if state == PAD:
        return size
    if not READY <= state <= DONE:
        raise corrupt(name, f"record at position {position}: state {state}")
    if not 1 <= tag <= MAX_TAG:
        raise corrupt(name, f"record at position {position}: tag {tag}")
    if flags & ~FLAG_OUT_OF_LINE:
        raise corrupt(name, f"record at position {position}: flags {flags:#x}")
    if size < MIN_MESSAGE:
        raise corrupt(name, f"record at position {position}: a message of {size} bytes")
    body = size - RECORD_HEADER
    if desc_length > body:
        raise corrupt(name, f"record at position {position}: desc_length {desc_length} in "
                      f"a {size}-byte record")
    rest = body - align8(desc_length)
    if flags & FLAG_OUT_OF_LINE:
        if rest < REFERENCE.size + 8:
            raise corrupt(name, f"record at position {position}: an out-of-line reference "
                          f"of {rest} bytes")
    elif rest != align8(data_length):
        raise corrupt(name, f"record at position {position}: size {size} for desc_length "
                      f"{desc_length} and data_length {data_length}")
    return size


_HEX16 = re.compile("[0-9a-f]{16}")     # an out-of-line name's suffix (11.5)


def check_reference(buf, offset, rest, position, name):
    """(created_unix_ns, creator_pid, segment key) of the out-of-line reference of *rest*
    bytes at *offset* (section 11.5), validated. *name* is the queue's key: the record
    holds the data segment's name, which lives in the queue's directory (section 1.3)."""
    created, pid, length = REFERENCE.unpack_from(buf, offset)
    if length == 0 or reference_size(length) != rest:
        raise corrupt(name, f"record at position {position}: an out-of-line name of {length} "
                      f"bytes in a {rest}-byte reference")
    start = offset + REFERENCE.size
    raw = bytes(buf[start:start + length])
    prefix = base_name(name) + ".m"
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if (not text.startswith(prefix) or len(text) != len(prefix) + 16
            or not _HEX16.fullmatch(text, len(prefix))):
        raise corrupt(name, f"record at position {position}: out-of-line name {raw!r} is not "
                      f"'{prefix}<16 hex digits>'")
    return created, pid, in_same_dir(name, text)


def out_of_line_records(mm, data_offset, capacity, queue_name):
    """(ring, position, fields) of every out-of-line record in state 1 or 2 between head
    and tail, validated as they are read: CorruptSegmentError ends the walk."""
    st = STATE.unpack_from(mm, data_offset + COUNT)
    head, tail = st[4], st[6]
    if not head <= tail or tail - head > capacity or (head | tail) & 7:
        raise corrupt(queue_name, f"head {head}, tail {tail}")
    ring = memoryview(mm).cast("B")[data_offset + RING:data_offset + RING + capacity]
    p = head
    while p < tail:
        o = p & (capacity - 1)
        if capacity - o < RECORD_HEADER:
            fields = PAD_RECORD.unpack_from(ring, o) + (0,) * 7
        else:
            fields = RECORD.unpack_from(ring, o)
        size = check_record(fields, p, tail, capacity, queue_name)
        if fields[1] in (READY, TAKEN) and fields[3] & FLAG_OUT_OF_LINE:
            yield ring, p, fields
        p += size


def referenced_names(mm, data_offset, capacity, queue_name):
    """The names of the data segments the records of the queue in state 1 or 2 reference
    (the caller holds the queue's mutex: the reaper, section 8). CorruptSegmentError when
    the ring cannot be read."""
    names = set()
    try:
        for ring, p, fields in out_of_line_records(mm, data_offset, capacity, queue_name):
            o = p & (capacity - 1)
            d = o + RECORD_HEADER + align8(fields[5])
            names.add(check_reference(ring, d, o + fields[0] - d, p, queue_name)[2])
    except (ValueError, TypeError, struct.error) as e:
        raise corrupt(queue_name, f"unreadable ring ({e})") from None
    return names
