#!/usr/bin/env python3
"""What each operation of a sharedbridge.Event ping-pong costs, on the library's own calls.

A two-process Event ping-pong (fork): this process sets ``ping``, waits for ``pong`` and clears
it; the child waits for ``ping``, clears it and sets ``pong``. Each side times its own
``set()``, ``wait()`` and ``clear()`` with ``time.perf_counter_ns()``. On the ctypes path
(``SHAREDBRIDGE_NO_ACCEL=1``) the futex call inside ``wait()`` (``sync._futex_wait``) is
timed too, which splits ``wait()`` into its part before the sleep (lock, join, register,
release) and after it (lock, unregister, consume, leave, release); the compiled path
(_fastlock.c, WaitCore) runs ``wait()`` as one C call, so only its total is seen. Unlike
bench/wake_steps.py nothing is re-implemented: the figures are the library's.

Run both processes on one CPU to see the library's share next to the kernel's (no spin is
possible there, every wake-up is a FUTEX_WAKE and a sleep):
    taskset -c 0 /usr/bin/python3 bench/wake_ops.py [--rounds N] [--launches L]
Each launch is a fresh pair of processes (their placement varies between launches: report
medians over launches). Segments: sbWO_<pid>_{ping,pong}, removed at the end. Never run it
where timings matter to someone else: it keeps a CPU busy for its duration.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import sharedbridge as sb  # noqa: E402
from sharedbridge._objects import sync as S  # noqa: E402

clock = time.perf_counter_ns
SKIP = 100          # warm-up rounds left out


def _timed_futex():
    slept = []
    inner = S._futex_wait

    def futex_wait(address, expected, timeout_ns):
        t0 = clock()
        inner(address, expected, timeout_ns)
        slept.append((t0, clock()))

    S._futex_wait = futex_wait
    return slept


def _side(first, mine, other, rounds, slept):
    """Rows (start, set_ns, wait_start, wait_end, clear_ns, futex intervals)."""
    rows = []
    for _ in range(rounds):
        del slept[:]
        start = clock()
        if first:
            other.set()
            ws = clock()
            ok = mine.wait(5)
            we = clock()
            mine.clear()
            set_ns, clear_ns = ws - start, clock() - we
        else:
            ws = start
            ok = mine.wait(5)
            we = clock()
            mine.clear()
            c = clock()
            other.set()
            set_ns, clear_ns = clock() - c, c - we
        if not ok:
            raise SystemExit("a wait timed out after 5 s")
        rows.append((start, set_ns, ws, we, clear_ns, tuple(slept)))
    return rows


def _med(xs):
    return statistics.median(xs) / 1000 if xs else float("nan")


def _figures(rows):
    rows = rows[SKIP:]
    one = [r for r in rows if len(r[5]) == 1]       # slept once: the sleep splits wait()
    return {"set": _med([r[1] for r in rows]),
            "wait": _med([r[3] - r[2] for r in rows]),
            "wait before sleep": _med([r[5][0][0] - r[2] for r in one]),
            "wait after sleep": _med([r[3] - r[5][0][1] for r in one]),
            "clear": _med([r[4] for r in rows]),
            # the share of waits that slept: only seen where the futex call is Python's
            "slept": (sum(1 for r in rows if r[5]) / len(rows)
                      if getattr(S, "WAIT_BACKEND", "python") != "c" else float("nan")),
            "round trip": _med([y[0] - x[0] for x, y in zip(rows, rows[1:])])}


def launch(rounds):
    slept = _timed_futex()
    tag = f"sbWO_{os.getpid()}"
    ping, pong = sb.Event(name=f"{tag}_ping"), sb.Event(name=f"{tag}_pong")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        fig = _figures(_side(False, ping, pong, rounds, slept))
        os.write(w, json.dumps(fig).encode())
        os._exit(0)
    os.close(w)
    fig = _figures(_side(True, pong, ping, rounds, slept))
    child = b""
    while chunk := os.read(r, 65536):
        child += chunk
    os.close(r)
    os.waitpid(pid, 0)
    ping.close()
    pong.close()
    fig["child"] = json.loads(child)
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--launches", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"backend {sb.lock_backend()}, waits {getattr(S, 'WAIT_BACKEND', 'python (before WaitCore)')}, Python {sys.version.split()[0]}, "
          f"CPUs allowed {len(os.sched_getaffinity(0))}; us, medians per launch")
    results = []
    for _ in range(args.launches):
        out = subprocess.run([sys.executable, __file__, "--one", str(args.rounds)],
                             capture_output=True, text=True, check=True).stdout
        fig = json.loads(out)
        results.append(fig)
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in fig.items() if k != "child")
              + " | child " + ", ".join(f"{k} {fig['child'][k]:.2f}"
                                        for k in ("set", "wait after sleep", "clear")))
    print("median of launches: " + ", ".join(
        f"{k} {statistics.median(f[k] for f in results):.2f}"
        for k in ("set", "wait", "wait before sleep", "wait after sleep", "clear", "round trip")))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(launch(int(sys.argv[2]))))
    else:
        main()
