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

Three regimes, every case in each, reported apart (docs/wakeups-design.md section 9: where the two processes
run changes the figures by an order of magnitude, so a ratio is only taken within one regime):
  one-cpu   every process of the session pinned to one CPU a (os.sched_setaffinity before exec; the forked
            and .NET children inherit it): CPU --cpu, default the lowest this process may use;
  two-cpus  the driving side pinned to CPU a, the serving side to CPU b (the lowest other CPU this process
            may use), in every case: the session is pinned to {a} before exec and gets SB_WAKE_SERVER_CPU=b;
            the serving side pins itself to {b} (the forked Python server at the start of _serve, the C#
            server through its Popen's preexec_fn, the C floors' forked child with sched_setaffinity);
            .NET's SemaphoreSlim (two threads of one process) gets {a, b}. Unlike free, the two sides are
            always on two different CPUs, so its cross-CPU figures repeat from run to run. Each side may
            use one CPU only, so the libraries' spin rule (no spin on one usable CPU) applies to both;
  free      no pinning (the scheduler sometimes puts both sides on one CPU: figures vary between runs).
Two-cpus and free are not run when this process may use only one CPU (they would be one-cpu again).
Spin settings: each sharedbridge case runs with the default spin (SHAREDBRIDGE_SPIN_US unset in every
process of the session) and as "KEY@spin-off" (SHAREDBRIDGE_SPIN_US=0 in every process, Python and .NET);
the baselines run with the variable unset. Before the sessions, a probe per regime and setting records
what each language saw: its spin budget (when the library has that setting) and how many CPUs it may use.

Usage: python3 bench/wakeup.py [--smoke] [--round-trips N] [--rounds R] [--warmup W] [--patience S]
                               [--only CASE,...] [--regimes one-cpu,two-cpus,free] [--cpu N] [--list]
Prints a table on stderr and the rows (below) as JSON on stdout; bench/run.py imports run().
Each (round, case) is a session in a fresh process group with a timeout; the rounds interleave the
cases of each regime in a rotating order (the regimes alternate too) and a case's samples are pooled
over its rounds (`--round-trips` in all, after `--warmup` unmeasured ones per session). One exception:
the spin floor on one CPU runs at most ONE_CPU_SPIN_ROUND_TRIPS per session (a spinner on the only CPU
waits for the scheduler to preempt it, milliseconds per round trip; the row has "capped"). Every wait
is cut into slices of SLICE seconds: when a slice times out (never on the hot path) the side checks
that its peer is alive and that it has waited less than `--patience` seconds, and otherwise gives up,
so a dead side ends the session. A case that fails keeps its row with "error" and is not run again
(in that regime). Segments are named sbWB<pid>_<round>_<regime>_<case>_*; whatever a session leaves in
/dev/shm is removed and counted.

Row: {"regime" ("one-cpu" | "two-cpus" | "free"), "cpus" (the pinned CPUs, [a] or [a, b] (driving side,
serving side), or null), "case", "label", "kind", "impl",
"pair", "driver", "server", "baseline": bool, "settings" ("spin default" | "spin off" for sharedbridge,
null for the baselines), "value" (median us per round trip, null when skipped or failed), "p90_us",
"p99_us", "mean_us", "max_us", "round_trips", "sessions", "leftover_segments", "capped" (a reason, only
when fewer round trips were run on purpose), and "skipped" or "error" (a reason) when there are no
samples}. "skipped" is only "no compiler ..." for the C floors. A run (run()) returns {"regimes": [{"regime",
"cpus", "label"}], "single_cpu": a reason or null (only one regime: two-cpus and free are not run),
"seen": [{"regime", "settings", "Python": {...}, "C#": {...}}] (the probes), "rows": [...]}.
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

# key -> (kind, impl, driver, server, baseline).
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

SPIN_ENV = "SHAREDBRIDGE_SPIN_US"
# Settings every sharedbridge case also runs with, name -> environment of every process of its session
# (row "settings": the name with a space). The case under its own key runs with SPIN_ENV unset (the
# library's default); so do the baselines.
VARIANTS = {"spin-off": {SPIN_ENV: "0"}}
DEFAULT_SETTINGS = "spin default"
ONE_CPU_SPIN_ROUND_TRIPS = 50    # per session: about 8 ms each (design section 9), 0.4 s
REGIMES = ("one-cpu", "two-cpus", "free")
SERVER_CPU_ENV = "SB_WAKE_SERVER_CPU"   # two-cpus: the CPU the serving side pins itself to
# (round trips per case and regime, rounds, warm-up round trips per session); bench/README.md counts the
# time a full run takes.
FULL = (3000, 3, 200)
SMOKE = (30, 1, 5)


