"""The queue ring's compiled path (QueueCore in _platform/_fastlock.c, queue_fast.py) and
its ctypes twin (queue_ring.py) behave the same (docs/format.md section 11.3).

scripts/test-python.sh runs the queue tests twice: with the compiled path where it is
built (SHAREDBRIDGE_EXPECT_ACCEL=1) and on the Python path (SHAREDBRIDGE_NO_ACCEL=1).
This file checks that each run used the path it meant to, that the two paths leave the
same bytes in a segment for the same operations, and what only matters on the compiled
path: corrupt words met in the middle of a batch, hand-overs to the Python path (pads,
out-of-line records), and Ctrl-C in its blocking waits."""

import multiprocessing as mp
import os
import queue
import signal
import struct
import subprocess
import sys
import time

import pytest

import sharedbridge as sb
from sharedbridge._format import queue_layout as L
from sharedbridge._objects import queue_fast
from sharedbridge._platform import lock_core

from conftest import PYTHON_DIR, child_env, fresh_names

NO_ACCEL = os.environ.get("SHAREDBRIDGE_NO_ACCEL", "") not in ("", "0")
SHM = "/dev/shm"
WAIT = 30


@pytest.fixture
def qname():
    """Fresh queue names (prefix sbt_pf); the segments they make are removed after the test."""
    yield from fresh_names("sbt_pf", derived="remove")


def _image(q):
    r = q._ring
    return bytes(r._mm[r._soff - L.COUNT:r._soff - L.COUNT + L.RING + r.capacity])


def test_the_run_uses_the_queue_path_it_expects(qname):
    q = sb.Queue(name=qname())
    if NO_ACCEL:
        assert queue_fast.BACKEND == "ctypes" and q._fast is None
    elif os.environ.get("SHAREDBRIDGE_EXPECT_ACCEL") == "1":
        assert queue_fast.BACKEND == "c"
        assert isinstance(q._ring, lock_core.accel.QueueCore) and q._fast is q._ring
    else:
        pytest.skip("neither SHAREDBRIDGE_NO_ACCEL nor SHAREDBRIDGE_EXPECT_ACCEL is set")
    sb.close(q)


# The same operations on a fresh queue in a child process per path: the values got, the
# exceptions and every image of the segment must be the same bytes (the ring wraps
# several times, with pads; messages of every inline kind; Full and Empty).
SCRIPT = r"""
import queue, sys
import sharedbridge as sb
from sharedbridge._format import queue_layout as L
q = sb.Queue(12, name=sys.argv[1], capacity=4096)
r = q._ring
out = []
def image():
    out.append(bytes(r._mm[r._soff - L.COUNT:r._soff - L.COUNT + L.RING + r.capacity]).hex())
def attempt(f, *a):
    try:
        out.append(repr(f(*a)))
    except (queue.Full, queue.Empty) as e:
        out.append(type(e).__name__ + str(getattr(e, "put", "")))
for i in range(60):
    attempt(q.put, b"a" * (i * 37 % 700), False)
    attempt(q.put, "\u00e9t\u00e9 %d" % i * (i % 5), False)
    attempt(q.put, bytearray(b"z" * i), False)
    attempt(q.put_many, [b"m%d" % i, "n" * i, b""], False)
    attempt(q.put_many, [i, 2.5, b"k", {"k": i}, None], False)
    attempt(q.put, (i, "t" * i), False)
    attempt(q.get_many, 3, False)
    attempt(q.get, False)
    attempt(q.get, False)
    if i % 7 == 0:
        attempt(q.get_many, 100, False)
        attempt(q.get_many, 1, False)
        image()
    if i % 11 == 0:
        for _ in range(13):
            attempt(q.put_nowait, b"f" * 100)
        attempt(q.put, b"t", True, 0.01)
        image()
image()
sb.close(q)
print("\n".join(out))
"""


