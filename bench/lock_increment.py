"""Locked increment: SharedBridge (C and ctypes lock paths) vs multiprocessing.Array and .Value.

Usage: PYTHON bench/lock_increment.py [--ops N] [--rounds R] [--json-only]
(run from the repository root, or with the package importable).

Measures, in one process, side by side, in interleaved rounds (every round times every
case once, in a rotating order, so drift and noise hit all cases alike), the ns per
operation of:
  lock:        `with arr.get_lock(): arr[i] += 1`  (the seeds' idioms: Array and Value, locked
  sync:        `arr[i] += 1` on the synchronized wrapper      block and synchronized accessor)
  value-lock:  `with v.get_lock(): v.value += 1`
  value-sync:  `v.value += 1` on the synchronized wrapper
(sync: a locked read, then a locked write) on an Array('q', 5) and a Value('q') of:
  mp      multiprocessing.Array / .Value (the baseline)
  c       sharedbridge with the compiled lock fast path (when _fastlock is built)
  ctypes  sharedbridge with SHAREDBRIDGE_NO_ACCEL=1 (standard library only)
The two sharedbridge paths cannot coexist in one interpreter (the path is chosen at
import), so each runs in a child process of its own that times its cases when told to;
the rounds are interleaved across the processes (one case at a time, never two
processes timing together).

Prints a table to stderr (unless --json-only) and one JSON object to stdout:
{"interpreter", "version", "rounds", "ops", "results": [{"case", "impl", "backend",
"ns_per_op" (median over rounds), "ns_min", "ratio_to_mp" (ns / mp's ns for the case)}]}.
main(argv) returns that object, for a benchmark runner that imports this file.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.join(os.path.dirname(HERE), "python")
CASES = ("lock", "sync", "value-lock", "value-sync")


def _loops(arr, val=None):
    def lock(n):
        for _ in range(n):
            with arr.get_lock():
                arr[2] += 1

    def sync(n):
        for _ in range(n):
            arr[2] += 1

    def value_lock(n):
        for _ in range(n):
            with val.get_lock():
                val.value += 1

    def value_sync(n):
        for _ in range(n):
            val.value += 1

    loops = {"lock": lock, "sync": sync}
    if val is not None:
        loops.update({"value-lock": value_lock, "value-sync": value_sync})
    return loops


def _time(fn, ops):
    t0 = time.perf_counter_ns()
    fn(ops)
    return (time.perf_counter_ns() - t0) / ops


def serve(impl):
    """Child: build the array, then time one case per command line read from stdin."""
    if impl == "mp":
        import multiprocessing
        arr, val = multiprocessing.Array("q", 5), multiprocessing.Value("q", 0)
        backend = "semaphore"
    else:
        sys.path.insert(0, PYTHON_DIR)
        import sharedbridge as sb
        arr, val = sb.Array("q", 5), sb.Value("q", 0)
        backend = getattr(sb, "lock_backend", lambda: "ctypes")()   # older versions: ctypes
    loops = _loops(arr, val)
    for fn in loops.values():
        fn(1000)               # warm up (specializing interpreters, caches)
    print(json.dumps({"backend": backend}), flush=True)
    for line in sys.stdin:
        case, ops = line.split()
        print(json.dumps({"ns": _time(loops[case], int(ops))}), flush=True)
    if impl != "mp":
        for obj in (arr, val):
            obj.get_lock().close()
            obj.close()


def add_arguments(ap):
    """The options of this script, also lock_path_compare.py's (--serve: a child)."""
    ap.add_argument("--ops", type=int, default=100_000, help="operations per timing")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json-only", action="store_true")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated cases to time (default: all)")
    ap.add_argument("--serve", help=argparse.SUPPRESS)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return None

    procs = {}
    for impl, no_accel in (("mp", None), ("c", None), ("ctypes", "1")):
        env = dict(os.environ)
        env.pop("SHAREDBRIDGE_NO_ACCEL", None)
        if no_accel:
            env["SHAREDBRIDGE_NO_ACCEL"] = no_accel
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", impl],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        backend = json.loads(p.stdout.readline())["backend"]
        if impl == "c" and backend != "c":
            p.stdin.close()
            p.wait()
            continue          # not built for this interpreter: only mp and ctypes
        procs[impl] = (p, backend)

    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}: the cases are {', '.join(CASES)}")
    timings = {(impl, case): [] for impl in procs for case in cases}
    order = list(timings)
    for r in range(args.rounds):
        k = r % len(order)
        for impl, case in order[k:] + order[:k]:
            p = procs[impl][0]
            p.stdin.write(f"{case} {args.ops}\n")
            p.stdin.flush()
            timings[impl, case].append(json.loads(p.stdout.readline())["ns"])
    for p, _ in procs.values():
        p.stdin.close()
        p.wait()

    results = []
    for (impl, case), ns in timings.items():
        base = statistics.median(timings["mp", case])
        med = statistics.median(ns)
        results.append({"case": case, "impl": "multiprocessing" if impl == "mp" else "sharedbridge",
                        "backend": procs[impl][1], "ns_per_op": round(med, 1),
                        "ns_min": round(min(ns), 1), "ratio_to_mp": round(med / base, 3)})
    out = {"interpreter": sys.executable, "version": platform.python_version(),
           "implementation": platform.python_implementation(), "rounds": args.rounds,
           "ops": args.ops, "results": results}
    if not args.json_only:
        print(f"Python {out['version']} ({sys.executable}), {args.rounds} rounds x {args.ops} ops",
              file=sys.stderr)
        print(f"{'case':10} {'implementation':16} {'backend':10} {'ns/op':>8} {'min':>8} {'x mp':>6}",
              file=sys.stderr)
        for r in results:
            print(f"{r['case']:10} {r['impl']:16} {r['backend']:10} {r['ns_per_op']:8.0f} "
                  f"{r['ns_min']:8.0f} {r['ratio_to_mp']:6.2f}", file=sys.stderr)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
