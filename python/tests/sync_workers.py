"""Functions run in child processes by test_sync.py (importable by spawn children)."""

import os
import signal


def wait_then_report(event, done, timeout):
    # Runs in a child: waits for the parent's event, then sets its own.
    if event.wait(timeout):
        done.set()


# Every wait here has a deadline, so that a bug shows as a failed assertion in the test
# (an Event never set, an exit code) and never as a hung child.
WAIT = 60


def take_units(sem, count, out):
    for _ in range(count):
        if not sem.acquire(timeout=WAIT):
            raise SystemExit("take_units: no unit came within %d s" % WAIT)
    out.set()


def barrier_rounds(barrier, rounds, arr):
    for _ in range(rounds):
        i = barrier.wait(10)
        with arr.get_lock():
            arr[i] += 1


def produce(cond, buf, items):
    # buf: [head, tail, slot0 .. slotN-1]; bounded ring of len(buf) - 2 slots.
    size = len(buf) - 2
    raw = buf.get_obj()
    for item in items:
        with cond:
            cond.wait_for(lambda: raw[1] - raw[0] < size, 10)
            raw[2 + raw[1] % size] = item
            raw[1] += 1
            cond.notify_all()


def wait_forever_on(cond):
    # "For ever" as far as the test is concerned: it kills this child long before.
    with cond:
        cond.wait(WAIT)


def hold_units_and_die(sem, started):
    if not sem.acquire(timeout=WAIT):
        raise SystemExit("hold_units_and_die: no unit within %d s" % WAIT)
    started.set()
    os.kill(os.getpid(), signal.SIGKILL)


def die_holding_internal_lock(sem):
    if not sem._lock.acquire(timeout=WAIT):
        raise SystemExit("die_holding_internal_lock: the lock stayed held %d s" % WAIT)
    os.kill(os.getpid(), signal.SIGKILL)


def enter_barrier(barrier, timeout):
    # Runs in a child that the test kills inside wait().
    barrier.wait(timeout)


def acquire_and_wait(sem, started, timeout):
    # Takes one unit and then sits (the test kills it while it holds the unit).
    sem.acquire()
    started.set()
    import time
    time.sleep(timeout)


def toggle_word(path, offset, values, started):
    # A hostile peer: flips one u32 of the segment file between *values* until killed.
    import mmap
    import struct
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
    packed = [struct.pack("<I", v) for v in values]
    started.set()
    while True:
        for p in packed:
            mm[offset:offset + 4] = p
