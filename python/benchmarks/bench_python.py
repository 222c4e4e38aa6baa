"""Benchmark: sharedbridge against real multiprocessing, in one run (not a test).

Prints ns per operation and the ratio sharedbridge / multiprocessing (below 1.0 means
sharedbridge is faster) for:
  - a locked element increment, `arr[i] += 1` on a synchronized array,
  - the same inside `with arr.get_lock():`,
  - a bulk read of 1M doubles (`arr[:]` on the raw array, and through memoryview),
and, when numpy is installed, the cost of as_numpy() for 1K, 1M and 10M elements
(it must not grow with the size: it is a zero-copy view).

Usage: PYTHONPATH=python python python/benchmarks/bench_python.py [--quick]
"""

import multiprocessing
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import sharedbridge  # noqa: E402

QUICK = "--quick" in sys.argv
REPEATS = 5


def per_op(fn, n):
    """Median over REPEATS runs of fn(n), in ns per operation."""
    samples = []
    for _ in range(REPEATS):
        t0 = time.perf_counter_ns()
        fn(n)
        samples.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(samples)


def locked_increment(arr):
    def run(n):
        for _ in range(n):
            arr[1] += 1
    return run


def with_lock_increment(arr):
    def run(n):
        lock = arr.get_lock()
        for _ in range(n):
            with lock:
                arr[1] += 1
    return run


def bulk_read(raw):
    def run(n):
        for _ in range(n):
            raw[:]
    return run


def bulk_read_memoryview(raw):
    def run(n):
        for _ in range(n):
            memoryview(raw).cast("B").cast("d").tolist()
    return run


def row(label, ours, theirs):
    print(f"{label:44s} {ours:12.1f} {theirs:12.1f} {ours / theirs:8.2f}")


def main():
    n_ops = 20_000 if QUICK else 200_000
    n_bulk = 3 if QUICK else 10
    print(f"Python {sys.version.split()[0]} ({sys.executable})")
    print(f"{'operation (ns/op)':44s} {'sharedbridge':>12s} {'multiproc.':>12s} {'ratio':>8s}")
    ours = sharedbridge.Array("q", 5)
    theirs = multiprocessing.Array("q", 5)
    row("locked arr[i] += 1", per_op(locked_increment(ours), n_ops),
        per_op(locked_increment(theirs), n_ops))
    row("with arr.get_lock(): arr[i] += 1", per_op(with_lock_increment(ours), n_ops),
        per_op(with_lock_increment(theirs), n_ops))
    assert ours[1] == theirs[1] == 2 * REPEATS * n_ops

    big_ours = sharedbridge.RawArray("d", 1_000_000)
    big_theirs = multiprocessing.RawArray("d", 1_000_000)
    row("bulk read 1M doubles, raw[:] (ns/read)", per_op(bulk_read(big_ours), n_bulk),
        per_op(bulk_read(big_theirs), n_bulk))
    row("bulk read 1M doubles, memoryview (ns/read)",
        per_op(bulk_read_memoryview(big_ours), n_bulk),
        per_op(bulk_read_memoryview(big_theirs), n_bulk))

    try:
        import numpy  # noqa: F401
    except ImportError:
        print("as_numpy: skipped, numpy is not installed for this interpreter")
        return
    print(f"{'as_numpy(RawArray(d, n)) (ns/call)':44s} {'n':>12s}")
    for n in (1_000, 1_000_000, 10_000_000):
        arr = sharedbridge.RawArray("d", n)
        cost = per_op(lambda k: [sharedbridge.as_numpy(arr) for _ in range(k)], 2_000)
        print(f"{'as_numpy':44s} {n:12d} {cost:12.1f}")
        sharedbridge.close(arr)
        del arr


if __name__ == "__main__":
    main()
