"""Reusable out-of-line data segments (docs/format.md section 11.5, format version 6),
across real processes: the consumer's hold keeps a got array unchanged while later
messages are put, the producer reuses its segments (the same names come back in
/dev/shm), crashes of either side, fork children of a producer, queues of compat_version
5 (single-use segments), and the removal of every data segment at close and exit."""

import gc
import multiprocessing
import os
import struct
import subprocess
import sys
import textwrap

import pytest

np = pytest.importorskip("numpy")   # held views need a zero-copy type: numpy arrays

import sharedbridge as sb                                   # noqa: E402
from sharedbridge._format import header as H                # noqa: E402

import recycle_workers as W                                 # noqa: E402
from conftest import child_env, crc_of, fresh_names, queue_data_segments

METHODS = ["fork", "spawn"]
SHM = "/dev/shm"
MIB = 1 << 20
WAIT = 60
RING = 1 << 16          # messages above 16 KiB go out of line


@pytest.fixture
def qname():
    """Fresh queue names (prefix sbt_rcpy); the segments they make are removed after the test."""
    yield from fresh_names("sbt_rcpy", derived="fail")


def join(p):
    p.join(WAIT)
    assert p.exitcode is not None, f"child {p.pid} still running"


def kill(p):
    p.kill()
    join(p)


# ---- (a) a held array stays valid and unchanged -------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_held_array_keeps_its_contents_while_more_are_put(method, qname):
    ctx = multiprocessing.get_context(method)
    q, go = sb.Queue(1, capacity=RING, name=qname()), sb.Queue(name=qname())
    p = ctx.Process(target=W.produce_after_go, args=(q, go, MIB, 0.0, 10))
    p.start()
    held = q.get(timeout=WAIT)
    assert (held == 0).all()
    go.put("go")
    for i in range(1, 11):
        a = q.get(timeout=WAIT)
        assert a[0] == i and a[-1] == i and (a == i).all()
        del a
        assert (held == 0).all()
    join(p)
    assert p.exitcode == 0
    assert (held == 0).all() and len(held) == MIB // 8
    del held
    gc.collect()
    assert queue_data_segments(q) == []


# ---- (b) steady state: a handful of names, reused -----------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_steady_stream_reuses_a_handful_of_segments(method, qname):
    ctx = multiprocessing.get_context(method)
    q = sb.Queue(1, capacity=RING, name=qname())
    p = ctx.Process(target=W.produce, args=(q, 4 * MIB, 200))
    p.start()
    most, seen, again = 0, set(), 0
    for i in range(200):
        a = q.get(timeout=WAIT)
        assert a[0] == i and a[-1] == i
        names = queue_data_segments(q)
        most = max(most, len(names))
        again += bool(seen & set(names))
        seen |= set(names)
        del a
    join(p)
    assert p.exitcode == 0
    assert most <= 6, f"{most} data segments at once"
    assert len(seen) <= 10 and again > 100, f"{len(seen)} names for 200 messages"
    assert queue_data_segments(q) == []          # the producer left its pool as it ended


# ---- (c) a producer killed with pooled segments -------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_reap_after_producer_killed_keeps_referenced_and_held(method, qname):
    ctx = multiprocessing.get_context(method)
    q, done = sb.Queue(capacity=RING, name=qname()), sb.Queue(name=qname())
    sizes = [MIB, 2 * MIB, 3 * MIB]
    p = ctx.Process(target=W.produce_sizes_then_wait, args=(q, sizes, done))
    p.start()
    assert done.get(timeout=WAIT) == "put"
    first = queue_data_segments(q)
    assert len(first) == 3
    a = q.get(timeout=WAIT)             # consumed and dropped: nobody will hold it
    assert a[0] == 0 and len(a) * 8 == MIB
    del a
    held = q.get(timeout=WAIT)          # consumed and held here
    assert (held == 1).all()
    kill(p)                             # the third stays ready in the ring
    gc.collect()
    reaped = sb.reap(prefix=q.name + ".m")
    assert len(reaped) == 1 and reaped[0].removed
    assert "no record references" in reaped[0].reason
    left = queue_data_segments(q)
    assert len(left) == 2 and reaped[0].name not in left
    assert sb.reap(prefix=q.name + ".m") == []
    last = q.get(timeout=WAIT)          # the referenced one is intact
    assert (last == 2).all() and len(last) * 8 == 3 * MIB
    del held, last
    gc.collect()
    assert queue_data_segments(q) == []          # this process was the last to leave them


