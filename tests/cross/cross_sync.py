"""The Python side of the synchronization scenarios (SharedBridge.CrossTests/SyncTests.cs).

Every worker opens its objects by name and prints one line per step, so the test can order the
processes; the C# driver's SyncWorkers.cs implements the same workers with the same output.
"""
import json
import os
import signal
import sys
import threading
import time

import sharedbridge as sb
from sharedbridge._objects import sync as _sync

LONG = 20.0


def _say(text):
    print(text, flush=True)


def sync_event_wait(name, ms):
    ev = sb.attach(name)
    _say("waiting")
    _say("set" if ev.wait(int(ms) / 1000) else "timeout")
    return 0


def sync_event_set(name):
    sb.attach(name).set()
    _say("done")
    return 0


def sync_cond_wait(name, ms):
    """Wait once (MS < 0: for ever, to be killed); prints notified / timeout."""
    cond = sb.attach(name)
    with cond:
        _say("waiting")
        got = cond.wait(None if int(ms) < 0 else int(ms) / 1000)
    _say("notified" if got else "timeout")
    return 0


def sync_notify_then_die(name):
    """The notifier's update (one signal, seq + 1) under the lock, then SIGKILL before the futex
    wake-up: the waiters must still see it (docs/format.md section 10.4)."""
    cond = sb.attach(name)
    with cond:
        w = cond._w
        if w[_sync.WAITERS] > w[_sync.SIGNALS]:
            w[_sync.SIGNALS] += 1
        w[_sync.SEQ] = (w[_sync.SEQ] + 1) & 0xFFFFFFFF
    _say("updated")
    os.kill(os.getpid(), signal.SIGKILL)
    return 3


def sync_cond_notify_nested(name):
    """notify() with the condition's recursive lock held twice, then both releases: the waiter
    must be woken after the outer one (docs/format.md section 10.3, notify)."""
    cond = sb.attach(name)
    with cond:
        with cond:
            cond.notify()
        _say("inner released")
    _say("released")
    return 0


def sync_sem_hold(name):
    sem = sb.attach(name)
    sem.acquire()
    _say("held")
    time.sleep(600)
    return 3


def sync_sem_acquire(name, ms):
    """Take one unit within MS ms; prints acquired / timeout (then gives it back)."""
    sem = sb.attach(name)
    got = sem.acquire(timeout=int(ms) / 1000)
    _say("acquired" if got else "timeout")
    if got:
        sem.release()
    return 0


def sync_barrier_wait(name, ms):
    """Say "entering", wait once on the barrier up to MS ms; prints the index or "broken"."""
    barrier = sb.attach(name)
    _say("entering")
    try:
        _say(str(barrier.wait(int(ms) / 1000)))
    except threading.BrokenBarrierError:
        _say("broken")
    return 0


def sync_barrier(name, rounds, counts_name):
    barrier, counts = sb.attach(name), sb.attach(counts_name)
    for _ in range(int(rounds)):
        i = barrier.wait(LONG)
        with counts.get_lock():
            counts[i] += 1
    _say("done")
    return 0


def sync_produce(cond_name, buf_name, first, count):
    """Put items first .. first+count-1 into the ring buf = [head, tail, slot...]."""
    cond, buf = sb.attach(cond_name), sb.attach(buf_name)
    raw, size = buf.get_obj(), len(buf) - 2
    for item in range(int(first), int(first) + int(count)):
        with cond:
            if not cond.wait_for(lambda: raw[1] - raw[0] < size, LONG):
                _say("stuck")
                return 1
            raw[2 + raw[1] % size] = item
            raw[1] += 1
            cond.notify_all()
    _say("done")
    return 0


def sync_consume(cond_name, buf_name, count):
    """Take COUNT items out of the ring; prints them as a JSON list."""
    cond, buf = sb.attach(cond_name), sb.attach(buf_name)
    raw, size, got = buf.get_obj(), len(buf) - 2, []
    for _ in range(int(count)):
        with cond:
            if not cond.wait_for(lambda: raw[1] > raw[0], LONG):
                _say("stuck")
                return 1
            got.append(raw[2 + raw[0] % size])
            raw[0] += 1
            cond.notify_all()
    _say(json.dumps(got))
    return 0


def sync_pingpong(ping_name, pong_name, rounds):
    """Serve a ping-pong: wait for ping, clear it, set pong (the benchmark's far side)."""
    ping, pong = sb.attach(ping_name), sb.attach(pong_name)
    _say("ready")
    for _ in range(int(rounds)):
        if not ping.wait(LONG):
            return 1
        ping.clear()
        pong.set()
    return 0


def _timeout(ms):
    return None if int(ms) < 0 else int(ms) / 1000


def _rule_open(objects, name):
    objects[name] = sb.attach(name)
    return "ok"


def _rule_cond_nested_wait(objects, name, ms):
    """Wait with the condition's lock held twice (section 10.3): released completely while
    waiting, held twice again after: notify() works after the inner release, not after the outer."""
    cond = objects[name]
    with cond:
        with cond:
            _say("waiting")
            got = cond.wait(_timeout(ms))
        try:
            cond.notify()
            held = "held"
        except AssertionError:
            held = "not-held"
    try:
        cond.notify()
        released = "not-released"
    except AssertionError:
        released = "released"
    return f"{'notified' if got else 'timeout'} {held} {released}"


def _rule_event_wait(objects, name, ms):
    _say("waiting")
    return "true" if objects[name].wait(_timeout(ms)) else "false"


def _rule_sem_acquire(objects, name, ms):
    _say("waiting")
    return "acquired" if objects[name].acquire(timeout=_timeout(ms)) else "timeout"


def _rule_sem_release(objects, name):
    try:
        objects[name].release()
    except ValueError:
        return "full"
    return "ok"


def _rule_barrier_wait(objects, name, ms):
    _say("waiting")
    try:
        return str(objects[name].wait(_timeout(ms)))
    except threading.BrokenBarrierError:
        return "broken"


_RULES = {"open": _rule_open, "cond-nested-wait": _rule_cond_nested_wait,
          "event-wait": _rule_event_wait, "sem-acquire": _rule_sem_acquire,
          "sem-release": _rule_sem_release, "barrier-wait": _rule_barrier_wait}


def sync_rules():
    """The cases of section 10's settled rules (SyncRulesTests.cs), one command per stdin line
    (COMMAND NAME [MS], MS < 0: no timeout); one result line each ("corrupt" for a corrupt
    segment, "error TYPE: message" for any other error). Objects stay open until "exit"."""
    objects = {}
    for line in sys.stdin:
        command, *args = line.split()
        if command == "exit":
            break
        try:
            _say(_RULES[command](objects, *args))
        except sb.CorruptSegmentError:
            _say("corrupt")
        except Exception as e:
            _say(f"error {type(e).__name__}: {e}")
    for obj in objects.values():
        obj.close()
    return 0


WORKERS = {
    "sync-event-wait": sync_event_wait,
    "sync-event-set": sync_event_set,
    "sync-cond-wait": sync_cond_wait,
    "sync-notify-then-die": sync_notify_then_die,
    "sync-cond-notify-nested": sync_cond_notify_nested,
    "sync-sem-hold": sync_sem_hold,
    "sync-sem-acquire": sync_sem_acquire,
    "sync-barrier-wait": sync_barrier_wait,
    "sync-barrier": sync_barrier,
    "sync-produce": sync_produce,
    "sync-consume": sync_consume,
    "sync-pingpong": sync_pingpong,
    "sync-rules": sync_rules,
}
