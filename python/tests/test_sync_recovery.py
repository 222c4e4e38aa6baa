"""Dead participants and hostile words (docs/format.md sections 10.2-10.4): a barrier party
that dies inside wait() breaks the barrier at once and reset() works after it; every
barrier wait honours its timeout; units of a semaphore holder that died come back;
immutable words are read once; an event waiter never misses a set()."""

import multiprocessing
import os
import signal
import threading
import time

import pytest

import sharedbridge as sb
from sharedbridge._objects import sync as S
from sync_workers import acquire_and_wait, enter_barrier, hold_units_and_die, toggle_word

MP = multiprocessing.get_context("fork")


def _until(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.005)


def _in_thread(fn, *args):
    """Run fn in a thread; returns (thread, outcome list filled with the result or the
    exception's type)."""
    out = []

    def run():
        try:
            out.append(fn(*args))
        except Exception as e:          # noqa: BLE001 - the test inspects it
            out.append(type(e))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _kill_party_inside_wait(barrier, waiting_before):
    child = MP.Process(target=enter_barrier, args=(barrier, 120))
    child.start()
    # Inside the wait: counted, and recorded in the holder table (section 10.2).
    _until(lambda: barrier._w[S.COUNT] == waiting_before + 1
           and child.pid in barrier._entries()[0::4])
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    return child


def test_two_parties_a_dead_party_breaks_the_barrier_and_reset_works():
    b = sb.Barrier(2)
    _kill_party_inside_wait(b, 0)
    # Before: the survivor passed with the dead party's phantom arrival (returned 1).
    t, out = _in_thread(b.wait, 30)
    t.join(20)
    assert out == [threading.BrokenBarrierError]
    assert b.broken
    b.reset()
    assert not b.broken and b.n_waiting == 0
    t1, out1 = _in_thread(b.wait, 20)
    t2, out2 = _in_thread(b.wait, 20)
    t1.join(20)
    t2.join(20)
    assert sorted(out1 + out2) == [0, 1]


def test_three_parties_the_others_break_at_once_and_reset_works():
    b = sb.Barrier(3)
    t, out = _in_thread(b.wait, 120)        # a survivor already waiting
    _until(lambda: b._w[S.COUNT] == 1)
    _kill_party_inside_wait(b, 1)
    t.join(30)                              # long before its own 120 s timeout
    assert not t.is_alive() and out == [threading.BrokenBarrierError]
    b.reset()
    assert b._w[S.STATE] == S.FILLING and b._w[S.COUNT] == 0
    threads = [_in_thread(b.wait, 20) for _ in range(3)]
    for th, _ in threads:
        th.join(20)
    assert sorted(o[0] for _, o in threads) == [0, 1, 2]


@pytest.mark.parametrize("state,count", [(S.DRAINING, 0), (S.RESETTING, 0),
                                         (S.DRAINING, 1), (S.RESETTING, 1)])
def test_every_barrier_wait_honours_its_timeout_whatever_the_state_word(state, count):
    b = sb.Barrier(2)
    with b._lock:               # a stale or hostile state word
        b._w[S.STATE] = state
        b._w[S.COUNT] = count
    t, out = _in_thread(b.wait, 0.1)
    t.join(20)                  # before: blocked for ever, whatever the timeout
    assert not t.is_alive() and out == [threading.BrokenBarrierError]


def test_a_drain_left_by_a_dead_last_party_is_repaired():
    b = sb.Barrier(1)
    with b._lock:               # count 0 while draining: the last party died between stores
        b._w[S.STATE] = S.DRAINING
    t, out = _in_thread(b.wait, 5)
    t.join(20)
    assert out == [0]


def _toggling(obj, index, values):
    started = MP.Event()
    path = f"/dev/shm/{obj.name}"
    offset = obj._seg.header.data_offset + 4 * index
    peer = MP.Process(target=toggle_word, args=(path, offset, values, started))
    peer.start()
    assert started.wait(20)
    return peer


def _stop(peer):
    os.kill(peer.pid, signal.SIGKILL)
    peer.join(10)


