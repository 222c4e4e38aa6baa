#!/usr/bin/env python3
"""Wake-up round trips between two processes: sharedbridge's waiting objects against the floors and
the baselines, every case in one run (item `wakeup` of `make bench`; bench/README.md).

One round trip: the driving side hands "ping" over and waits for "pong"; the serving side waits for
"ping" and hands "pong" back. Kinds (the .NET sides: `SharedBridge.Benchmarks wake`, Wake.cs):
  event      driver ping.set(), pong.wait(), pong.clear(); server ping.wait(), ping.clear(), pong.set()
  semaphore  two semaphores at 0: driver ping.release(), pong.acquire(); server the mirror
  condition  a condition and an int `state` (0); each side holds the condition's lock for the whole
             run except inside wait(): driver state = 1, notify(), wait until state == 0; server
             waits until state == 1, state = 0, notify()
  pipe       multiprocessing.Pipe echo: send_bytes(b"x"), recv_bytes() against recv + send back
Floors: bench/c/wake_floor.c (compiled here with `cc` when there is one): bare futex wait/wake on a
shared word, and two processes spinning on one cache line. .NET's baseline: SemaphoreSlim between two
threads of one process. Python <-> Python pairs run under the fork start method.

Usage: python3 bench/wakeup.py [--smoke] [--round-trips N] [--rounds R] [--warmup W] [--patience S]
                               [--only CASE,...] [--list]
Prints a table on stderr and the rows (below) as JSON on stdout; bench/run.py imports run().
Each (round, case) is a session in a fresh process group with a timeout; the rounds interleave the
cases in a rotating order and a case's samples are pooled over its rounds (`--round-trips` in all,
after `--warmup` unmeasured ones per session). Every wait is cut into slices of SLICE seconds: when
a slice times out (never on the hot path) the side checks that its peer is alive and that it has
waited less than `--patience` seconds, and otherwise gives up, so a dead side ends the session. A
case that fails keeps its row with "error" and is not run again. Segments are named
sbWB<pid>_<session>_*; whatever a session leaves in /dev/shm is removed and counted.

Row: {"case", "label", "kind", "impl", "pair", "driver", "server", "baseline": bool, "settings", "value"
(median us per round trip, null when skipped or failed), "p90_us", "p99_us", "mean_us", "max_us",
"round_trips", "sessions", "leftover_segments", and "skipped" or "error" (a reason) when there are
no samples}. "skipped" is only "no compiler ..." for the C floors.
"""
import argparse
import json
import math
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
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_DLL = ROOT / "src/Dotnet/SharedBridge.Benchmarks/bin/Release/net10.0/SharedBridge.Benchmarks.dll"
FLOOR_SRC = ROOT / "bench/c/wake_floor.c"
SLICE = 0.2          # seconds per wait slice; the peer is checked only when one times out
READY_S = 60         # a .NET side must print "ready" within this (start-up on a loaded machine)

PY, CS, C = "Python", "C#", "C"

# key -> (kind, impl, driver, server, baseline); "settings" default (a spin switch adds rows later).
CASES = {
    "floor-futex": ("futex word", "C, bare FUTEX_WAIT/FUTEX_WAKE", C, C, True),
    "floor-spin": ("cache line", "C, both sides spinning", C, C, True),
    "mp-event": ("event", "multiprocessing", PY, PY, True),
    "mp-pipe": ("pipe", "multiprocessing", PY, PY, True),
    "mp-semaphore": ("semaphore", "multiprocessing", PY, PY, True),
    "mp-condition": ("condition", "multiprocessing", PY, PY, True),
    "dotnet-semaphoreslim": ("semaphore", ".NET SemaphoreSlim (2 threads)", CS, CS, True),
    "sb-event-py-py": ("event", "sharedbridge", PY, PY, False),
    "sb-event-py-cs": ("event", "sharedbridge", PY, CS, False),
    "sb-event-cs-py": ("event", "sharedbridge", CS, PY, False),
    "sb-event-cs-cs": ("event", "sharedbridge", CS, CS, False),
    "sb-semaphore-py-py": ("semaphore", "sharedbridge", PY, PY, False),
    "sb-semaphore-py-cs": ("semaphore", "sharedbridge", PY, CS, False),
    "sb-semaphore-cs-cs": ("semaphore", "sharedbridge", CS, CS, False),
    "sb-condition-py-py": ("condition", "sharedbridge", PY, PY, False),
    "sb-condition-py-cs": ("condition", "sharedbridge", PY, CS, False),
    "sb-condition-cs-cs": ("condition", "sharedbridge", CS, CS, False),
}

