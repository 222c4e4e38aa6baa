#!/usr/bin/env python3
"""Where the time of one sharedbridge.Event wake-up goes: every step timestamped on both sides.

A two-process Event ping-pong (fork start method): this process sets ``ping`` and waits for
``pong``; the child waits for ``ping``, clears it and sets ``pong``; this process clears ``pong``.
So every round trip is two wake-ups, one in each direction, and each is measured the same way.

The library is not instrumented: this script runs the library's own objects (the segments,
the lock objects with their compiled or ctypes fast path, the words) but re-implements
``Event.set()`` and ``Event.wait()`` with the same calls in the same order as
python/sharedbridge/_objects/sync.py (docs/format.md section 10.3), with a
``time.perf_counter_ns()`` (CLOCK_MONOTONIC: comparable between processes) between the steps:

  notifier, set():   N0 enter | take the mutex | N1 | flag, sets, signals, seq | N2 |
                     FUTEX_WAKE | N3 | release the mutex | N4 | (wake-after: FUTEX_WAKE) | N5
  waiter, wait():    take the mutex, waiters += 1, release | S (going to sleep) | FUTEX_WAIT |
                     W0 (returned) | take the mutex | W1 | consume the signal | W2 |
                     release the mutex | W3 = return

The mutex is taken as the library takes it (the non-blocking attempt first, then the blocking
slow path), and the script counts how often the non-blocking attempt failed, i.e. how often the
waiter had to sleep a second time because the notifier still held the mutex. It also records
the CPU each side ran on (sched_getcpu) and FUTEX_WAKE's result (how many it woke: 0 when the
waiter was not asleep yet).

Variants, run in alternating blocks in one run (each block a fresh fork child):
  library       plain sb.Event set()/wait()/clear() (checks that the re-implementation
                costs the same; no steps)
  steps         the re-implementation, waking before releasing the mutex (the library's order)
  wake-after    the same, waking after releasing the mutex (section 10.3 allows both)
  mp.Event      multiprocessing.Event (the baseline; no steps)

Usage: PYTHONPATH=python /usr/bin/python3 bench/wake_steps.py [--rounds N] [--blocks B]
       [--json PATH]   (SHAREDBRIDGE_NO_ACCEL=1: the ctypes lock path)
Segments are named sbWD_<pid>_<n>_{ping,pong} and removed at the end. Never run it where
timings matter to someone else (2 cores shared): it keeps both CPUs busy for its duration.
"""
import argparse
import ctypes
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import sharedbridge as sb  # noqa: E402
from sharedbridge._objects import sync as S  # noqa: E402
from sharedbridge._platform import futex, lock_core  # noqa: E402

clock = time.perf_counter_ns
_now = time.monotonic_ns
_libc = ctypes.CDLL(None, use_errno=True)
_getcpu = ctypes.PyDLL(None).sched_getcpu
_getcpu.restype = ctypes.c_int
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
SYS_FUTEX = ctypes.c_long(futex._SYS_FUTEX)
WAIT, WAKE = ctypes.c_long(0), ctypes.c_long(1)
NULL = ctypes.c_void_p(None)
ZERO = ctypes.c_long(0)
ALL = ctypes.c_long(futex.WAKE_ALL)
M32 = 0xFFFFFFFF
SEQ, WAITERS, SIGNALS, FLAG, SETS = S.SEQ, S.WAITERS, S.SIGNALS, S.FLAG, S.SETS
WARMUP = 200

# One record per set(): N0..N4, k (signals added), woken (FUTEX_WAKE's result), contended
# (the non-blocking acquire failed), cpu.
NOTIFY_FIELDS = ("n0", "n1", "n2", "n3", "n4", "n5", "k", "woken", "contended", "cpu")
# One record per wait(): E (enter), S (last FUTEX_WAIT call), W0..W3, sleeps (FUTEX_WAIT
# calls), eagain (FUTEX_WAIT found the word changed), ready (flag already set on entry: no
# wait), contended, relocks (signal-less wake-ups: mutex taken and released again), cpu.
WAIT_FIELDS = ("e", "s", "w0", "w1", "w2", "w3", "sleeps", "eagain", "ready", "contended",
               "relocks", "cpu")


def take(lock):
    """lock.acquire() as the library calls it, telling whether the non-blocking attempt
    failed (the caller then slept on the mutex)."""
    if lock.acquire(False):
        return 0
    lock.acquire()
    return 1