def test_immutable_words_are_read_once_while_a_peer_toggles_them():
    bar = sb.Barrier(3)
    bsem = sb.BoundedSemaphore(2)
    seen = {"parties": set(), "max": set(), "refused": 0}
    for obj, index, values in ((bar, S.PARTIES, (3, 0)), (bsem, S.MAX_VALUE, (2, 0xFFFFFFFF))):
        peer = _toggling(obj, index, values)
        try:
            for _ in range(400):
                try:
                    other = S.sync_from_segment(obj._seg)
                except sb.CorruptSegmentError:
                    seen["refused"] += 1
                    continue
                if isinstance(other, sb.Barrier):
                    seen["parties"].add(other.parties)
                    assert other.n_waiting == 0 and not other.broken
                else:
                    seen["max"].add(other._max)
                    assert other.acquire(timeout=5)
                    other.release()
        finally:
            _stop(peer)
        obj._w[index] = values[0]
    # Before: parties 0 and max_value 0xFFFFFFFF got through validation.
    assert seen["parties"] <= {3} and seen["max"] <= {2}


def test_a_killed_holders_unit_comes_back():
    sem, started = sb.Semaphore(1), MP.Event()
    p = MP.Process(target=hold_units_and_die, args=(sem, started))
    p.start()
    p.join(10)
    assert started.is_set() and p.exitcode == -signal.SIGKILL
    assert sem.get_value() == 0
    assert sem.acquire(timeout=10)          # before: False, the unit was lost for ever
    assert sem.get_value() == 0 and not sem.acquire(timeout=0.1)
    sem.release()


def test_a_waiting_acquire_gets_the_unit_of_a_holder_killed_meanwhile():
    sem, started = sb.BoundedSemaphore(1), MP.Event()
    p = MP.Process(target=acquire_and_wait, args=(sem, started, 120))
    p.start()
    assert started.wait(20)
    t, out = _in_thread(sem.acquire, True, 120)
    _until(lambda: sem._w[S.WAITERS] == 1)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    t.join(30)
    assert out == [True]
    sem.release()
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()                        # reclaiming never exceeds the bound
    assert sem.get_value() == 1


def test_a_release_by_a_non_holder_keeps_the_table_consistent():
    sem, started = sb.BoundedSemaphore(2), MP.Event()
    p = MP.Process(target=acquire_and_wait, args=(sem, started, 120))
    p.start()
    assert started.wait(20)
    sem.release()                 # this process gives the child's unit back for it
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert sem.acquire(timeout=5) and sem.acquire(timeout=5)
    assert not sem.acquire(timeout=0.2)     # nothing left to reclaim: no phantom unit
    sem.release()
    sem.release()
    assert sem.get_value() == 2


def test_units_taken_while_the_table_is_full_are_not_reclaimed(monkeypatch):
    monkeypatch.setattr(S, "SEMAPHORE_SLOTS", 1)
    sem, started = sb.Semaphore(2), MP.Event()
    assert sem.acquire()                     # this process holds the only entry
    p = MP.Process(target=hold_units_and_die, args=(sem, started))
    p.start()
    p.join(10)
    assert started.is_set()
    assert not sem.acquire(timeout=0.2)      # the child's unit was not recorded
    sem.release()
    assert sem.get_value() == 1


def test_reclaim_false_keeps_a_dead_consumers_units_taken():
    sem, started = sb.Semaphore(1, reclaim=False), MP.Event()
    assert sb.header_of(sem).element_count == 16
    p = MP.Process(target=hold_units_and_die, args=(sem, started))
    p.start()
    p.join(10)
    assert not sem.acquire(timeout=0.2)


def test_an_event_set_and_cleared_at_once_ends_the_wait():
    e = sb.Event()
    t, out = _in_thread(e.wait, 60)
    _until(lambda: e._w[S.WAITERS] == 1)
    w = e._w
    with e._lock:       # a peer's set() and clear() with no unlock between them (10.3)
        w[S.FLAG] = 1
        w[4] = w[4] + 1                 # sets
        e._notify(S.VALUE_MAX)
        w[S.FLAG] = 0
    t.join(20)                   # before: it waited for its whole timeout
    assert not t.is_alive() and out == [False]