# Settings to compare, name -> environment of every process of the session: each sharedbridge case
# also runs as "KEY@NAME" with it (row "settings": NAME). Empty until the library has such settings;
# e.g. {"spin-off": {"SHAREDBRIDGE_...": "0"}} for the spin-off targets.
VARIANTS = {}


def case_keys():
    """Every case of a full run, in order: CASES, then each sharedbridge case under each variant."""
    return list(CASES) + [f"{k}@{v}" for v in VARIANTS for k in CASES if CASES[k][1] == "sharedbridge"]


def _split(key):
    base, _, variant = key.partition("@")
    return base, variant or None


class GaveUp(Exception):
    pass


def _checker(alive, patience):
    def check(slices):
        if not alive():
            raise GaveUp("the other side has died")
        if slices * SLICE > patience:
            raise GaveUp(f"no progress within the patience ({patience} s)")
    return check


# ---- the two halves of a round trip, per kind (the driver's ping, the server's pong) -------------

def _event_ping(ping, pong, check):
    ping.set()
    s = 0
    while not pong.wait(SLICE):
        s += 1
        check(s)
    pong.clear()


def _event_pong(ping, pong, check):
    s = 0
    while not ping.wait(SLICE):
        s += 1
        check(s)
    ping.clear()
    pong.set()


def _semaphore_ping(ping, pong, check):
    ping.release()
    s = 0
    while not pong.acquire(timeout=SLICE):
        s += 1
        check(s)


def _semaphore_pong(ping, pong, check):
    s = 0
    while not ping.acquire(timeout=SLICE):
        s += 1
        check(s)
    pong.release()


def _condition_ping(cond, state, check):
    state.value = 1
    cond.notify()
    s = 0
    while state.value != 0:
        if not cond.wait(SLICE):
            s += 1
            check(s)


def _condition_pong(cond, state, check):
    s = 0
    while state.value != 1:
        if not cond.wait(SLICE):
            s += 1
            check(s)
    state.value = 0
    cond.notify()


def _pipe_ping(conn, check):
    # No poll(): a blocking recv is the baseline; a dead peer closes its end (EOFError).
    conn.send_bytes(b"x")
    conn.recv_bytes()


def _pipe_pong(conn, check):
    conn.send_bytes(conn.recv_bytes())


HALVES = {"event": (_event_ping, _event_pong), "semaphore": (_semaphore_ping, _semaphore_pong),
          "condition": (_condition_ping, _condition_pong), "pipe": (_pipe_ping, _pipe_pong)}


class _Held:
    """Holds the condition's lock around a whole run (None: nothing to hold)."""

    def __init__(self, cond, patience):
        self.cond, self.patience = cond, patience

    def __enter__(self):
        if self.cond is not None and not self.cond.acquire(timeout=self.patience):
            raise GaveUp("the condition's lock was not free within the patience")

    def __exit__(self, *exc):
        if self.cond is not None:
            self.cond.release()


def _drive(kind, objs, n, warmup, check, patience):
    ping = HALVES[kind][0]
    times = [0] * n
    clock = time.perf_counter_ns
    with _Held(objs[0] if kind == "condition" else None, patience):
        for i in range(-warmup, n):
            t0 = clock()
            ping(*objs, check)
            t1 = clock()
            if i >= 0:
                times[i] = t1 - t0
    return times


def _serve(kind, objs, total, patience, parent, close=None):
    """The forked Python server; exits 1 with a message when it gives up."""
    if close is not None:
        close.close()       # the driver's end of a pipe: a dead driver then means EOF here
    pong = HALVES[kind][1]
    try:
        check = _checker(lambda: os.getppid() == parent, patience)
        with _Held(objs[0] if kind == "condition" else None, patience):
            for _ in range(total):
                pong(*objs, check)
    except (GaveUp, EOFError, OSError) as e:
        print(f"wakeup: Python server ({kind}): {e!r}", file=sys.stderr)
        sys.exit(1)


# ---- a session: one case, one round, in its own process (`--session`) ---------------------------