def steps_set(ev, wake_after):
    """Event.set() with _Waitable._notify(VALUE_MAX), timestamped."""
    w, lock, addr = ev._w, ev._lock, ctypes.c_void_p(ev._seq_address)
    n0 = clock()
    contended = take(lock)
    n1 = clock()
    ev._flag()
    w[FLAG] = 1
    w[SETS] = (w[SETS] + 1) & M32
    ev._check_signals()
    k = min(S.VALUE_MAX, w[WAITERS] - w[SIGNALS])
    if k > 0:
        w[SIGNALS] += k
        w[SEQ] = (w[SEQ] + 1) & M32
    n2 = clock()
    woken = -1
    if k > 0 and not wake_after:
        woken = _syscall(SYS_FUTEX, addr, WAKE, ALL, NULL, NULL, ZERO)
    n3 = clock()
    lock.release()
    n4 = clock()
    if k > 0 and wake_after:
        woken = _syscall(SYS_FUTEX, addr, WAKE, ALL, NULL, NULL, ZERO)
    n5 = clock()
    return (n0, n1, n2, n3, n4, n5, k, woken, contended, _getcpu())


def steps_wait(ev):
    """Event.wait() (timeout None) with _Waitable._wait, timestamped."""
    w, lock, addr = ev._w, ev._lock, ev._seq_address
    e = clock()
    take(lock)
    try:
        if ev._flag():
            t = clock()
            return (e, t, t, t, t, t, 0, 0, 1, 0, 0, _getcpu())
        sets = w[SETS]
        sleeps = eagain = relocks = contended = 0
        while True:                      # Event.wait's loop over slices
            deadline = S._slice_deadline(None)
            ev._check_signals()          # _Waitable._wait
            w[WAITERS] += 1
            seq = w[SEQ]
            depth = lock._release_save()
            s = w0 = clock()
            while True:
                now = _now()
                if w[SEQ] == seq and now < deadline:
                    ts = futex._Timespec(*divmod(min(S.SLICE_NS, deadline - now), 1_000_000_000))
                    s = clock()
                    rc = _syscall(SYS_FUTEX, ctypes.c_void_p(addr), WAIT, ctypes.c_long(seq),
                                  ctypes.byref(ts), NULL, ZERO)
                    w0 = clock()
                    sleeps += 1
                    if rc and ctypes.get_errno() == 11:
                        eagain += 1
                    if w[SEQ] == seq and _now() < deadline:
                        continue
                contended += take(lock)
                lock._depth = depth
                w1 = clock()
                ev._check_signals()
                if w[SIGNALS]:
                    w[SIGNALS] -= 1
                    w[WAITERS] -= 1
                    notified = True
                    break
                if _now() >= deadline:
                    w[WAITERS] -= 1
                    notified = False
                    break
                seq = w[SEQ]
                relocks += 1
                depth = lock._release_save()
            flag = ev._flag()
            w2 = clock()
            if flag or w[SETS] != sets:
                break
    finally:
        lock.release()
    w3 = clock()
    return (e, s, w0, w1, w2, w3, sleeps, eagain, 0, contended, relocks, _getcpu())


def steps_clear(ev):
    t = clock()
    ev.clear()
    return clock() - t


# ---- the two sides ---------------------------------------------------------------------

def serve(kind, ping, pong, rounds, conn):
    wake_after = kind == "wake-after"
    waits, sets, clears = [], [], []
    for _ in range(rounds):
        if kind in ("library", "mp.Event"):
            ping.wait()
            ping.clear()
            pong.set()
        else:
            waits.append(steps_wait(ping))
            clears.append(steps_clear(ping))
            sets.append(steps_set(pong, wake_after))
    conn.send((waits, sets, clears))
    conn.close()


def drive(kind, ping, pong, rounds):
    wake_after = kind == "wake-after"
    trips, waits, sets, clears = [], [], [], []
    for _ in range(rounds):
        t0 = clock()
        if kind in ("library", "mp.Event"):
            ping.set()
            pong.wait()
            pong.clear()
        else:
            sets.append(steps_set(ping, wake_after))
            waits.append(steps_wait(pong))
            clears.append(steps_clear(pong))
        trips.append(clock() - t0)
    return trips, waits, sets, clears


