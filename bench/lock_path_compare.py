"""Locked increment, two source trees side by side, on both lock paths, in one run.

Usage: PYTHON bench/lock_path_compare.py --before TREE --after TREE
                                         [--ops N] [--rounds R] [--batch B] [--json-only]

TREE is a checkout of this repository (its python/ folder holds the sharedbridge package
to time), e.g. a `git worktree add` of the commit before a change, and the change. For
each tree, the compiled lock path is built first for PYTHON with that tree's own
scripts/build_fastlock.py (nothing is done when it is up to date).

Four child processes, one per (tree, path): path "c" (the compiled _fastlock) and
"ctypes" (SHAREDBRIDGE_NO_ACCEL=1); each imports sharedbridge from its tree (checked)
and times the cases of lock_increment.py, plus one, on its own objects:
  lock:  `with arr.get_lock(): arr[i] += 1` on an Array('q', 5)
  sync:  `arr[i] += 1` on the synchronized wrapper (a locked read, then a locked write)
  value: `v.value += 1` on a Value('q')
The parent sends one (tree, path, case) at a time, never two children timing together;
each round times every one of them once, in a rotating order, so that drift and noise
hit all alike. A timing of N ops is taken in samples of B ops (ns per op of each sample).

Prints a table to stderr (unless --json-only): per case, tree and path the median and
the 99th percentile of the samples of every round, and after/before ratios of the
medians; and one JSON object to stdout: {"interpreter", "version", "rounds", "ops",
"batch", "trees": {"before", "after"}, "results": [{"case", "tree", "path", "median_ns",
"p99_ns", "samples"}], "ratios": [{"case", "path", "median_after_over_before",
"p99_after_over_before"}]}.
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
sys.path.insert(0, HERE)
from lock_increment import _loops, add_arguments  # noqa: E402  (shared with lock_increment.py)

TREES = ("before", "after")
PATHS = ("c", "ctypes")
CASES = ("lock", "sync", "value")


def _samples(fn, ops, batch):
    clock = time.perf_counter_ns
    out = []
    for _ in range(max(1, ops // batch)):
        t0 = clock()
        fn(batch)
        out.append((clock() - t0) / batch)
    return out


def serve(python_dir):
    """Child: import sharedbridge from *python_dir*, then time one case per stdin line."""
    sys.path.insert(0, python_dir)
    import sharedbridge as sb
    arr, val = sb.Array("q", 5), sb.Value("q", 0)
    loops = _loops(arr)

    def value(n):
        for _ in range(n):
            val.value += 1

    loops["value"] = value
    for fn in loops.values():
        fn(1000)                    # warm up (specializing interpreters, caches)
    print(json.dumps({"backend": sb.lock_backend(), "file": sb.__file__}), flush=True)
    for line in sys.stdin:
        case, ops, batch = line.split()
        print(json.dumps(_samples(loops[case], int(ops), int(batch))), flush=True)
    for obj in (arr, val):
        obj.get_lock().close()
        obj.close()


def _python_dir(tree):
    d = os.path.join(os.path.abspath(tree), "python")
    if not os.path.isfile(os.path.join(d, "sharedbridge", "__init__.py")):
        sys.exit(f"{tree}: no python/sharedbridge in it (give the root of a checkout)")
    return d


def _build(tree, quiet):
    script = os.path.join(os.path.abspath(tree), "scripts", "build_fastlock.py")
    done = subprocess.run([sys.executable, script], capture_output=True, text=True)
    if not quiet:
        print(f"{tree}: {done.stdout.strip()}", file=sys.stderr)
    if done.returncode:
        sys.exit(f"{tree}: the compiled lock path is not built for {sys.executable} "
                 f"(scripts/build_fastlock.py exit status {done.returncode}): both paths "
                 "are compared, so it must be")


def _start(tree, python_dir, path):
    env = dict(os.environ)
    env.pop("SHAREDBRIDGE_NO_ACCEL", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"          # leave the trees as they are
    if path == "ctypes":
        env["SHAREDBRIDGE_NO_ACCEL"] = "1"
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", python_dir],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline()
    if not line:
        p.wait()
        sys.exit(f"{tree}/{path}: the child process failed (exit status {p.returncode})")
    hello = json.loads(line)
    where = os.path.realpath(hello["file"])
    if hello["backend"] != path or not where.startswith(os.path.realpath(python_dir) + os.sep):
        p.stdin.close()
        p.wait()
        sys.exit(f"{tree}/{path}: the child used lock path {hello['backend']!r} from {where}, "
                 f"not {path!r} from {python_dir}")
    return p


def _p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="root of the checkout before the change (required)")
    ap.add_argument("--after", help="root of the checkout with the change (required)")
    ap.add_argument("--batch", type=int, default=20, help="operations per sample")
    add_arguments(ap)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return None
    if not (args.before and args.after):
        ap.error("--before and --after are required")

    trees = {"before": args.before, "after": args.after}
    dirs = {t: _python_dir(trees[t]) for t in TREES}
    if os.path.realpath(dirs["before"]) == os.path.realpath(dirs["after"]):
        sys.exit("--before and --after are the same tree")
    for t in TREES:
        _build(trees[t], args.json_only)
    procs = {}
    try:
        for t in TREES:
            for path in PATHS:
                procs[t, path] = _start(t, dirs[t], path)
        samples = {(t, path, case): [] for t in TREES for path in PATHS for case in CASES}
        order = list(samples)
        for r in range(args.rounds):
            k = (r * 5) % len(order)       # rotate (5 is prime to the 12 keys' count)
            for t, path, case in order[k:] + order[:k]:
                p = procs[t, path]
                p.stdin.write(f"{case} {args.ops} {args.batch}\n")
                p.stdin.flush()
                samples[t, path, case].extend(json.loads(p.stdout.readline()))
    finally:
        for p in procs.values():
            p.stdin.close()
        for p in procs.values():
            p.wait()

    results = [{"case": case, "tree": t, "path": path,
                "median_ns": round(statistics.median(xs), 1), "p99_ns": round(_p99(xs), 1),
                "samples": len(xs)}
               for (t, path, case), xs in samples.items()]
    by = {(r["tree"], r["path"], r["case"]): r for r in results}
    ratios = [{"case": case, "path": path,
               "median_after_over_before": round(by["after", path, case]["median_ns"]
                                                 / by["before", path, case]["median_ns"], 3),
               "p99_after_over_before": round(by["after", path, case]["p99_ns"]
                                              / by["before", path, case]["p99_ns"], 3)}
              for case in CASES for path in PATHS]
    out = {"interpreter": sys.executable, "version": platform.python_version(),
           "rounds": args.rounds, "ops": args.ops, "batch": args.batch,
           "trees": {t: os.path.abspath(trees[t]) for t in TREES},
           "results": results, "ratios": ratios}
    if not args.json_only:
        err = sys.stderr
        print(f"Python {out['version']} ({sys.executable}), {args.rounds} rounds x {args.ops} "
              f"ops, samples of {args.batch} ops", file=err)
        for t in TREES:
            print(f"  {t}: {out['trees'][t]}", file=err)
        print(f"{'case':6} {'path':7} {'tree':7} {'median':>8} {'p99':>8}   (ns/op)", file=err)
        for case in CASES:
            for path in PATHS:
                for t in TREES:
                    r = by[t, path, case]
                    print(f"{case:6} {path:7} {t:7} {r['median_ns']:8.0f} {r['p99_ns']:8.0f}",
                          file=err)
        print(f"{'case':6} {'path':7} after/before: {'median':>7} {'p99':>7}", file=err)
        for r in ratios:
            print(f"{r['case']:6} {r['path']:7} {'':14} {r['median_after_over_before']:7.3f} "
                  f"{r['p99_after_over_before']:7.3f}", file=err)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
