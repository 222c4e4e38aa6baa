"""Shared fixtures: segment-leak guard, helpers to run real child interpreters."""

import gc
import itertools
import os
import subprocess
import sys
import tempfile

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHM = "/dev/shm"
_counter = itertools.count()


def _created_here(name):
    # Other programs (the .NET suite, the cross suite) may create sb_ segments at the
    # same time: only segments whose header names this process as creator are ours.
    if name.startswith(f"sbt_{os.getpid()}_"):
        return True
    try:
        with open(os.path.join(SHM, name), "rb") as f:
            head = f.read(0x48)
    except OSError:
        return False
    return len(head) == 0x48 and head[:8] == b"SHBRIDGE" and \
        int.from_bytes(head[0x44:0x48], "little") == os.getpid()


def our_segments():
    return {n for n in os.listdir(SHM) if n.startswith(("sb_", "sbt_")) and _created_here(n)}


@pytest.fixture(autouse=True)
def no_leaked_segments():
    """Every test must leave /dev/shm as it found it (after its objects are collected)."""
    before = our_segments()
    yield
    gc.collect()
    leaked = our_segments() - before
    for name in leaked:            # clean up so one leak does not fail every later test
        os.unlink(os.path.join(SHM, name))
    assert not leaked, f"test left shared-memory segments behind: {sorted(leaked)}"


@pytest.fixture
def seg_name():
    """A fresh explicit segment name for this test (prefix sbt_, checked by the guard)."""
    return f"sbt_{os.getpid()}_{next(_counter)}"


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONWARNINGS", None)
    return env


def run_python(code, *args, timeout=60, check=True):
    """Run *code* in a fresh interpreter (the one running the tests); returns the
    CompletedProcess. With check=True, a non-zero exit fails the test with stderr."""
    # A real file, not -c: spawn/forkserver children re-import the main module.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "child_main.py")
        with open(path, "w") as f:
            f.write(code)
        proc = subprocess.run([sys.executable, path, *args], capture_output=True,
                              text=True, env=child_env(), timeout=timeout, cwd=PYTHON_DIR)
    if check and proc.returncode != 0:
        pytest.fail(f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_script(path, *args, timeout=90):
    proc = subprocess.run([sys.executable, path, *args], capture_output=True, text=True,
                          env=child_env(), timeout=timeout, cwd=PYTHON_DIR)
    return proc


def shm_exists(name):
    return os.path.exists(os.path.join(SHM, name))


try:
    import numpy  # noqa: F401
    HAVE_NUMPY = True
except ImportError:
    HAVE_NUMPY = False

needs_numpy = pytest.mark.skipif(
    not HAVE_NUMPY, reason=f"numpy is not installed for Python {sys.version.split()[0]} "
    "(optional dependency; Debian's numpy is built for /usr/bin/python3 only)")