def one_block(kind, rounds, tag):
    ctx = multiprocessing.get_context("fork")
    if kind == "mp.Event":
        ping, pong = ctx.Event(), ctx.Event()
    else:
        ping = sb.Event(name=f"sbWD_{os.getpid()}_{tag}_ping")
        pong = sb.Event(name=f"sbWD_{os.getpid()}_{tag}_pong")
    here, there = ctx.Pipe()
    child = ctx.Process(target=serve, args=(kind, ping, pong, rounds, there))
    try:
        child.start()
        trips, dwaits, dsets, dclears = drive(kind, ping, pong, rounds)
        if not here.poll(60):
            raise RuntimeError("the child side did not report")
        swaits, ssets, sclears = here.recv()
        child.join(60)
        if child.exitcode != 0:
            raise RuntimeError(f"the child side failed ({child.exitcode})")
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)
        if kind != "mp.Event":
            ping.close()
            pong.close()
    w = slice(WARMUP, None)
    # Wake-ups: (notifier record, waiter record) of the same set(): ping goes driver ->
    # child, pong child -> driver.
    pairs = list(zip(dsets[w], swaits[w])) + list(zip(ssets[w], dwaits[w]))
    return trips[w], pairs, dclears[w] + sclears[w]


# ---- figures -----------------------------------------------------------------------------

def stats(values):
    if not values:
        return None
    v = sorted(values)
    return {"n": len(v), "median_us": statistics.median(v) / 1000,
            "p99_us": v[min(len(v) - 1, int(len(v) * 0.99))] / 1000, "max_us": v[-1] / 1000}


def analyse(pairs, clears):
    N = {f: i for i, f in enumerate(NOTIFY_FIELDS)}
    W = {f: i for i, f in enumerate(WAIT_FIELDS)}
    rows = {}

    def col(name, values):
        rows[name] = stats(values)

    slept = [(n, w) for n, w in pairs if not w[W["ready"]] and w[W["sleeps"]]]
    col("N: set() takes the mutex", [n[N["n1"]] - n[N["n0"]] for n, _ in pairs])
    col("N: updates the words", [n[N["n2"]] - n[N["n1"]] for n, _ in pairs])
    woke = [(n, w) for n, w in pairs if n[N["k"]] > 0]
    col("N: FUTEX_WAKE before the release", [n[N["n3"]] - n[N["n2"]] for n, _ in woke])
    col("N: releases the mutex", [n[N["n4"]] - n[N["n3"]] for n, _ in pairs])
    col("N: FUTEX_WAKE after the release", [n[N["n5"]] - n[N["n4"]] for n, _ in woke])
    col("N: whole set()", [n[N["n5"]] - n[N["n0"]] for n, _ in pairs])
    col("X: FUTEX_WAKE called -> waiter's FUTEX_WAIT returns (W0)",
        [w[W["w0"]] - (n[N["n4"]] if n[N["n5"]] - n[N["n4"]] > n[N["n3"]] - n[N["n2"]]
                       else n[N["n2"]]) for n, w in slept])
    col("W: FUTEX_WAIT returns -> mutex taken (all)", [w[W["w1"]] - w[W["w0"]] for _, w in slept])
    cont = [(n, w) for n, w in slept if w[W["contended"]]]
    col("W: ... of which: mutex was busy (second sleep)",
        [w[W["w1"]] - w[W["w0"]] for _, w in cont])
    col("W: ... of which: mutex was free", [w[W["w1"]] - w[W["w0"]] for _, w in slept
                                            if not w[W["contended"]]])
    col("W: consumes the signal, checks flag", [w[W["w2"]] - w[W["w1"]] for _, w in slept])
    col("W: releases the mutex, returns", [w[W["w3"]] - w[W["w2"]] for _, w in slept])
    col("W: whole wait() after FUTEX_WAIT returns", [w[W["w3"]] - w[W["w0"]] for _, w in slept])
    col("one-way: set() called (N0) -> wait() returns (W3), waiter asleep",
        [w[W["w3"]] - n[N["n0"]] for n, w in slept])
    col("clear()", clears)
    counts = {
        "wake-ups": len(pairs),
        "waiter slept in FUTEX_WAIT": len(slept),
        "flag already set when wait() began (no sleep)": sum(w[W["ready"]] for _, w in pairs),
        "FUTEX_WAIT returned EAGAIN at least once": sum(1 for _, w in pairs if w[W["eagain"]]),
        "FUTEX_WAKE woke nobody (waiter not asleep yet)": sum(
            1 for n, _ in pairs if n[N["woken"]] == 0),
        "waiter's mutex attempt failed (slept on the mutex)": sum(
            1 for _, w in pairs if w[W["contended"]]),
        "waiter left FUTEX_WAIT before the notifier released the mutex (W0 < N4)": sum(
            1 for n, w in slept if w[W["w0"]] < n[N["n4"]]),
        "notifier's mutex attempt failed": sum(n[N["contended"]] for n, _ in pairs),
        "signal-less wake-ups (mutex taken and released again)": sum(
            w[W["relocks"]] for _, w in pairs),
        "both sides on the same CPU": sum(1 for n, w in pairs if n[N["cpu"]] == w[W["cpu"]]),
        "wake-ups over 1 ms (one-way, waiter asleep)": sum(
            1 for n, w in slept if w[W["w3"]] - n[N["n0"]] > 1_000_000),
    }
    slow = sorted(slept, key=lambda p: p[1][W["w3"]] - p[0][N["n0"]])[-5:]
    tails = []
    for n, w in slow:
        base = n[N["n0"]]
        tails.append({"notifier_us": [round((n[N[f]] - base) / 1000, 1)
                                      for f in ("n1", "n2", "n3", "n4", "n5")],
                      "waiter_us": [round((w[W[f]] - base) / 1000, 1)
                                    for f in ("s", "w0", "w1", "w2", "w3")],
                      "contended": w[W["contended"]], "woken": n[N["woken"]],
                      "same_cpu": n[N["cpu"]] == w[W["cpu"]], "sleeps": w[W["sleeps"]]})
    return rows, counts, tails


