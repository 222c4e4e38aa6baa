"""A pickled sharedbridge object names its segment (docs/api.md, "Pickling and
ownership"). If that name was given to another object between the pickling and the
unpickling, the receiver gets an UnavailableObject carrying a TypeMismatchError that says
so, never the new object reinterpreted as the old one (a RawArray('i') over an event's
words, a Barrier over an array's bytes)."""

import itertools
import os
import pickle

import pytest

import sharedbridge as sb
from conftest import SHM

_n = itertools.count()

MAKE = {
    "RawArray i4": lambda n: sb.RawArray("i", 4, name=n),
    "RawArray d4": lambda n: sb.RawArray("d", 4, name=n),
    "RawArray i5": lambda n: sb.RawArray("i", 5, name=n),
    "Value d": lambda n: sb.Value("d", 1.0, name=n),
    "Lock": lambda n: sb.Lock(name=n),
    "Event": lambda n: sb.Event(name=n),
    "Semaphore": lambda n: sb.Semaphore(2, name=n),
    "Barrier": lambda n: sb.Barrier(2, name=n),
    "Queue": lambda n: sb.Queue(name=n),
    "ndarray f2x2": lambda n: sb.ndarray((2, 2), "f", name=n),
    "ndarray f4": lambda n: sb.ndarray((4,), "f", name=n),
}


def _release(obj):
    sb.close(obj)           # the creator's claim: the name goes


def _pickled_then_replaced(first, then):
    name = f"sbt_pn_{os.getpid()}_{next(_n)}"
    obj = MAKE[first](name)
    data = pickle.dumps(obj)
    _release(obj)                       # its creator: the name goes with it
    assert not os.path.exists(os.path.join(SHM, name))
    return MAKE[then](name), data


@pytest.mark.parametrize("first,then", [
    (a, b) for a in MAKE for b in ("RawArray i4", "RawArray d4", "Event", "Semaphore", "Queue",
                                   "ndarray f4", "Lock") if a != b])
def test_a_name_given_to_another_object_is_a_type_mismatch(first, then):
    other, data = _pickled_then_replaced(first, then)
    try:
        got = pickle.loads(data)
        assert isinstance(got, sb.UnavailableObject)
        assert isinstance(got.error, sb.TypeMismatchError)
        message = str(got.error)
        assert "was pickled" in message and "given to another object" in message
        assert "sharedbridge.attach(name)" in message
        with pytest.raises(sb.TypeMismatchError):
            len(got)
    finally:
        _release(other)


@pytest.mark.parametrize("kind", ["RawArray i4", "Event", "Queue", "ndarray f2x2", "Lock"])
def test_the_same_kind_and_type_made_again_under_the_name_still_attaches(kind):
    # The pickle is a reference by name: an object of the same description made again
    # under it is what the name holds now (sharedbridge.attach would return it too).
    other, data = _pickled_then_replaced(kind, kind)
    try:
        got = pickle.loads(data)
        assert not isinstance(got, sb.UnavailableObject)
        assert sb.segment_of(got).name == sb.segment_of(other).name
    finally:
        _release(other)
