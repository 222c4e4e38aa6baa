"""A consumer keeps the reusable data segments of out-of-line messages mapped between
messages (docs/format.md section 11.5; queue_data_segments.MappedCache): each message is
still served from the segment its record names, with the checks 11.5 asks for, the
mappings are bounded as the producer's pool, a segment replaced under the same name is
never served from a stale mapping, and nothing is left behind, whether the consumer
closes, is collected, ends or is killed."""

import gc
import multiprocessing
import os

import pytest

np = pytest.importorskip("numpy")   # held views need a zero-copy type: numpy arrays

import sharedbridge as sb                                   # noqa: E402
from sharedbridge._objects import queue_data_segments as DS  # noqa: E402

import recycle_workers as W                                 # noqa: E402
from conftest import fresh_names, queue_data_segments

SHM = "/dev/shm"
MIB = 1 << 20
WAIT = 60
RING = 1 << 16          # messages above 16 KiB go out of line


@pytest.fixture
def qname():
    """Fresh queue names (prefix sbt_mib); the segments they make are removed after the test."""
    yield from fresh_names("sbt_mib", derived="fail")


def mapped(q, pid="self"):
    """{data segment name: mapped bytes} of queue *q* in process *pid*'s memory map; a
    removed name (the kernel shows '(deleted)') as 'NAME (deleted)'."""
    prefix = f"{SHM}/{q.name}.m"
    found = {}
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith(prefix):
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                name = fields[5].strip()[len(SHM) + 1:]
                found[name] = found.get(name, 0) + hi - lo
    return found


def join(p):
    p.join(WAIT)
    assert p.exitcode is not None, f"child {p.pid} still running"


def test_reused_segments_are_served_right_every_time(qname):
    ctx = multiprocessing.get_context("fork")
    q = sb.Queue(4, capacity=RING, name=qname())
    p = ctx.Process(target=W.produce, args=(q, MIB, 300))
    p.start()
    held = []
    for i in range(300):
        a = q.get(timeout=WAIT)
        assert a[0] == i and a[-1] == i and (a == i).all()
        held.append(a)
        if len(held) > 3:                   # a few held at once: not reused meanwhile
            old = held.pop(0)
            assert (old == i - 3).all()
            del old
        del a
    join(p)
    assert p.exitcode == 0
    assert [float(h[0]) for h in held] == [297.0, 298.0, 299.0]
    assert all((h == h[0]).all() for h in held)
    # The producer reused a handful of segments, which this process kept mapped (the
    # producer is gone: the last to leave each one removed its name).
    assert 1 <= len(mapped(q)) <= DS.MAX_MAPPED
    del held
    gc.collect()
    assert queue_data_segments(q) == []
    q.close()
    assert mapped(q) == {}                  # close() unmaps them


def test_a_segment_replaced_under_the_same_name_is_not_served_stale(qname, monkeypatch):
    ctx = multiprocessing.get_context("fork")
    q, go = sb.Queue(capacity=RING, name=qname()), sb.Queue(name=qname())
    p = ctx.Process(target=W.put_values_then_wait, args=(q, MIB, [1], go))
    p.start()
    assert (q.get(timeout=WAIT) == 1).all()
    gc.collect()
    (first,) = queue_data_segments(q)
    assert list(mapped(q)) == [first]       # kept mapped here, not held
    go.put("go")
    join(p)                                 # the producer left it last: the name is gone
    assert queue_data_segments(q) == [] and list(mapped(q)) == [first + " (deleted)"]
    # Another producer makes a new segment under the very same name (its first one).
    real = os.urandom
    names = iter([bytes.fromhex(first[-16:])])
    monkeypatch.setattr(DS.os, "urandom",
                        lambda n: (next(names, None) if n == 8 else None) or real(n))
    p = ctx.Process(target=W.put_values_then_wait, args=(q, MIB, [2, 3, 4], go))
    p.start()
    monkeypatch.undo()
    for value in (2, 3, 4):
        got = q.get(timeout=WAIT)
        assert (got == value).all()         # the new object's bytes, not the old mapping's
        del got
    gc.collect()
    assert first in queue_data_segments(q)
    assert first + " (deleted)" not in mapped(q)    # the stale mapping was dropped
    go.put("go")
    join(p)
    assert p.exitcode == 0
    q.close()
    gc.collect()
    assert queue_data_segments(q) == [] and mapped(q) == {}


