#!/usr/bin/env python3
"""Queues between processes: sharedbridge's Queue (Python) and SharedQueue (.NET) against
multiprocessing.Queue and the C floor, every case in one run (item `queue` of `make bench`;
bench/README.md, docs/format.md section 11).

Groups (each case's "group"; its "unit" and "higher_is_better" follow from it):
  messages   64-byte `bytes` messages, one producer process -> one consumer process: messages/s. The C#
             consumer takes each message (Read, then Dispose: zero-copy), or in sb-cs-cs-copy copies
             it out with TryRead(Span<byte>) (one locked step).
             Baselines: multiprocessing.Queue (fork) and the C floor (bench/c/queue_peer.c `floor`, a
             queue of the real format written in C, compiled here with `cc`). The .NET sides are
             `SharedBridge.Benchmarks queue produce|consume` (Queue.cs).
  pingpong   a round trip through two queues (the driving side puts 64 bytes on `ping` and gets from
             `pong`; the serving side gets from `ping` and puts what it got on `pong`): us per round trip.
  array1m    1 MiB numpy arrays (uint8), one producer process -> one consumer process: GB/s. The C#
             consumer of a1-py-cs reads each message and copies its bytes into one reused array
             (`SharedBridge.Benchmarks queue consume ... array`), so that it touches them.
  array64m   one 64 MiB numpy array put and got back in one process, against one numpy copy of it
             (the memcpy the out-of-line path costs at least; after the first, numpy's allocator hands
             back memory already mapped) and one copy into freshly mapped memory (what a new out-of-line
             segment costs: the copy and the page faults), in the same rounds: ms.

Timing of the two-process throughput cases: the producer opens the queue, sets a `ready` event and
waits for `go`; the consumer opens it, waits for `ready`, sets `go` and times from there to its
last message (start-up of either side is never timed). Events: sharedbridge Events (C# opens
them), multiprocessing.Event for the multiprocessing baseline. The C floor times itself.

Repetitions: --rounds rounds, each running every case once in a rotating order. A throughput case
gives one sample per round (its rate over the round's messages); a ping-pong case one sample per
round trip (pooled over rounds, after --warmup unmeasured ones per round); array64m one sample per
put+get (--reps of them per round). Every sharedbridge queue is named sbbench_q_<pid>_<round>_<case>
and closed by this process (its creator); whatever a round leaves in /dev/shm under that prefix
(out-of-line segments included) is removed and counted in "leftover_segments".

Row: {"case", "group", "label", "impl" ("sharedbridge" | "multiprocessing" | "C floor" | "numpy"),
"producer", "consumer" (languages; for ping-pong "driver" and "server"), "baseline": bool, "api"
(what the sides call), "unit", "higher_is_better", "value" (median), "p99" (the 99th percentile of
the cost: of us or ms for the lower-is-better groups, and the 1st percentile of the rate for
messages/s and GB/s, i.e. the slow tail either way), "mean", "samples" (how many), "messages" (per
sample, throughput groups), "bytes" (message size), "rounds", "leftover_segments", and, instead of
figures ("value" null), "skipped" (no compiler for the floor; an API the build does not have) or
"error" (the case failed; the other cases still ran)}.
run() returns {"rounds", "config": {group: counts}, "rows": [...]}.

Usage: python3 bench/queue_bench.py [--smoke] [--rounds R] [--only CASE,...] [--list]
Prints a table on stderr and the JSON on stdout; bench/run.py imports run(). (Not bench/queue.py:
bench/ is sys.path[0] of run.py and wakeup.py, where a queue.py would shadow the standard library's
`queue`, which multiprocessing imports.)
"""
import argparse
import json
import math
import mmap
import multiprocessing
import os
import pathlib
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
import sharedbridge as sb  # noqa: E402
from wakeup import _leftovers  # noqa: E402  (bench/wakeup.py: removes and counts a session's segments)

BENCH_DLL = ROOT / "src/Dotnet/SharedBridge.Benchmarks/bin/Release/net10.0/SharedBridge.Benchmarks.dll"
FLOOR_SRC = ROOT / "bench/c/queue_peer.c"
PREFIX = "sbbench_q_"
PY, CS, C = "Python", "C#", "C"
MSG = 64
BATCH = 64
MiB = 1 << 20
PATIENCE = 30.0          # seconds any one wait may take before a side gives up (a hang is a failure)
READY_S = 60             # a .NET side's start-up on a loaded machine

