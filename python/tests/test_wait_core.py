"""The wait/notify path of the waiting objects, compiled (_fastlock.c, WaitCore) or ctypes
(sync.py's twin), chosen with the lock's (docs/wakeups-design.md section 4): an interrupted
wait leaves the words as before it, both paths wake each other, and the holder table's
entry of this process (the hint path in C) stays this process's, also after a fork.
scripts/test-python.sh runs this file on both paths (SHAREDBRIDGE_NO_ACCEL=1)."""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import sharedbridge as sb
from sharedbridge._objects import sync as S
from sharedbridge._platform import lock_core

from conftest import PYTHON_DIR, child_env

FORK = multiprocessing.get_context("fork")
PREFIX = "sbPF"


def _name(tag):
    return f"{PREFIX}_{os.getpid()}_{tag}_{time.monotonic_ns()}"


def _words(obj):
    return obj._w[S.WAITERS], obj._w[S.SIGNALS], obj._w[S.SLEEPERS]


@pytest.fixture(params=["0", "default"], ids=["sleep-at-once", "default-spin"])
def spin(request):
    saved = sb.get_spin_budget()
    if request.param == "0":
        sb.set_spin_budget(0)       # registers in step 1 of its wait (section 10.3)
    yield
    sb.set_spin_budget(saved)