def case_keys():
    """Every case of one regime, in order: CASES, each sharedbridge case followed by its variants."""
    keys = []
    for k, (_, impl, *_rest) in CASES.items():
        keys.append(k)
        if impl == "sharedbridge":
            keys += [f"{k}@{v}" for v in VARIANTS]
    return keys


def settings_of(key):
    base, variant = _split(key)
    if CASES[base][1] != "sharedbridge":
        return None
    return variant.replace("-", " ") if variant else DEFAULT_SETTINGS


def session_env(key):
    """The environment of every process of a session of *key*: SPIN_ENV unset unless its variant sets it."""
    env = {k: v for k, v in os.environ.items() if k != SPIN_ENV}
    env.update(VARIANTS.get(_split(key)[1], {}))
    return env


def regimes(cpu=None, wanted=REGIMES):
    """[{"regime", "cpus", "label"}] in *wanted* (a subset of REGIMES, in REGIMES' order), and a reason when
    "two-cpus" and "free" are left out because this process may use one CPU only (both would be one-cpu)."""
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[0] if cpu is None else cpu
    if cpu not in allowed:
        raise ValueError(f"CPU {cpu} is not one this process may use ({allowed}); pass --cpu with one of them")
    out, single = [], None
    if "one-cpu" in wanted:
        out.append({"regime": "one-cpu", "cpus": [cpu],
                    "label": f"every process of a session pinned to CPU {cpu}"})
    if len(allowed) > 1 and "two-cpus" in wanted:
        other = next(c for c in allowed if c != cpu)
        out.append({"regime": "two-cpus", "cpus": [cpu, other],
                    "label": f"the driving side on CPU {cpu}, the serving side on CPU {other}"})
    if ("free" in wanted or "two-cpus" in wanted) and len(allowed) == 1:
        single = (f"this process may use only CPU {cpu}: the two-cpus and free regimes are the same as the "
                  "pinned one, so they are not run")
        if not out:
            out.append({"regime": "one-cpu", "cpus": [cpu],
                        "label": f"the only CPU this process may use (CPU {cpu}), which is also the free regime"})
    if "free" in wanted and len(allowed) > 1:
        out.append({"regime": "free", "cpus": None,
                    "label": f"no pinning: the scheduler places the processes on CPUs {allowed}"})
    return out, single


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
    pin_server()
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


def server_cpus():
    """The serving side's CPUs in the two-cpus regime ({b} from SERVER_CPU_ENV), or None (other regimes)."""
    cpu = os.environ.get(SERVER_CPU_ENV)
    return {int(cpu)} if cpu else None


def pin_server():
    """Called first on the serving side (in the forked server; a C# server's preexec_fn): pins it to
    CPU b in the two-cpus regime, does nothing in the others."""
    cpus = server_cpus()
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def _dotnet(*args):
    return ["dotnet", "exec", str(BENCH_DLL), "wake", *map(str, args)]


def _start_cs_server(kind, total, peer, patience, names):
    proc = subprocess.Popen(_dotnet("serve", kind, total, peer, patience, *names), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=pin_server)
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


def _pin(cpus):
    """preexec_fn of a session: every process it starts (forked, exec'd, .NET) inherits the affinity."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _placement(key, cpus, env):
    """The CPUs a session of *key* is pinned to under the regime's *cpus* ([a], [a, b] or None), and *env*
    completed: in two-cpus the session (the driving side) gets {a} and SERVER_CPU_ENV=b, which the serving
    side pins itself to; SemaphoreSlim's two threads of one process get {a, b}."""
    env = {k: v for k, v in env.items() if k != SERVER_CPU_ENV}
    if cpus is None or len(cpus) == 1:
        return cpus, env
    if key == "dotnet-semaphoreslim":
        return cpus, env
    return cpus[:1], dict(env, **{SERVER_CPU_ENV: str(cpus[1])})


def _run_session(key, n, warmup, patience, prefix, floor, cpus):
    """One session in its own process group (a timeout kills the group), placed by _placement (None:
    free); returns (samples, error)."""
    cmd = _command(key, n, warmup, patience, prefix, floor)
    pin, env = _placement(key, cpus, dict(session_env(key), PYTHONPATH=str(ROOT / "python")))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env, preexec_fn=_pin(pin))
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


