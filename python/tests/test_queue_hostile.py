"""Hostile ring contents (docs/format.md sections 11.2-11.5): positions, counts, record
headers and out-of-line references written by a buggy peer raise CorruptSegmentError
(CorruptDataError for a message's data), change nothing, and never crash or hang."""

import os
import queue
import random
import struct

import pytest

import sharedbridge as sb
from sharedbridge._format import queue_layout as L

ALLOWED = (sb.CorruptSegmentError, queue.Empty, queue.Full, sb.QueueCompleted)


def _queue_with(*items, capacity=4096, maxsize=0):
    q = sb.Queue(maxsize, capacity=capacity)
    for item in items:
        q.put(item)
    return q


def _image(q):
    r = q._ring
    return bytes(r._mm[r._soff - L.COUNT:r._soff - L.COUNT + L.RING + r.capacity])


def _assert_refused(q, *ops):
    before = _image(q)
    for op in ops:
        with pytest.raises(sb.CorruptSegmentError, match=q.name):
            op()
        assert _image(q) == before, "a refused operation changed the segment"


def _ops(q):
    return (lambda: q.get(timeout=0.2), lambda: q.put(b"x", timeout=0.2), q.qsize)


@pytest.mark.parametrize("field,value", [
    (L.Q_READ, 1 << 20),          # read beyond tail
    (L.Q_HEAD, 8 * 100),          # head beyond read
    (L.Q_TAIL, 1 << 30),          # more than capacity of records
    (L.Q_TAIL, 0x61),             # not a multiple of 8
])
def test_positions_out_of_order(field, value):
    q = _queue_with(b"a", b"b")
    q._ring._u64[field] = value
    _assert_refused(q, *_ops(q))


@pytest.mark.parametrize("count", [3, 1000])
def test_count_too_high(count):
    q = _queue_with(b"a", b"b", maxsize=100)
    q._ring._u32[L.I_COUNT] = count       # more than the records (or max_messages)
    _assert_refused(q, *_ops(q))


def test_completed_not_a_boolean():
    q = _queue_with(b"a")
    q._ring._u32[L.I_COMPLETED] = 2
    _assert_refused(q, *_ops(q))


@pytest.mark.parametrize("offset,fmt,value,what", [
    (0, "<I", 4000, "size"),      # crosses the ring's end
    (0, "<I", 12, "size"),        # not a multiple of 8
    (0, "<I", 24, "size"),        # a message smaller than its header
    (4, "<B", 7, "state"),
    (4, "<B", 0, "state"),
    (5, "<B", 0, "tag"),
    (5, "<B", 9, "tag"),
    (6, "<B", 2, "flags"),
    (8, "<I", 1 << 20, "desc_length"),
    (24, "<Q", 1 << 40, "data_length"),
])
def test_bad_record_header(offset, fmt, value, what):
    q = _queue_with(b"first message", b"second")
    struct.pack_into(fmt, q._ring._ring, offset, value)
    _assert_refused(q, lambda: q.get(timeout=0.2))


def test_bad_pad_at_the_ring_end():
    q = sb.Queue(capacity=4096)
    for _ in range(4):                   # 4 x 1000-byte records: the 5th needs a pad
        q.put(b"p" * 968)
    for _ in range(4):
        q.get()
    q.put(b"w" * 100)                    # pad of 96 bytes at 4000, the record at 0
    struct.pack_into("<B", q._ring._ring, 4000 + 4, 1)       # the pad says "ready"
    _assert_refused(q, lambda: q.get(timeout=0.2))


def test_wait_block_words():
    q = sb.Queue()
    q._ring._R._w[2] = 5                 # signals > waiters
    with pytest.raises(sb.CorruptSegmentError, match="wait block R"):
        q.get(timeout=0.2)


def test_out_of_line_reference_to_a_stranger():
    q = sb.Queue(capacity=4096)
    other = sb.RawArray("B", 4000)
    q.put(os.urandom(2000))
    r = q._ring
    size, _, _, flags, _, dl, _, _, data_length = L.RECORD.unpack_from(r._ring, 0)
    assert flags == L.FLAG_OUT_OF_LINE
    d = L.RECORD_HEADER + L.align8(dl)
    name_length = L.REFERENCE.unpack_from(r._ring, d)[2]
    forged_over = bytes(r._ring[d + 16:d + 16 + name_length]).decode()
    forged = other.name.encode().ljust(name_length, b"x")
    r._ring[d + 16:d + 16 + name_length] = forged
    _assert_refused(q, lambda: q.get(timeout=0.2))
    sb.unlink(forged_over)      # the remover cannot find it through the forged reference


def test_out_of_line_segment_missing():
    q = sb.Queue(capacity=4096)
    q.put(os.urandom(2000))
    (name,) = [n for n in os.listdir("/dev/shm") if n.startswith(q.name + ".m")]
    sb.unlink(name)
    q.put(b"next")
    with pytest.raises(sb.CorruptDataError, match=name):
        q.get(timeout=0.2)
    # consumed all the same (format.md 11.5): the next get goes on with the next message
    assert q.get(timeout=0.2) == b"next"
    assert q.qsize() == 0


def test_fuzzed_words_and_records():
    """Random bytes over the mutable words and the first records: every operation raises
    one of our errors (or Empty/Full) and returns; the queue is never wedged by a
    valid state again."""
    rng = random.Random(20)
    for trial in range(300):
        q = _queue_with(b"a" * rng.randrange(40), "text", 7, capacity=4096)
        r = q._ring
        base = r._soff - L.COUNT
        for _ in range(rng.randrange(1, 6)):
            if rng.random() < 0.5:
                offset = base + L.COUNT + rng.randrange(56)
            else:
                offset = base + L.RING + rng.randrange(160)
            r._mm[offset] = rng.randrange(256).to_bytes(1, "little")
        for op in (lambda: q.get(False), lambda: q.put(b"z", False), q.qsize,
                   lambda: q.get_many(5, False), lambda: q.put_many([1, 2], False)):
            try:
                op()
            except ALLOWED:
                pass
        sb.close(q)


def test_a_taken_record_at_the_read_position_is_passed_over():
    # docs/format.md section 11.3 get step 1: a taker that died between its stores of
    # step 4 left state 2 at read; the next get goes on with the next message (as .NET).
    q = _queue_with(b"1", b"2", b"3")
    q._ring._ring[4] = L.TAKEN
    q._ring._u32[L.I_COUNT] = 2
    assert q.get(timeout=1) == b"2"
    assert q.get_many(10) == [b"3"]
    assert q.qsize() == 0
    sb.close(q)
