#!/usr/bin/env python3
"""N-dimensional shared arrays (docs/format.md section 12) against their baselines, in one run.

Groups (every row is a median over interleaved rounds, with its p99):
  create   a shared 64 MiB float32 tensor (256 x 256 x 256) from a numpy array: sharedbridge.from_numpy
           (one copy into a new segment) against multiprocessing.Array('f', n) + numpy.frombuffer(...)
           .reshape(...) + a copy (what a multiprocessing user writes), with two floors: a copy into
           freshly mapped memory (its page faults included, as a new segment has them) and a numpy copy
           into memory numpy allocates (transparent huge pages: tmpfs has none here)
  attach   attaching to another process's tensor and viewing it with its shape, by size (flat is the
           goal): sharedbridge.attach(name).numpy() + close against the bare os.open + mmap +
           numpy.frombuffer(...).reshape(...) of the same object, in a fresh process
  dlpack   handing the 64 MiB tensor to PyTorch: torch.from_dlpack(shared) (zero copy) against
           torch.tensor(numpy_array) (a copy) and torch.from_numpy (zero copy of private memory);
           skipped with the reason where PyTorch is not installed
Run: python3 bench/tensor_bench.py [--smoke] [--rounds N]; bench/run.py runs it as the item "tensor".
Figures are never asserted: bench/render.py shows them against the issue's targets.
"""
import argparse
import json
import mmap
import multiprocessing
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
import sharedbridge as sb  # noqa: E402

PREFIX = "sbbench_t_"
MiB = 1 << 20
SHAPE = (256, 256, 256)           # 64 MiB of float32

GROUPS = {"create": "ms", "attach": "us", "dlpack": "us"}
# key -> (group, baseline?, label)
CASES = {
    "create-mp": ("create", True, "multiprocessing.Array('f', n) + numpy.frombuffer(...).reshape(...) + copy"),
    "create-sb": ("create", False, "sharedbridge.from_numpy(array) (a locked n-d array, one copy)"),
    "create-sb-raw": ("create", False, "sharedbridge.from_numpy(array, lock=False)"),
    "create-fresh-copy": ("create", True, "floor: numpy.copyto into a fresh anonymous mmap (its page faults)"),
    "create-np-copy": ("create", True, "floor: numpy.ndarray.copy (numpy's memory: huge pages)"),
    "attach-bare": ("attach", True, "bare os.open + mmap + numpy.frombuffer(...).reshape(...)"),
    "attach-sb": ("attach", False, "sharedbridge.attach(name).numpy() + close"),
    "dlpack-copy": ("dlpack", True, "torch.tensor(numpy_array) (a copy)"),
    "dlpack-from-numpy": ("dlpack", True, "torch.from_numpy(numpy_array) (zero copy, private memory)"),
    "dlpack-sb": ("dlpack", False, "torch.from_dlpack(shared) (zero copy, shared memory)"),
}
FULL = {"rounds": 5, "create_reps": 3, "attach_reps": 200, "dlpack_reps": 200,
        "attach_sizes": [MiB, 64 * MiB, 512 * MiB]}
SMOKE = {"rounds": 1, "create_reps": 1, "attach_reps": 5, "dlpack_reps": 5, "attach_sizes": [MiB, 4 * MiB]}


def _median_p99(samples):
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def _timed(fn, reps):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ---- create -----------------------------------------------------------------------------------

def _create_cases(src):
    import numpy as np
    made = []

    def mp_array():
        a = multiprocessing.Array("f", src.size)
        v = np.frombuffer(a.get_obj(), dtype=np.float32).reshape(src.shape)
        np.copyto(v, src)
        made.append((a, v))

    def sb_from(lock):
        def run():
            made.append(sb.from_numpy(src, name=f"{PREFIX}{os.getpid()}_{len(made)}", lock=lock))
        return run

    def fresh_copy():
        m = mmap.mmap(-1, src.nbytes)
        v = np.frombuffer(m, dtype=np.float32).reshape(src.shape)
        np.copyto(v, src)
        made.append((m, v))

    def np_copy():
        made.append(src.copy())

    def cleanup():
        for obj in made:
            if isinstance(obj, sb.SharedNDArray):
                obj.unlink()
                obj.close()
        made.clear()

    return {"create-mp": mp_array, "create-sb": sb_from(True), "create-sb-raw": sb_from(False),
            "create-fresh-copy": fresh_copy, "create-np-copy": np_copy}, cleanup


# ---- attach (in a fresh process: nothing of the segment is mapped there) ----------------------