_PY_PROBE = """import json, os, sys, sharedbridge as sb
sys.path.insert(0, {bench!r})
import wakeup
get = getattr(sb, "get_spin_budget", None)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    wakeup.pin_server()
    os.write(w, json.dumps(sorted(os.sched_getaffinity(0))).encode())
    os._exit(0)
os.close(w)
server = json.loads(os.read(r, 4096))
os.waitpid(pid, 0)
print(json.dumps({{"spin_budget_us": get() if get else None, "cpus": len(os.sched_getaffinity(0)),
                  "driver_affinity": sorted(os.sched_getaffinity(0)), "server_affinity": server}}))"""


def _probe(cmd, key, cpus):
    """What one language sees in a session of *key* placed in *cpus*' regime (as the driving side):
    {"spin_budget_us" (null when the library has no such setting), "cpus"} or {"error"}; Python's also
    has "driver_affinity" and "server_affinity" (what a forked server got from pin_server)."""
    pin, env = _placement(key, cpus, dict(session_env(key), PYTHONPATH=str(ROOT / "python")))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=READY_S, preexec_fn=_pin(pin),
                              env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {READY_S} s"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"exit code {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}"}


def probe(key, cpus):
    """Both languages' view of the settings of *key* (its SHAREDBRIDGE_SPIN_US) under *cpus*."""
    seen = {PY: _probe([sys.executable, "-c", _PY_PROBE.format(bench=str(ROOT / "bench"))], key, cpus)}
    seen[CS] = (_probe(_dotnet("settings"), key, cpus) if BENCH_DLL.exists()
                else {"error": f"{BENCH_DLL.name} is not built"})
    return seen


def _stats(samples_ns):
    s = sorted(x / 1000 for x in samples_ns)

    def pct(p):
        return s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))]
    return {"value": statistics.median(s), "p90_us": pct(0.90), "p99_us": pct(0.99),
            "mean_us": statistics.fmean(s), "max_us": s[-1], "round_trips": len(s)}


