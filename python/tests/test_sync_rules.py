"""Rules of docs/format.md section 10 settled in revision 7.1: which segments may lend their
lock to a Condition (section 10.1). The cross-language cases of section 10's rules are in
tests/cross (SyncRulesTests.cs)."""

import itertools
import os

import pytest

import sharedbridge as sb
from sharedbridge.errors import CorruptSegmentError
from sharedbridge._objects.shared_lock import lock_from_segment

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
        assert not os.path.exists(f"/dev/shm/{name}")
    finally:
        obj.close()


@pytest.mark.parametrize("kind", sorted(OBJECTS))
def test_a_condition_whose_lock_segment_is_an_event_semaphore_or_barrier_is_corrupt(kind):
    lock_name = _name("lock")
    lock = sb.Lock(lock_name)
    cond = sb.Condition(lock, name=_name("cond"))
    lock.close()                            # the creator removes the lock's name ...
    assert not os.path.exists(f"/dev/shm/{lock_name}")
    obj = OBJECTS[kind](lock_name)          # ... which now names an event, semaphore or barrier
    try:
        with pytest.raises(CorruptSegmentError, match="section 10.1"):
            sb.attach(cond.name)
    finally:
        obj.close()
        cond.close()