_ATTACH_CHILD = r"""
import json, mmap, os, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import sharedbridge as sb
name, reps, rounds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
h = sb.header_of(name)
shape, offset = tuple(h.shape), h.data_offset
path = "/dev/shm/" + name

def ours():
    obj = sb.attach(name)
    obj.numpy()
    obj.close()

def bare():
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    v = np.frombuffer(m, dtype=np.float32, offset=offset).reshape(shape)
    del v
    m.close()

out = {"attach-sb": [], "attach-bare": []}
fns = {"attach-sb": ours, "attach-bare": bare}
for r in range(rounds):
    for key in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
        for _ in range(reps):
            t0 = time.perf_counter()
            fns[key]()
            out[key].append(time.perf_counter() - t0)
print(json.dumps(out))
"""


def _attach_samples(nbytes, cfg):
    name = f"{PREFIX}{os.getpid()}_attach_{nbytes}"
    n = nbytes // 4
    t = sb.ndarray((n // 1024, 32, 32), "f", name=name, lifetime="persistent")
    sb.close(t)          # nothing stays mapped here; the child attaches as another process would
    try:
        proc = subprocess.run([sys.executable, "-c", _ATTACH_CHILD, str(ROOT / "python"), name,
                               str(cfg["attach_reps"]), str(cfg["rounds"])],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"the attach child failed: {proc.stderr.strip()[-800:]}")
        return json.loads(proc.stdout)
    finally:
        sb.unlink(name)


# ---- DLPack -------------------------------------------------------------------------------------

def _dlpack_cases(src):
    import torch
    shared = sb.from_numpy(src, name=f"{PREFIX}{os.getpid()}_dlpack")
    return {"dlpack-copy": lambda: torch.tensor(src),
            "dlpack-from-numpy": lambda: torch.from_numpy(src),
            "dlpack-sb": lambda: torch.from_dlpack(shared)}, shared


# ---- the run ----------------------------------------------------------------------------------

def run(smoke=False, rounds=None, log=lambda m: None):
    import numpy as np
    cfg = dict(SMOKE if smoke else FULL)
    if rounds:
        cfg["rounds"] = rounds
    src = np.random.default_rng(1).random(SHAPE, dtype=np.float32)
    samples = {k: [] for k in CASES}
    extra = {}
    skipped = {}

    fns, cleanup = _create_cases(src)
    for r in range(cfg["rounds"]):
        keys = list(fns)[r % len(fns):] + list(fns)[:r % len(fns)]
        for k in keys:
            samples[k] += [t * 1e3 for t in _timed(fns[k], cfg["create_reps"])]
            cleanup()
    log("tensor: create done")

    attach_rows = []
    for nbytes in cfg["attach_sizes"]:
        got = _attach_samples(nbytes, cfg)
        for k, v in got.items():
            med, p99 = _median_p99([t * 1e6 for t in v])
            attach_rows.append({"case": k, "group": "attach", "bytes": nbytes, "value": med, "p99": med and p99,
                                "unit": "us", "label": CASES[k][2], "baseline": CASES[k][1], "n": len(v)})
    log("tensor: attach done")

    try:
        import torch  # noqa: F401
    except ImportError as e:
        for k in ("dlpack-copy", "dlpack-from-numpy", "dlpack-sb"):
            skipped[k] = f"PyTorch is not installed ({e}): apt-get install python3-torch or pip install torch"
    else:
        extra["torch"] = torch.__version__
        dl, shared = _dlpack_cases(src)
        try:
            for r in range(cfg["rounds"]):
                for k in (list(dl) if r % 2 == 0 else list(dl)[::-1]):
                    samples[k] += [t * 1e6 for t in _timed(dl[k], cfg["dlpack_reps"])]
        finally:
            shared.unlink()
            shared.close()
        log("tensor: dlpack done")

    rows = []
    for k, (group, baseline, label) in CASES.items():
        if group == "attach":
            continue
        row = {"case": k, "group": group, "unit": GROUPS[group], "label": label, "baseline": baseline,
               "bytes": src.nbytes}
        if k in skipped:
            row.update(value=None, p99=None, skipped=skipped[k])
        else:
            med, p99 = _median_p99(samples[k])
            row.update(value=med, p99=p99, n=len(samples[k]))
        rows.append(row)
    return {"rounds": cfg["rounds"], "config": cfg, "rows": rows + attach_rows, **extra}


def table(result):
    lines = [f"{'case':22} {'bytes':>11} {'median':>12} {'p99':>12} unit"]
    for r in result["rows"]:
        v = "skipped" if r["value"] is None else f"{r['value']:,.2f}"
        p = "" if r["p99"] is None else f"{r['p99']:,.2f}"
        lines.append(f"{r['case']:22} {r['bytes']:>11} {v:>12} {p:>12} {r['unit']}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int)
    args = ap.parse_args(argv)
    result = run(args.smoke, args.rounds, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