GROUPS = {  # group -> (unit, higher_is_better)
    "messages": ("messages/s", True),
    "pingpong": ("us/round trip", False),
    "array1m": ("GB/s", True),
    "array64m": ("ms", False),
}

# key -> (group, impl, producer/driver, consumer/server, baseline, api, label)
CASES = {
    "mp-queue": ("messages", "multiprocessing", PY, PY, True, "put / get",
                 "multiprocessing.Queue (fork), Python -> Python"),
    "floor-c": ("messages", "C floor", C, C, True, "bench/c/queue_peer.c floor",
                "C floor: queue_peer.c, C -> C, same format"),
    "sb-py-py": ("messages", "sharedbridge", PY, PY, False, "put / get",
                 "sharedbridge Queue, Python -> Python, put / get"),
    "sb-py-py-many": ("messages", "sharedbridge", PY, PY, False, f"put_many / get_many ({BATCH})",
                      f"sharedbridge Queue, Python -> Python, put_many / get_many of {BATCH}"),
    "sb-cs-cs": ("messages", "sharedbridge", CS, CS, False, "Write / Read",
                 "SharedQueue, C# -> C#, Write / Read"),
    "sb-cs-cs-copy": ("messages", "sharedbridge", CS, CS, False, "Write / TryRead(Span) copy",
                      "SharedQueue, C# -> C#, Write / TryRead into a Span (copy, no take)"),
    "sb-cs-cs-batch": ("messages", "sharedbridge", CS, CS, False, f"WriteMany / ReadMany ({BATCH})",
                       f"SharedQueue, C# -> C#, WriteMany / ReadMany of {BATCH}"),
    "sb-cs-py": ("messages", "sharedbridge", CS, PY, False, "Write / get",
                 "C# -> Python, Write / get"),
    "sb-cs-py-many": ("messages", "sharedbridge", CS, PY, False, f"WriteMany / get_many ({BATCH})",
                      f"C# -> Python, WriteMany / get_many of {BATCH}"),
    "sb-py-cs": ("messages", "sharedbridge", PY, CS, False, "put / Read",
                 "Python -> C#, put / Read"),
    "sb-py-cs-many": ("messages", "sharedbridge", PY, CS, False, f"put_many / ReadMany ({BATCH})",
                      f"Python -> C#, put_many / ReadMany of {BATCH}"),
    "pp-mp-queue": ("pingpong", "multiprocessing", PY, PY, True, "put / get",
                    "multiprocessing.Queue (fork), Python <-> Python"),
    "pp-sb-py-py": ("pingpong", "sharedbridge", PY, PY, False, "put / get",
                    "sharedbridge Queue, Python <-> Python"),
    "pp-sb-cs-cs": ("pingpong", "sharedbridge", CS, CS, False, "Write / Read",
                    "SharedQueue, C# <-> C#"),
    "pp-sb-cs-py": ("pingpong", "sharedbridge", CS, PY, False, "Write / Read, get / put",
                    "C# drives, Python serves"),
    "pp-sb-py-cs": ("pingpong", "sharedbridge", PY, CS, False, "put / get, Read / Write",
                    "Python drives, C# serves"),
    "a1-mp-queue": ("array1m", "multiprocessing", PY, PY, True, "put / get",
                    "multiprocessing.Queue (fork), 1 MiB arrays, Python -> Python"),
    "a1-sb": ("array1m", "sharedbridge", PY, PY, False, "put / get",
              "sharedbridge Queue (1 MiB ring: out of line), Python -> Python"),
    "a1-sb-inline": ("array1m", "sharedbridge", PY, PY, False, "put / get",
                     "sharedbridge Queue (16 MiB ring: in the ring), Python -> Python"),
    "a1-py-cs": ("array1m", "sharedbridge", PY, CS, False, "put / Read + copy of the bytes",
                 "sharedbridge Queue (1 MiB ring: out of line), Python -> C# (Read, the bytes copied out)"),
    "a64-memcpy": ("array64m", "numpy", PY, PY, True, "numpy.ndarray.copy",
                   "one numpy copy of the 64 MiB array (memcpy)"),
    "a64-memcpy-fresh": ("array64m", "numpy", PY, PY, True, "numpy.copyto into a new mmap",
                         "one numpy copy of the 64 MiB array into freshly mapped memory (its page faults "
                         "included, as a new out-of-line segment has them)"),
    "a64-sb": ("array64m", "sharedbridge", PY, PY, False, "put / get",
               "sharedbridge Queue put + get of the 64 MiB array (out of line, its data segment reused: "
               "docs/format.md 11.5), one process"),
    "a64-sb-first": ("array64m", "sharedbridge", PY, PY, False, "put / get, new queue",
                     "the first put + get of the 64 MiB array on a new queue (a new data segment: its page "
                     "faults included)"),
}