def test_mappings_are_bounded_like_the_pool(qname, monkeypatch):
    monkeypatch.setattr(DS, "MAX_MAPPED_BYTES", 3 * MIB)   # this process only
    ctx = multiprocessing.get_context("fork")
    q, go = sb.Queue(1, capacity=RING, name=qname()), sb.Queue(name=qname())
    sizes = [32 * 1024 + 4096 * i for i in range(DS.MAX_MAPPED + 4)]    # none reused
    bigs = [2 * MIB + 4096 * i for i in range(3)]                       # 3 x 2 MiB
    p = ctx.Process(target=W.put_sizes_then_wait, args=(q, sizes + bigs, go))
    p.start()
    for i, n in enumerate(sizes):
        got = q.get(timeout=WAIT)
        assert got.nbytes == n and (got == i).all()
        del got
    gc.collect()
    assert len(mapped(q)) == DS.MAX_MAPPED             # the least recently used went
    for i, n in enumerate(bigs, len(sizes)):
        got = q.get(timeout=WAIT)
        assert got.nbytes == n and (got == i).all()
        del got
    gc.collect()
    now = mapped(q)
    big = [n for n, size in now.items() if size > 2 * MIB]
    assert len(big) == 1                                 # two would be 4 MiB: the newest
    assert sum(now.values()) <= 3 * MIB + len(now) * 8192    # (+ header, page rounding)
    go.put("go")
    join(p)
    assert p.exitcode == 0
    q.close()
    gc.collect()
    assert queue_data_segments(q) == [] and mapped(q) == {}


def test_a_held_message_outlives_close_and_collection(qname):
    name = qname()
    producer = sb.Queue(capacity=RING, name=name)
    consumer = sb.attach(name)
    producer.put(W.array(MIB, 1))
    held = consumer.get(timeout=WAIT)
    producer.put(W.array(MIB, 2))
    assert (consumer.get(timeout=WAIT) == 2).all()
    consumer.close()
    del consumer
    gc.collect()
    producer.close()                        # the held one's name stays for its holder
    assert len(queue_data_segments(producer)) == 1
    assert (held == 1).all()
    del held
    gc.collect()
    assert queue_data_segments(producer) == [] and mapped(producer) == {}


def test_a_killed_consumer_leaves_nothing_wrong(qname):
    ctx = multiprocessing.get_context("spawn")  # its memory map shows only its own
    q, report = sb.Queue(capacity=RING, name=qname()), sb.Queue(name=qname())
    for i in range(3):
        q.put(W.array(MIB, i))
    segs = queue_data_segments(q)
    assert len(segs) == 3
    p = ctx.Process(target=W.get_some_hold_last_then_wait, args=(q, 3, report))
    p.start()
    assert report.get(timeout=WAIT) == [0.0, 1.0, 2.0]
    assert set(mapped(q, p.pid)) == set(segs)         # all kept mapped by the child
    p.kill()
    join(p)
    for i in range(3, 9):                             # every segment is reused again
        q.put(W.array(MIB, i))
        assert queue_data_segments(q) == segs
        assert (q.get(timeout=WAIT) == i).all()
    q.close()
    gc.collect()
    assert queue_data_segments(q) == []


def test_a_fork_child_of_a_consumer_maps_its_own(qname):
    ctx = multiprocessing.get_context("fork")
    q, report = sb.Queue(1, capacity=RING, name=qname()), sb.Queue(name=qname())
    q.put(W.array(MIB, 1))
    held = q.get(timeout=WAIT)              # mapped and held here, inherited by the child
    q.put(W.array(MIB, 2))
    assert (q.get(timeout=WAIT) == 2).all()
    gc.collect()
    p = ctx.Process(target=W.get_check_report, args=(q, 6, report))
    p.start()
    for i in range(3, 9):
        q.put(W.array(MIB, i), timeout=WAIT)
    assert report.get(timeout=WAIT) == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    join(p)
    assert p.exitcode == 0
    assert (held == 1).all()                # the child did not release the parent's hold
    for i in range(9, 12):                  # and this process's mappings still serve
        q.put(W.array(MIB, i))
        assert (q.get(timeout=WAIT) == i).all()
    assert (held == 1).all()
    del held
    q.close()
    gc.collect()
    assert queue_data_segments(q) == [] and mapped(q) == {}
