"""Queue, SimpleQueue and JoinableQueue in one process: multiprocessing's API and
exceptions, completion, task_done/join, out-of-line messages, attach, pickling, lifetimes
(docs/format.md section 11)."""

import gc
import multiprocessing
import os
import pickle
import queue
import struct
import threading
import time

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from sharedbridge._format import queue_layout as L
from sharedbridge._objects import queue_data_segments as DS
from conftest import fresh_names

SHM = "/dev/shm"


@pytest.fixture
def qname():
    """Fresh queue names (prefix sbt_pr); the segments they make are removed after the test."""
    yield from fresh_names("sbt_pr", derived="remove")


def ours(prefix):
    return sorted(n for n in os.listdir(SHM) if n.startswith(prefix))


def test_fifo_and_types():
    q = sb.Queue()
    items = [b"bytes", "text", 42, 2.5, None, {"a": [1, 2]}, (1, "x"), bytearray(b"ba")]
    for item in items:
        q.put(item)
    assert q.qsize() == len(items) and not q.empty()
    got = [q.get() for _ in items]
    assert got[:7] == items[:7] and bytes(got[7]) == b"ba"
    assert q.empty() and q.qsize() == 0


def test_empty_and_full_exceptions():
    q = sb.Queue(2)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(False)
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.maxsize == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    assert q.get() == 1
    q.put(3)
    assert [q.get(), q.get()] == [2, 3]


def test_full_by_bytes():
    q = sb.Queue(capacity=4096)
    assert q.capacity == 4096
    n = 0
    with pytest.raises(queue.Full):
        while True:
            q.put_nowait(b"x" * 64)
            n += 1
    assert n == 4096 // 96        # 32-byte header + 64 bytes per record
    assert q.get() == b"x" * 64
    q.put_nowait(b"y" * 64)       # the room of the record got


def test_capacity_rounds_up():
    assert sb.Queue(capacity=1).capacity == 4096
    assert sb.Queue(capacity=5000).capacity == 8192
    assert sb.Queue().capacity == 1 << 20
    with pytest.raises(ValueError):
        sb.Queue(capacity=0)


def test_blocking_get_wakes_on_put():
    q = sb.Queue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=20)))
    t.start()
    time.sleep(0.1)
    q.put("late")
    t.join(20)
    assert got == ["late"]


def test_blocking_put_wakes_on_get():
    q = sb.Queue(1)
    q.put(1)
    done = []
    t = threading.Thread(target=lambda: done.append(q.put(2, timeout=20)))
    t.start()
    time.sleep(0.1)
    assert q.get() == 1
    t.join(20)
    assert done == [None] and q.get(timeout=5) == 2


def test_closed_handle_raises_value_error():
    q = sb.Queue()
    q.put(1)
    with pytest.raises(AssertionError):
        q.join_thread()
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        q.put(2)
    with pytest.raises(ValueError, match="is closed"):
        q.get()
    q.join_thread()
    q.cancel_join_thread()
    with pytest.raises(OSError, match="is closed"):     # as multiprocessing, once used
        q.empty()
    unused = sb.JoinableQueue()
    unused.close()
    assert unused.empty()
    simple = sb.SimpleQueue()
    simple.close()
    simple.close()
    with pytest.raises(OSError, match="is closed"):
        simple.empty()
    other = sb.attach(q.name)
    assert other.get() == 1       # the queue itself is not closed, only that handle


def test_complete():
    q = sb.Queue()
    q.put_many([1, 2])
    q.complete()
    assert q.completed
    with pytest.raises(sb.QueueCompleted, match="completed"):
        q.put(3)
    assert q.get() == 1 and q.get_many(5) == [2]
    with pytest.raises(sb.QueueCompleted):
        q.get()
    with pytest.raises(EOFError):
        q.get(timeout=1)
    with pytest.raises(sb.QueueCompleted):
        q.get_many(3)
    assert issubclass(sb.QueueCompleted, sb.SharedBridgeError)


def test_complete_wakes_blocked_getters_and_putters():
    q = sb.Queue(1)
    q.put(0)
    results = []

    def put():
        try:
            q.put(1, timeout=20)
            results.append("put")
        except sb.QueueCompleted:
            results.append("put completed")
    t = threading.Thread(target=put)
    t.start()
    time.sleep(0.1)
    q.complete()
    t.join(20)
    assert results == ["put completed"]
    assert q.get() == 0
    e = sb.Queue()
    t = threading.Thread(target=lambda: results.append(
        pytest.raises(sb.QueueCompleted, e.get, timeout=20)))
    t.start()
    time.sleep(0.1)
    e.complete()
    t.join(20)
    assert not t.is_alive()


def test_put_many_get_many():
    q = sb.Queue(5)
    q.put_many(range(5))
    with pytest.raises(queue.Full) as info:
        q.put_many([5, 6], block=False)
    assert info.value.put == 0
    assert q.get_many(3) == [0, 1, 2]
    assert q.get_many(10) == [3, 4]
    with pytest.raises(queue.Empty):
        q.get_many(10, timeout=0.05)


