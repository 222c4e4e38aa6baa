"""Rules of docs/format.md section 10 settled in revision 7.1: which segments may lend their
lock to a Condition (section 10.1), a semaphore unit found after the deadline and an event
wait ended by set() + clear() (10.3), a waiter that finds a corrupt word (10.2). The
cross-language cases of section 10's rules are in tests/cross (SyncRulesTests.cs);
scripts/test-python.sh runs this file on both wait paths (compiled and ctypes)."""

import itertools
import os
import threading
import time

import pytest

import sharedbridge as sb
from sharedbridge.errors import CorruptSegmentError
from sharedbridge._objects import sync as S
from sharedbridge._objects.shared_lock import lock_from_segment

from conftest import SHM

_n = itertools.count()


def _name(tag):
    return f"sbs23_{os.getpid()}_{next(_n)}_{tag}"


OBJECTS = {
    "event": lambda name: sb.Event(name=name),
    "semaphore": lambda name: sb.Semaphore(1, name=name),
    "barrier": lambda name: sb.Barrier(2, name=name),
}


@pytest.mark.parametrize("kind", sorted(OBJECTS))
def test_a_condition_cannot_be_created_on_the_internal_lock_of_a_sync_object(kind):
    obj = OBJECTS[kind](_name(kind))
    try:
        name = _name("cond")
        with pytest.raises(ValueError, match="section 10.1"):
            sb.Condition(lock_from_segment(obj._seg), name=name)
        assert not os.path.exists(os.path.join(SHM, name))
    finally:
        obj.close()


@pytest.mark.parametrize("kind", sorted(OBJECTS))
def test_a_condition_whose_lock_segment_is_an_event_semaphore_or_barrier_is_corrupt(kind):
    lock_name = _name("lock")
    lock = sb.Lock(lock_name)
    cond = sb.Condition(lock, name=_name("cond"))
    lock.close()                            # the creator removes the lock's name ...
    assert not os.path.exists(os.path.join(SHM, lock_name))
    obj = OBJECTS[kind](lock_name)          # ... which now names an event, semaphore or barrier
    try:
        with pytest.raises(CorruptSegmentError, match="section 10.1"):
            sb.attach(cond.name)
    finally:
        obj.close()
        cond.close()


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(_outcome(fn)), daemon=True)
    t.start()
    return t, out


def _outcome(fn):
    try:
        return fn()
    except Exception as e:      # the test asserts on it
        return e


def _until_joined(obj, n=1):
    deadline = time.monotonic() + 10
    while obj._w[S.WAITERS] != n:
        assert time.monotonic() < deadline, "the waiter never joined"
        time.sleep(0.002)


ALL_WITH_AN_INTERNAL_LOCK = dict(OBJECTS, queue=lambda name: sb.Queue(name=name))


@pytest.mark.parametrize("kind", sorted(ALL_WITH_AN_INTERNAL_LOCK))
def test_a_lock_opened_by_the_name_of_another_kind_is_a_type_mismatch(kind):
    # A Lock/RLock is opened by name when it is unpickled: the internal lock of an event, a
    # semaphore, a barrier or a queue is no Lock (section 10.1), as .NET's SharedLock.Open.
    from sharedbridge._objects.shared_lock import _attach_lock
    obj = ALL_WITH_AN_INTERNAL_LOCK[kind](_name(kind))
    try:
        got = _attach_lock(obj.name)
        assert isinstance(got, sb.UnavailableObject)
        assert isinstance(got.error, sb.TypeMismatchError)
        message = str(got.error)
        assert f"{kind} segment" in message and "not a lock" in message
        assert "sharedbridge.attach" in message and "section 10.1" in message
    finally:
        obj.close()


def test_the_lock_of_a_condition_or_an_array_still_unpickles():
    import pickle
    cond = sb.Condition(name=_name("cond"))
    arr = sb.Array("i", 2, name=_name("arr"))
    try:
        for lock in (cond.get_lock(), arr.get_lock()):
            back = pickle.loads(pickle.dumps(lock))
            assert not isinstance(back, sb.UnavailableObject)
            with back:
                pass
    finally:
        cond.close()
        arr.close()


def test_a_semaphore_unit_that_comes_after_the_deadline_is_taken():
    """Section 10.3: value is looked at again after a timed-out wait. This thread holds the
    semaphore's mutex across the waiter's deadline, then adds the unit."""
    sem = sb.BoundedSemaphore(1, name=_name("sem"))
    try:
        assert sem.acquire()
        t, out = _in_thread(lambda: sem.acquire(timeout=0.2))
        _until_joined(sem)
        with sem._lock:
            time.sleep(0.4)                 # past the waiter's deadline
            sem._w[S.VALUE] = 1
        t.join(10)
        assert out == [True]
    finally:
        sem.close()


def test_an_event_wait_ended_by_a_set_and_a_clear_returns_false():
    """Section 10.3: the set() ends the wait, which returns the flag it finds (the two stores in
    one critical section: the clear() took the mutex first)."""
    ev = sb.Event(name=_name("ev"))
    try:
        t, out = _in_thread(lambda: ev.wait())
        _until_joined(ev)
        with ev._lock:
            ev._w[S.SETS] = (ev._w[S.SETS] + 1) & 0xFFFFFFFF
            ev._notify(S.VALUE_MAX)
        t.join(10)
        assert out == [False]
    finally:
        ev.close()


def test_a_waiter_that_finds_a_corrupt_value_leaves_then_reports_it():
    """Section 10.2: a value above this opener's copy of max_value written during a wait: the
    joined waiter leaves (waiters back to 0), then raises CorruptSegmentError."""
    sem = sb.BoundedSemaphore(2, name=_name("sem"))
    try:
        assert sem.acquire() and sem.acquire()
        t, out = _in_thread(lambda: sem.acquire(timeout=30))
        _until_joined(sem)
        with sem._lock:
            sem._w[S.VALUE] = 7
            sem._notify(1)
        t.join(10)
        assert isinstance(out[0], CorruptSegmentError), out
        assert sem._w[S.WAITERS] == 0
        with sem._lock:
            sem._w[S.VALUE] = 0
    finally:
        sem.close()
