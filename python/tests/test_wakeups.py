"""Wake-ups (docs/format.md section 10.3, docs/wakeups-design.md): a notifier wakes after its
outermost release of the lock; a waiting operation stays counted in ``waiters`` for its whole
duration, as ``sharedbridge ls`` sees it."""

import ctypes
import multiprocessing
import os
import struct
import threading
import time

import pytest

import sharedbridge as sb
from sharedbridge._objects import sync as S
from sharedbridge._objects.survey import _sync_words
from sharedbridge._platform import wake

from conftest import run_python

FORK = multiprocessing.get_context("fork")
PREFIX = "sbPW"


def _name(tag):
    return f"{PREFIX}_{os.getpid()}_{tag}_{time.monotonic_ns()}"


def _hold_one_unit(sem, held, done):
    if sem.acquire(timeout=10):
        held.set()
        done.wait(30)
        sem.release()


def _acquire_with_timeout(sem):
    sem.acquire(timeout=1.2)     # longer than the sampling, which starts once it joined


def _wait_with_timeout(ev):
    ev.wait(2.5)


def _zero_samples(obj, seconds=0.6):
    """How many lock-free reads of ``waiters`` (the word ``sharedbridge ls`` reads,
    survey._sync_words) saw 0 over *seconds*, starting once a waiter has joined; None if
    none joined within 10 s."""
    seg = obj._seg
    read, mm, offset = struct.unpack_from, seg.mm, seg.header.data_offset + 4
    deadline = time.monotonic() + 10
    while _sync_words(seg)["waiters"] == 0:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.001)
    zeros, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(1000):
            if read("<I", mm, offset)[0] == 0:
                zeros += 1
    return zeros


def test_a_semaphore_waiter_is_counted_for_its_whole_wait():
    sem = sb.Semaphore(1, name=_name("sem"))
    held, done = sb.Event(name=_name("held")), sb.Event(name=_name("done"))
    holder = FORK.Process(target=_hold_one_unit, args=(sem, held, done))
    holder.start()
    try:
        assert held.wait(10)
        waiter = FORK.Process(target=_acquire_with_timeout, args=(sem,))
        waiter.start()
        zeros = _zero_samples(sem)
        waiter.join(10)
    finally:
        done.set()
        holder.join(10)
    assert (zeros, waiter.exitcode, holder.exitcode) == (0, 0, 0)
    assert sem._w[S.WAITERS] == 0


def test_an_event_waiter_is_counted_for_its_whole_wait():
    ev = sb.Event(name=_name("ev"))
    waiter = FORK.Process(target=_wait_with_timeout, args=(ev,))
    waiter.start()
    zeros = _zero_samples(ev, 1.5)     # its window is short: ~1.5 s to meet it on the old code
    waiter.join(10)
    assert (zeros, waiter.exitcode, ev._w[S.WAITERS]) == (0, 0, 0)


def _futex_address(tid):
    """The address a thread of this process is blocked on in futex(), or None when it is
    running or in another system call (/proc/PID/task/TID/syscall: number, then args)."""
    with open(f"/proc/self/task/{tid}/syscall") as f:
        fields = f.read().split()
    if len(fields) < 2 or fields[0] not in ("202", "98"):      # futex: x86_64, aarch64
        return None
    return int(fields[1], 16)


def test_a_condition_notified_under_an_rlock_held_twice_wakes_after_the_outer_release():
    lock = sb.RLock(name=_name("rlock"))
    c = sb.Condition(lock, name=_name("cond"))
    tids, got = [], []

    def waiter():
        tids.append(threading.get_native_id())
        with c:
            got.append(c.wait(10))

    t = threading.Thread(target=waiter)
    t.start()
    seq = c._seq_address
    deadline = time.monotonic() + 10
    while not tids and time.monotonic() < deadline:
        time.sleep(0.001)
    # Notify right as the waiter starts one of its 50 ms sleeps on seq (a fresh slice):
    # a wake-up issued at notify() moves it at once from seq to the mutex.
    while _futex_address(tids[0]) == seq and time.monotonic() < deadline:
        pass
    while _futex_address(tids[0]) != seq and time.monotonic() < deadline:
        pass
    seen = set()
    with lock:
        with lock:
            c.notify()
        end = time.monotonic() + 0.02
        while time.monotonic() < end:
            seen.add(_futex_address(tids[0]))
    t.join(10)
    assert got == [True]
    assert seen == {seq}, "the waiter left its sleep on seq before the outer release"