def test_joinable_queue():
    q = sb.JoinableQueue()
    q.put("a")
    q.put("b")
    assert q.join(timeout=0.05) is False
    q.get()
    q.task_done()
    q.get()
    q.task_done()
    assert q.join() is None
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()


def test_simple_queue():
    q = sb.SimpleQueue()
    assert q.empty()
    q.put([1, 2])
    assert not q.empty() and q.get() == [1, 2]
    q.close()
    q.close()


def test_a_closed_simple_queue_raises_what_multiprocessings_does():
    seen = []
    for q in (multiprocessing.SimpleQueue(), sb.SimpleQueue()):
        q.put(1)
        q.close()
        for op in (q.get, lambda: q.put(2), q.empty):
            with pytest.raises(OSError) as e:
                op()
            seen.append((type(q).__name__, type(e.value), str(e.value)))
    assert [s[1:] for s in seen[:3]] == [s[1:] for s in seen[3:]]


def test_attach_returns_the_class(qname):
    for cls in (sb.Queue, sb.SimpleQueue, sb.JoinableQueue):
        name = qname()
        q = cls(name=name)
        got = sb.attach(name)
        assert type(got) is cls and got.name == name
        q.put("x")
        assert got.get() == "x"
    with pytest.raises(sb.TypeMismatchError):
        sb.attach(name, "i")


def test_header(qname):
    name = qname()
    q = sb.Queue(7, name=name, capacity=8192)
    h = sb.header_of(q)
    assert (h.kind, h.version, h.compat_version, h.typecode) == (8, 6, 6, "B")
    assert (h.element_size, h.element_count, h.data_offset) == (1, 256 + 8192, 0x200)
    assert (h.lock_kind, h.lock_type) == (1, 2)
    raw = open(os.path.join(SHM, name), "rb").read()
    assert struct.unpack_from("<II", raw, 0x200 + 128) == (7, 0)
    assert sb.header_of(sb.JoinableQueue()).kind == 8
    assert sb.Queue(0)._ring.max_messages == L.UNBOUNDED


def test_bad_header_words_are_corrupt(qname):
    name = qname()
    q = sb.Queue(name=name)
    raw = bytearray(open(os.path.join(SHM, q.name), "rb").read())
    for offset, value, fix in ((0x200 + 128, 0, False), (0x200 + 132, 4, False),
                               (0x1C, 256 + 5000, True), (0x1C, 256 + 2048, True)):
        bad = bytearray(raw)
        struct.pack_into("<I", bad, offset, value)
        if fix:
            struct.pack_into("<Q", bad, 0x20, value)       # data_size
            struct.pack_into("<I", bad, 0x184, H.checksum(bad, 0x200))
        forged = qname()
        with open(os.path.join(SHM, forged), "xb") as f:
            f.write(bad)
        with pytest.raises(sb.CorruptSegmentError):
            sb.attach(forged, timeout=0.2)


def test_pickle_by_name():
    q = sb.Queue()
    q.put("first")
    other = pickle.loads(pickle.dumps(q))
    assert type(other) is sb.Queue and other.name == q.name
    assert other.get() == "first"


def test_queue_through_queue():
    outer, inner = sb.Queue(), sb.JoinableQueue()
    outer.put(inner)
    got = outer.get()
    assert type(got) is sb.JoinableQueue and got.name == inner.name
    got.put(5)
    assert inner.get() == 5


def test_out_of_line_messages(qname):
    name = qname()
    q = sb.Queue(name=name, capacity=4096)
    big = bytes(range(256)) * 8                 # 2 KiB > capacity / 4
    huge = os.urandom(3 * 4096)                 # larger than the ring
    q.put(big)
    q.put({"huge": huge})
    q.put(b"small")
    assert len(ours(name + ".m")) == 2
    assert q.get() == big
    assert q.get() == {"huge": huge}
    assert q.get() == b"small"
    # Got and not used any more: kept by this producer for reuse (format 6, section 11.5)
    # until its handle closes.
    assert len(ours(name + ".m")) == 2
    q.close()
    assert ours(name + ".m") == []


def test_remover_unlinks_out_of_line_segments_left_in_the_ring(qname):
    name = qname()
    q = sb.Queue(name=name, capacity=4096)
    q.put(os.urandom(5000))
    q.put(os.urandom(6000))
    assert len(ours(name)) == 3
    sb.close(q)
    assert ours(name) == []


def test_remover_of_a_last_closer_queue(qname):
    name = qname()
    q = sb.Queue(name=name, lifetime="last-closer", capacity=4096)
    other = sb.attach(name)
    q.put(os.urandom(5000))
    sb.close(q)
    assert len(ours(name)) == 2            # another object holds it
    sb.close(other)
    assert ours(name) == []