def _sb_objects(kind, prefix):
    import sharedbridge as sb
    if kind == "event":
        objs = (sb.Event(name=prefix + "ping"), sb.Event(name=prefix + "pong"))
    elif kind == "semaphore":
        # reclaim=False: the units are passed from one process to the other, not held (docs/api.md).
        objs = (sb.Semaphore(0, name=prefix + "ping", reclaim=False),
                sb.Semaphore(0, name=prefix + "pong", reclaim=False))
    else:
        objs = (sb.Condition(name=prefix + "cond"), sb.RawValue("i", 0, name=prefix + "state"))
    names = [prefix + s for s in (("cond", "state") if kind == "condition" else ("ping", "pong"))]
    return objs, names, lambda: [sb.close(o) for o in objs]


def _mp_objects(kind, ctx):
    if kind == "event":
        return ctx.Event(), ctx.Event()
    if kind == "semaphore":
        return ctx.Semaphore(0), ctx.Semaphore(0)
    if kind == "condition":
        return ctx.Condition(), ctx.RawValue("i", 0)
    raise ValueError(kind)


class _Server:
    """The serving side of a session: a forked Python child (*child*) or a .NET process (*proc*)."""

    def __init__(self, what, child=None, proc=None):
        self.what, self.child, self.proc = what, child, proc
        self.pid = (child or proc).pid

    def alive(self):
        return self.child.is_alive() if self.child else self.proc.poll() is None

    def end(self, patience, failed):
        """After the driver: wait up to *patience* s for a clean exit (an error if it was not one);
        when the driver *failed*, stop the server at once (the driver's error is the one to report)."""
        if self.child:
            self.child.join(0 if failed else patience)
            if self.child.is_alive():
                self.child.kill()
                self.child.join()
            code, err = self.child.exitcode, ""
        else:
            if failed:
                self.proc.kill()
            try:
                _, err = self.proc.communicate(timeout=patience)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, err = self.proc.communicate()
            code = self.proc.returncode
        if code != 0 and not failed:
            raise RuntimeError(f"{self.what} failed (exit code {code}) {err.strip()[-1500:]}")


def _watchdog(pid, patience, what):
    """Ends this session (exit 1) when process *pid* has died and the session is still running
    *patience* seconds later: the slice checks cannot help a wait that blocks without a timeout
    (multiprocessing.Condition.wait takes its lock back without one, and a dead holder leaves it
    held). The thread sleeps in select() on a pidfd: nothing on the hot path."""
    fd = os.pidfd_open(pid)

    def watch():
        select.select([fd], [], [])
        time.sleep(patience)
        print(f"wakeup: {what} has ended and this side is still running {patience} s later",
              file=sys.stderr, flush=True)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _fork_server(ctx, kind, objs, total, patience, close=None):
    child = ctx.Process(target=_serve, args=(kind, objs, total, patience, os.getpid(), close), daemon=True)
    child.start()
    _watchdog(child.pid, patience, "the Python server")
    return _Server("the Python server", child=child)


def _dotnet(*args):
    return ["dotnet", "exec", str(BENCH_DLL), "wake", *map(str, args)]


def _start_cs_server(kind, total, peer, patience, names):
    proc = subprocess.Popen(_dotnet("serve", kind, total, peer, patience, *names), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], READY_S)
    line = proc.stdout.readline().strip() if ready else ""
    if line != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"the C# server did not start ({line!r}): {err.strip()[-1500:]}")
    _watchdog(proc.pid, patience, "the C# server")
    return _Server("the C# server", proc=proc)


def _cs_drive(kind, n, warmup, peer, patience, names):
    proc = subprocess.Popen(_dotnet("drive", kind, n, warmup, peer, patience, *names),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=READY_S + patience + n * 0.02)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the C# driver failed (exit code {proc.returncode}): {err.strip()[-1500:]}")
    return [int(t) for t in out.split()]


