#!/usr/bin/env python3
"""`make bench`: every benchmark (bench/README.md) against its baseline in one run -> results.json.

Usage: python3 bench/run.py [--smoke] [--out DIR] [--only ITEM,...]
  --out DIR    where results.json goes (default build/bench)
  --smoke      tiny sizes, a few seconds per item (the `bench-smoke` test suite)
Then bench/render.py renders docs/benchmarks.md from it (the Makefile runs both).

Schema of results.json (schema 1; bench/README.md):
  {"schema": 1, "smoke": bool, "date": ISO UTC, "git_commit": str, "duration_s": float,
   "machine": {"cpu_model", "cores", "kernel", "glibc", "dotnet_runtime", "mem_available_mib",
               "shm_free_mib", "load_average_start": [1, 5, 15 min], "load_average_end",
               "interpreters": [{"path", "version", "lock_backend"}]},
   "benchmarks": {ITEM: {"title", "unit", "higher_is_better", "cases": [{..., "value": float}]}}}
Every case has "value" (in the item's unit) and the fields that identify it. Items:
  lock_increment, contended, bulk_copy, attach_cost, dotnet_lock, pingpong, pythonnet_handoff, wakeup, queue,
  tensor
(pythonnet_handoff has "skipped": reason when pythonnet does not load; wakeup's cases are the rows of
bench/wakeup.py, every case once per regime ("regime" one-cpu | two-cpus | free) and every sharedbridge case once
per spin setting ("settings"), with the item's "regimes", "single_cpu" and "seen" from its run(): "value"
is the median us per round trip and null in a row with "skipped" (the C floors without a compiler) or
"error" (the case failed: its other cases still ran). Figures are medians of
interleaved rounds (each case of a round runs once, the order rotates between rounds).
queue's cases are the rows of bench/queue_bench.py: its groups have different units, so the item's "unit"
is "per case" and every case carries its own "unit" and "higher_is_better", "value" (median) and "p99"
(the slow tail); "value" is null in a row with "skipped" or "error". The item also has "rounds" and "config"
(the counts of the run).
tensor's cases are the rows of bench/tensor_bench.py (groups create, attach, dlpack), each with its own "unit",
"value" (median), "p99", "baseline" (bool) and "bytes"; the dlpack rows have "skipped" where PyTorch is not
installed.
"""
import argparse
import datetime
import json
import mmap
import multiprocessing
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
import sharedbridge as sb  # noqa: E402

BENCH_DLL = ROOT / "src/Dotnet/SharedBridge.Benchmarks/bin/Release/net10.0/SharedBridge.Benchmarks.dll"
PREFIX = "sbbench_"
KiB, MiB = 1024, 1024 * 1024


def dotnet(*args, timeout=600):
    out = subprocess.run(["dotnet", "exec", str(BENCH_DLL), *map(str, args)], check=True,
                         capture_output=True, text=True, timeout=timeout).stdout
    return out


def interleaved(cases, rounds, reps, unit_of):
    """cases: {key: fn()}; each round times every case once (reps calls), order rotating.
    Returns {key: median of unit_of(seconds per call)}."""
    keys = list(cases)
    samples = {k: [] for k in keys}
    for k in keys:
        cases[k]()                         # warm up, first touch
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            fn = cases[k]
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            samples[k].append(unit_of((time.perf_counter() - t0) / reps))
    return {k: statistics.median(v) for k, v in samples.items()}


# ---- machine -------------------------------------------------------------------------------

def interpreters():
    out = subprocess.run(["bash", "-c", f". {ROOT}/scripts/python-env.sh; python_interpreters"],
                         capture_output=True, text=True).stdout.split()
    return list(dict.fromkeys(out))


def machine(pythons):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    shm = os.statvfs("/dev/shm")
    runtimes = subprocess.run(["dotnet", "--list-runtimes"], capture_output=True, text=True).stdout
    netcore = [line.split()[1] for line in runtimes.splitlines() if line.startswith("Microsoft.NETCore.App")]
    interps = []
    for p in pythons:
        # Build the optional lock extension first, so lock_backend is the path the run uses.
        subprocess.run([p, str(ROOT / "scripts/build_fastlock.py"), "--quiet"], capture_output=True)
        info = subprocess.run([p, "-c", "import sys, platform; sys.path.insert(0, sys.argv[1]); "
                               "import sharedbridge; print(platform.python_version(), sharedbridge.lock_backend())",
                               str(ROOT / "python")], capture_output=True, text=True).stdout.split()
        interps.append({"path": p, "version": info[0] if info else "?",
                        "lock_backend": info[1] if len(info) > 1 else "?"})
    return {"cpu_model": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "glibc": " ".join(platform.libc_ver()), "dotnet_runtime": ", ".join(netcore),
            "mem_available_mib": int(meminfo["MemAvailable"].split()[0]) // 1024,
            "shm_free_mib": shm.f_bavail * shm.f_frsize // MiB,
            "load_average_start": list(os.getloadavg()), "interpreters": interps}


