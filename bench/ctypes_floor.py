"""The floor of the ctypes lock path against multiprocessing, per idiom of the seeds.

Usage: PYTHON bench/ctypes_floor.py [--rounds R] [--number N]
(run from the repository root, or with the package importable).

The ctypes path (SHAREDBRIDGE_NO_ACCEL=1) makes one locked access with two foreign calls,
the non-blocking lock_now and the checked unlock (docs/format.md section 7.3). This times,
in one process, in interleaved rounds (minimum over rounds, ns):
  pair        lock_now + unlock, bound as the package binds them (robust_mutex.py)
  with        an empty `with` block of a Python context manager (what `with lock:` costs
              before the lock does anything)
  item, attr  `x[2] += 1` / `x.value += 1` through empty Python __getitem__/__setitem__
              and an empty Python property (what a synchronized access costs before it
              locks anything)
  mp-*        multiprocessing's whole idiom (Array('q', 5), Value('q'))
and prints, per idiom, two floors and their ratio to multiprocessing's time:
  calls       the foreign calls alone (a `with` block: 1 pair; a synchronized `+= 1`: a
              locked read and a locked write, 2 pairs)
  +python     the calls plus the Python calls the idiom cannot avoid (the `with` block,
              one Python accessor call per access)
An idiom whose floor exceeds multiprocessing's time cannot reach parity on the ctypes
path, whatever the Python around the calls does. Prints one JSON object to stdout.
"""

import argparse
import json
import os
import platform
import sys
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))


class _Cm:
    __slots__ = ()

    def __enter__(self):
        return True

    def __exit__(self, exc_type, exc, tb):
        pass


class _Item:
    def __init__(self, obj):
        self._obj = obj

    def __getitem__(self, key):
        return self._obj[key]

    def __setitem__(self, key, value):
        self._obj[key] = value


class _Attr:
    def __init__(self, obj):
        self._obj = obj

    def _get(self):
        return self._obj.value

    def _set(self, value):
        self._obj.value = value

    value = property(_get, _set)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--number", type=int, default=20_000)
    args = ap.parse_args(argv)

    os.environ["SHAREDBRIDGE_NO_ACCEL"] = "1"
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    import ctypes
    import multiprocessing
    import sharedbridge as sb
    from sharedbridge._platform import robust_mutex as rm

    lock = sb.RLock()
    # The package's non-blocking acquire: pthread_mutex_timedlock(m, PAST), or (earlier
    # versions) pthread_mutex_clocklock(m, CLOCK_MONOTONIC, PAST).
    if getattr(rm.lock_now, "__name__", "") == "pthread_mutex_timedlock":
        pair = "lock_now(m, PAST); unlock(m)"
    else:
        pair = "lock_now(m, CLOCK, PAST); unlock(m)"
    g = {
        "m": lock._m, "lock_now": rm.lock_now, "unlock": rm.unlock,
        "CLOCK": rm.CLOCK_MONOTONIC, "PAST": rm.PAST, "cm": _Cm(),
        "item": _Item((ctypes.c_longlong * 5)()), "attr": _Attr(ctypes.c_longlong()),
        "ma": multiprocessing.Array("q", 5), "mv": multiprocessing.Value("q", 0),
    }
    cases = {
        "pair": pair,
        "with": "with cm: pass",
        "item": "item[2] += 1",
        "attr": "attr.value += 1",
        "mp-lock": "with ma.get_lock(): ma[2] += 1",
        "mp-sync": "ma[2] += 1",
        "mp-value-lock": "with mv.get_lock(): mv.value += 1",
        "mp-value-sync": "mv.value += 1",
        "loop": "pass",
    }
    timers = {k: timeit.Timer(s, globals=g) for k, s in cases.items()}
    times = {k: [] for k in cases}
    order = list(cases)
    for r in range(args.rounds):
        k = r % len(order)
        for name in order[k:] + order[:k]:
            times[name].append(timers[name].timeit(args.number) / args.number * 1e9)
    lock.close()
    best = {k: min(v) for k, v in times.items()}
    loop = best.pop("loop")
    best = {k: v - loop for k, v in best.items()}     # the timeit loop itself

    floors = {}
    for idiom, pairs, shape, with_block in (("lock", 1, "item", True), ("sync", 2, "item", False),
                                             ("value-lock", 1, "attr", True),
                                             ("value-sync", 2, "attr", False)):
        calls = pairs * best["pair"]
        python = calls + best[shape] + (best["with"] if with_block else 0)
        mp = best["mp-" + idiom]
        floors[idiom] = {"mp": round(mp, 1), "calls": round(calls, 1),
                         "calls_x_mp": round(calls / mp, 2), "calls_python": round(python, 1),
                         "calls_python_x_mp": round(python / mp, 2)}
    out = {"version": platform.python_version(), "interpreter": sys.executable,
           "rounds": args.rounds, "number": args.number,
           "pieces": {k: round(v, 1) for k, v in best.items()}, "floors": floors}
    print(f"Python {out['version']} ({sys.executable}): minimum of {args.rounds} x "
          f"{args.number}, ns, timeit loop subtracted", file=sys.stderr)
    pieces = out["pieces"].items()
    print("  " + ", ".join(f"{k} {v:.0f}" for k, v in pieces if not k.startswith("mp")),
          file=sys.stderr)
    print(f"  {'idiom':10} {'mp':>6} {'calls':>6} {'x mp':>5} {'+python':>8} {'x mp':>5}",
          file=sys.stderr)
    for idiom, f in floors.items():
        print(f"  {idiom:10} {f['mp']:6.0f} {f['calls']:6.0f} {f['calls_x_mp']:5.2f} "
              f"{f['calls_python']:8.0f} {f['calls_python_x_mp']:5.2f}", file=sys.stderr)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