def session(key, n, warmup, patience, prefix):
    """Runs case *key* once: warmup + n round trips; returns the n measured ones in ns."""
    kind, impl, driver, server, _ = CASES[_split(key)[0]]
    ctx = multiprocessing.get_context("fork")
    total = n + warmup
    close = None
    if key == "mp-pipe":
        here, there = ctx.Pipe()
        srv = _fork_server(ctx, "pipe", (there,), total, patience, close=here)
        there.close()
        close = here.close
        drive = lambda: _drive("pipe", (here,), n, warmup, None, patience)  # noqa: E731
    elif impl == "multiprocessing":
        objs = _mp_objects(kind, ctx)
        srv = _fork_server(ctx, kind, objs, total, patience)
        drive = lambda: _drive(kind, objs, n, warmup, _checker(srv.alive, patience), patience)  # noqa: E731
    else:
        objs, names, close = _sb_objects(kind, prefix)
        try:
            if server == PY:
                # With a C# driver, the server's first wait also covers the driver's start-up.
                srv = _fork_server(ctx, kind, objs, total, patience + (READY_S if driver == CS else 0))
            else:
                srv = _start_cs_server(kind, total, os.getpid(), patience + (READY_S if driver == CS else 0),
                                       names)
        except BaseException:
            close()
            raise
        if driver == PY:
            drive = lambda: _drive(kind, objs, n, warmup, _checker(srv.alive, patience), patience)  # noqa: E731
        else:
            drive = lambda: _cs_drive(kind, n, warmup, srv.pid, patience, names)  # noqa: E731
    try:
        try:
            times = drive()
        except BaseException:
            srv.end(patience, failed=True)
            raise
        srv.end(patience, failed=False)
        return times
    finally:
        if close is not None:
            close()


# ---- the run: every case, rounds interleaved ---------------------------------------------------

def _build_floor(work):
    cc = shutil.which("cc")
    if cc is None:
        return None, "no compiler (cc not found)"
    exe = pathlib.Path(work) / "wake_floor"
    proc = subprocess.run([cc, "-O2", "-o", str(exe), str(FLOOR_SRC)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        return None, f"error: cc failed: {proc.stderr[-1500:]}"
    return exe, None


def _command(key, n, warmup, patience, prefix, floor):
    if key.startswith("floor-"):
        return [str(floor), key.split("-", 1)[1], str(n), str(warmup), str(patience)]
    if key == "dotnet-semaphoreslim":
        return _dotnet("slim", n, warmup, patience)
    return [sys.executable, str(pathlib.Path(__file__).resolve()), "--session", key, "--round-trips", str(n),
            "--warmup", str(warmup), "--patience", str(patience), "--prefix", prefix]


def _leftovers(prefix):
    gone = 0
    for path in pathlib.Path("/dev/shm").glob(prefix + "*"):
        # Names carry this run's pid and the session number: only that session made them, and it
        # has ended (or been killed), so nothing else uses them.
        try:
            path.unlink()
            gone += 1
        except FileNotFoundError:
            pass
    return gone


def _run_session(key, n, warmup, patience, prefix, floor, env):
    """One session in its own process group (a timeout kills the group); returns (samples, error)."""
    cmd = _command(key, n, warmup, patience, prefix, floor)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "python"), **env))
    limit = READY_S + 3 * patience + n * 0.02
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"timed out after {limit:.0f} s"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)      # whatever the session left running
        except ProcessLookupError:
            pass
    if proc.returncode != 0:
        return None, f"exit code {proc.returncode}: {err.strip()[-1500:]}"
    samples = [int(t) for t in out.split()]
    if len(samples) != n or min(samples, default=0) <= 0:
        return None, f"expected {n} positive samples, got {len(samples)}: {out[:200]!r}"
    return samples, None


def _stats(samples_ns):
    s = sorted(x / 1000 for x in samples_ns)

    def pct(p):
        return s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))]
    return {"value": statistics.median(s), "p90_us": pct(0.90), "p99_us": pct(0.99),
            "mean_us": statistics.fmean(s), "max_us": s[-1], "round_trips": len(s)}


