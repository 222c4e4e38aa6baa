"""The scenarios with sharedbridge: a Python parent whose children are other driver processes
(C# or Python), and the Python worker side of every scenario. The parent prints exactly the
lines cross_baseline.py prints with the standard library; the suite compares them.

Segment names are BASE + a suffix, so the test that chose BASE can remove every one of them.
"""
import ctypes
import json
import subprocess
import sys
import time
import warnings

from cross_baseline import HEAVY_ROUNDS, Point

import sharedbridge as sb

INCREMENT_LOOPS = 50
POINTS = [(1.875, -6.25), (-5.75, 2.0), (2.375, 9.5)]


# ---- parents ---------------------------------------------------------------------------------

def run_children(commands):
    """Start every child at once (they run in parallel), wait for all; their stdout goes to our
    stderr so that our stdout holds only the scenario's result lines."""
    procs = []
    try:
        for argv in commands:
            procs.append(subprocess.Popen(argv, stdout=sys.stderr.fileno()))
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [(argv, code) for argv, code in zip(commands, codes) if code != 0]
    for argv, code in failed:
        print(f"child {argv} exited with {code}", file=sys.stderr)
    return 1 if failed else 0


def parent_sharedctypes(base, children):
    lock = sb.Lock(name=base + "_lk")
    n = sb.Value("i", 7, name=base + "_n")
    x = sb.Value(ctypes.c_double, 1.0 / 3.0, lock=False, name=base + "_x")
    s = sb.Array("c", b"hello world", lock=lock, name=base + "_s")
    A = sb.Array(Point, POINTS, lock=lock, name=base + "_A")
    status = run_children([c + ["worker", "sharedctypes", n.name, x.name, s.name, A.name] for c in children])
    print(n.value)
    print(x.value)
    print(s.value)
    print([(a.x, a.y) for a in A])
    return status


def _increments(base, children, loops, pause):
    shared_arr = sb.Array("i", 5, name=base + "_arr")
    print(f"Initial State: {list(shared_arr)}")
    args = ["worker", "increment", shared_arr.name, str(loops), "pause" if pause else "nopause"]
    status = run_children([c + args for c in children])
    print("--- All processes completed ---")
    print(f"Final Result: {list(shared_arr)}")
    print(f"Total: {sum(shared_arr)}")
    expected = [len(children) * loops] * 5
    print(">> Success: All elements were updated correctly." if list(shared_arr) == expected
          else ">> Failure: Data inconsistency occurred.")
    return status


def parent_disjoint(base, children):
    arr = sb.Array("i", 10, lock=False, name=base + "_arr")
    parts = [("0", "5", "100"), ("5", "10", "200")]
    status = run_children([c + ["worker", "fill", arr.name, *part] for c, part in zip(children, parts)])
    print(list(arr))
    return status


PARENTS = {
    "sharedctypes": parent_sharedctypes,
    "increment": lambda base, children: _increments(base, children, INCREMENT_LOOPS, True),
    "heavy": lambda base, children: _increments(base, children, HEAVY_ROUNDS, False),
    "disjoint": parent_disjoint,
}


def run_parent(scenario, base, children):
    return PARENTS[scenario](base, children)


# ---- workers ---------------------------------------------------------------------------------

def worker_sharedctypes(n_name, x_name, s_name, a_name):
    """The documentation's modify(n, x, s, A), on objects attached by name."""
    n, x, s, A = (sb.attach(name) for name in (n_name, x_name, s_name, a_name))
    n.value **= 2
    x.value **= 2
    s.value = s.value.upper()
    for a in A:
        a.x **= 2
        a.y **= 2
    return 0


def worker_increment(name, loops, pause):
    shared_array = sb.attach(name)
    for _ in range(int(loops)):
        for i in range(len(shared_array)):
            with shared_array.get_lock():
                shared_array[i] += 1
        if pause == "pause":
            time.sleep(0.001)
    return 0


def worker_fill(name, start, end, value):
    arr = sb.attach(name)
    for i in range(int(start), int(end)):
        arr[i] = int(value)
    return 0


