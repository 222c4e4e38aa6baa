"""Event, Condition, Semaphore, BoundedSemaphore, Barrier (docs/format.md section 10):
parity with real multiprocessing, fork/spawn/forkserver, threads, interrupts, crashes."""

import multiprocessing
import os
import pickle
import signal
import struct
import threading
import time
import warnings

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from sharedbridge._objects import sync as S
from sync_workers import (barrier_rounds, die_holding_internal_lock, hold_units_and_die,
                          produce, take_units, wait_forever_on, wait_then_report)

METHODS = ["fork", "spawn", "forkserver"]
MP = multiprocessing.get_context("fork")


def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as e:
        return (type(e).__name__, str(e))


def _scenario(lib):
    """The same calls on multiprocessing and on sharedbridge: results and exceptions."""
    out = []
    e = lib.Event()
    out += [e.is_set(), e.wait(0.01)]
    e.set()
    out += [e.is_set(), e.wait(0.01), e.wait()]
    e.clear()
    out += [e.is_set(), e.wait(0)]
    s = lib.Semaphore(2)
    out += [s.acquire(), s.acquire(False), s.acquire(False), s.acquire(timeout=0.01)]
    s.release()
    s.release()
    s.release()
    out += [s.get_value(), _outcome(lambda: lib.Semaphore(-1))[0]]
    b = lib.BoundedSemaphore(1)
    out += [b.acquire(), _outcome(b.release), _outcome(b.release)]
    with b:
        out.append(b.get_value())
    c = lib.Condition()
    out += [_outcome(lambda: c.wait(0.01))[0], _outcome(c.notify)[0]]
    with c:
        out += [c.wait(0.01), c.wait_for(lambda: 7, 0.01), c.wait_for(lambda: 0, 0.01)]
        c.notify()
        c.notify_all()
    bar = lib.Barrier(1)
    out += [bar.wait(), bar.parties, bar.n_waiting, bar.broken]
    bar2 = lib.Barrier(2, timeout=0.05)
    out.append(_outcome(bar2.wait)[0])
    out.append(bar2.broken)
    bar2.reset()
    out.append(bar2.broken)
    bar2.abort()
    out += [bar2.broken, _outcome(lambda: bar2.wait(0.01))[0]]
    return out


def test_same_results_and_exceptions_as_multiprocessing():
    assert _scenario(sb) == _scenario(MP)


