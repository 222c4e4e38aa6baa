"""Format version 4 of the synchronization kinds (docs/format.md sections 6.3, 10.3 and
10.4): the sleepers word, the wake-up due only when a waiter registered, and older
segments that keep the version-3 rules."""

import ctypes
import errno
import multiprocessing
import os
import signal
import struct
import threading
import time

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from sharedbridge._objects import sync as S
from sharedbridge._platform import futex

from conftest import image_of, reseal, write_segment

FORK = multiprocessing.get_context("fork")
SLEEPERS = 6


def _name(tag):
    return f"sbPW_{os.getpid()}_{tag}_{time.monotonic_ns()}"


def test_new_synchronization_segments_are_version_4_and_the_others_unchanged():
    arr = sb.Array("i", 2)
    objs = [sb.Event(), sb.Semaphore(1), sb.Condition(), sb.Condition(arr.get_lock()),
            sb.Barrier(2), sb.Event(lifetime="last-closer")]
    assert {(sb.header_of(o).version, sb.header_of(o).compat_version) for o in objs} == {(4, 4)}
    others = [arr, sb.RawArray("d", 3), sb.Value("q"), sb.RLock(), sb.Array("i", 1,
                                                                             lifetime="last-closer")]
    assert [(sb.header_of(o).version, sb.header_of(o).compat_version) for o in others] == [
        (2, 1), (2, 1), (2, 1), (2, 1), (2, 2)]


def _wait_long(ev):
    sb.set_spin_budget(0)       # sleeps at once: registered from step 1 of its wait
    ev.wait(60)


def test_a_waiter_killed_while_registered_leaves_sleepers_one_too_high_and_blocks_nobody():
    ev = sb.Event(name=_name("ev"))
    p = FORK.Process(target=_wait_long, args=(ev,))
    p.start()
    deadline = time.monotonic() + 10
    while ev._w[SLEEPERS] == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    p.kill()
    p.join(10)
    assert (ev._w[S.WAITERS], ev._w[SLEEPERS]) == (1, 1)
    assert not ev.wait(0.1)
    got = []
    t = threading.Thread(target=lambda: got.append(ev.wait(10)))
    t.start()
    while ev._w[S.WAITERS] < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    ev.set()
    t.join(10)
    assert got == [True] and (ev._w[S.WAITERS], ev._w[SLEEPERS]) == (1, 1)


def _old_segment(obj, version):
    """A copy of *obj*'s segment that says format *version* (as version-2 and version-3
    writers made them), under a new name; attached."""
    img = image_of(obj)
    struct.pack_into("<HH", img, 8, version, version)
    name = write_segment(_name(f"v{version}"), reseal(img))
    return sb.attach(name)


_syscall = ctypes.CDLL(None, use_errno=True).syscall
_syscall.restype = ctypes.c_long


def _version_3_waiter(obj, timeout, out):
    """A waiter as version 3 wrote it (it joins and sleeps, never registers), with one
    long FUTEX_WAIT: out gets 0 when a wake-up ended its sleep (or seq had moved:
    EAGAIN), ETIMEDOUT when none came."""
    w = obj._w
    with obj._lock:
        w[S.WAITERS] += 1
        seq = w[S.SEQ]
    ts = futex._Timespec(*divmod(int(timeout * 1e9), 1_000_000_000))
    rc = _syscall(ctypes.c_long(futex._SYS_FUTEX), ctypes.c_void_p(obj._seq_address),
                  ctypes.c_long(futex.FUTEX_WAIT), ctypes.c_long(seq), ctypes.byref(ts),
                  ctypes.c_void_p(None), ctypes.c_long(0))
    err = ctypes.get_errno() if rc else 0
    with obj._lock:
        if w[S.SIGNALS]:
            w[S.SIGNALS] -= 1
        w[S.WAITERS] -= 1
    out.append(0 if err == errno.EAGAIN else err)


def _sleeping_on(tid, address, deadline):
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/self/task/{tid}/syscall") as f:
                fields = f.read().split()
        except FileNotFoundError:           # the thread has ended
            return False
        if len(fields) > 1 and fields[0] in ("202", "98") and int(fields[1], 16) == address:
            return True
        time.sleep(0.001)
    return False