def worker_hold(name, *values):
    """Take the lock (twice if it is recursive), write the values, say so, wait to be killed."""
    arr = sb.attach(name)
    lock = arr.get_lock()
    lock.acquire()
    if isinstance(lock, sb.RLock):
        lock.acquire()
    for i, v in enumerate(values):
        arr.get_obj()[i] = int(v)
    print(json.dumps({"holding": name}), flush=True)
    time.sleep(600)
    return 3  # reached only if nobody killed us: the test failed to


def worker_acquire(name):
    """Acquire the lock once and report whether that recovered it from a dead owner."""
    arr = sb.attach(name)
    lock = arr.get_lock()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        acquired = lock.acquire(timeout=10)
    if not acquired:
        print(json.dumps({"acquired": False}), flush=True)
        return 1
    try:
        recovered = any(issubclass(w.category, sb.LockRecoveredWarning) for w in caught)
        values = list(arr.get_obj())
        print(json.dumps({"acquired": True, "recovered": recovered, "recoveries": lock.recoveries,
                          "values": values,
                          "warnings": [str(w.message) for w in caught]}), flush=True)
    finally:
        lock.release()
    return 0


def _probe(call):
    """The outcome of one acquire attempt, in the words both drivers use."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = call()
    except sb.LockNotRecoverableError:
        return "not-recoverable"
    except sb.CorruptLockError:
        return "corrupt-lock"
    except Exception as exc:  # noqa: BLE001 - reported, the test decides
        return f"other:{type(exc).__name__}:{exc}"
    return "acquired" if got else "busy"


def worker_lock_probe(name):
    """Every acquire entry point, twice, on the lock of the int array *name*; then the lock
    word. Output: {"outcomes": [...], "lock_word": N}."""
    arr = sb.attach(name)
    lock = arr.get_lock()

    def held(acquired):
        if acquired:
            lock.release()
        return acquired

    def accessor():
        arr[0] = arr[0]
        return True

    calls = [lambda: held(lock.acquire()), lambda: held(lock.acquire(timeout=1.5)),
             lambda: held(lock.acquire(False)), accessor]
    outcomes = [_probe(call) for _ in range(2) for call in calls]
    word = int.from_bytes(arr.get_lock()._seg.mm[0x1C0:0x1C4], "little")
    print(json.dumps({"outcomes": outcomes, "lock_word": word}), flush=True)
    return 0


def worker_reset_lock(name):
    """The operator's reset (docs/format.md section 7.4). Output: {"reset": bool}."""
    print(json.dumps({"reset": sb.reset_lock(name)}), flush=True)
    return 0


def worker_soak(name, seconds):
    """Locked increments of a[0] of the int64 array *name* until *seconds* have passed,
    alternating the two lock idioms; reports its own count: {"count": N}."""
    arr = sb.attach(name)
    lock = arr.get_lock()
    deadline = time.monotonic() + float(seconds)
    count = 0
    while time.monotonic() < deadline:
        for _ in range(100):
            with lock:
                arr[0] += 1
            lock.acquire(timeout=5)
            try:
                arr.get_obj()[0] += 1
            finally:
                lock.release()
        count += 200
    print(json.dumps({"count": count}), flush=True)
    return 0


def worker_read_elements(name, _typecode=None):
    """Read every element of the array *name* the way a user does (arr[:]); report the values
    (characters as code points, bools as true/false) or the error class."""
    arr = sb.attach(name)
    try:
        values = arr[:]
    except sb.CorruptDataError as exc:
        print(json.dumps({"result": "corrupt-data", "message": str(exc)}), flush=True)
        return 0
    canon = [v if isinstance(v, bool) else ord(v) if isinstance(v, str) else v for v in values]
    print(json.dumps({"result": "ok", "values": canon}), flush=True)
    return 0


WORKERS = {
    "read-elements": worker_read_elements,
    "soak": worker_soak,
    "lock-probe": worker_lock_probe,
    "reset-lock": worker_reset_lock,
    "sharedctypes": worker_sharedctypes,
    "increment": worker_increment,
    "fill": worker_fill,
    "hold": worker_hold,
    "acquire": worker_acquire,
}


def run_worker(scenario, args):
    if scenario.startswith("sync-"):
        import cross_sync
        return cross_sync.WORKERS[scenario](*args)
    if scenario.startswith("q-"):
        import cross_queue
        return cross_queue.WORKERS[scenario](*args)
    return WORKERS[scenario](*args)
