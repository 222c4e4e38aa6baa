"""Real processes: fork/spawn/forkserver, Pool and ProcessPoolExecutor arguments, the
documentation examples, and who unlinks what."""

import concurrent.futures
import functools
import multiprocessing
import os
import re
import sys

import pytest

import sharedbridge as sb
from conftest import HAVE_NUMPY, run_python, run_script, shm_exists
from mp_workers import Point, add_under_lock, describe, square_everything, write_at

METHODS = ["fork", "spawn", "forkserver"]
EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "docs_examples")


@pytest.mark.parametrize("method", METHODS)
def test_every_kind_of_object_reaches_a_process(method):
    ctx = multiprocessing.get_context(method)
    lock = sb.RLock()
    n = sb.Value("i", 7)
    raw = sb.RawArray("q", [4, 0])
    s = sb.Array("c", b"hello", lock=lock)
    A = sb.Array(Point, [(1.5, 0), (3.0, 0)], lock=lock)
    p = ctx.Process(target=square_everything, args=(n, raw, s, A, lock))
    p.start()
    p.join()
    assert p.exitcode == 0
    assert (n.value, raw[:], s.value, [a.x for a in A]) == (49, [4, 40], b"HELLO", [2.25, 9.0])


def test_pool_map_arguments_attach_by_name():
    real = multiprocessing.Array("i", 4)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        with pytest.raises(RuntimeError, match="inheritance"):
            pool.map(write_at, [(real, 0, 1)])
        arr = sb.Array("i", 4)
        raw = sb.RawArray("d", 4)
        assert sorted(pool.map(write_at, [(arr, i, i + 10) for i in range(4)])) == [0, 1, 2, 3]
        pool.map(write_at, [(raw, i, i / 2) for i in range(4)])
        kinds = pool.map(describe, [arr, raw, sb.Value("d", 2.5)])
    assert arr[:] == [10, 11, 12, 13] and raw[:] == [0.0, 0.5, 1.0, 1.5]
    assert kinds[0] == ("SynchronizedArray", arr.name, [10, 11, 12, 13])
    assert kinds[1] == ("c_double_Array_4", raw.name, [0.0, 0.5, 1.0, 1.5])
    assert kinds[2][0] == "Synchronized" and kinds[2][2] == 2.5


def test_process_pool_executor_locked_increments():
    arr = sb.Array("q", 1)
    ctx = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        names = list(ex.map(add_under_lock, [arr] * 4, [2500] * 4))
    assert names == [arr.name] * 4
    assert arr[0] == 10_000


def test_two_processes_contend_without_losing_updates():
    arr = sb.Array("q", 1)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=add_under_lock, args=(arr, 20_000)) for _ in range(2)]
    for p in procs:
        p.start()
    add_under_lock(arr, 20_000)
    for p in procs:
        p.join()
    assert arr[0] == 60_000


DOCS_OUTPUT = {
    # The documentation prints HELLO WORLD (written for Python 2); on Python 3 the real
    # multiprocessing prints the bytes repr, and so must we.
    "point": ["49", "0.1111111111111111", "b'HELLO WORLD'",
              "[(3.515625, 39.0625), (33.0625, 4.0), (5.640625, 90.25)]"],
    "increment": ["Initial State: [0, 0, 0, 0, 0]", "--- All processes completed ---",
                  "Final Result: [100, 100, 100, 100, 100]",
                  ">> Success: All elements were updated correctly."],
    "disjoint": ["[100, 100, 100, 100, 100, 200, 200, 200, 200, 200]"],
}
_PROGRESS = re.compile(r"\[Process-(\d+)\] (Started|Finished)")