def _run_script(name, no_accel):
    env = child_env()
    env.pop("SHAREDBRIDGE_NO_ACCEL", None)
    if no_accel:
        env["SHAREDBRIDGE_NO_ACCEL"] = "1"
    done = subprocess.run([sys.executable, "-c", SCRIPT, name], env=env, cwd=PYTHON_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_both_paths_leave_the_same_bytes(qname):
    if lock_core.accel is None and not NO_ACCEL:
        pytest.skip("the compiled extension is not built for this interpreter")
    compiled = _run_script(qname(), False)
    python = _run_script(qname(), True)
    assert len(compiled) == len(python) > 100
    for i, (a, b) in enumerate(zip(compiled, python)):
        assert a == b, f"line {i} differs"


def test_a_corrupt_record_in_the_middle_of_get_many_keeps_what_was_taken(qname):
    q = sb.Queue(name=qname(), capacity=4096)
    q.put_many([b"first", b"second", b"third"])
    second = L.RECORD_HEADER + L.align8(5)
    q._ring._ring[second + 4] = 9           # state 9: a corrupt record header
    # The first message was consumed before the second was read (section 11.3 get
    # step 4): it is handed over, and the corrupt header is reported by the next get.
    assert q.get_many(10) == [b"first"]
    after = _image(q)
    with pytest.raises(sb.CorruptSegmentError, match=q.name):
        q.get_many(10)
    with pytest.raises(sb.CorruptSegmentError, match=q.name):
        q.get_many(10)
    with pytest.raises(sb.CorruptSegmentError, match=q.name):
        q.get(timeout=0.1)
    assert _image(q) == after, "a refused operation changed the segment"
    sb.close(q)


def test_a_string_that_is_not_utf8_is_consumed_and_refused(qname):
    q = sb.Queue(name=qname(), capacity=4096)
    q.put_many(["abc", "next"])
    q._ring._ring[L.RECORD_HEADER + 1] = 0xFF
    with pytest.raises(sb.CorruptDataError, match="not UTF-8"):
        q.get(timeout=1)
    assert q.get(timeout=1) == "next"
    assert q.qsize() == 0
    sb.close(q)


def test_a_pad_at_the_ring_end_and_out_of_line_messages_between_inline_ones(qname):
    q = sb.Queue(name=qname(), capacity=4096)
    big = b"B" * 3000                       # above capacity / 4: out of line
    got = []
    for i in range(40):                     # the ring wraps: pads at its end
        q.put_many([b"x" * (i * 29 % 500), big, "s%d" % i, 7 * i])
        got += q.get_many(4)
    assert got == [m for i in range(40) for m in (b"x" * (i * 29 % 500), big, "s%d" % i, 7 * i)]
    assert q.qsize() == 0
    q.close()               # its reusable data segments (section 11.5) go with the handle
    sb.close(q)
    assert not [n for n in os.listdir(SHM) if n.startswith(q.name)]


def test_put_many_waits_for_room_in_the_middle_of_a_batch(qname):
    q = sb.Queue(3, name=qname(), capacity=4096)
    with pytest.raises(queue.Full) as e:
        q.put_many([b"1", b"2", b"3", b"4"], timeout=0.05)
    assert e.value.put == 3
    with pytest.raises(queue.Full) as e:
        q.put_many([b"5"], False)
    assert e.value.put == 0
    assert q.get_many(10) == [b"1", b"2", b"3"]
    with pytest.raises(queue.Empty):
        q.get_many(10, timeout=0.05)
    q.complete()
    with pytest.raises(sb.QueueCompleted):
        q.put_many([b"6"])
    with pytest.raises(sb.QueueCompleted):
        q.get_many(10)
    sb.close(q)


def _interrupted(q, where, ready, report):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ready.set()
    try:
        if where == "get_many":
            q.get_many(5, timeout=WAIT)
        else:
            q.put_many([b"y" * 100] * 3, timeout=WAIT)
        report.put("no interrupt", timeout=WAIT)
        return
    except KeyboardInterrupt:
        report.put("interrupted", timeout=WAIT)
    if where == "get_many":
        report.put(q.get_many(5, timeout=WAIT), timeout=WAIT)
    else:
        q.put_many([b"after"], timeout=WAIT)
        report.put("put", timeout=WAIT)


@pytest.mark.parametrize("where", ["get_many", "put_many"])
def test_ctrl_c_in_a_blocking_batch_leaves_the_queue_consistent(qname, where):
    q = sb.Queue(1 if where == "put_many" else 0, name=qname(), capacity=4096)
    if where == "put_many":
        q.put(b"occupant")
    ctx = mp.get_context("fork")
    ready, report = ctx.Event(), ctx.Queue()
    p = ctx.Process(target=_interrupted, args=(q, where, ready, report))
    p.start()
    try:
        assert ready.wait(WAIT)
        time.sleep(0.3)                 # the child is blocked in its wait by now
        os.kill(p.pid, signal.SIGINT)
        assert report.get(timeout=WAIT) == "interrupted"
        if where == "put_many":
            assert q.get(timeout=WAIT) == b"occupant"
            assert report.get(timeout=WAIT) == "put"
            assert q.get(timeout=WAIT) == b"after"
        else:
            q.put(b"after")
            assert report.get(timeout=WAIT) == [b"after"]
    finally:
        p.join(WAIT)
        if p.is_alive():
            p.kill()
    assert p.exitcode == 0
    # Nobody is left registered in the wait blocks.
    w = q._ring._u32
    assert [w[1], w[3], w[5], w[7]] == [0, 0, 0, 0]
    sb.close(q)


@pytest.mark.parametrize("tag", [1, 2])
def test_a_bytes_or_text_message_with_a_descriptor_is_consumed_and_refused(qname, tag):
    # Section 11.4: desc_length is 0 for tags 1 and 2; a reader refuses others as corrupt
    # data and takes the message all the same.
    q = sb.Queue(name=qname(), capacity=4096)
    q.put_many([b"x" * 16 if tag == 1 else "x" * 16, b"next"])
    ring = q._ring._ring
    struct.pack_into("<I", ring, 8, 8)          # desc_length 8 ...
    struct.pack_into("<Q", ring, 24, 8)         # ... and 8 bytes of data: size stays 48
    with pytest.raises(sb.CorruptDataError, match="descriptor"):
        q.get(timeout=1)
    assert q.get(timeout=1) == b"next"
    sb.close(q)


def test_threads_putting_and_getting_through_a_small_ring_lose_nothing(qname):
    # Producers and consumers in threads of one process, a ring too small for them: every
    # put and get waits at times (the waits release the GIL) and every message arrives
    # exactly once, in each producer's order.
    import threading
    q = sb.Queue(name=qname(), capacity=4096)
    per, producers = 3000, 3
    got, errors = [], []

    def produce(k):
        try:
            for i in range(0, per, 10):
                if i % 20:
                    q.put_many([(k, j) if j % 3 == 0 else b"%d %d" % (k, j)
                                for j in range(i, i + 10)], timeout=WAIT)
                else:
                    for j in range(i, i + 10):
                        q.put("%d %d" % (k, j), timeout=WAIT)
        except BaseException as e:      # reported below
            errors.append(e)

    def consume():
        mine = []
        try:
            while True:
                try:
                    batch = q.get_many(7, timeout=WAIT) if len(mine) % 2 else [q.get(timeout=WAIT)]
                except sb.QueueCompleted:
                    break
                mine += batch
        except BaseException as e:
            errors.append(e)
        got.append(mine)

    ps = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    cs = [threading.Thread(target=consume) for _ in range(3)]
    for t in ps + cs:
        t.start()
    for t in ps:
        t.join(WAIT * 4)
    q.complete()
    for t in cs:
        t.join(WAIT * 4)
    assert not errors and not any(t.is_alive() for t in ps + cs)

    def key(m):
        if isinstance(m, tuple):
            return m
        k, j = (m.decode() if isinstance(m, bytes) else m).split()
        return int(k), int(j)
    for mine in got:                    # each consumer sees each producer's order
        for k in range(producers):
            seq = [key(m)[1] for m in mine if key(m)[0] == k]
            assert seq == sorted(seq)
    everything = sorted(key(m) for mine in got for m in mine)
    assert everything == [(k, j) for k in range(producers) for j in range(per)]
    sb.close(q)
