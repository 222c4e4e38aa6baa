"""The robust lock across processes: contention, timeouts, a holder killed with
SIGKILL, Ctrl-C while blocked."""

import ctypes
import multiprocessing
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings

import pytest

import sharedbridge as sb
from conftest import child_env, fresh_names, image_of, run_python

HOLDER = (
    "import sys, time, sharedbridge as sb\n"
    "obj = sb.attach(sys.argv[1])\n"
    "lock = obj if isinstance(obj, (sb.Lock, sb.RLock)) else obj.get_lock()\n"
    "for _ in range(int(sys.argv[2])):\n"
    "    assert lock.acquire()\n"
    "if not isinstance(obj, (sb.Lock, sb.RLock)):\n"
    "    obj[0] = 1234            # a completed write under the lock\n"
    "print('held', flush=True)\n"
    "time.sleep(60)\n")


def hold_in_child(name, depth=1):
    """Start a process that attaches *name*, takes its lock *depth* times and waits."""
    child = subprocess.Popen([sys.executable, "-c", HOLDER, name, str(depth)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env())
    assert child.stdout.readline() == "held\n", child.stderr.read()
    return child


def kill(child):
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    child.stdout.close()
    child.stderr.close()


def test_other_process_holds_then_releases_on_timeout():
    lock = sb.RLock()
    child = hold_in_child(lock.name)
    try:
        assert lock.acquire(block=False) is False
        t0 = time.monotonic()
        assert lock.acquire(timeout=0.2) is False
        assert 0.15 < time.monotonic() - t0 < 2
    finally:
        kill(child)
    with pytest.warns(sb.LockRecoveredWarning):
        assert lock.acquire(timeout=5)
    lock.release()


@pytest.mark.parametrize("kind,depth", [("RLock", 1), ("RLock", 3), ("Lock", 1), ("Array", 2)])
def test_holder_killed_with_sigkill_is_recovered(kind, depth):
    obj = {"RLock": sb.RLock, "Lock": sb.Lock, "Array": lambda: sb.Array("i", 2)}[kind]()
    lock = obj if kind != "Array" else obj.get_lock()
    child = hold_in_child(obj.name, depth)
    kill(child)
    assert lock.recoveries == 0
    with pytest.warns(sb.LockRecoveredWarning, match="died") as warned:
        assert lock.acquire(timeout=5) is True
    assert warned[0].filename == __file__       # the user's line, C or ctypes fast path
    h = obj._seg if kind != "Array" else obj.get_obj()._sb_segment
    assert lock.recoveries == 1
    assert h.read_u64(0x188) == 1
    assert int.from_bytes(h.mm[0x190:0x194], "little") == __import__("os").getpid()
    if kind == "Array":
        assert obj[0] == 1234           # the dead holder's completed write is intact
    lock.release()                      # one release, whatever the dead owner's depth
    assert lock.acquire(block=False) is True
    lock.release()
    # and another process can take it: the lock is fully usable again
    run_python("import sys, sharedbridge as sb\n"
               "o = sb.attach(sys.argv[1])\n"
               "l = o if hasattr(o, 'recoveries') else o.get_lock()\n"
               "assert l.acquire(timeout=5); l.release(); assert l.recoveries == 1\n", obj.name)


def test_synchronized_access_recovers_too():
    arr = sb.Array("q", [5, 0])
    child = hold_in_child(arr.name, 1)
    kill(child)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arr[1] += 1
    assert [(w.category, w.filename) for w in caught] == [(sb.LockRecoveredWarning, __file__)]
    assert arr[:] == [1234, 1]
    assert arr.get_lock().recoveries == 1
    again = sb.attach(arr.name).get_lock()
    assert again is arr.get_lock()
    assert again.acquire(block=False)
    again.release()


def test_a_held_lock_keeps_its_memory_mapped():
    # Dropping every reference to a held lock must not unmap the mutex: glibc's robust
    # list points into it, and the next lock operation would write through it.
    proc = run_python(
        "import gc, sharedbridge as sb\n"
        "def mapped(name):\n"
        "    return any(name in line for line in open('/proc/self/maps'))\n"
        "names = []\n"
        "for _ in range(3):\n"
        "    a = sb.Array('i', 1000); a.get_lock().acquire(); names.append(a.name)\n"
        "    l = sb.Lock(); l.acquire(); names.append(l.name)\n"
        "    del a, l; gc.collect()\n"
        "b = sb.Array('d', 5000); b[0] += 1\n"
        "with sb.RLock(): pass\n"
        "print(all(mapped(n) for n in names), b[0])\n")
    assert proc.stdout.split() == ["True", "1.0"]


def test_blocked_acquire_is_interruptible_by_ctrl_c():
    proc = run_python(
        "import os, signal, threading, time, sharedbridge as sb\n"
        "lock = sb.RLock()\n"
        "held = threading.Event()\n"
        "def holder():\n"
        "    lock.acquire(); held.set(); time.sleep(30)\n"
        "threading.Thread(target=holder, daemon=True).start()\n"
        "held.wait()\n"
        "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "t0 = time.monotonic()\n"
        "try:\n"
        "    lock.acquire()\n"
        "    print('acquired?!')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted after %.2f s' % (time.monotonic() - t0))\n"
        "lock.close()\n"
        "os._exit(0)   # the daemon holder thread still sleeps\n", timeout=30)
    assert proc.stdout.startswith("interrupted after"), proc.stdout + proc.stderr
    assert float(proc.stdout.split()[2]) < 1.5


def test_nonrecursive_lock_never_hangs_in_its_owner_thread():
    lock = sb.Lock()
    with lock:
        with pytest.raises(RuntimeError, match="deadlock"):
            lock.acquire()
        assert lock.acquire(timeout=0.05) is False
    assert lock.acquire(False)
    lock.release()


def test_lock_pickles_to_the_same_mutex_in_another_process():
    lock = sb.Lock()
    assert lock.acquire()
    try:
        proc = run_python("import pickle, sys, sharedbridge as sb\n"
                          "l = sb.attach(sys.argv[1])\n"
                          "print(type(l).__name__, l.acquire(timeout=0.1))\n", lock.name)
        assert proc.stdout.split() == ["Lock", "False"]
    finally:
        lock.release()


def test_external_lock_recovery_counts_on_the_lock_segment():
    lock = sb.RLock()
    arr = sb.Array("i", 2, lock=lock)
    child = hold_in_child(arr.name)          # takes the lock through the data segment
    kill(child)
    with pytest.warns(sb.LockRecoveredWarning):
        arr[1] += 1
    lock_img, data_img = image_of(lock), image_of(arr)
    assert struct.unpack_from("<QI", lock_img, 0x188) == (1, os.getpid())
    assert data_img[0x188:0x1C0] == bytes(0x38)
    assert lock.recoveries == 1 and arr.get_lock() is lock


class _Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int)]