def loadavg():
    try:
        return os.getloadavg()
    except OSError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3000, help="round trips per variant")
    parser.add_argument("--blocks", type=int, default=3, help="alternating blocks per variant")
    parser.add_argument("--variants", default="library,steps,wake-after,mp.Event")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    per_block = max(1, args.rounds // args.blocks) + WARMUP
    trips = {v: [] for v in variants}
    pairs = {v: [] for v in variants}
    clears = {v: [] for v in variants}
    load_before = loadavg()
    for b in range(args.blocks):
        for i in range(len(variants)):
            v = variants[(i + b) % len(variants)]     # rotating order: drift hits all alike
            t, p, c = one_block(v, per_block, f"{b}{i}")
            trips[v] += t
            pairs[v] += p
            clears[v] += c
    result = {"python": platform.python_version(), "lock_path": lock_core.BACKEND,
              "cpus": os.cpu_count(), "load_before": load_before, "load_after": loadavg(),
              "round_trips": {v: stats(trips[v]) for v in variants}, "steps": {}}
    out = sys.stdout
    print(f"Event ping-pong, {args.rounds} round trips per variant in {args.blocks} blocks; "
          f"Python {result['python']}, lock path {result['lock_path']}, {result['cpus']} CPUs, "
          f"load {load_before} -> {result['load_after']}", file=out)
    print(f"\n{'round trip':66} {'median us':>10} {'p99 us':>9} {'max us':>9}", file=out)
    for v in variants:
        r = result["round_trips"][v]
        print(f"{v:66} {r['median_us']:10.1f} {r['p99_us']:9.1f} {r['max_us']:9.1f}", file=out)
    for v in variants:
        if not pairs[v]:
            continue
        rows, counts, tails = analyse(pairs[v], clears[v])
        result["steps"][v] = {"rows": rows, "counts": counts, "slowest": tails}
        print(f"\n-- {v}: one wake-up, step by step (N notifier, W waiter, X across)", file=out)
        print(f"{'step':66} {'median us':>10} {'p99 us':>9} {'n':>6}", file=out)
        for name, r in rows.items():
            if r:
                print(f"{name:66} {r['median_us']:10.2f} {r['p99_us']:9.1f} {r['n']:6}",
                      file=out)
        for name, c in counts.items():
            print(f"  {name}: {c}", file=out)
        print("  slowest 5 (us from set() entry: notifier N1..N5; waiter S, W0..W3):", file=out)
        for t in tails:
            print(f"    {t}", file=out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
