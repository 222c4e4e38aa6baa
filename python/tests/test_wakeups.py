"""Wake-ups (docs/format.md section 10.3, docs/wakeups-design.md): a notifier wakes after its
outermost release of the lock; a waiting operation stays counted in ``waiters`` for its whole
duration, as ``sharedbridge ls`` sees it."""

import multiprocessing
import os
import threading
import time

import sharedbridge as sb
from sharedbridge._objects import sync as S
from sharedbridge._objects.survey import _sync_words

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
    sem.acquire(timeout=2.5)


def _wait_with_timeout(ev):
    ev.wait(2.5)


def _zero_samples(obj, seconds=1.5):
    """How many lock-free reads of ``waiters`` (as ``sharedbridge ls`` reads it) saw 0 over
    *seconds*, starting once a waiter has joined; None if none joined within 10 s."""
    seg = obj._seg
    deadline = time.monotonic() + 10
    while _sync_words(seg)["waiters"] == 0:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.001)
    zeros, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(1000):
            if _sync_words(seg)["waiters"] == 0:
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
    zeros = _zero_samples(ev)
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