def _notify_a_version_3_waiter(obj, notify, timeout):
    out, tids = [], []

    def run():
        tids.append(threading.get_native_id())
        _version_3_waiter(obj, timeout, out)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 10
    while not tids and time.monotonic() < deadline:
        time.sleep(0.001)
    assert _sleeping_on(tids[0], obj._seq_address, deadline)
    notify()
    t.join(timeout + 10)
    return out


@pytest.mark.parametrize("version", [2, 3])
def test_a_waiter_that_never_registers_is_still_woken_on_an_older_segment(version):
    ev = _old_segment(sb.Event(), 2) if version == 2 else None
    sem = _old_segment(sb.Semaphore(0), 3) if version == 3 else None
    obj = ev or sem
    try:
        assert sb.header_of(obj).compat_version == version
        assert _notify_a_version_3_waiter(obj, obj.set if ev else obj.release, 30) == [0]
        assert obj._w[SLEEPERS] == 0        # never written before version 4
    finally:
        os.unlink(f"/dev/shm/{obj.name}")


def test_on_a_version_4_segment_only_registered_waiters_are_woken():
    # Why a version-3 process must refuse version 4 (section 6.3): its waiter does not
    # register, so a version-4 notifier issues no wake-up; it sees seq only at its next look.
    ev = sb.Event()
    assert _notify_a_version_3_waiter(ev, ev.set, 0.5) == [errno.ETIMEDOUT]


def test_more_sleepers_than_waiters_is_a_corrupt_segment():
    ev = sb.Event()
    ev._w[SLEEPERS] = 1
    with pytest.raises(sb.CorruptSegmentError, match="sleepers 1 > waiters 0"):
        ev.set()
    assert ev._lock.state == "free"


V3_GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tests", "cross", "vectors", "v3")
VECTORS = os.path.dirname(V3_GOLDEN)


def _exercise(obj):
    """One wake-up through *obj* with a waiter in another thread; True when it was woken."""
    got = []
    if isinstance(obj, S.Barrier):
        threads = [threading.Thread(target=lambda: got.append(obj.wait(10)))
                   for _ in range(obj.parties)]
    elif isinstance(obj, S.Event):
        obj.clear()
        threads = [threading.Thread(target=lambda: got.append(obj.wait(10)))]
    elif isinstance(obj, S.Semaphore):
        while obj.acquire(False):      # every unit taken: the next acquire sleeps
            pass
        threads = [threading.Thread(target=lambda: got.append(obj.acquire(timeout=10)))]
    else:
        def wait():
            with obj:
                got.append(obj.wait(10))
        threads = [threading.Thread(target=wait)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while obj._w[S.WAITERS] == 0 and not isinstance(obj, S.Barrier) and time.monotonic() < deadline:
        time.sleep(0.002)
    if isinstance(obj, S.Event):
        obj.set()
    elif isinstance(obj, S.Semaphore):
        obj.release()
    elif isinstance(obj, S.Condition):
        with obj:
            obj.notify()
    for t in threads:
        t.join(15)
    return len(got) == len(threads) and all(g is not False for g in got)


@pytest.mark.parametrize("path", sorted(
    os.path.join(V3_GOLDEN, f) for f in os.listdir(V3_GOLDEN)
    if f.endswith(".header.bin") and "sharedlock" not in f), ids=os.path.basename)
def test_every_version_3_synchronization_golden_is_used_with_the_version_3_rules(path):
    """The synchronization segments a version-3 writer wrote (tests/cross/vectors/v3) open,
    wake their waiters, and never get the sleepers word written (docs/format.md 6.3)."""
    import json
    with open(path, "rb") as f:
        head = f.read()
    with open(os.path.join(VECTORS, os.path.basename(path)[:-len(".header.bin")] + ".json")) as f:
        values = json.load(f)["values"]
    name = _name("v3golden")
    write_segment(name, head + struct.pack(f"<{len(values)}I", *values))
    try:
        version = struct.unpack_from("<HH", head, 8)
        obj = sb.attach(name)
        assert (sb.header_of(obj).version, sb.header_of(obj).compat_version) == version < (4, 4)
        assert _exercise(obj)
        assert obj._w[SLEEPERS] == 0
        del obj
    finally:
        os.unlink("/dev/shm/" + name)
