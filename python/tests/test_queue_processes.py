"""Queues across real processes: exact-once FIFO delivery with many producers and
consumers, blocking and Ctrl-C, crashes of a producer or a consumer holding the mutex,
pickling through a Pool, attach by name (docs/format.md section 11.3)."""

import collections
import functools
import multiprocessing
import os
import signal
import time
import warnings

import pytest

import sharedbridge as sb
from sharedbridge._format import queue_layout as L

import queue_workers as W

METHODS = ["fork", "spawn"]
SHM = "/dev/shm"


def _join(procs, timeout=60):
    for p in procs:
        p.join(timeout)
        assert p.exitcode is not None, f"child {p.pid} still running"


def _check_exact_once_fifo(lists, producers, count):
    """Every (producer, i) once; each consumer saw each producer's items in order."""
    seen = collections.Counter(item for got in lists for item in got)
    assert sorted(seen) == [(t, i) for t in range(producers) for i in range(count)]
    assert set(seen.values()) == {1}
    for got in lists:
        for t in range(producers):
            mine = [i for tag, i in got if tag == t]
            assert mine == sorted(mine)


@pytest.mark.parametrize("method", METHODS)
def test_many_producers_and_consumers(method):
    ctx = multiprocessing.get_context(method)
    q, results = sb.Queue(50, capacity=8192), sb.Queue()
    producers, consumers, count = 3, 3, 400
    prods = [ctx.Process(target=W.produce, args=(q, t, count)) for t in range(producers)]
    cons = [ctx.Process(target=W.consume, args=(q, results)) for _ in range(consumers)]
    for p in prods + cons:
        p.start()
    _join(prods)
    assert [p.exitcode for p in prods] == [0] * producers
    q.complete()
    lists = [results.get(timeout=60) for _ in range(consumers)]
    _join(cons)
    assert [p.exitcode for p in cons] == [0] * consumers
    _check_exact_once_fifo(lists, producers, count)
    assert q.qsize() == 0


def test_many_producers_and_consumers_in_batches():
    ctx = multiprocessing.get_context("fork")
    q, results = sb.Queue(capacity=4096), sb.Queue()
    prods = [ctx.Process(target=W.produce_many, args=(q, t, 1000, 37)) for t in range(2)]
    cons = [ctx.Process(target=W.consume_many, args=(q, results)) for _ in range(2)]
    for p in prods + cons:
        p.start()
    _join(prods)
    q.complete()
    lists = [results.get(timeout=60) for _ in range(2)]
    _join(cons)
    _check_exact_once_fifo(lists, 2, 1000)


@pytest.mark.parametrize("method", METHODS)
def test_out_of_line_across_processes(method):
    ctx = multiprocessing.get_context(method)
    q, back = sb.Queue(capacity=4096), sb.Queue(capacity=4096)
    big, huge = os.urandom(2000), os.urandom(20000)
    p = ctx.Process(target=W.echo, args=(q, back, 3))
    p.start()
    q.put(big)
    q.put(["list", huge])
    q.put(b"small")
    assert back.get(timeout=60) == big
    assert back.get(timeout=60) == ["list", huge]
    assert back.get(timeout=60) == b"small"
    _join([p])
    assert p.exitcode == 0
    q.close()               # this producer's reusable data segments (section 11.5)
    assert not [n for n in os.listdir(SHM) if n.startswith((q.name + ".m", back.name + ".m"))]


def test_attach_by_name_from_another_process():
    ctx = multiprocessing.get_context("spawn")
    q = sb.Queue(name=f"sbt_pr_{os.getpid()}_attach")
    p = ctx.Process(target=W.put_by_name, args=(q.name, {"from": "child"}))
    p.start()
    assert q.get(timeout=60) == {"from": "child"}
    _join([p])


@pytest.mark.parametrize("method", METHODS)
def test_pickled_through_a_pool(method):
    ctx = multiprocessing.get_context(method)
    q = sb.JoinableQueue()
    with ctx.Pool(2) as pool:
        names = pool.starmap(W.pool_put, [(q, i) for i in range(4)])
    assert names == ["JoinableQueue"] * 4
    assert sorted(q.get(timeout=10) for _ in range(4)) == [0, 1, 2, 3]


def test_join_across_processes():
    ctx = multiprocessing.get_context("fork")
    q = sb.JoinableQueue()
    for i in range(20):
        q.put(i)
    p = ctx.Process(target=W.task_worker, args=(q, 20))
    p.start()
    assert q.join(timeout=60) is True
    _join([p])
    with pytest.raises(ValueError):
        q.task_done()