# Sizes: messages per throughput sample (per producer kind), round trips, arrays, repetitions.
# The 1 MiB array cases send as many arrays on both sides (multiprocessing.Queue too), so that
# start-up (a feeder thread; the first data segments) weighs the same in every sample.
FULL = {"rounds": 5, "mp": 50_000, "py": 300_000, "cs": 3_000_000, "cross": 1_000_000,
        "round_trips": 5000, "warmup": 200, "arrays": 200, "mp_arrays": 200, "reps64": 3}
SMOKE = {"rounds": 1, "mp": 2000, "py": 5000, "cs": 20_000, "cross": 10_000,
         "round_trips": 100, "warmup": 10, "arrays": 8, "mp_arrays": 4, "reps64": 1}


class Skip(Exception):
    """The case cannot run here (its row says why, with "skipped")."""


# ---- helpers ----------------------------------------------------------------------------------

def _dotnet(*args):
    if not BENCH_DLL.exists():
        raise RuntimeError(f"{BENCH_DLL.name} is not built (dotnet build SharedBridge.sln -c Release)")
    return ["dotnet", "exec", str(BENCH_DLL), "queue", *map(str, args)]


def _start(cmd, what):
    return (what, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True))


def _finish(side, limit, killed=False):
    """Waits for a .NET side; returns its stdout, raises with its stderr when it failed."""
    what, proc = side
    if killed:
        _kill(proc)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, err = proc.communicate()
        raise RuntimeError(f"{what} did not finish within {limit:.0f} s: {err.strip()[-800:]}")
    if proc.returncode != 0 and not killed:
        raise RuntimeError(f"{what} failed (exit code {proc.returncode}): {err.strip()[-1500:]}")
    return out


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait(event, what, alive=lambda: True, limit=PATIENCE + READY_S):
    """Waits on an Event (ours or multiprocessing's) in slices, giving up when the peer died."""
    deadline = time.monotonic() + limit
    while not event.wait(0.2):
        if not alive():
            raise RuntimeError(f"{what}: the other side has died")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: nothing within {limit:.0f} s")


def _fork(target, *args):
    child = multiprocessing.get_context("fork").Process(target=target, args=args, daemon=True)
    child.start()
    return child


def _join(child, failed=False):
    child.join(0 if failed else PATIENCE)
    if child.is_alive():
        child.kill()
        child.join()
        if not failed:
            raise RuntimeError("the Python child did not finish")
    if child.exitcode != 0 and not failed:
        raise RuntimeError(f"the Python child failed (exit code {child.exitcode})")


def _get_many(q, n):
    """Up to *n* messages, at least one (blocking up to PATIENCE)."""
    return q.get_many(n, timeout=PATIENCE)


# ---- Python sides (forked children, or this process) -----------------------------------------

def _py_produce(q, ready, go, n, size, batch):
    msg = bytes(range(size)) if size <= 256 else bytes(size)
    ready.set()
    _wait(go, "producer waiting for go")
    if batch > 1:
        chunk = [msg] * batch
        done = 0
        while done < n:
            k = min(batch, n - done)
            q.put_many(chunk if k == batch else chunk[:k])
            done += k
    else:
        put = q.put
        for _ in range(n):
            put(msg)


def _py_consume(q, ready, go, n, batch, alive):
    _wait(ready, "consumer waiting for the producer", alive)
    go.set()
    t0 = time.perf_counter()
    if batch > 1:
        got = 0
        while got < n:
            got += len(_get_many(q, min(batch, n - got)))
    else:
        get = q.get
        for _ in range(n):
            get(True, PATIENCE)
    return time.perf_counter() - t0


def _py_produce_arrays(q, ready, go, n, nbytes):
    import numpy as np
    a = np.arange(nbytes, dtype=np.uint64).astype(np.uint8)
    ready.set()
    _wait(go, "producer waiting for go")
    for _ in range(n):
        q.put(a)


def _py_consume_arrays(q, ready, go, n, nbytes, alive):
    _wait(ready, "consumer waiting for the producer", alive)
    go.set()
    t0 = time.perf_counter()
    for _ in range(n):
        a = q.get(True, PATIENCE)
        if a.nbytes != nbytes:
            raise RuntimeError(f"got an array of {a.nbytes} bytes, expected {nbytes}")
        del a
    return time.perf_counter() - t0