def _wake_count(lib, n_waiters, notify, counts):
    """counts[lib] = how many of *n_waiters* waiting threads *notify* wakes; the others
    time out after 1 s."""
    c = lib.Condition()
    waiting, woken = [], []

    def waiter():
        with c:
            waiting.append(1)       # under the lock: released only by wait() below
            if c.wait(1.0):
                woken.append(1)

    threads = [threading.Thread(target=waiter) for _ in range(n_waiters)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(waiting) < n_waiters and time.monotonic() < deadline:
        time.sleep(0.005)
    with c:                         # every waiter is inside wait() once we hold the lock
        notify(c)
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    counts[lib] = len(woken)


@pytest.mark.parametrize("notify,expected", [(lambda c: c.notify(), 1),
                                             (lambda c: c.notify(2), 2),
                                             (lambda c: c.notify_all(), 3)])
def test_notify_wakes_as_many_waiters_as_multiprocessing(notify, expected):
    # Both libraries at once: the waiters that are not woken wait out their timeout
    # side by side.
    counts = {}
    runs = [threading.Thread(target=_wake_count, args=(lib, 3, notify, counts))
            for lib in (sb, MP)]
    for t in runs:
        t.start()
    for t in runs:
        t.join(60)
    assert counts == {sb: expected, MP: expected}


def test_barrier_indexes_and_action_like_multiprocessing():
    def run(lib):
        calls = []
        b = lib.Barrier(3, action=lambda: calls.append(1))
        got = []
        ts = [threading.Thread(target=lambda: got.append(b.wait(5))) for _ in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return sorted(got), len(calls)

    assert run(sb) == run(MP) == ([0, 0, 1, 1, 2, 2], 2)


def test_semaphore_overflow_and_wait_for_timeout():
    s = sb.Semaphore(S.VALUE_MAX)
    with pytest.raises(OverflowError):
        s.release()
    with pytest.raises(ValueError):
        sb.Barrier(0)


def test_segments_record_kind_version_and_lock():
    arr = sb.Array("i", 3)
    objs = [sb.Event(), sb.Semaphore(3), sb.BoundedSemaphore(2), sb.Condition(),
            sb.Condition(arr.get_lock()), sb.Barrier(4)]
    got = [(h.kind, h.version, h.compat_version, h.typecode, h.element_count, h.lock_kind,
            h.lock_type, h.lock_name) for h in map(sb.header_of, objs)]
    # Version 4 (the sleepers word); semaphores and barriers with a holder table
    # (section 10.1).
    assert got == [(4, 4, 4, "I", 16, 1, 2, ""), (5, 4, 4, "I", 16 + 4 * 64, 1, 2, ""),
                   (5, 4, 4, "I", 16 + 4 * 64, 1, 2, ""), (6, 4, 4, "I", 16, 1, 1, ""),
                   (6, 4, 4, "I", 16, 2, 0, arr.name), (7, 4, 4, "I", 16 + 4 * 4, 1, 2, "")]


def test_attach_and_pickle_return_the_right_class(seg_name):
    arr = sb.Array("i", 2)
    objs = [sb.Event(name=seg_name), sb.Semaphore(3), sb.BoundedSemaphore(2), sb.Condition(),
            sb.Condition(arr.get_lock()), sb.Barrier(4, timeout=3)]
    for obj in objs:
        for other in (sb.attach(obj.name), pickle.loads(pickle.dumps(obj))):
            assert type(other) is type(obj) and other.name == obj.name
    assert pickle.loads(pickle.dumps(objs[-1]))._timeout == 3
    assert sb.attach(objs[4].name).get_lock() is arr.get_lock()
    with pytest.raises(sb.TypeMismatchError):
        sb.attach(seg_name, "i")
    with pytest.raises(sb.SegmentExistsError):
        sb.Event(name=seg_name)


def test_condition_needs_a_sharedbridge_lock():
    with pytest.raises(TypeError, match="sharedbridge Lock or RLock"):
        sb.Condition(threading.Lock())


def test_condition_on_an_rlock_held_twice_releases_it_while_waiting():
    lock = sb.RLock()
    c = sb.Condition(lock)
    got = []

    def other():
        with lock:              # only possible if wait released both levels
            got.append("in")
            c.notify()

    with lock:
        with c:
            t = threading.Thread(target=other)
            t.start()
            assert c.wait(5)
            assert lock._depth == 2
    t.join()
    assert got == ["in"]


def _header_with(kind=4, version=2, compat=2, lock_kind=1, lock_type=2):
    ev = sb.Event()
    raw = bytearray(open(f"/dev/shm/{ev.name}", "rb").read(512))
    struct.pack_into("<HH", raw, 0x08, version, compat)
    raw[0x10] = kind
    raw[0x30], raw[0x38] = lock_kind, lock_type
    struct.pack_into("<I", raw, 0x184, H.checksum(raw, 512))
    return raw


def test_reader_rules_for_the_new_kinds():
    H.decode(_header_with(), b"", 576, 1)
    with pytest.raises(sb.UnsupportedVersionError, match="unknown segment kind 10: written by "
                       "a newer SharedBridge, upgrade"):
        H.decode(_header_with(kind=10), b"", 576, 1)
    for bad in (dict(version=1, compat=1), dict(lock_type=1), dict(kind=4, lock_kind=2,
                                                                   lock_type=0)):
        with pytest.raises(sb.CorruptSegmentError) as e:
            H.decode(_header_with(**bad), b"", 576, 1)
        assert type(e.value) is sb.CorruptSegmentError


@pytest.mark.parametrize("method", METHODS)
def test_event_and_semaphore_across_processes(method):
    ctx = multiprocessing.get_context(method)
    go, done = sb.Event(), sb.Event()
    p = ctx.Process(target=wait_then_report, args=(go, done, 20))
    p.start()
    time.sleep(0.05)
    go.set()
    assert done.wait(20)
    p.join(20)
    sem, taken = sb.Semaphore(0), sb.Event()
    q = ctx.Process(target=take_units, args=(sem, 3, taken))
    q.start()
    for _ in range(3):
        sem.release()
    assert taken.wait(20)
    q.join(20)
    assert (p.exitcode, q.exitcode, sem.get_value()) == (0, 0, 0)


def test_barrier_rounds_with_processes_and_threads():
    ctx = multiprocessing.get_context("fork")
    b = sb.Barrier(3)
    arr = sb.Array("i", 3)
    procs = [ctx.Process(target=barrier_rounds, args=(b, 20, arr)) for _ in range(2)]
    for p in procs:
        p.start()
    t = threading.Thread(target=barrier_rounds, args=(b, 20, arr))
    t.start()
    t.join(30)
    for p in procs:
        p.join(30)
    assert arr[:] == [20, 20, 20] and not b.broken


def test_bounded_buffer_passes_every_item_exactly_once():
    ctx = multiprocessing.get_context("forkserver")
    buf = sb.Array("q", 2 + 4)
    cond = sb.Condition(buf.get_lock())
    n = 300
    p = ctx.Process(target=produce, args=(cond, buf, list(range(n))))
    p.start()
    raw, got = buf.get_obj(), []
    while len(got) < n:
        with cond:
            assert cond.wait_for(lambda: raw[1] > raw[0], 20)
            got.append(raw[2 + raw[0] % 4])
            raw[0] += 1
            cond.notify_all()
    p.join(20)
    assert got == list(range(n)) and p.exitcode == 0


def test_interrupted_wait_leaves_the_object_consistent():
    e = sb.Event()

    def handler(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            e.wait()
        assert time.monotonic() - t0 < 1.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert (e._w[S.WAITERS], e._w[S.SIGNALS], e._w[S.SLEEPERS], e._lock.state) == (
        0, 0, 0, "free")
    threading.Timer(0.05, e.set).start()
    assert e.wait(5)


def test_a_killed_waiter_blocks_nobody():
    ctx = multiprocessing.get_context("fork")
    c = sb.Condition()
    p = ctx.Process(target=wait_forever_on, args=(c,))
    p.start()
    deadline = time.monotonic() + 10
    while c._w[S.WAITERS] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    p.kill()
    p.join()
    got = []

    def live():
        with c:
            got.append(c.wait(5))

    t = threading.Thread(target=live)
    t.start()
    while c._w[S.WAITERS] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    with c:
        c.notify()        # waiters counts the dead one too: the live one still gets it
    t.join(10)
    assert got == [True]


def test_a_notifier_that_dies_before_the_wake_up_loses_nothing():
    # The notifier's update (seq + 1, one signal) is made without the futex wake: the
    # waiter must see it at its next slice.
    e = sb.Event()
    got = []
    t = threading.Thread(target=lambda: got.append(e.wait(5)))
    t.start()
    time.sleep(0.1)
    with e._lock:
        e._w[S.FLAG] = 1
        e._w[S.SIGNALS] += 1
        e._w[S.SEQ] += 1          # no futex.wake: as if the notifier died here
    t0 = time.monotonic()
    t.join(5)
    assert got == [True] and time.monotonic() - t0 < 1.0


def test_a_killed_semaphore_holder_gives_its_unit_back_and_a_dead_lock_holder_is_recovered():
    ctx = multiprocessing.get_context("fork")
    sem, started = sb.Semaphore(1), sb.Event()
    p = ctx.Process(target=hold_units_and_die, args=(sem, started))
    p.start()
    p.join(10)
    assert started.is_set() and p.exitcode == -signal.SIGKILL
    assert sem.get_value() == 0 and sem.acquire(timeout=5)     # reclaimed (section 10.3)
    sem.release()
    q = ctx.Process(target=die_holding_internal_lock, args=(sem,))
    q.start()
    q.join(10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sem.acquire(timeout=5)
    assert any(issubclass(w.category, sb.LockRecoveredWarning) for w in caught)
    assert sem.get_value() == 0


def test_corrupt_immutable_words_are_refused_on_attach():
    bsem, sem, bar = sb.BoundedSemaphore(2), sb.Semaphore(2), sb.Barrier(2)
    for obj, index, value in ((bsem, S.BOUNDED, 2), (sem, S.MAX_VALUE, 5), (bar, S.PARTIES, 0)):
        saved = obj._w[index]
        obj._w[index] = value
        try:
            with pytest.raises(sb.CorruptSegmentError, match="corrupt"):
                S.sync_from_segment(obj._seg)
        finally:
            obj._w[index] = saved
    ev = sb.Event()
    ev._w[S.FLAG] = 7           # a mutable word out of range: reported, nothing changed
    with pytest.raises(sb.CorruptSegmentError, match="flag 7"):
        ev.set()
    assert ev._w[S.FLAG] == 7 and ev._lock.state == "free"


def test_synchronization_objects_take_a_lifetime():
    kept = sb.Semaphore(1, lifetime="persistent")
    name = kept.name
    try:
        assert sb.header_of(kept).lifetime == "persistent"
        kept.close()
        assert os.path.exists(f"/dev/shm/{name}")
    finally:
        sb.unlink(name)
    ev = sb.Event(lifetime="last-closer")
    name = ev.name
    assert sb.header_of(ev).lifetime == "last-closer"
    assert sb.header_of(ev).compat_version == 4
    ev.close()                                     # this process was the only holder
    assert not os.path.exists(f"/dev/shm/{name}")
    with pytest.raises(ValueError, match="contradictory"):
        sb.Event(keep=True, lifetime="creator")