@pytest.fixture
def lp_name():
    yield from fresh_names("sbLP")


@pytest.mark.parametrize("make_lock", [multiprocessing.Lock, threading.Lock, sb.Lock, sb.RLock],
                         ids=["multiprocessing.Lock", "threading.Lock", "sb.Lock", "sb.RLock"])
def test_an_accessor_that_fails_raises_its_error_and_releases_the_lock(make_lock, lp_name):
    # Any lock= works as in multiprocessing (`with lock:` around each access); an access
    # that fails raises its own error (as with multiprocessing.sharedctypes) and leaves the
    # lock free: a non-recursive lock would otherwise be held for good.
    lock = make_lock()
    text = sb.Array("c", 3, lock=lock, name=lp_name())
    point = sb.Value(_Point, lock=lock, name=lp_name())
    number = sb.Value("i", lock=lock, name=lp_name())
    arr = sb.Array("i", 2, lock=lock, name=lp_name())
    failing = [
        (ValueError, "too long", lambda: setattr(text, "value", b"too long")),
        (TypeError, "bytes", lambda: setattr(text, "raw", "not bytes")),
        (TypeError, "integer", lambda: setattr(point, "x", "not a number")),
        (TypeError, "integer", lambda: setattr(number, "value", "not a number")),
        (IndexError, "index", lambda: arr[5]),
        (IndexError, "index", lambda: arr.__setitem__(5, 1)),
    ]
    for error, words, access in failing:
        with pytest.raises(error, match=words):
            access()
        assert lock.acquire(False), f"{access} left the lock held"
        lock.release()
    text.value, point.x, number.value, arr[1] = b"ok", 7, 8, 9
    assert (text.value, point.x, number.value, arr[:]) == (b"ok", 7, 8, [0, 9])
    for obj in (text, point, number, arr):
        obj.close()
    if isinstance(lock, sb.SharedLock):
        lock.close()


class _RecordingLock:
    """A lock= that is no sharedbridge lock: records what its __exit__ gets."""

    def __init__(self, suppress):
        self.suppress, self.exits, self.held = suppress, [], 0

    def acquire(self, *args):
        self.held += 1
        return True

    def release(self):
        self.held -= 1

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
        self.exits.append(exc_info[0])
        return self.suppress


def test_any_other_lock_gets_each_access_as_a_with_statement_would(lp_name):
    # As `with lock: arr[i]`: __exit__ sees the access's error, and may suppress it.
    plain, swallowing = _RecordingLock(False), _RecordingLock(True)
    arr = sb.Array("i", 2, lock=plain, name=lp_name())
    quiet = sb.Array("i", 2, lock=swallowing, name=lp_name())
    arr[1] = 4
    with pytest.raises(IndexError):
        arr[5]
    assert (arr[1], plain.exits, plain.held) == (4, [None, IndexError, None], 0)
    assert quiet[5] is None
    quiet[5] = 1
    assert (swallowing.exits, swallowing.held) == ([IndexError, IndexError], 0)
    arr.close()
    quiet.close()


class _OddNames(ctypes.Structure):
    _fields_ = [("class", ctypes.c_int), ("a b", ctypes.c_int), ("ﬁ", ctypes.c_int)]


def test_structure_fields_of_any_name_are_locked_properties():
    # Shared structures have identifier field names (docs/format.md section 4); synchronized() also
    # wraps a private ctypes structure, whose field names can be anything ctypes accepts.
    point = sb.synchronized(_OddNames(1, 2, 3))
    for field, new in (("class", 10), ("a b", 20), ("ﬁ", 30)):
        assert getattr(point, field) == getattr(point.get_obj(), field)
        setattr(point, field, new)
    assert (getattr(point, "class"), getattr(point, "a b"), getattr(point, "ﬁ")) == (10, 20, 30)
    with point:
        setattr(point, "a b", 21)
    assert getattr(point.get_obj(), "a b") == 21
    point.get_lock().close()
