"""Rings larger than 16 GiB (docs/format.md section 11.5): a record's `size` is a u32, so the
inline bound is min(capacity / 4, 2^31) and no record exceeds min(capacity / 2, 2^32 - 8),
whatever the ring's capacity (up to 2^40).

A message above 2^31 bytes cannot be built here (tests stay small and fast), so the decision
is tested where both paths take it: queue_layout's inline_limit and record_limit, which
queues.py uses and _fastlock.c's formula copies; the compiled core's own bound is checked
through its _cput, which hands a record it must not write back to the Python path.

A queue reserves its whole segment when it is created (posix_fallocate: on tmpfs, memory),
so the tests that make one (16 GiB, the smallest ring where capacity / 4 exceeds 2^31)
put it in a directory on a disk file system, where the reservation is unwritten extents
and only the pages touched are written."""

import os

import pytest

import sharedbridge as sb
from sharedbridge._format import queue_layout as L
from sharedbridge._objects import queue_fast

from conftest import fresh_names

HUGE = 1 << 35          # a ring of 32 GiB: capacity / 4 is 8 GiB, capacity / 2 16 GiB
MADE = 1 << 34          # the ring the tests make: 16 GiB of disk reserved, not written


@pytest.fixture
def qname():
    """Fresh queue names (prefix sbt_pl); the segments they make are removed after the test."""
    yield from fresh_names("sbt_pl", derived="remove")


@pytest.fixture
def huge_dir(tmp_path):
    """A directory on a file system that can hold a 16 GiB segment, else skip."""
    st = os.statvfs(tmp_path)
    if st.f_bavail * st.f_frsize < MADE + (8 << 30):
        pytest.skip(f"{tmp_path} has less than {MADE + (8 << 30)} bytes free")
    if os.statvfs("/dev/shm").f_fsid == st.f_fsid:
        pytest.skip(f"{tmp_path} is /dev/shm: the reservation would take 16 GiB of memory")
    yield str(tmp_path)
    left = os.listdir(tmp_path)
    for n in left:          # never leave 16 GiB reserved on the disk, even after a failure
        os.unlink(os.path.join(tmp_path, n))
    assert not left, f"segments left in {tmp_path}: {left}"


@pytest.mark.parametrize("capacity", [4096, 1 << 20, 1 << 34, HUGE, 1 << 40])
def test_the_inline_bound_is_a_quarter_of_the_ring_at_most_2_to_the_31(capacity):
    assert L.MAX_INLINE_RECORD == 1 << 31
    assert L.MAX_RECORD == (1 << 32) - 8 and L.MAX_RECORD % 8 == 0
    assert L.inline_limit(capacity) == min(capacity // 4, 1 << 31)
    assert L.record_limit(capacity) == min(capacity // 2, (1 << 32) - 8)
    assert L.inline_limit(capacity) <= L.record_limit(capacity) < 1 << 32


def test_a_message_above_2_to_the_31_bytes_goes_out_of_line_on_a_32_gib_ring():
    # The record of a bytes message of 2^31 - 32 bytes is 2^31 bytes: the last inline one.
    assert L.record_size(0, (1 << 31) - 32) <= L.inline_limit(HUGE)
    assert L.record_size(0, (1 << 31) - 31) > L.inline_limit(HUGE)
    # A 5 GiB message: above the bound, although far below capacity / 4 (8 GiB).
    assert L.record_size(0, 5 << 30) > L.inline_limit(HUGE)


def test_a_16_gib_queue_is_made_used_and_removed_cheaply(huge_dir, qname):
    name = qname()
    q = sb.Queue(name=name, capacity=MADE, dir=huge_dir)
    assert q.capacity == MADE
    path = os.path.join(huge_dir, name)
    assert os.stat(path).st_size == MADE + 0x200 + L.RING
    big = b"b" * 5000                       # inline: far below the bound
    q.put(b"first")
    q.put_many(["second", big, 3])
    assert q._inline_max == L.inline_limit(MADE) == 1 << 31
    assert [q.get(timeout=5) for _ in range(4)] == [b"first", "second", big, 3]
    q.close()
    sb.close(q)
    assert not os.path.exists(path)


def test_the_compiled_core_hands_back_a_record_larger_than_u32_allows(huge_dir, qname):
    # _cput writes an inline record itself up to min(capacity / 2, 2^32 - 8) bytes
    # (docs/format.md section 11.5): one of 2^32 + 8 bytes on a 16 GiB ring is handed back
    # (NotImplemented) before a byte is written, instead of a size truncated to 8.
    if not queue_fast.FAST:
        pytest.skip("the compiled path is not in use")
    q = sb.Queue(name=qname(), capacity=MADE, dir=huge_dir)
    n = (1 << 32) + 8
    assert q._ring._cput(n, 1, 0, b"", [], [], n - L.RECORD_HEADER, False, None) is NotImplemented
    assert q.qsize() == 0
    q.put(b"after")
    assert q.get(timeout=5) == b"after"
    q.close()
    sb.close(q)


@pytest.mark.parametrize("extra", [0, 1])
def test_both_paths_put_the_last_inline_message_inline(qname, extra):
    # The boundary on a small ring: a record of capacity / 4 bytes goes inline, one byte
    # more of data out of line, on the compiled path (bytes and str) as on the Python one.
    q = sb.Queue(name=qname(), capacity=4096)
    data = 4096 // 4 - L.RECORD_HEADER + extra
    for msg in (b"x" * data, "y" * data):
        tail = q._ring._u64[L.Q_TAIL]
        q.put(msg)
        fields = L.RECORD.unpack_from(q._ring._ring, tail & 4095)
        assert fields[3] == (L.FLAG_OUT_OF_LINE if extra else 0)
        assert q.get(timeout=5) == msg
    q.close()
    sb.close(q)