def _py_serve(ping, pong, total):
    get, put = ping.get, pong.put
    for _ in range(total):
        put(get(True, PATIENCE + READY_S))


def _py_drive(ping, pong, n, warmup, size):
    msg = bytes(size)
    put, get = ping.put, pong.get
    clock = time.perf_counter_ns
    times = [0] * n
    for i in range(-warmup, n):
        t0 = clock()
        put(msg)
        get(True, PATIENCE + READY_S)
        t1 = clock()
        if i >= 0:
            times[i] = t1 - t0
    return times


# ---- one sample set of one case ---------------------------------------------------------------

class Session:
    """The objects of one (round, case): named under *prefix*, all closed at the end."""

    def __init__(self, prefix):
        self.prefix, self.objs = prefix, []

    def queue(self, suffix="q", **kw):
        q = sb.Queue(name=self.prefix + suffix, **kw)
        self.objs.append(q)
        return q

    def event(self, suffix):
        e = sb.Event(name=self.prefix + suffix)
        self.objs.append(e)
        return e

    def close(self):
        for o in reversed(self.objs):
            try:
                sb.close(o)     # gives up the creator's claim: the name goes (Queue.close only closes the handle)
            except Exception:  # noqa: BLE001 - closing the rest matters more
                pass


def _messages(key, cfg, s, floor):
    """One throughput sample of a `messages` case: (messages, seconds)."""
    ctx = multiprocessing.get_context("fork")
    if key == "floor-c":
        n = cfg["cs"]
        proc = subprocess.run([str(floor), "floor", str(n), str(MSG)], capture_output=True, text=True,
                              timeout=READY_S + PATIENCE)
        if proc.returncode != 0:
            raise RuntimeError(f"queue_peer floor failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
        res = json.loads(proc.stdout)
        return res["messages"], res["seconds"]
    if key == "mp-queue":
        n = cfg["mp"]
        q, ready, go = ctx.Queue(), ctx.Event(), ctx.Event()
        child = _fork(_py_produce, q, ready, go, n, MSG, 1)
        try:
            secs = _py_consume(q, ready, go, n, 1, child.is_alive)
        except BaseException:
            _join(child, failed=True)
            raise
        _join(child)
        return n, secs
    batch = BATCH if key.endswith("-many") or key.endswith("-batch") else 1
    _, _, prod, cons, *_ = CASES[key]
    q, ready, go = s.queue(), s.event("ready"), s.event("go")
    if prod == PY and cons == PY:
        n = cfg["py"]
        child = _fork(_py_produce, q, ready, go, n, MSG, batch)
        try:
            secs = _py_consume(q, ready, go, n, batch, child.is_alive)
        except BaseException:
            _join(child, failed=True)
            raise
        _join(child)
        return n, secs
    if prod == CS and cons == CS:
        n = cfg["cs"]
        limit = READY_S + PATIENCE + n * 1e-5
        mode = "copy" if key.endswith("-copy") else "many" if batch > 1 else "take"
        producer = _start(_dotnet("produce", q.name, ready.name, go.name, n, MSG, batch, PATIENCE), "the C# producer")
        consumer = _start(_dotnet("consume", q.name, ready.name, go.name, n, mode, PATIENCE), "the C# consumer")
        try:
            out = _finish(consumer, limit)
        except BaseException:
            _finish(producer, 5, killed=True)
            raise
        _finish(producer, limit)
        return n, int(out.split()[0]) / 1e9
    n = cfg["cross"]
    limit = READY_S + PATIENCE + n * 1e-4
    if prod == CS:
        producer = _start(_dotnet("produce", q.name, ready.name, go.name, n, MSG, batch, PATIENCE), "the C# producer")
        try:
            secs = _py_consume(q, ready, go, n, batch, lambda: producer[1].poll() is None)
        except BaseException:
            _finish(producer, 5, killed=True)
            raise
        _finish(producer, limit)
        return n, secs
    consumer = _start(_dotnet("consume", q.name, ready.name, go.name, n, "many" if batch > 1 else "take", PATIENCE),
                      "the C# consumer")
    try:
        _py_produce(q, ready, go, n, MSG, batch)
    except BaseException:
        _finish(consumer, 5, killed=True)
        raise
    out = _finish(consumer, limit)
    return n, int(out.split()[0]) / 1e9


def _pingpong(key, cfg, s):
    """The measured round trips (ns) of one session of a `pingpong` case."""
    n, warmup = cfg["round_trips"], cfg["warmup"]
    total = n + warmup
    if key == "pp-mp-queue":
        ctx = multiprocessing.get_context("fork")
        ping, pong = ctx.Queue(), ctx.Queue()
    else:
        ping, pong = s.queue("ping"), s.queue("pong")
    _, _, driver, server, *_ = CASES[key]
    if driver == PY and server == PY:
        child = _fork(_py_serve, ping, pong, total)
        try:
            times = _py_drive(ping, pong, n, warmup, MSG)
        except BaseException:
            _join(child, failed=True)
            raise
        _join(child)
        return times
    limit = READY_S + PATIENCE + total * 0.001
    if driver == CS and server == CS:
        srv = _start(_dotnet("serve", ping.name, pong.name, total, PATIENCE), "the C# server")
        drv = _start(_dotnet("drive", ping.name, pong.name, n, warmup, MSG, PATIENCE), "the C# driver")
        try:
            out = _finish(drv, limit)
        except BaseException:
            _finish(srv, 5, killed=True)
            raise
        _finish(srv, limit)
        return [int(t) for t in out.split()]
    if driver == CS:
        drv = _start(_dotnet("drive", ping.name, pong.name, n, warmup, MSG, PATIENCE), "the C# driver")
        try:
            _py_serve(ping, pong, total)
        except BaseException:
            _finish(drv, 5, killed=True)
            raise
        return [int(t) for t in _finish(drv, limit).split()]
    srv = _start(_dotnet("serve", ping.name, pong.name, total, PATIENCE), "the C# server")
    try:
        times = _py_drive(ping, pong, n, warmup, MSG)
    except BaseException:
        _finish(srv, 5, killed=True)
        raise
    _finish(srv, limit)
    return times


def _array1m(key, cfg, s):
    """One throughput sample of an `array1m` case: (bytes, seconds)."""
    nbytes = MiB
    if key == "a1-mp-queue":
        n = cfg["mp_arrays"]
        ctx = multiprocessing.get_context("fork")
        q, ready, go = ctx.Queue(), ctx.Event(), ctx.Event()
    else:
        n = cfg["arrays"]
        q = s.queue(capacity=16 * MiB) if key == "a1-sb-inline" else s.queue()
        ready, go = s.event("ready"), s.event("go")
    if CASES[key][3] == CS:
        consumer = _start(_dotnet("consume", q.name, ready.name, go.name, n, "array", PATIENCE), "the C# consumer")
        try:
            _py_produce_arrays(q, ready, go, n, nbytes)
        except BaseException:
            _finish(consumer, 5, killed=True)
            raise
        out = _finish(consumer, READY_S + PATIENCE + n * 0.01)
        return n * nbytes, int(out.split()[0]) / 1e9
    child = _fork(_py_produce_arrays, q, ready, go, n, nbytes)
    try:
        secs = _py_consume_arrays(q, ready, go, n, nbytes, child.is_alive)
    except BaseException:
        _join(child, failed=True)
        raise
    _join(child)
    return n * nbytes, secs


_BIG = None


def _array64m(key, cfg, s):
    """The seconds of each of cfg["reps64"] put+get (or copies) of a 64 MiB array."""
    import numpy as np
    global _BIG
    if _BIG is None:
        _BIG = np.arange(64 * MiB // 8, dtype=np.uint64)
    a = _BIG
    out = []
    q = s.queue() if key == "a64-sb" else None
    if q is not None:       # the steady state: a data segment of this size is there to reuse
        q.put(a)
        del a
        q.get(True, PATIENCE)
        a = _BIG
    for rep in range(cfg["reps64"]):
        if key == "a64-sb-first":
            q = s.queue(f"q{rep}")
        t0 = time.perf_counter()
        if key == "a64-memcpy-fresh":
            m = mmap.mmap(-1, a.nbytes)
            b = np.frombuffer(m, dtype=a.dtype)
            np.copyto(b, a)
        elif q is None:
            b = a.copy()
        else:
            q.put(a)
            b = q.get(True, PATIENCE)
        t1 = time.perf_counter()
        if b.nbytes != a.nbytes:
            raise RuntimeError(f"got {b.nbytes} bytes back, expected {a.nbytes}")
        del b
        if key == "a64-memcpy-fresh":
            m.close()
        out.append(t1 - t0)
    return out


# ---- the run ----------------------------------------------------------------------------------

def _build_floor(work):
    cc = shutil.which("cc")
    if cc is None:
        return None, "no compiler (cc not found)"
    exe = pathlib.Path(work) / "queue_peer"
    proc = subprocess.run([cc, "-O2", "-o", str(exe), str(FLOOR_SRC), "-lpthread"], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        return None, f"error: cc failed: {proc.stderr[-1500:]}"
    return exe, None


def _pct(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(p * len(sorted_values)) - 1))]


def _stats(values, higher_is_better):
    s = sorted(values)
    # The slow tail either way: the 99th percentile of a cost, the 1st percentile of a rate.
    tail = _pct(s, 0.01) if higher_is_better else _pct(s, 0.99)
    return {"value": statistics.median(s), "p99": tail, "mean": statistics.fmean(s), "samples": len(s)}


def run(smoke=False, rounds=None, only=None, log=None):
    cfg = dict(SMOKE if smoke else FULL)
    if rounds:
        cfg["rounds"] = rounds
    keys = [k for k in CASES if only is None or k in only]
    unknown = set(only or ()) - set(CASES)
    if unknown:
        raise ValueError(f"unknown queue cases {sorted(unknown)}; known: {', '.join(CASES)}")
    samples = {k: [] for k in keys}
    per_sample = {}
    problems, leftovers = {}, {k: 0 for k in keys}
    with tempfile.TemporaryDirectory(prefix="queuebench") as work:
        floor, why = _build_floor(work) if "floor-c" in keys else (None, None)
        if why:
            problems["floor-c"] = why
        for r in range(cfg["rounds"]):
            for k in keys[r % len(keys):] + keys[:r % len(keys)]:
                if k in problems:
                    continue
                prefix = f"{PREFIX}{os.getpid()}_{r}_{keys.index(k)}_"
                s = Session(prefix)
                group = CASES[k][0]
                try:
                    if group == "messages":
                        n, secs = _messages(k, cfg, s, floor)
                        samples[k].append(n / secs)
                        per_sample[k] = n
                    elif group == "pingpong":
                        samples[k] += [t / 1000 for t in _pingpong(k, cfg, s)]
                    elif group == "array1m":
                        nbytes, secs = _array1m(k, cfg, s)
                        samples[k].append(nbytes / secs / 1e9)
                        per_sample[k] = nbytes // MiB
                    else:
                        samples[k] += [t * 1000 for t in _array64m(k, cfg, s)]
                except Skip as e:
                    problems[k] = str(e)
                except Exception as e:  # noqa: BLE001 - the row says what failed, the others still run
                    problems[k] = f"error: round {r + 1}: {type(e).__name__}: {e}"
                    if log:
                        log(f"queue: {k}: {problems[k]}")
                finally:
                    s.close()
                    leftovers[k] += _leftovers(prefix)
    rows = []
    for k in keys:
        group, impl, a, b, baseline, api, label = CASES[k]
        unit, hib = GROUPS[group]
        row = {"case": k, "group": group, "label": label, "impl": impl, "baseline": baseline, "api": api,
               "unit": unit, "higher_is_better": hib, "bytes": {"array1m": MiB, "array64m": 64 * MiB}.get(group, MSG),
               "rounds": cfg["rounds"], "leftover_segments": leftovers[k]}
        row.update({"driver": a, "server": b} if group == "pingpong" else {"producer": a, "consumer": b})
        if group in ("messages", "array1m") and k in per_sample:
            row["messages"] = per_sample[k]
        why = problems.get(k)
        if why is None and samples[k]:
            row.update(_stats(samples[k], hib))
        else:
            row.update({"value": None, "samples": len(samples[k])})
            why = why or "error: no samples"
            if why.startswith("error: "):
                row["error"] = why[len("error: "):]
            else:
                row["skipped"] = why
        rows.append(row)
    return {"rounds": cfg["rounds"], "config": cfg, "rows": rows}


def table(result):
    lines = [f"{'case':16} {'median':>14} {'p99':>14} {'unit':15} {'n':>6}"]
    for r in result["rows"]:
        if r["value"] is None:
            lines.append(f"{r['case']:16} {r.get('skipped') or r.get('error')}")
        else:
            lines.append(f"{r['case']:16} {r['value']:14,.2f} {r['p99']:14,.2f} {r['unit']:15} {r['samples']:6}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--only", help="comma-separated case keys (see --list)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    result = run(args.smoke, args.rounds, args.only.split(",") if args.only else None,
                 log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