@pytest.mark.parametrize("where", ["get", "put"])
def test_ctrl_c_in_a_blocking_call_leaves_the_queue_consistent(where):
    ctx = multiprocessing.get_context("fork")
    q, report, ready = sb.Queue(capacity=4096), sb.Queue(), sb.Event()
    if where == "put":
        while True:                      # full by bytes
            try:
                q.put_nowait(b"x" * 500)
            except Exception:
                break
    target = W.interrupted_get if where == "get" else W.interrupted_put
    p = ctx.Process(target=target, args=(q, ready, report))
    p.start()
    assert ready.wait(30)
    block = q._ring._R if where == "get" else q._ring._W
    deadline = time.monotonic() + 30
    while block._w[1] == 0 and time.monotonic() < deadline:   # waiters: the child waits
        time.sleep(0.01)
    assert block._w[1] == 1
    os.kill(p.pid, signal.SIGINT)
    assert report.get(timeout=30) == "interrupted"
    if where == "get":
        q.put("after")
        assert report.get(timeout=30) == "after"
    else:
        assert report.get(timeout=30) == b"x" * 500
    _join([p])
    assert p.exitcode == 0
    assert list(block._w) in ([block._w[0], 0, 0, 0],)          # waiters, signals, sleepers 0


def _killed_holding_the_mutex(q, target, first):
    """Run *target(q.name)* in a child that SIGKILLs itself holding the mutex; the next
    get recovers the mutex (and the ring) and returns *first*."""
    p = multiprocessing.get_context("fork").Process(target=target, args=(q.name,))
    p.start()
    _join([p])
    assert p.exitcode == -signal.SIGKILL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sb.LockRecoveredWarning)
        assert q.get(timeout=10) == first


@pytest.mark.parametrize("where", ["before commit", "after commit"])
def test_producer_killed_in_a_put(where):
    q = sb.Queue(capacity=4096)
    q.put(b"before")
    _killed_holding_the_mutex(q, functools.partial(W.put_then_die, where=where), b"before")
    if where == "before commit":          # the half-written message never shows
        assert q.qsize() == 0
        q.put(b"after")
        assert q.get(timeout=10) == b"after"
    else:                                 # committed: delivered, counted again
        assert q.qsize() == 1
        assert q.get(timeout=10) == b"half-written message " * 4
    assert q.empty()
    count, unfinished, completed, head, read, tail, puts, gets = q._ring.snapshot()
    assert count == 0 and head == read == tail


def test_consumer_killed_in_a_get_loses_nothing():
    q = sb.Queue(capacity=4096)
    q.put(b"one")
    q.put(b"two")
    _killed_holding_the_mutex(q, W.get_then_die, b"one")
    assert q.get(timeout=10) == b"two"
    q.put(b"three")
    assert q.get(timeout=10) == b"three"


def test_throughput_print():
    """Not a test of speed (nothing asserted on time): prints put+get throughput of
    64-byte bytes messages, one process and with a child."""
    msg = b"m" * 64
    q = sb.Queue()
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        q.put(msg)
        q.get()
    one = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n // 100):
        q.put_many([msg] * 100)
        q.get_many(100)
    batched = n / (time.perf_counter() - t0)
    ctx = multiprocessing.get_context("fork")
    results = sb.Queue()
    p = ctx.Process(target=W.consume, args=(q, results))
    p.start()
    t0 = time.perf_counter()
    for _ in range(n):
        q.put(msg)
    q.complete()
    got = results.get(timeout=120)
    two = n / (time.perf_counter() - t0)
    _join([p])
    assert len(got) == n
    print(f"\n64-byte messages: put+get in one process {one:,.0f}/s, put_many+get_many "
          f"{batched:,.0f}/s, to a child {two:,.0f}/s (loaded machine)")


def test_take_and_release_hold_the_bytes_until_released():
    q = sb.Queue(capacity=4096)
    q.put(b"a" * 900)
    m = q._ring.take()
    assert bytes(m.data) == b"a" * 900 and q.qsize() == 0
    for _ in range(3):
        q.put(b"b" * 900)
    with pytest.raises(Exception):          # the taken record still holds its bytes
        q.put(b"c" * 900, timeout=0.1)
    q._ring.release(m.position)
    q.put(b"c" * 900, timeout=5)
    with pytest.raises(ValueError, match="released twice"):
        q._ring.release(m.position)
    assert [q.get() for _ in range(4)] == [b"b" * 900] * 3 + [b"c" * 900]


def test_a_taker_that_dies_loses_only_its_message():
    ctx = multiprocessing.get_context("fork")
    q, report = sb.Queue(capacity=4096), sb.Queue()
    q.put(b"taken" * 180)
    q.put(b"next" * 200)
    p = ctx.Process(target=W.take_then_die, args=(q.name, report))
    p.start()
    assert report.get(timeout=60) == b"taken" * 180
    _join([p])
    assert p.exitcode == -signal.SIGKILL
    q.put(b"x" * 900)
    q.put(b"y" * 900)
    # The ring is full only while the dead taker's record holds its bytes: a putter
    # reclaims it (section 11.3, reclaim dead takers) and its put goes in.
    q.put(b"z" * 900, timeout=10)
    assert [q.get(timeout=5) for _ in range(4)] == [b"next" * 200, b"x" * 900, b"y" * 900,
                                                    b"z" * 900]
    count, _, _, head, read, tail, _, _ = q._ring.snapshot()
    assert count == 0 and head == read == tail
