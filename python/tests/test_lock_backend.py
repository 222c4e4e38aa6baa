"""The lock's fast path is compiled (_platform/_fastlock.c) or ctypes, chosen at import.

scripts/test-python.sh builds the extension for each interpreter (scripts/build_fastlock.py),
sets SHAREDBRIDGE_EXPECT_ACCEL=1 where it was built, and runs the lock tests a second time
with SHAREDBRIDGE_NO_ACCEL=1: every lock test runs on both paths, and this file checks that
each run used the path it meant to and that the two paths share one mutex correctly.
"""

import os
import subprocess
import sys

import pytest

import sharedbridge as sb
from sharedbridge._platform import lock_core

from conftest import PYTHON_DIR, child_env

NO_ACCEL = os.environ.get("SHAREDBRIDGE_NO_ACCEL", "") not in ("", "0")


def test_the_run_uses_the_backend_it_expects():
    if NO_ACCEL:
        assert sb.lock_backend() == "ctypes"
        assert isinstance(sb.RLock(), lock_core.PyLockCore)
    elif os.environ.get("SHAREDBRIDGE_EXPECT_ACCEL") == "1":
        # Built by scripts/build_fastlock.py for this interpreter: it must load.
        assert sb.lock_backend() == "c"
        assert not isinstance(sb.RLock(), lock_core.PyLockCore)
    else:
        pytest.skip("neither SHAREDBRIDGE_NO_ACCEL nor SHAREDBRIDGE_EXPECT_ACCEL is set")


def test_no_accel_forces_ctypes_in_a_fresh_process():
    env = child_env()
    env["SHAREDBRIDGE_NO_ACCEL"] = "1"
    out = subprocess.run([sys.executable, "-c", "import sharedbridge as sb; print(sb.lock_backend())"],
                         env=env, cwd=PYTHON_DIR, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ctypes", out.stderr


def test_both_paths_exclude_each_other_on_one_mutex():
    # This process and a child on the other path (where the extension exists) each do
    # locked increments at the same time, through the lock and through the wrapper's
    # context manager: none is lost. (A plain `a[i] += 1` is a locked read, then a locked
    # write, as in multiprocessing: it may lose updates, so it is not counted here.)
    n = 3000
    arr = sb.Array("q", 2)
    env = child_env()
    if NO_ACCEL:
        env.pop("SHAREDBRIDGE_NO_ACCEL")
    else:
        env["SHAREDBRIDGE_NO_ACCEL"] = "1"
    code = ("import sys, sharedbridge as sb\n"
            "a = sb.attach(sys.argv[1]); print(sb.lock_backend(), flush=True); sys.stdin.readline()\n"
            f"for _ in range({n}):\n"
            "    with a.get_lock():\n"
            "        a[0] += 1\n"
            "    with a:\n"
            "        a[1] += 1\n")
    child = subprocess.Popen([sys.executable, "-c", code, arr.name], env=env, cwd=PYTHON_DIR,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child_backend = child.stdout.readline().strip()
        child.stdin.write("go\n")
        child.stdin.flush()
        for _ in range(n):
            with arr.get_lock():
                arr[0] += 1
            with arr:
                arr[1] += 1
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if NO_ACCEL:
        assert child_backend in ("c", "ctypes")
    else:
        assert child_backend == "ctypes"
    assert arr[:] == [2 * n, 2 * n]


@pytest.mark.parametrize("lock_cls", [sb.Lock, sb.RLock])
def test_acquire_takes_the_arguments_of_its_python_signature(lock_cls):
    lock = lock_cls()
    assert lock.acquire(True, None) is True
    lock.release()
    assert lock.acquire(block=False) is True
    lock.release()
    assert lock.acquire(timeout=0.1) is True
    lock.release()
    assert lock.acquire(True, timeout=0.1) is True
    lock.release()
    for args, kwargs in (((True, None, 1), {}), ((), {"wait": True}), ((True,), {"block": True})):
        with pytest.raises(TypeError):
            lock.acquire(*args, **kwargs)
    assert lock.state == "free"
    with lock:
        assert lock._owner is not None and lock._depth == 1
    assert lock._owner is None and lock._depth == 0
