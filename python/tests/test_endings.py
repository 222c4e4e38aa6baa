"""Endings (docs/api.md, "Endings"): a creator's segments (not kept ones) are retired and
unlinked when its process ends by SIGTERM, SIGINT, SIGHUP or an unhandled exception, and
the process still ends the way it would have without sharedbridge. Real child processes,
real signals."""

import os
import signal
import subprocess
import sys
import tempfile

import pytest

from conftest import SHM, child_env, segments_created_by, shm_exists, PYTHON_DIR

PRELUDE = (
    "import os, signal, sys, threading, time\n"
    "import sharedbridge as sb\n"
    "def report(*objs):\n"
    "    print(*[o.name for o in objs], flush=True)\n"
)


class Child:
    """A Python child running *code*; it prints segment names on its first line."""

    def __init__(self, code, *args):
        self.tmp = tempfile.TemporaryDirectory()
        path = os.path.join(self.tmp.name, "child_main.py")
        with open(path, "w") as f:
            f.write(PRELUDE + code)
        self.proc = subprocess.Popen([sys.executable, path, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=child_env(), cwd=PYTHON_DIR)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            pytest.fail(f"child did not start: {self.proc.stderr.read()}")
        self.names = line.split()

    def line(self):
        return self.proc.stdout.readline().strip()

    def send(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def finish(self, keep=()):
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"child did not end: {out}\n{err}")
        finally:
            self.tmp.cleanup()
        left = segments_created_by(self.proc.pid) - set(keep)
        for name in left:
            os.unlink(os.path.join(SHM, name))
        return self.proc.returncode, out, err, left


def cleanup(*names):
    for name in names:
        if shm_exists(name):
            os.unlink(os.path.join(SHM, name))


MAKE_AND_WAIT = (
    "a = sb.Array('d', 4); l = sb.Lock(); r = sb.RawValue('i', 1)\n"
    "k = sb.RawArray('i', 2, name=sys.argv[1], keep=True)\n"
    "report(a, l, r, k)\n"
    "sys.stdin.readline()\n"
    "print('still running', flush=True)\n"
    "sys.stdin.readline()\n")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_default_action_signals_unlink_and_still_kill(sig, pyh_name):
    kept = pyh_name()
    child = Child(MAKE_AND_WAIT, kept)
    assert all(shm_exists(n) for n in child.names)
    child.signal(sig)
    rc, out, err, left = child.finish(keep=[kept])
    try:
        assert rc == -sig, err                  # died by the signal, as without us
        assert err == "" and not left
        assert not any(shm_exists(n) for n in child.names[:3])
        assert shm_exists(kept)                 # keep=True stays
    finally:
        cleanup(kept)


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGALRM])
def test_other_signals_leave_the_names_as_sigkill_does(sig, pyh_name):
    # docs/format.md section 8: a creator handles SIGTERM, SIGINT and SIGHUP only.
    kept = pyh_name()
    child = Child(MAKE_AND_WAIT, kept)
    child.signal(sig)
    rc, out, err, left = child.finish(keep=[kept])     # removes what the child left
    try:
        assert rc == -sig, err
        assert set(child.names[:3]) <= left, "the signal is not one a creator handles"
    finally:
        cleanup(kept)


def test_sigint_keeps_raising_keyboard_interrupt_and_unlinks(pyh_name):
    kept = pyh_name()
    child = Child("assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
                  + MAKE_AND_WAIT.replace("report(", "assert signal.getsignal(signal.SIGINT)"
                                          " is signal.default_int_handler\nreport("), kept)
    child.signal(signal.SIGINT)
    rc, out, err, left = child.finish(keep=[kept])
    try:
        assert "KeyboardInterrupt" in err
        assert rc in (-signal.SIGINT, 1)         # 3.8+: re-raised SIGINT
        assert not left and not any(shm_exists(n) for n in child.names[:3])
    finally:
        cleanup(kept)