# ---- 1: locked element increment, every interpreter ----------------------------------------

def item_lock_increment(smoke, pythons):
    cases = []
    for p in pythons:
        ops, rounds = ("2000", "2") if smoke else ("60000", "7")
        out = subprocess.run([p, str(ROOT / "bench/lock_increment.py"), "--json-only", "--ops", ops,
                              "--rounds", rounds], check=True, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT / "python"))).stdout
        res = json.loads(out)
        for row in res["results"]:
            cases.append({"interpreter": res["version"], "case": row["case"], "impl": row["impl"],
                          "backend": row["backend"], "value": row["ns_per_op"],
                          "ratio_to_multiprocessing": row["ratio_to_mp"]})
    return {"title": "Locked increment (lock: `with arr.get_lock(): arr[i] += 1`; sync: synchronized "
                     "`arr[i] += 1`; value-lock: `with v.get_lock(): v.value += 1`; value-sync: "
                     "synchronized `v.value += 1`)",
            "unit": "ns/op", "higher_is_better": False, "cases": cases}


# ---- 2: contended throughput ---------------------------------------------------------------

def _py_contend(arr, start, duration, queue):
    lock = arr.get_lock()
    while time.time() < start:
        pass
    end = time.monotonic() + duration
    count = 0
    while time.monotonic() < end:
        for _ in range(256):
            with lock:
                arr[0] += 1
        count += 256
    queue.put(count)


def _contend_once(kind, n_py, n_cs, duration, lead):
    ctx = multiprocessing.get_context("fork")
    if kind == "multiprocessing":
        arr = ctx.Array("q", 1)
    else:
        arr = sb.Array("q", 1, name=f"{PREFIX}contend_{os.getpid()}")
    queue = ctx.Queue()
    start = time.time() + lead + 0.3 * n_cs      # every worker is up and waiting by then
    try:
        procs = [ctx.Process(target=_py_contend, args=(arr, start, duration, queue)) for _ in range(n_py)]
        for p in procs:
            p.start()
        cs = [subprocess.Popen(["dotnet", "exec", str(BENCH_DLL), "contend", arr.name, str(int(start * 1000)),
                                str(int(duration * 1000))], stdout=subprocess.PIPE, text=True)
              for _ in range(n_cs)]
        counts = [queue.get(timeout=60) for _ in procs]
        for c in cs:
            out, _ = c.communicate(timeout=60)
            if c.returncode != 0:
                raise RuntimeError(f"the C# contend worker failed ({c.returncode})")
            counts.append(int(out))
        for p in procs:
            p.join(10)
        total = arr[0]
        if total != sum(counts):
            raise RuntimeError(f"lost increments: counter {total}, workers {sum(counts)}")
        return sum(counts) / duration
    finally:
        if kind != "multiprocessing":
            sb.close(arr)


def item_contended(smoke):
    duration = 0.3 if smoke else 1.5
    rounds = 1 if smoke else 3
    configs = []
    for n in (1, 2, 4):
        configs += [("multiprocessing.Array (Python only)", "multiprocessing", n, 0, n),
                    ("SharedBridge, Python only", "sb", n, 0, n),
                    ("SharedBridge, C# only", "sb", 0, n, n)]
    configs.append(("SharedBridge, 2 C# + 2 Python", "sb", 2, 2, 4))
    samples = {c: [] for c in configs}
    for r in range(rounds):
        for c in configs[r % len(configs):] + configs[:r % len(configs)]:
            samples[c].append(_contend_once(c[1], c[2], c[3], duration, 0.2 if smoke else 0.8))
    cases = [{"variant": c[0], "processes": c[4], "python_processes": c[2], "csharp_processes": c[3],
              "value": statistics.median(v) / 1e6} for c, v in samples.items()]
    return {"title": "Contended throughput on one locked counter (`with a.get_lock(): a[0] += 1` / "
                     "`using (a.Lock()) a[0]++`), all processes together",
            "unit": "M increments/s", "higher_is_better": True, "duration_s_per_round": duration,
            "cases": cases}


# ---- 3: bulk copy --------------------------------------------------------------------------

def copy_sizes(smoke, mach):
    if smoke:
        return [4 * KiB, 1 * MiB]
    room = min(mach["mem_available_mib"], mach["shm_free_mib"]) * MiB
    sizes, s = [], 4 * KiB
    while s <= 256 * MiB and 6 * s < room:       # segment + 2 private buffers, twice over
        sizes.append(s)
        s *= 4
    return sizes