def test_reap_removes_data_segments_of_a_gone_queue(qname):
    name = qname()
    script = textwrap.dedent(f"""
        import os, signal, numpy as np, sharedbridge as sb
        q = sb.Queue(capacity={RING}, name={name!r}, lifetime="persistent")
        q.put(np.zeros({MIB // 8}))
        q.put(np.ones({MIB // 8}))
        print(q.get()[0], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True,
                       text=True, timeout=WAIT)
    assert r.returncode == -9 and r.stdout.strip() == "0.0", r.stderr
    assert len([n for n in os.listdir(SHM) if n.startswith(name + ".m")]) == 2
    sb.unlink(name)     # the queue goes by name: nothing removes its data segments
    reaped = sb.reap(prefix=name + ".m")
    assert len(reaped) == 2 and all("does not exist" in r.reason for r in reaped)
    assert [n for n in os.listdir(SHM) if n.startswith(name)] == []


def test_reap_leaves_them_while_the_queue_mutex_stays_busy(qname, monkeypatch):
    from sharedbridge._objects import lifetimes
    name = qname()
    q = sb.Queue(capacity=RING, name=name)
    script = textwrap.dedent(f"""
        import os, signal, numpy as np, sharedbridge as sb
        q = sb.attach({name!r})
        for n in (1, 2):
            q.put(np.full(n * {MIB // 8}, float(n)))
            assert q.get()[0] == n
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True,
                       text=True, timeout=WAIT)
    assert r.returncode == -9, r.stderr
    assert len(queue_data_segments(q)) == 2          # its pool: nobody holds them now
    monkeypatch.setattr(lifetimes, "QUEUE_LOCK_TIMEOUT", 0.2)
    with q._ring._lock:                     # the queue's mutex stays busy
        assert sb.reap(prefix=name + ".m") == []
    assert len(queue_data_segments(q)) == 2
    reaped = sb.reap(prefix=name + ".m")
    assert len(reaped) == 2 and queue_data_segments(q) == []


# ---- (d) a consumer killed while holding a view --------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_producer_reuses_after_consumer_killed_holding_a_view(method, qname):
    ctx = multiprocessing.get_context(method)
    q, held = sb.Queue(capacity=RING, name=qname()), sb.Queue(name=qname())
    q.put(W.array(MIB, 7))
    seg = queue_data_segments(q)
    assert len(seg) == 1
    p = ctx.Process(target=W.get_hold_then_wait, args=(q, held))
    p.start()
    assert held.get(timeout=WAIT) == 7.0
    q.put(W.array(MIB, 8))          # the child holds the first: a new segment
    assert len(queue_data_segments(q)) == 2
    assert (q.get(timeout=WAIT) == 8).all()
    kill(p)
    before = queue_data_segments(q)
    q.put(W.array(MIB, 9))
    q.put(W.array(MIB, 10))
    assert queue_data_segments(q) == before      # both reused: no new name
    assert (q.get(timeout=WAIT) == 9).all() and (q.get(timeout=WAIT) == 10).all()
    q.close()
    gc.collect()
    assert queue_data_segments(q) == []


# ---- (e) a fork child of a producer ---------------------------------------------------------

def test_fork_child_does_not_break_the_parents_pool(qname):
    ctx = multiprocessing.get_context("fork")
    q = sb.Queue(capacity=RING, name=qname())
    q.put(W.array(MIB, 1))
    assert (q.get(timeout=WAIT) == 1).all()
    gc.collect()
    mine = queue_data_segments(q)
    assert len(mine) == 1
    q.put(W.array(2 * MIB, 2))
    held = q.get(timeout=WAIT)              # a hold of this process, inherited by the child
    (held_seg,) = [n for n in queue_data_segments(q) if n not in mine]
    p = ctx.Process(target=W.put_one, args=(q, MIB, 3))
    p.start()
    join(p)
    assert p.exitcode == 0
    child = [n for n in queue_data_segments(q) if n not in mine + [held_seg]]
    assert len(child) == 1                  # the child made its own (and left it to us)
    assert set(mine) <= set(queue_data_segments(q))  # the child did not remove the parent's
    got = q.get(timeout=WAIT)
    assert (got == 3).all()
    del got
    gc.collect()
    assert child[0] not in queue_data_segments(q)    # its consumer (here) was the last to leave
    q.put(W.array(MIB, 4))                  # the parent's pool still works: reused
    assert (q.get(timeout=WAIT) == 4).all()
    q.put(W.array(2 * MIB, 5))              # the held one is not reused
    assert (held == 2).all()
    assert (q.get(timeout=WAIT) == 5).all()
    assert queue_data_segments(q) == sorted(mine + [held_seg]) or len(queue_data_segments(q)) == 3
    del held
    q.close()
    gc.collect()
    assert queue_data_segments(q) == []


def test_fork_child_of_a_producer_leaves_its_own_pool_at_its_end(qname):
    ctx = multiprocessing.get_context("fork")
    q = sb.Queue(capacity=RING, name=qname())
    q.put(W.array(MIB, 1))                  # this process's pool, inherited by the child
    assert (q.get(timeout=WAIT) == 1).all()
    mine = queue_data_segments(q)
    go = sb.Queue(name=qname())
    p = ctx.Process(target=W.put_one_then_wait, args=(q, MIB, 2, go))
    p.start()
    assert (q.get(timeout=WAIT) == 2).all()
    gc.collect()
    go.put("go")
    join(p)
    assert p.exitcode == 0
    assert queue_data_segments(q) == mine            # the child's segment went as the child ended
    q.close()
    assert queue_data_segments(q) == []


# ---- (f) a queue of compat_version 5 ---------------------------------------------------------

def test_compat_5_queue_gets_single_use_data_segments(qname):
    name = qname()
    q6 = sb.Queue(capacity=RING, name=name, lifetime="persistent")
    assert (sb.header_of(q6).version, sb.header_of(q6).compat_version) == (6, 6)
    del q6              # not mapped here any more: the next attach reads the header again
    gc.collect()
    fd = os.open(os.path.join(SHM, name), os.O_RDWR)
    try:         # as a version-5 writer made it (section 6.3)
        head = bytearray(os.pread(fd, 0x200, 0))
        struct.pack_into("<HH", head, 8, 5, 5)
        struct.pack_into("<I", head, H.CRC_OFFSET, crc_of(head, 0x200))
        os.pwrite(fd, bytes(head), 0)
    finally:
        os.close(fd)
    q5 = sb.attach(name)
    assert sb.header_of(q5).compat_version == 5
    q5.put(W.array(MIB, 1))
    (seg,) = queue_data_segments(q5)
    assert sb.header_of(seg).lifetime == "persistent"
    a = q5.get(timeout=WAIT)
    assert (a == 1).all()
    assert queue_data_segments(q5) == []         # removed by its consumer at once
    q5.put(W.array(MIB, 2))
    assert queue_data_segments(q5) != [seg] and len(queue_data_segments(q5)) == 1
    assert (q5.get(timeout=WAIT) == 2).all() and (a == 1).all()
    assert queue_data_segments(q5) == []
    sb.unlink(name)


# ---- (f2) how much a producer keeps ------------------------------------------------------

def test_the_pool_keeps_sixteen_segments_and_at_most_128_mib(qname):
    # A producer ahead of its consumer has as many segments in flight as messages: the
    # pool keeps up to 16 of them for reuse, and never more than 128 MiB of data (the
    # newest always), so huge messages do not pin memory that nobody reuses.
    q = sb.Queue(capacity=RING, name=qname())
    sizes = [MIB + 4096 * i for i in range(20)]          # 20 lengths: none is reused
    for i, n in enumerate(sizes):
        q.put(W.array(n, i))
    for i, n in enumerate(sizes):
        got = q.get(timeout=WAIT)
        assert got.nbytes == n and (got == i).all()
        del got
    gc.collect()
    assert len(queue_data_segments(q)) == 16                      # the 4 oldest were left (and removed)
    big = 48 * MIB
    for i in range(3):                                   # 3 x 48 MiB: more than 128 MiB
        q.put(W.array(big + 4096 * i, 7))
        got = q.get(timeout=WAIT)
        assert got.nbytes == big + 4096 * i
        del got
    gc.collect()
    kept = [n for n in queue_data_segments(q) if os.stat(os.path.join(SHM, n)).st_size > big]
    assert len(kept) == 2                                # 96 MiB kept; the first 48 MiB left
    assert len(queue_data_segments(q)) == 2                       # and nothing of the small ones
    q.close()
    gc.collect()
    assert queue_data_segments(q) == []


# ---- (g) close() and the process's end remove pooled names -------------------------------

def test_close_leaves_the_pool_but_keeps_a_ready_message(qname):
    q = sb.Queue(capacity=RING, name=qname())
    q.put(W.array(MIB, 1))
    assert (q.get(timeout=WAIT) == 1).all()
    q.put(W.array(2 * MIB, 2))          # still ready when the handle closes
    assert len(queue_data_segments(q)) == 2
    q.close()
    gc.collect()
    assert len(queue_data_segments(q)) == 1      # the ready message's segment stays for its consumer
    other = sb.attach(q.name)
    got = other.get(timeout=WAIT)
    assert (got == 2).all()
    del got
    gc.collect()
    assert queue_data_segments(q) == []


def test_sharedbridge_close_leaves_the_pool_too(qname):
    # sharedbridge.close(q) gives up the creator's claim: the kept data segments go with it
    q = sb.Queue(capacity=RING, name=qname())
    q.put(W.array(MIB, 1))
    assert (q.get(timeout=WAIT) == 1).all()
    gc.collect()
    assert len(queue_data_segments(q)) == 1      # kept by this handle for reuse
    sb.close(q)
    assert queue_data_segments(q) == []


def test_collecting_the_handle_leaves_its_pool(qname):
    q = sb.Queue(capacity=RING, name=qname())
    other = sb.attach(q.name)
    other.put(W.array(MIB, 1))
    assert (q.get(timeout=WAIT) == 1).all()
    assert len(queue_data_segments(q)) == 1
    del other
    gc.collect()
    assert queue_data_segments(q) == []


@pytest.mark.parametrize("method", METHODS)
def test_process_end_removes_pooled_names(method, qname):
    ctx = multiprocessing.get_context(method)
    q = sb.Queue(capacity=RING, name=qname())
    p = ctx.Process(target=W.produce, args=(q, MIB, 3))
    p.start()
    for i in range(3):
        assert (q.get(timeout=WAIT) == i).all()
    join(p)
    assert p.exitcode == 0
    gc.collect()
    assert queue_data_segments(q) == []


def test_interpreter_exit_removes_pooled_names_and_keeps_ready_ones(qname):
    name = qname()
    q = sb.Queue(capacity=RING, name=name)
    script = textwrap.dedent(f"""
        import numpy as np, sharedbridge as sb
        q = sb.attach({name!r})
        for i in range(3):
            q.put(np.full({MIB // 8}, float(i)))
            assert q.get()[0] == i
        q.put(np.full({2 * MIB // 8}, 9.0))
        assert len(q._pool.names()) == 2
    """)
    r = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True,
                       text=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr
    assert len(queue_data_segments(q)) == 1          # only the ready message's
    got = q.get(timeout=WAIT)
    assert (got == 9).all()
    del got
    gc.collect()
    assert queue_data_segments(q) == []


# ---- (h) a pooled segment whose name was removed or given to another object --------------

@pytest.fixture
def mib2_name():
    """Fresh queue names (prefix sbt_mib2); the segments they make are removed after the test."""
    yield from fresh_names("sbt_mib2", derived="remove")


@pytest.mark.parametrize("replace", [False, True])
def test_pooled_segment_whose_name_is_gone_or_another_object_is_not_reused(replace,
                                                                          mib2_name):
    """11.5 "Reuse" (3): a pooled segment whose name was removed (or now refers to another
    object) is left, never written again; the next message gets a new segment, and a
    stranger under the old name is neither reused nor removed."""
    q = sb.Queue(capacity=RING, name=mib2_name())
    q.put(np.full(MIB // 8, 1, dtype=np.int64))
    a = q.get(timeout=WAIT)
    assert (a == 1).all()
    del a
    gc.collect()
    [old] = queue_data_segments(q)
    os.unlink(os.path.join(SHM, old))
    stranger = None
    if replace:
        stranger = os.open(os.path.join(SHM, old), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.write(stranger, b"not a data segment")
    try:
        q.put(np.full(MIB // 8, 2, dtype=np.int64))
        names = queue_data_segments(q)
        new = [n for n in names if n != old]
        assert len(new) == 1, names
        b = q.get(timeout=WAIT)
        assert (b == 2).all() and len(b) == MIB // 8
        del b
        if replace:
            assert os.pread(stranger, 64, 0) == b"not a data segment"
            assert os.path.exists(os.path.join(SHM, old))
    finally:
        if stranger is not None:
            os.close(stranger)
            os.unlink(os.path.join(SHM, old))
        q.close()
    gc.collect()