@functools.lru_cache(maxsize=None)
def docs_output(example, method, impl):
    """(lines, progress) of a documentation example run as a script; one run per
    (example, method, impl) serves every test of this module that compares it."""
    proc = run_script(os.path.join(EXAMPLES, f"{example}_example.py"), method, impl)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    # The two children's progress lines interleave arbitrarily: count them apart.
    progress = sorted(m.group(2) for m in _PROGRESS.finditer(proc.stdout))
    lines = [line for line in _PROGRESS.sub("", proc.stdout).splitlines() if line]
    return lines, progress


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("example", list(DOCS_OUTPUT))
def test_docs_examples_print_what_the_docs_print(example, method):
    lines, progress = docs_output(example, method, "sb")
    assert lines == DOCS_OUTPUT[example]
    if example == "increment":
        assert progress == ["Finished", "Finished", "Started", "Started"]


@pytest.mark.parametrize("example", list(DOCS_OUTPUT))
def test_docs_examples_match_real_multiprocessing(example):
    assert docs_output(example, "fork", "mp") == docs_output(example, "fork", "sb")


# --- who unlinks ---------------------------------------------------------------------------

def test_attaching_processes_never_unlink_and_never_warn():
    a = sb.Array("d", [1.0, 2.0])
    lock = sb.Lock()
    proc = run_python(
        "import sys, sharedbridge as sb, multiprocessing as mp\n"
        "def child(a, lock):\n"
        "    with lock: a[0] += 1\n"
        "if __name__ == '__main__':\n"
        "    for m in ('spawn', 'forkserver'):\n"
        "        p = mp.get_context(m).Process(target=child, args=(sb.attach(sys.argv[1]),\n"
        "                                       sb.attach(sys.argv[2])))\n"
        "        p.start(); p.join()\n"
        "    b = sb.attach(sys.argv[1]); b[1] = 5.0\n",
        a.name, lock.name)
    assert proc.stderr == "", "attaching printed warnings (resource tracker?)"
    assert shm_exists(a.name) and shm_exists(lock.name)
    assert a[:] == [3.0, 5.0]


def test_creator_process_unlinks_at_exit_unless_keep(seg_name):
    kept = seg_name
    proc = run_python(
        "import sys, sharedbridge as sb\n"
        "a = sb.Array('i', 3)\n"
        "k = sb.RawArray('i', [1, 2], name=sys.argv[1], keep=True)\n"
        "l = sb.RLock()\n"
        "print(a.name, l.name)\n", kept, keep=[kept])
    gone = proc.stdout.split()
    assert proc.stderr == ""
    assert not any(shm_exists(n) for n in gone)
    assert shm_exists(kept)
    assert sb.attach(kept)[:] == [1, 2]
    sb.unlink(kept)


def test_fork_child_does_not_unlink_inherited_objects():
    proc = run_python(
        "import os, sys, sharedbridge as sb\n"
        "a = sb.Array('i', 1)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    a[0] = 42\n"
        "    sys.exit(0)          # runs atexit handlers in the child\n"
        "os.waitpid(pid, 0)\n"
        "print(os.path.exists('/dev/shm/' + a.name), a[0], a.name)\n")
    exists, value, name = proc.stdout.split()
    assert (exists, value) == ("True", "42")
    assert not shm_exists(name)
    assert proc.stderr == ""


def test_no_buffer_error_at_exit_with_live_views():
    code = (
        "import ctypes, sharedbridge as sb\n"
        "a = sb.Array('d', 1000)\n"
        "raw = sb.RawArray('i', 10)\n"
        "views = [memoryview(a.get_obj()), memoryview(raw),\n"
        "         (ctypes.c_int * 2).from_buffer(raw), sb.RawValue('q', 5)]\n"
        "a.close()\n"
        "keep_cycle = [views]; keep_cycle.append(keep_cycle)\n")
    if HAVE_NUMPY:
        code += "n = sb.as_numpy(sb.Array('f', 50)); m = sb.as_numpy(raw)\n"
    code += "print('ok')\n"
    proc = run_python(code)
    assert proc.stdout == "ok\n"
    assert proc.stderr == ""


@pytest.mark.skipif(sys.platform != "linux", reason="/dev/shm is Linux")
def test_segment_is_created_exclusively_with_mode_0600():
    a = sb.RawArray("B", 1)
    st = os.stat(f"/dev/shm/{a.name}")
    assert st.st_mode & 0o777 == 0o600
    assert st.st_uid == os.getuid()