def item_bulk_copy(smoke, mach):
    import numpy as np
    sizes = copy_sizes(smoke, mach)
    rounds = 2 if smoke else 5
    cases = []
    for n in sizes:
        seg = sb.RawArray("B", n)
        view = sb.as_numpy(seg)
        mv = memoryview(seg).cast("B")
        a = np.random.default_rng(1).integers(0, 255, n, dtype=np.uint8)
        b = np.empty_like(a)
        mva, mvb = memoryview(a), memoryview(b)
        reps = max(1, min(1000, (16 if smoke else 64) * MiB // n))

        def mv_into():
            mv[:] = mva

        def mv_out():
            mvb[:] = mv

        def mv_private():
            mvb[:] = mva
        fns = {("numpy copyto", "into segment"): lambda: np.copyto(view, a),
               ("numpy copyto", "out of segment"): lambda: np.copyto(b, view),
               ("numpy copyto", "private to private"): lambda: np.copyto(b, a),
               ("memoryview slice", "into segment"): mv_into,
               ("memoryview slice", "out of segment"): mv_out,
               ("memoryview slice", "private to private"): mv_private}
        res = interleaved(fns, rounds, reps, lambda s, n=n: n / s / 1e9)
        cases += [{"lang": "Python", "method": m, "case": c, "bytes": n, "value": v}
                  for (m, c), v in res.items()]
        del view, mv
        sb.close(seg)
    for row in json.loads(dotnet("copy", rounds, *sizes)):
        cases.append({"lang": row["lang"], "method": row["method"], "case": row["case"],
                      "bytes": row["bytes"], "value": row["gb_per_s"]})
    return {"title": "Bulk copy into / out of a segment vs between two private buffers",
            "unit": "GB/s", "higher_is_better": True, "cases": cases}


# ---- 4: attach + as_numpy / Open cost by size ----------------------------------------------

def item_attach_cost(smoke):
    import numpy as np
    sizes = [4 * KiB, 1 * MiB] if smoke else [4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB, 64 * MiB, 256 * MiB]
    rounds = 2 if smoke else 5
    reps = 20 if smoke else 200
    cases = []
    for n in sizes:
        name = f"{PREFIX}attach_{os.getpid()}_{n}"
        # Created persistent and closed again: an attach in the creating process would share the
        # creator's mapping (no open, no mmap); this one does what another process does.
        sb.close(sb.RawArray("d", n // 8, name=name, keep=True))
        path = "/dev/shm/" + name

        def ours():
            obj = sb.attach(name)
            sb.as_numpy(obj)
            sb.close(obj)

        def bare():
            fd = os.open(path, os.O_RDWR)
            try:
                m = mmap.mmap(fd, 0)
            finally:
                os.close(fd)
            v = np.frombuffer(m, dtype=np.uint8)
            del v
            m.close()
        res = interleaved({"sharedbridge.attach + as_numpy + close": ours,
                           "bare os.open + mmap + numpy.frombuffer": bare}, rounds, reps, lambda s: s * 1e6)
        cases += [{"lang": "Python", "case": k, "bytes": n, "value": v} for k, v in res.items()]
        sb.unlink(name)
    for row in json.loads(dotnet("open", rounds, *sizes)):
        cases.append({"lang": row["lang"], "case": row["case"], "bytes": row["bytes"],
                      "value": row["us_per_call"]})
    return {"title": "Cost of attaching to an existing array, by its size (flat is the goal)",
            "unit": "us/call", "higher_is_better": False, "cases": cases}


# ---- 5: .NET lock (BenchmarkDotNet) --------------------------------------------------------

def item_dotnet_lock(smoke, out_dir):
    path = out_dir / "bdn.json"
    dotnet("bdn", "smoke" if smoke else "short", path)
    res = json.loads(path.read_text())
    path.unlink()
    return {"title": ".NET lock + increment, BenchmarkDotNet (uncontended and 2 threads on one lock)",
            "unit": "ns/op", "higher_is_better": False, "benchmarkdotnet": res["bdn_version"],
            "job": res["job"], "toolchain": res["toolchain"],
            "cases": [{"case": r["case"], "threads": r["threads"], "value": r["ns_per_op"],
                       "stddev": r["ns_stddev"]} for r in res["results"]]}


# ---- 6: Event ping-pong and the pythonnet hand-off -----------------------------------------

def item_pingpong(smoke, out_dir):
    path = out_dir / "pingpong.json"
    subprocess.run([sys.executable, str(ROOT / "python/benchmarks/bench_sync_pingpong.py"), "--rounds",
                    "300" if smoke else "5000", "--json", str(path)], check=True, capture_output=True,
                   timeout=300)
    res = json.loads(path.read_text())
    path.unlink()
    return {"title": "Event ping-pong round trip between two processes", "unit": "us/round trip",
            "higher_is_better": False,
            "cases": [{"variant": k, "value": v["median_us"], "p90_us": v["p90_us"],
                       "round_trips": v["round_trips"]} for k, v in res["results"].items()]}


def item_pythonnet(smoke):
    proc = subprocess.run([sys.executable, str(ROOT / "bench/pythonnet_handoff.py")]
                          + (["--smoke"] if smoke else []), capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "python")))
    title = "pythonnet hand-off: a .NET SharedArray<double> to numpy / to the Python object and back"
    if proc.returncode == 3:
        return {"title": title, "unit": "us/call", "higher_is_better": False, "cases": [],
                "skipped": proc.stdout.strip() or proc.stderr.strip()[-300:]}
    if proc.returncode != 0:
        raise RuntimeError(f"bench/pythonnet_handoff.py failed: {proc.stderr[-2000:]}")
    return {"title": title, "unit": "us/call", "higher_is_better": False, "cases": json.loads(proc.stdout)}


# ---- 7: wake-up round trips (bench/wakeup.py) -----------------------------------------------

def item_wakeup(smoke):
    import wakeup       # bench/wakeup.py, next to this script (sys.path[0])
    round_trips, rounds, warmup = wakeup.SMOKE if smoke else wakeup.FULL
    res = wakeup.run(round_trips, rounds, warmup, log=lambda m: print(m, file=sys.stderr, flush=True))
    return {"title": "Wake-up round trip between two processes (ping-pong), against the C floors and "
                     "multiprocessing / SemaphoreSlim, on one CPU, on two CPUs and free",
            "unit": "us/round trip", "higher_is_better": False, "round_trips": round_trips, "rounds": rounds,
            "warmup_per_session": warmup, "regimes": res["regimes"], "single_cpu": res["single_cpu"],
            "seen": res["seen"], "cases": res["rows"]}


# ---- 8: queues (bench/queue_bench.py) --------------------------------------------------------

def item_queue(smoke):
    import queue_bench  # bench/queue_bench.py, next to this script (sys.path[0])
    res = queue_bench.run(smoke, log=lambda m: print(m, file=sys.stderr, flush=True))
    return {"title": "Queues between processes: sharedbridge Queue / SharedQueue against multiprocessing.Queue, "
                     "the C floor and a numpy copy",
            "unit": "per case", "higher_is_better": True, "rounds": res["rounds"], "config": res["config"],
            "cases": res["rows"]}


# ---- 9: n-dimensional arrays (bench/tensor_bench.py) ---------------------------------------------

def item_tensor(smoke):
    import tensor_bench  # bench/tensor_bench.py, next to this script (sys.path[0])
    res = tensor_bench.run(smoke, log=lambda m: print(m, file=sys.stderr, flush=True))
    return {"title": "N-dimensional shared arrays: from_numpy, attach and the DLPack hand-off against "
                     "multiprocessing.Array, a bare mmap and torch copies",
            "unit": "per case", "higher_is_better": False, "rounds": res["rounds"], "config": res["config"],
            "torch": res.get("torch"), "cases": res["rows"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "build/bench"))
    ap.add_argument("--only", help="comma-separated item names (default: all)")
    args = ap.parse_args(argv)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    pythons = interpreters()
    if args.smoke:
        pythons = [p for p in pythons if p == "/usr/bin/python3"] or pythons[:1]
    mach = machine(pythons)
    items = {"lock_increment": lambda: item_lock_increment(args.smoke, pythons),
             "contended": lambda: item_contended(args.smoke),
             "bulk_copy": lambda: item_bulk_copy(args.smoke, mach),
             "attach_cost": lambda: item_attach_cost(args.smoke),
             "dotnet_lock": lambda: item_dotnet_lock(args.smoke, out_dir),
             "pingpong": lambda: item_pingpong(args.smoke, out_dir),
             "pythonnet_handoff": lambda: item_pythonnet(args.smoke),
             "wakeup": lambda: item_wakeup(args.smoke),
             "queue": lambda: item_queue(args.smoke),
             "tensor": lambda: item_tensor(args.smoke)}
    only = args.only.split(",") if args.only else list(items)
    unknown = [name for name in only if name not in items]
    if unknown:
        ap.error(f"unknown item(s) {', '.join(unknown)}; items: {', '.join(items)}")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    results = {"schema": 1, "smoke": args.smoke,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "git_commit": commit, "machine": mach, "benchmarks": {}}
    for name in only:
        t = time.monotonic()
        results["benchmarks"][name] = items[name]()
        results["benchmarks"][name]["seconds"] = round(time.monotonic() - t, 1)
        print(f"bench: {name} done in {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
    mach["load_average_end"] = list(os.getloadavg())
    results["duration_s"] = round(time.monotonic() - t0, 1)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"bench: wrote {out_dir / 'results.json'} in {results['duration_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