def run(round_trips=3000, rounds=3, warmup=200, patience=10.0, only=None, log=None):
    """Every case (or those in *only*), *rounds* interleaved rounds; returns the rows."""
    keys = [k for k in case_keys() if only is None or k in only]
    unknown = set(only or ()) - set(case_keys())
    if unknown:
        raise ValueError(f"unknown wake-up cases {sorted(unknown)}; known: {', '.join(case_keys())}")
    per_round = max(1, round_trips // rounds)
    samples = {k: [] for k in keys}
    problems = {}
    leftovers = {k: 0 for k in keys}
    sessions = {k: 0 for k in keys}
    with tempfile.TemporaryDirectory(prefix="wakebench") as work:
        floor, why = (_build_floor(work) if any(k.startswith("floor-") for k in keys) else (None, None))
        for k in keys:
            if k.startswith("floor-") and floor is None:
                problems[k] = why
            elif CS in CASES[_split(k)[0]][2:4] and not BENCH_DLL.exists():
                problems[k] = f"error: {BENCH_DLL.name} is not built (dotnet build SharedBridge.sln -c Release)"
        for r in range(rounds):
            order = keys[r % len(keys):] + keys[:r % len(keys)]
            for k in order:
                if k in problems:
                    continue
                prefix = f"sbWB{os.getpid()}_{r}_{keys.index(k)}_"
                got, err = _run_session(k, per_round, warmup, patience, prefix, floor,
                                        VARIANTS.get(_split(k)[1], {}))
                sessions[k] += 1
                leftovers[k] += _leftovers(prefix)
                if err:
                    problems[k] = f"error: round {r + 1}: {err}"
                    if log:
                        log(f"wakeup: {k}: {problems[k]}")
                else:
                    samples[k] += got
    rows = []
    for k in keys:
        kind, impl, driver, server, baseline = CASES[_split(k)[0]]
        row = {"case": k, "label": label(k), "kind": kind, "impl": impl, "pair": " <-> ".join(sorted([driver, server])),
               "driver": driver, "server": server,
               "baseline": baseline, "settings": _split(k)[1] or "default", "sessions": sessions[k],
               "leftover_segments": leftovers[k]}
        why = problems.get(k)
        if why is None:
            row.update(_stats(samples[k]))
        else:
            row.update({"value": None, "round_trips": len(samples[k])})
            if why.startswith("error: "):
                row["error"] = why[len("error: "):]
            else:
                row["skipped"] = why
        rows.append(row)
    return rows


def label(key):
    """The row's name in tables: what waits, which sides, and the settings when not the defaults."""
    key, variant = _split(key)
    if variant:
        return f"{label(key)} [{variant}]"
    kind, impl, driver, server, _ = CASES[key]
    fixed = {"floor-futex": "C: bare futex wait/wake on a shared word (the kernel's floor)",
             "floor-spin": "C: two processes spinning on one cache line (the hardware's floor)",
             "mp-pipe": "multiprocessing.Pipe echo, Python <-> Python",
             "dotnet-semaphoreslim": ".NET SemaphoreSlim, two threads of one process"}
    if key in fixed:
        return fixed[key]
    sides = f"{driver} <-> {server}" if driver == server else f"{driver} drives, {server} serves"
    if impl == "multiprocessing":
        return f"multiprocessing.{kind.capitalize()}, {sides}"
    return f"sharedbridge {kind.capitalize()}, {sides}"


def table(rows):
    lines = [f"{'case':22} {'median us':>10} {'p99 us':>10} {'p99/med':>8} {'n':>6}"]
    for r in rows:
        if r["value"] is None:
            lines.append(f"{r['case']:22} {r.get('skipped') or r.get('error')}")
        else:
            lines.append(f"{r['case']:22} {r['value']:10.2f} {r['p99_us']:10.2f} "
                         f"{r['p99_us'] / r['value']:8.1f} {r['round_trips']:6}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny: 1 round of 30 round trips, warm-up 5")
    ap.add_argument("--round-trips", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--patience", type=float, default=10.0)
    ap.add_argument("--only", help="comma-separated case keys (see --list)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--session", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(case_keys()))
        return 0
    if args.session:
        sys.path.insert(0, str(ROOT / "python"))
        try:
            times = session(args.session, args.round_trips, args.warmup, args.patience, args.prefix)
        except (GaveUp, RuntimeError, EOFError, OSError) as e:
            print(f"wakeup session {args.session}: {e}", file=sys.stderr)
            return 1
        print(" ".join(map(str, times)))
        return 0
    size = (30, 1, 5) if args.smoke else (3000, 3, 200)
    rows = run(args.round_trips or size[0], args.rounds or size[1],
               size[2] if args.warmup is None else args.warmup, args.patience,
               args.only.split(",") if args.only else None, log=lambda m: print(m, file=sys.stderr))
    print(table(rows), file=sys.stderr)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
