"""A SIGTERM that CPython cannot hand to the Python handler at once still ends a creator
and removes its segments (docs/api.md, "Endings": the signal re-send of the compiled
accelerator). CPython runs Python-level handlers only in the main thread between
bytecodes: a signal delivered to another thread while the main thread is blocked in a C
call (here a multiprocessing semaphore, as in a Pool worker's get()) only trips a flag.
Real child processes, real signals, no luck needed: the signal is sent to the child's
other thread on purpose."""

import os
import signal
import subprocess
import sys

import pytest

from conftest import SHM, child_env, shm_exists, PYTHON_DIR
from sharedbridge._platform import lock_core

needs_resend = pytest.mark.skipif(
    lock_core.BACKEND != "c",
    reason="ctypes path (no compiled accelerator, or SHAREDBRIDGE_NO_ACCEL=1): a signal "
           "delivered while the main thread is blocked in a C call is not re-sent, the "
           "documented limitation of docs/api.md, Endings")

CHILD = r"""
import multiprocessing, os, signal, sys, threading, time
import sharedbridge as sb
target = sys.argv[2]
seg = sb.RawArray('i', 4, name=sys.argv[1])
sem = multiprocessing.Semaphore(0)          # a SemLock: sem_wait in C, as in Pool workers

def kill_from_here():
    time.sleep(0.3)                        # the main thread is in sem_wait by then
    signal.pthread_kill(threading.get_ident() if target == 'thread' else main, signal.SIGTERM)

if sys.argv[3] == 'fork':
    # The handler was installed above; a fork child inherits it (and not the re-send's
    # timer, which the kernel does not copy) and makes its own segment.
    pid = os.fork()
    if pid == 0:
        seg = sb.RawArray('i', 4, name=sys.argv[1] + '_c')
    else:
        for _ in range(200):                # at most 10 s
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, 0)
        print('ready', os.waitstatus_to_exitcode(status), flush=True)
        sys.exit(0)
main = threading.get_ident()
threading.Thread(target=kill_from_here).start()
if sys.argv[3] != 'fork':
    print('ready', flush=True)
sem.acquire()                               # never released
print('unreachable', flush=True)
"""


def _run(name, target, fork=""):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, name, target, fork],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(), cwd=PYTHON_DIR)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        if shm_exists(name):
            os.unlink(os.path.join(SHM, name))
        pytest.fail(f"the child blocked in a semaphore never ended after SIGTERM: "
                    f"{out!r} {err!r}")
    return proc.returncode, out, err


@pytest.mark.parametrize("target", [pytest.param("thread", marks=needs_resend), "main"])
def test_sigterm_while_main_thread_blocks_ends_creator_and_unlinks(target):
    # thread: the signal is delivered to the non-main thread (CPython only trips its
    # flag, the main thread stays in sem_wait). main: delivered to the blocked main
    # thread itself, which must still be interrupted (EINTR: no SA_RESTART).
    name = f"sbsig_{os.getpid()}_{target}"
    rc, out, err = _run(name, target)
    left = shm_exists(name)
    if left:
        os.unlink(os.path.join(SHM, name))
    assert out.split() == ["ready"], (out, err)
    assert rc == -signal.SIGTERM, (rc, err)
    assert not left, "the creator's segment survived its SIGTERM"


@needs_resend
def test_sigterm_in_a_fork_child_blocked_in_a_semaphore():
    # A fork child (a Pool worker under fork) inherits the handler but not the re-send's
    # timer, and its main thread is another thread: it must get its own.
    name = f"sbsig_{os.getpid()}_fork"
    rc, out, err = _run(name, "thread", "fork")
    left = [n for n in (name, name + "_c") if shm_exists(n)]
    for n in left:
        os.unlink(os.path.join(SHM, n))
    assert rc == 0, (out, err)
    assert out.split() == ["ready", str(-signal.SIGTERM)], (out, err)
    assert not left, f"segments survived: {left}"