def _interrupted(wait):
    """Run *wait* (a blocking call with a timeout of 30 s) with a SIGALRM whose handler
    raises KeyboardInterrupt after 0.1 s, as Ctrl-C does: the interrupt ends the wait,
    long before its timeout."""
    def handler(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            wait()
        assert time.monotonic() - start < 20, "the wait ran to its timeout: not interrupted"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _a_waiter_died_spinning(obj):
    """The words a waiter leaves when it dies while spinning (section 10.4): joined, not
    registered. With it, leaving cannot hide a registration the interrupted wait kept
    (leave clamps sleepers to waiters)."""
    with obj._lock:
        obj._w[S.WAITERS] += 1
    return (1, 0, 0)


def test_an_interrupted_event_wait_leaves_the_words_as_before(spin):
    ev = sb.Event(name=_name("ev"))
    try:
        before = _a_waiter_died_spinning(ev)
        _interrupted(lambda: ev.wait(30))
        assert (_words(ev), ev._lock.state) == (before, "free")
        threading.Timer(0.05, ev.set).start()
        assert ev.wait(10)
    finally:
        ev.close()


def test_an_interrupted_semaphore_acquire_leaves_the_words_and_the_value_as_before(spin):
    sem = sb.Semaphore(0, name=_name("sem"))
    try:
        before = _a_waiter_died_spinning(sem)
        _interrupted(lambda: sem.acquire(timeout=30))
        assert (_words(sem), sem.get_value(), sem._lock.state) == (before, 0, "free")
        threading.Timer(0.05, sem.release).start()
        assert sem.acquire(timeout=10)
    finally:
        sem.close()


def test_an_interrupted_condition_wait_holds_the_lock_again_to_its_depth(spin):
    cond = sb.Condition(name=_name("cond"))
    try:
        before = _a_waiter_died_spinning(cond)
        with cond:
            with cond:          # a recursive lock held twice: released whole, taken back
                _interrupted(lambda: cond.wait(30))
                assert (cond._lock._held_by_me(), cond._lock._depth) == (True, 2)
                assert _words(cond) == before
        assert cond._lock.state == "free"

        def notify():
            with cond:
                cond.notify()

        with cond:
            threading.Timer(0.05, notify).start()
            assert cond.wait(10)
    finally:
        cond.close()


def test_an_interrupted_barrier_wait_leaves_the_round_as_before(spin):
    b = sb.Barrier(2, name=_name("bar"))
    try:
        before = _a_waiter_died_spinning(b)
        _interrupted(lambda: b.wait(30))
        assert (_words(b), b.n_waiting, b.broken, b._lock.state) == (before, 0, False, "free")
        t = threading.Thread(target=b.wait, args=(10,))
        t.start()
        assert b.wait(10) in (0, 1)
        t.join(10)
    finally:
        b.close()


def test_the_waiting_objects_use_the_path_of_the_lock():
    ev = sb.Event(name=_name("ev"))
    try:
        assert S.WAIT_BACKEND == sb.lock_backend()
        compiled = lock_core.accel is not None and isinstance(ev, lock_core.accel.WaitCore)
        assert compiled == (sb.lock_backend() == "c")
    finally:
        ev.close()


_OTHER_PATH = """
import sys, sharedbridge as sb
ping, pong, s1, s2, cond, val = (sb.attach(n) for n in sys.argv[2:8])
print(sb.lock_backend(), flush=True)
for i in range(int(sys.argv[1])):
    assert ping.wait(10)
    ping.clear()
    pong.set()
    assert s1.acquire(timeout=10)
    s2.release()
    with cond:
        assert cond.wait_for(lambda: val.value == 2 * i + 1, 10)
        val.value += 1
        cond.notify()
for obj in (ping, pong, s1, s2, cond, val):
    obj.close()
"""


def test_the_compiled_and_the_ctypes_paths_wake_each_other():
    if lock_core.accel is None and os.environ.get("SHAREDBRIDGE_NO_ACCEL", "") in ("", "0"):
        pytest.skip("the compiled path is not built here")
    rounds = 200
    objs = [sb.Event(name=_name("ping")), sb.Event(name=_name("pong")),
            sb.Semaphore(0, name=_name("s1")), sb.Semaphore(0, name=_name("s2")),
            sb.Condition(name=_name("cond")), sb.Value("i", 0, name=_name("val"))]
    ping, pong, s1, s2, cond, val = objs
    env = child_env()
    if sb.lock_backend() == "c":
        env["SHAREDBRIDGE_NO_ACCEL"] = "1"
    else:
        env.pop("SHAREDBRIDGE_NO_ACCEL", None)
    child = subprocess.Popen([sys.executable, "-c", _OTHER_PATH, str(rounds)]
                             + [o.name for o in objs], env=env, cwd=PYTHON_DIR,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        other = child.stdout.readline().strip()
        assert {other, sb.lock_backend()} == {"c", "ctypes"}, child.stderr.read()
        for i in range(rounds):
            ping.set()
            assert pong.wait(10)
            pong.clear()
            s1.release()
            assert s2.acquire(timeout=10)
            with cond:
                val.value += 1
                cond.notify()
                assert cond.wait_for(lambda: val.value == 2 * i + 2, 10)
        assert child.wait(30) == 0, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
        for o in objs:
            o.close()


def _acquire_and_exit(sem, got):
    got.value = sem.acquire(timeout=10)
    os._exit(0)             # dies holding its unit


def test_a_fork_child_records_its_unit_under_its_own_pid_and_it_is_reclaimed():
    sem = sb.Semaphore(2, name=_name("sem"))
    try:
        assert sem.acquire(timeout=10)      # this process's entry (the hint)
        with sem._lock:
            own = [e for e in _table(sem) if e[0] == os.getpid()]
        assert [units for _, units in own] == [1]
        got = FORK.Value("b", 0)
        p = FORK.Process(target=_acquire_and_exit, args=(sem, got))
        p.start()
        p.join(20)
        assert (p.exitcode, got.value) == (0, 1)
        with sem._lock:
            table = _table(sem)
        assert sorted(table) == sorted([(os.getpid(), 1), (p.pid, 1)])
        # The value is 0; the dead child's unit comes back to this acquire, which this
        # process's entry records: it holds both units, and releases both.
        assert sem.acquire(timeout=10)
        with sem._lock:
            assert _table(sem) == [(os.getpid(), 2)]
        sem.release()
        sem.release()
        assert sem.get_value() == 2
        with sem._lock:
            assert [units for pid, units in _table(sem) if pid == os.getpid()] == [0]
    finally:
        sem.close()


def _table(sem):
    entries = sem._entries()
    return [(entries[4 * i], entries[4 * i + 1]) for i in range(sem._slots) if entries[4 * i]]