def test_persistent_queue_stays(qname):
    name = qname()
    q = sb.Queue(name=name, lifetime="persistent")
    q.put("kept")
    del q
    gc.collect()
    again = sb.attach(name)
    assert again.lifetime == "persistent" and again.get() == "kept"
    sb.unlink(name)


def test_name_too_long():
    with pytest.raises(ValueError, match="longer than 237"):
        sb.Queue(name="q" * 240)


def test_ls_and_inspect_show_depth_and_capacity(qname):
    import subprocess
    import sys
    name = qname()
    q = sb.Queue(10, name=name, capacity=8192)
    q.put_many([b"a", b"b", b"c"])
    q.get()
    (info,) = sb.list_segments(prefix=name)
    assert info.kind == "queue" and info.status == "ok"
    w = info.queue
    assert info.sync is None
    assert (w["count"], w["capacity"], w["max_messages"], w["puts"], w["gets"]) == \
        (2, 8192, 10, 3, 1)
    assert w["flavour"] == "Queue" and w["bytes_used"] == 2 * 40 and w["readers_waiting"] == 0
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(sb.__file__)))
    out = subprocess.run([sys.executable, "-m", "sharedbridge", "ls", "--prefix", name],
                         capture_output=True, text=True, env=env, timeout=60).stdout
    assert "2 of 10 ready, 80 of 8192 bytes, 3 put, 1 got, 3 unfinished" in out
    out = subprocess.run([sys.executable, "-m", "sharedbridge", "inspect", name],
                         capture_output=True, text=True, env=env, timeout=60).stdout
    assert "kind: queue" in out and "2 of 10 ready" in out


def test_reap_removes_orphan_out_of_line_segments(qname):
    name = qname()
    q = sb.Queue(name=name, capacity=4096)
    seg = DS.SingleUse(name, 10, [b"0123456789"], [0]).seg      # never committed
    kept = sb.RawArray("B", 3, name=name + ".other", lifetime="persistent")
    assert sb.reap(prefix=name) == []                  # its queue exists
    sb.close(q)
    del q
    gc.collect()
    reaped = sb.reap(prefix=name)
    assert [r.name for r in reaped] == [seg.name]
    assert "queue" in reaped[0].reason
    assert ours(name) == [kept.name]
    sb.unlink(kept.name)


# ---- nothing a get took is lost (queue_delivery.py, docs/api.md) ---------------------

def _refuse():
    raise LookupError("this class cannot be rebuilt here")


class _Unloadable:
    """Pickles fine; its unpickling fails, as a class the consumer cannot import does."""

    def __reduce__(self):
        return _refuse, ()


_interrupts = []


def _interrupt_once(value):
    if not _interrupts:
        _interrupts.append(value)
        raise KeyboardInterrupt
    return value


class _InterruptedOnce:
    """Its first unpickling is interrupted (Ctrl-C while get_many decodes it)."""

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return _interrupt_once, (self.value,)


def test_a_message_that_cannot_be_decoded_ends_the_batch_before_it(qname):
    q = sb.Queue(name=qname())
    q.put_many(["a", b"b", _Unloadable(), 3, "d"])
    assert q.get_many(10) == ["a", b"b"]
    assert q.qsize() == 2 and not q.empty()     # 3 and "d": taken, not yet handed over
    with pytest.raises(sb.CorruptDataError, match=q.name) as e:
        q.get_many(10)
    assert isinstance(e.value.__cause__, LookupError)
    assert q.get_many(1) == [3]
    assert q.get() == "d"
    assert q.qsize() == 0 and q.empty()
    with pytest.raises(queue.Empty):
        q.get_many(10, timeout=0.05)
    q.close()


def test_a_first_message_that_cannot_be_decoded_is_raised_and_the_rest_follow(qname):
    q = sb.Queue(name=qname())
    q.put_many([_Unloadable(), 1, 2])
    with pytest.raises(sb.CorruptDataError, match=q.name):
        q.get_many(10)
    assert q.get_many(10) == [1, 2]
    q.close()


def test_a_string_that_is_not_utf8_in_a_batch_costs_only_itself(qname):
    q = sb.Queue(name=qname(), capacity=4096)
    q.put_many(["a", "bcd", "e"])
    q._ring._ring[2 * L.RECORD_HEADER + 8 + 1] = 0xFF      # a byte of "bcd"
    assert q.get_many(10) == ["a"]
    with pytest.raises(sb.CorruptDataError, match="not UTF-8"):
        q.get()
    assert q.get_many(10) == ["e"]
    q.close()


def test_keyboard_interrupt_while_decoding_keeps_the_whole_batch(qname):
    q = sb.Queue(name=qname())
    del _interrupts[:]
    q.put_many(["a", 1, _InterruptedOnce("x"), (2, 3)])
    with pytest.raises(KeyboardInterrupt):
        q.get_many(10)
    assert q.qsize() == 4
    assert q.get() == "a"
    assert q.get_many(10) == [1, "x", (2, 3)]
    assert q.qsize() == 0
    q.close()