# ---- spinning (docs/wakeups-design.md section 5) -------------------------------------

_IDLE_WAIT = """
import os, time, sharedbridge as sb
ev = sb.Event()
t0, wall0 = os.times(), time.monotonic()
got = ev.wait(1.0)
t1, wall1 = os.times(), time.monotonic()
cpu = (t1.user - t0.user) + (t1.system - t0.system)
print(got, cpu / (wall1 - wall0), wall1 - wall0 >= 1.0)
"""


def _idle_wait(monkeypatch, spin_us):
    if spin_us is None:
        monkeypatch.delenv("SHAREDBRIDGE_SPIN_US", raising=False)
    else:
        monkeypatch.setenv("SHAREDBRIDGE_SPIN_US", spin_us)
    got, share, full = run_python(_IDLE_WAIT).stdout.split()
    return got, float(share), full


def test_a_waiter_nobody_wakes_uses_little_cpu_with_spinning_off(monkeypatch):
    got, share, full = _idle_wait(monkeypatch, "0")
    assert (got, full) == ("False", "True") and share < 0.3


def test_a_waiter_nobody_wakes_returns_at_its_timeout_with_the_default_spin(monkeypatch):
    got, share, full = _idle_wait(monkeypatch, None)
    assert (got, full) == ("False", "True") and share < 0.3


def test_set_spin_budget_takes_whole_microseconds_up_to_one_millisecond():
    saved = sb.get_spin_budget()
    try:
        for us in (0, 1, 1000, saved):
            sb.set_spin_budget(us)
            assert sb.get_spin_budget() == us
        for bad in (-1, 1001):
            with pytest.raises(ValueError, match="0 to 1000 microseconds"):
                sb.set_spin_budget(bad)
        with pytest.raises(TypeError, match="int number of microseconds"):
            sb.set_spin_budget(0.5)
        assert sb.get_spin_budget() == saved
    finally:
        sb.set_spin_budget(saved)


_READ_BUDGET = """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import sharedbridge as sb
print(sb.get_spin_budget(), [str(w.category.__name__) for w in caught])
"""


@pytest.mark.parametrize("value, budget, warned", [
    (None, "200", "[]"), ("0", "0", "[]"), ("50", "50", "[]"), ("5000", "1000", "[]"),
    ("-3", "0", "[]"), ("fast", "200", "['RuntimeWarning']"), ("1.5", "200", "['RuntimeWarning']")])
def test_the_spin_budget_is_read_from_the_environment(monkeypatch, value, budget, warned):
    if value is None:
        monkeypatch.delenv("SHAREDBRIDGE_SPIN_US", raising=False)
    else:
        monkeypatch.setenv("SHAREDBRIDGE_SPIN_US", value)
    out = run_python(_READ_BUDGET).stdout.strip()
    assert out == f"{budget} {warned}"


@pytest.mark.skipif(wake.usable_cpus() < 2, reason="no spinning where one CPU is usable")
def test_the_spin_budget_of_an_object_adapts_to_its_wake_ups():
    saved = sb.get_spin_budget()
    words = (ctypes.c_uint32 * 1)()
    address = ctypes.addressof(words)
    try:
        sb.set_spin_budget(8)
        spinner = wake.Spinner()
        for _ in range(wake.FAILS_OFF):     # nobody changes the word: the full budget each time
            assert spinner.budget() == 8000
            assert not spinner.spin(words, 0, address, 0, 8000)
        for interval in (16, 32, 64):   # then off for 16 waits, one retry, off for 32, ...
            tries = [spinner.budget() for _ in range(interval + 1)]
            assert tries == [0] * interval + [8000]
            assert not spinner.spin(words, 0, address, 0, tries[-1])
        assert [spinner.budget() for _ in range(129)] == [0] * 128 + [8000]
        assert spinner.spin(words, 0, address, 1, 8000)      # changed: a success resets
        for _ in range(2 * wake.FAILS_OFF):  # misses between successes never turn it off
            assert spinner.budget() == 8000
            assert not spinner.spin(words, 0, address, 0, 8000)
            assert spinner.budget() == 8000
            assert spinner.spin(words, 0, address, 1, 8000)
        sb.set_spin_budget(0)
        assert spinner.budget() == 0
    finally:
        sb.set_spin_budget(saved)