def run(round_trips=3000, rounds=3, warmup=200, patience=10.0, only=None, log=None, regime_names=REGIMES,
        cpu=None):
    """Every case (or those in *only*) in every regime of *regime_names*, *rounds* interleaved rounds;
    returns {"regimes", "single_cpu", "seen", "rows"} (the module docstring)."""
    keys = [k for k in case_keys() if only is None or k in only]
    unknown = set(only or ()) - set(case_keys())
    if unknown:
        raise ValueError(f"unknown wake-up cases {sorted(unknown)}; known: {', '.join(case_keys())}")
    bad = set(regime_names) - set(REGIMES)
    if bad or not regime_names:
        raise ValueError(f"unknown wake-up regimes {sorted(bad)}; known: {', '.join(REGIMES)}")
    regs, single = regimes(cpu, regime_names)
    per_round = max(1, round_trips // rounds)
    slots = [(g["regime"], k) for g in regs for k in keys]
    samples = {s: [] for s in slots}
    problems, capped = {}, {}
    leftovers = {s: 0 for s in slots}
    sessions = {s: 0 for s in slots}
    with tempfile.TemporaryDirectory(prefix="wakebench") as work:
        floor, why = (_build_floor(work) if any(k.startswith("floor-") for k in keys) else (None, None))
        for g, k in slots:
            if k.startswith("floor-") and floor is None:
                problems[(g, k)] = why
            elif CS in CASES[_split(k)[0]][2:4] and not BENCH_DLL.exists():
                problems[(g, k)] = f"error: {BENCH_DLL.name} is not built (dotnet build SharedBridge.sln -c Release)"
        # One probe per regime and spin setting (a sharedbridge key of each: the environment is the same).
        settings_keys = {settings_of(k): k for k in keys if settings_of(k)}
        seen = [{"regime": g["regime"], "settings": name, **probe(k, g["cpus"])}
                for g in regs for name, k in settings_keys.items()]
        for r in range(rounds):
            for g in (regs if r % 2 == 0 else regs[::-1]):
                for k in keys[r % len(keys):] + keys[:r % len(keys)]:
                    slot = (g["regime"], k)
                    if slot in problems:
                        continue
                    n, w = per_round, warmup
                    if g["regime"] == "one-cpu" and k == "floor-spin" and n > ONE_CPU_SPIN_ROUND_TRIPS:
                        n, w = ONE_CPU_SPIN_ROUND_TRIPS, min(warmup, 5)
                        capped[slot] = (f"{n} round trips per session: a spinner on the only CPU waits for the "
                                        "scheduler to preempt it (milliseconds per round trip)")
                    prefix = f"sbWB{os.getpid()}_{r}_{regs.index(g)}_{keys.index(k)}_"
                    got, err = _run_session(k, n, w, patience, prefix, floor, g["cpus"])
                    sessions[slot] += 1
                    leftovers[slot] += _leftovers(prefix)
                    if err:
                        problems[slot] = f"error: round {r + 1}: {err}"
                        if log:
                            log(f"wakeup: {g['regime']} {k}: {problems[slot]}")
                    else:
                        samples[slot] += got
    rows = []
    cpus = {g["regime"]: g["cpus"] for g in regs}
    for g, k in slots:
        kind, impl, driver, server, baseline = CASES[_split(k)[0]]
        row = {"regime": g, "cpus": cpus[g], "case": k, "label": label(k), "kind": kind, "impl": impl,
               "pair": " <-> ".join(sorted([driver, server])), "driver": driver, "server": server,
               "baseline": baseline, "settings": settings_of(k), "sessions": sessions[(g, k)],
               "leftover_segments": leftovers[(g, k)]}
        if (g, k) in capped:
            row["capped"] = capped[(g, k)]
        why = problems.get((g, k))
        if why is None:
            row.update(_stats(samples[(g, k)]))
        else:
            row.update({"value": None, "round_trips": len(samples[(g, k)])})
            if why.startswith("error: "):
                row["error"] = why[len("error: "):]
            else:
                row["skipped"] = why
        rows.append(row)
    return {"regimes": regs, "single_cpu": single, "seen": seen, "rows": rows}


def label(key):
    """The row's name in tables: what waits, which sides, and the spin setting for sharedbridge."""
    base = _split(key)[0]
    kind, impl, driver, server, _ = CASES[base]
    fixed = {"floor-futex": "C: bare futex wait/wake on a shared word (the kernel's floor)",
             "floor-spin": "C: two processes spinning on one cache line (the hardware's floor)",
             "mp-pipe": "multiprocessing.Pipe echo, Python <-> Python",
             "dotnet-semaphoreslim": ".NET SemaphoreSlim, two threads of one process"}
    if base in fixed:
        return fixed[base]
    sides = f"{driver} <-> {server}" if driver == server else f"{driver} drives, {server} serves"
    if impl == "multiprocessing":
        return f"multiprocessing.{kind.capitalize()}, {sides}"
    return f"sharedbridge {kind.capitalize()}, {sides}, {settings_of(key)}"


def table(result):
    lines = []
    if result["single_cpu"]:
        lines.append(f"(free regime not run: {result['single_cpu']})")
    for s in result["seen"]:
        lines.append(f"{s['regime']:8} {s['settings']:13} seen: " + "; ".join(
            f"{lang} {s[lang]}" for lang in (PY, CS)))
    lines.append(f"{'regime':8} {'case':31} {'median us':>10} {'p99 us':>10} {'p99/med':>8} {'n':>6}")
    for r in result["rows"]:
        if r["value"] is None:
            lines.append(f"{r['regime']:8} {r['case']:31} {r.get('skipped') or r.get('error')}")
        else:
            lines.append(f"{r['regime']:8} {r['case']:31} {r['value']:10.2f} {r['p99_us']:10.2f} "
                         f"{r['p99_us'] / r['value']:8.1f} {r['round_trips']:6}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help=f"tiny: {SMOKE[1]} round of {SMOKE[0]} round trips, "
                                                         f"warm-up {SMOKE[2]}")
    ap.add_argument("--round-trips", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--patience", type=float, default=10.0)
    ap.add_argument("--only", help="comma-separated case keys (see --list)")
    ap.add_argument("--regimes", default=",".join(REGIMES),
                    help="comma-separated, of one-cpu, two-cpus, free (default: all three)")
    ap.add_argument("--cpu", type=int, help="CPU a: the one-cpu regime's, the driving side's in two-cpus "
                                            "(default: the lowest allowed; b is the lowest other one)")
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
    size = SMOKE if args.smoke else FULL
    result = run(args.round_trips or size[0], args.rounds or size[1],
                 size[2] if args.warmup is None else args.warmup, args.patience,
                 args.only.split(",") if args.only else None, log=lambda m: print(m, file=sys.stderr),
                 regime_names=tuple(args.regimes.split(",")), cpu=args.cpu)
    print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