def test_sigint_with_default_action(pyh_name):
    kept = pyh_name()
    child = Child("signal.signal(signal.SIGINT, signal.SIG_DFL)\n" + MAKE_AND_WAIT, kept)
    child.signal(signal.SIGINT)
    rc, out, err, left = child.finish(keep=[kept])
    try:
        assert rc == -signal.SIGINT and err == ""
        assert not left and not any(shm_exists(n) for n in child.names[:3])
    finally:
        cleanup(kept)


def test_ignored_signal_stays_ignored(pyh_name):
    kept = pyh_name()
    child = Child("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + MAKE_AND_WAIT, kept)
    child.signal(signal.SIGTERM)
    child.send("go on")
    assert child.line() == "still running"
    assert all(shm_exists(n) for n in child.names)
    child.send("exit")
    rc, out, err, left = child.finish(keep=[kept])
    try:
        assert rc == 0 and err == "" and not left
        assert not any(shm_exists(n) for n in child.names[:3])
    finally:
        cleanup(kept)


@pytest.mark.parametrize("when", ["before", "after"])
def test_application_handler_that_keeps_running_keeps_its_segments(when, pyh_name):
    kept = pyh_name()
    handler = ("got = []\n"
               "def on_term(signum, frame):\n"
               "    got.append(signum)\n")
    install = "signal.signal(signal.SIGTERM, on_term)\n"
    code = handler + (install + MAKE_AND_WAIT if when == "before"
                      else MAKE_AND_WAIT.replace("report(", install + "report("))
    code += "print(got, flush=True)\n"
    child = Child(code, kept)
    child.signal(signal.SIGTERM)
    child.send("go on")
    assert child.line() == "still running"
    assert all(shm_exists(n) for n in child.names)
    child.send("exit")
    rc, out, err, left = child.finish(keep=[kept])
    try:
        assert out.strip() == f"[{int(signal.SIGTERM)}]"
        assert rc == 0 and err == "" and not left
        assert not any(shm_exists(n) for n in child.names[:3])
    finally:
        cleanup(kept)


def test_application_handler_that_exits(pyh_name):
    kept = pyh_name()
    child = Child("signal.signal(signal.SIGTERM, lambda s, f: sys.exit(3))\n" + MAKE_AND_WAIT,
                  kept)
    child.signal(signal.SIGTERM)
    rc, out, err, left = child.finish(keep=[kept])
    try:
        assert rc == 3 and not left
        assert not any(shm_exists(n) for n in child.names[:3])
    finally:
        cleanup(kept)


def test_unhandled_exception_unlinks(pyh_name):
    kept = pyh_name()
    child = Child(MAKE_AND_WAIT.replace("sys.stdin.readline()\n", "", 1)
                  .replace("print('still running', flush=True)\n",
                           "sys.stdin.readline()\nraise RuntimeError('boom')\n"), kept)
    child.send("raise")
    rc, out, err, left = child.finish(keep=[kept])
    try:
        assert rc == 1 and "RuntimeError: boom" in err and not left
        assert not any(shm_exists(n) for n in child.names[:3])
        assert shm_exists(kept)
    finally:
        cleanup(kept)


def test_fork_children_never_unlink_their_parents_segments():
    child = Child(
        "import multiprocessing as mp\n"
        "a = sb.Array('i', 1)\n"
        "report(a)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    mine = sb.RawArray('i', 1)\n"
        "    print(mine.name, flush=True)\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "print(sys.stdin.readline().strip(), flush=True)\n"   # the child's segment name
        "os.kill(pid, signal.SIGTERM)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.WIFSIGNALED(status) and os.WTERMSIG(status), os.path.exists('/dev/shm/' + a.name), flush=True)\n"
        "p = mp.get_context('fork').Process(target=time.sleep, args=(60,))\n"
        "p.start(); time.sleep(0.2); p.terminate(); p.join()\n"
        "print(p.exitcode, os.path.exists('/dev/shm/' + a.name), flush=True)\n"
        "sys.stdin.readline()\n")
    grandchild_segment = child.line()
    child.send(grandchild_segment)
    assert child.line() == grandchild_segment
    assert child.line() == f"{int(signal.SIGTERM)} True"    # the fork child died by SIGTERM
    assert not shm_exists(grandchild_segment)               # ... and unlinked its own
    assert child.line() == f"{-int(signal.SIGTERM)} True"
    assert shm_exists(child.names[0])
    child.signal(signal.SIGTERM)
    rc, out, err, left = child.finish()
    assert rc == -signal.SIGTERM and err == "" and not left
    assert not shm_exists(child.names[0])


def test_fork_children_with_nothing_to_release_keep_the_default_action():
    # A handler with nothing to do would only add CPython's lost-signal window (a Pool
    # worker blocked in its task queue's lock when terminate() sends SIGTERM hung about one
    # run in 300 on the ctypes path): such children restore the default action, and
    # install again as soon as they create or take part in a segment. Each line is printed
    # once its pool has ended: a SIGTERM while terminate() is still stopping a worker would
    # leave that worker orphaned (as with multiprocessing alone), holding this test's pipes.
    child = Child(
        "import multiprocessing as mp\n"
        "def handlers(make=None):\n"
        "    seg = make() if make else None\n"
        "    return [signal.getsignal(s) is signal.SIG_DFL for s in (signal.SIGTERM, signal.SIGHUP)]\n"
        "def make_owned():\n"
        "    return sb.RawArray('i', 1)\n"
        "a = sb.Array('i', 1)\n"
        "report(a)\n"
        "with mp.get_context('fork').Pool(1) as pool:\n"
        "    seen = pool.apply(handlers), pool.apply(handlers, (make_owned,))\n"
        "print(*seen, flush=True)\n"
        "shared = sb.RawArray('i', 1, lifetime='last-closer')\n"
        "with mp.get_context('fork').Pool(1) as pool:\n"
        "    seen = pool.apply(handlers), handlers()\n"
        "print(*seen, flush=True)\n"
        "sys.stdin.readline()\n")
    assert child.line() == "[True, True] [False, False]"
    assert child.line() == "[False, False] [False, False]"   # it holds a last-closer segment
    child.signal(signal.SIGTERM)
    rc, out, err, left = child.finish()
    assert rc == -signal.SIGTERM and err == "" and not left


def test_handlers_are_installed_lazily_from_the_main_thread_only():
    child = Child(
        "before = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)]\n"
        "k = sb.RawArray('i', 1, keep=True); k.unlink()\n"
        "kept_only = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)]\n"
        "box = []\n"
        "t = threading.Thread(target=lambda: box.append(sb.RawArray('i', 1)))\n"
        "t.start(); t.join()\n"
        "in_thread = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)]\n"
        "a = sb.RawArray('i', 1)\n"
        "after = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)]\n"
        "report(a, box[0])\n"
        "dfl = signal.SIG_DFL\n"
        "print(before == [dfl, dfl], kept_only == [dfl, dfl], in_thread == [dfl, dfl],\n"
        "      all(callable(h) for h in after),\n"
        "      signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)\n"
        "sys.stdin.readline()\n")
    assert child.line() == "True True True True True"
    child.signal(signal.SIGHUP)
    rc, out, err, left = child.finish()
    assert rc == -signal.SIGHUP and err == "" and not left
    assert not any(shm_exists(n) for n in child.names)


def test_a_signal_right_after_shm_open_still_removes_the_object_being_created(pyh_name):
    # docs/format.md section 8: the creator removes what it made, also when SIGTERM comes
    # between shm_open(O_EXCL) and the name being recorded (the object still 0 bytes).
    name = pyh_name()
    child = Child("from sharedbridge._platform import segment as S\n"
                  "def paused(n):\n"
                  "    print(n, os.path.getsize('/dev/shm/' + n), flush=True)\n"
                  "    sys.stdin.readline()\n"
                  "S._after_open = paused\n"
                  "sb.RawArray('i', 4, name=sys.argv[1])\n"
                  "print('created', flush=True)\n"
                  "sys.stdin.readline()\n", name)
    try:
        assert child.names == [name, "0"]        # paused with the object made, still unsized
        child.signal(signal.SIGTERM)
        child.send("go")                         # the signal is pending or handled by now
        rc, out, err, left = child.finish()
        assert rc == -signal.SIGTERM, err
        assert not shm_exists(name), "SIGTERM left the 0-byte object the creator was making"
    finally:
        cleanup(name)
