"""Who may remove a segment's name, and when (docs/format.md section 8, docs/api.md
"Lifetimes"): a failed create never unlinks, every implicit unlink checks that the name
still refers to the object it made (device and inode), claims belong to objects (not to
processes), start times are never inherited, zombies are gone, and the signal cleanup
never blocks on a lock. Real processes everywhere: fork children, subprocesses, signals."""

import gc
import os
import pickle
import queue
import random
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import fresh_names

import sharedbridge as sb
from sharedbridge._platform import segment as S

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def names():
    """names() gives a fresh sbown_ name; every one is removed after the test."""
    yield from fresh_names("sbown")


def exists(name):
    return os.path.exists(f"/dev/shm/{name}")


def inode(name):
    st = os.stat(f"/dev/shm/{name}")
    return st.st_dev, st.st_ino


def wait_pid(pid, timeout=30.0):
    """The wait status of child *pid*; SIGKILLs it and fails the test after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"process {pid} did not end within {timeout} s (deadlocked?)")
        time.sleep(0.005)


def killed_by(status, sig):
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == sig


def start(code, *args):
    """A Python subprocess running *code* (sharedbridge as sb, os, sys, signal, time, gc
    imported); it reads commands from stdin and prints what it did (read_line)."""
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PYTHONWARNINGS", None)
    p = subprocess.Popen(
        [sys.executable, "-c", "import sharedbridge as sb, os, sys, signal, time, gc\n" + code,
         *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env)
    p.lines = queue.Queue()
    p.err = []

    def pump(stream, put):
        for line in stream:
            put(line)
    # Both readers end with the child (end of file); finish() joins them, so no thread is
    # left running when a later test forks.
    p.threads = [threading.Thread(target=pump, args=(p.stdout, p.lines.put), daemon=True),
                 threading.Thread(target=pump, args=(p.stderr, p.err.append), daemon=True)]
    for t in p.threads:
        t.start()
    return p


def _reap(p):
    p.kill()
    p.wait()
    for t in p.threads:
        t.join(10)


def read_line(p, timeout=30.0):
    try:
        return p.lines.get(timeout=timeout).strip()
    except queue.Empty:
        _reap(p)
        pytest.fail(f"the child printed nothing within {timeout} s; stderr:\n{''.join(p.err)}")


def send(p, line):
    p.stdin.write(line + "\n")
    p.stdin.flush()


def finish(p, timeout=30.0):
    """The child's return code (negative: killed by that signal) and its stderr; the
    child is killed (and the test fails) after *timeout*."""
    try:
        p.stdin.close()
    except OSError:
        pass
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        _reap(p)
        pytest.fail(f"the child did not end within {timeout} s (deadlocked?); stderr:\n"
                    f"{''.join(p.err)}")
    for t in p.threads:
        t.join(10)
    return p.returncode, "".join(p.err)


# --- 1. a create that fails never unlinks the name ---------------------------------------

def test_a_failed_create_hit_by_sigterm_leaves_the_other_process_segment(names):
    # The other process's segment is this process's; the failing creator is a fresh
    # interpreter that signals itself at the worst moment: inside shm_open(O_EXCL) on
    # the taken name, before EEXIST comes back.
    name = names()
    theirs = sb.Array("i", 4, name=name)
    theirs[0] = 42
    ident = inode(name)
    p = start("""
import _posixshmem
name = sys.argv[1]
real = _posixshmem.shm_open
def shm_open(path, flags, mode=0o777):
    if flags & os.O_EXCL and path == "/" + name:
        os.kill(os.getpid(), signal.SIGTERM)
    return real(path, flags, mode)
_posixshmem.shm_open = shm_open
try:
    sb.Array("i", 4, name=name)
except sb.SegmentExistsError:
    print("exists", flush=True)
time.sleep(30)
""", name)
    rc, err = finish(p)
    assert rc == -signal.SIGTERM, err
    assert exists(name) and inode(name) == ident, "the failed creator removed our segment"
    assert sb.attach(name)[0] == 42
    sb.close(theirs)
    assert not exists(name)


def test_failed_creates_hit_by_sigterm_at_random_moments_never_unlink(names):
    name = names()
    theirs = sb.RawArray("i", 4, name=name)
    ident = inode(name)
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    rng = random.Random(17)
    for attempt in range(40):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                       # the failing creator: tries again and again
            try:
                os.close(r)
                first = True
                while True:
                    try:
                        sb.RawArray("i", 4, name=name)
                    except sb.SegmentExistsError:
                        pass
                    if first:
                        os.write(w, b"1")
                        first = False
            finally:
                os._exit(3)
        os.close(w)
        assert select.select([r], [], [], 30)[0], "the creator never started"
        os.close(r)
        time.sleep(rng.uniform(0, 0.004))
        os.kill(pid, signal.SIGTERM)
        status = wait_pid(pid)
        assert killed_by(status, signal.SIGTERM), status
        assert exists(name) and inode(name) == ident, \
            f"attempt {attempt}: a failed create removed the other process's segment"
    sb.close(theirs)
    assert not exists(name)


# --- 2. every implicit unlink checks device and inode ------------------------------------

_CREATOR = """
name, lifetime = sys.argv[1], sys.argv[2]
a = sb.Array("i", 4, name=name, lifetime=lifetime)
print("ready", flush=True)
how = sys.stdin.readline().strip()
if how == "close":
    sb.close(a)
elif how == "collect":
    del a
    gc.collect()
elif how == "unlink":
    try:
        a.unlink()
    except sb.SegmentNotFoundError:
        print("not found", flush=True)
elif how == "exit":
    sys.exit(0)
elif how == "sigterm":
    print("waiting", flush=True)
    time.sleep(30)
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("lifetime", ["creator", "last-closer"])
@pytest.mark.parametrize("how", ["close", "collect", "exit", "sigterm", "unlink"])
def test_a_creator_never_removes_a_newer_segment_under_its_name(names, how, lifetime):
    name = names()
    a = start(_CREATOR, name, lifetime)
    try:
        assert read_line(a) == "ready"
        sb.unlink(name)                                    # someone removes A's name...
        b = sb.Array("i", 4, name=name)                    # ...and B creates a new one
        b[0] = 7
        ident = inode(name)
        if how == "sigterm":
            send(a, "sigterm")
            assert read_line(a) == "waiting"
            a.send_signal(signal.SIGTERM)
            rc, err = finish(a)
            assert rc == -signal.SIGTERM, err
        else:
            send(a, how)
            if how == "unlink":                    # explicit: says the name is not its own
                assert read_line(a) == "not found"
            if how != "exit":
                assert read_line(a) == "done"
                send(a, "")
            rc, err = finish(a)
            assert rc == 0, err
        assert exists(name) and inode(name) == ident, \
            f"A removed B's segment when it ended by {how!r}"
        assert sb.attach(name)[0] == 7
        sb.close(b)
        assert not exists(name)
    finally:
        if a.poll() is None:
            _reap(a)


def test_explicit_unlink_of_a_replaced_name_raises_and_keeps_the_newcomer(names):
    name = names()
    a = sb.RawArray("i", 2, name=name, lifetime="last-closer")
    os.unlink(f"/dev/shm/{name}")
    b = sb.RawArray("i", 2, name=name)
    with pytest.raises(sb.SegmentNotFoundError, match="reused"):
        a.unlink()
    assert exists(name)
    sb.close(a)
    assert exists(name)
    sb.close(b)
    assert not exists(name)


# --- 3. start times are never inherited --------------------------------------------------

def _set_last_pid(pid):
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid))


def _start_time_of_self():
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    return int(data[data.rindex(b")") + 2:].split()[19])


def _grandchild_with_the_grandparent_pid(name, out_w, done_r):
    """Fork P (which learns its own start time by creating a segment), P forks C and
    ends; C forks G with P's pid (ns_last_pid), G creates *name* and reports. Returns
    P's pid; the parent reaps P."""
    go_r, go_w = os.pipe()
    p = os.fork()
    if p == 0:                                    # P: the grandparent
        try:
            sb.close(sb.RawValue("i"))           # knows its own start time now
            c = os.fork()
            if c == 0:                            # C: the parent of G
                try:
                    os.close(go_w)
                    if not select.select([go_r], [], [], 30)[0]:
                        os._exit(5)
                    target = int(os.read(go_r, 32))
                    for _ in range(20):
                        _set_last_pid(target - 1)
                        g = os.fork()
                        if g == 0:                # G: a descendant of P with P's pid
                            try:
                                if os.getpid() != target:
                                    os._exit(7)
                                seg = sb.RawArray("i", 1, name=name)
                                h = sb.header_of(seg)
                                os.write(out_w, f"{h.creator_pid} {h.creator_start_time} "
                                                f"{os.getpid()} {_start_time_of_self()}\n"
                                         .encode())
                                select.select([done_r], [], [], 60)
                                sb.close(seg)
                                os._exit(0)
                            finally:
                                os._exit(6)
                        _, status = os.waitpid(g, 0)
                        if os.WEXITSTATUS(status) != 7:
                            os._exit(0)
                    os.write(out_w, b"miss\n")
                    os._exit(0)
                finally:
                    os._exit(4)
            os._exit(0)
        finally:
            os._exit(4)
    os.close(go_r)
    assert os.waitpid(p, 0)[1] == 0              # P is gone and its pid is free
    os.write(go_w, str(p).encode())
    os.close(go_w)
    return p


def test_a_descendant_with_a_reused_pid_records_its_own_start_time(names):
    try:
        _set_last_pid(int(open("/proc/sys/kernel/ns_last_pid").read()))
    except OSError as e:
        pytest.skip(f"cannot choose the next pid here (/proc/sys/kernel/ns_last_pid: {e}); "
                    "reusing a pid on purpose needs CAP_SYS_ADMIN")
    name = names()
    out_r, out_w = os.pipe()
    done_r, done_w = os.pipe()
    try:
        line = b"miss"
        for _ in range(5):                      # other processes may take the pid first
            p = _grandchild_with_the_grandparent_pid(name, out_w, done_r)
            assert select.select([out_r], [], [], 60)[0], "the grandchild never reported"
            line = os.read(out_r, 200).strip()
            if line != b"miss":
                break
        if line == b"miss":
            pytest.skip("another process took the freed pid every time")
        creator_pid, recorded, gpid, real = map(int, line.split())
        assert gpid == p == creator_pid
        assert recorded == real, "the segment records the start time of the dead grandparent"
        assert sb.list_segments() and not sb.reap(dry_run=True, prefix=name), \
            "the reaper judges the live creator dead"
        assert [i.creator_alive for i in sb.list_segments() if i.name == name] == [True]
    finally:
        os.write(done_w, b"x")
        deadline = time.monotonic() + 30
        while exists(name) and time.monotonic() < deadline:
            time.sleep(0.01)
        for fd in (out_r, out_w, done_r, done_w):
            os.close(fd)
    assert not exists(name)


def test_a_fork_child_records_its_own_start_time(names):
    parent = sb.RawValue("i")
    assert sb.header_of(parent).creator_start_time == _start_time_of_self()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            seg = sb.RawValue("i", name=names())
            h = sb.header_of(seg)
            ok = h.creator_pid == os.getpid() and h.creator_start_time == _start_time_of_self()
            sb.close(seg)
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    assert wait_pid(pid) == 0
    assert os.read(r, 1) == b"1"
    os.close(r)
    sb.close(parent)


# --- 4. claims belong to objects ---------------------------------------------------------

_MAKERS = {
    "Array": lambda n: sb.Array("i", 4, name=n),
    "RawArray": lambda n: sb.RawArray("d", 2, name=n),
    "Value": lambda n: sb.Value("q", 5, name=n),
    "RawValue": lambda n: sb.RawValue("i", 5, name=n),
    "Event": lambda n: sb.Event(name=n),
    "Semaphore": lambda n: sb.Semaphore(2, name=n),
}


@pytest.mark.parametrize("kind", sorted(_MAKERS))
def test_closing_an_attached_object_leaves_the_creators_segment(names, kind):
    name = names()
    a = _MAKERS[kind](name)
    b = sb.attach(name)
    sb.close(b)
    assert exists(name), "closing an attached object unlinked the creator's segment"
    b2 = sb.attach(name)
    del b, b2
    gc.collect()
    assert exists(name)
    c = pickle.loads(pickle.dumps(a))             # unpickling attaches, too
    sb.close(c)
    assert exists(name)
    assert run_attach(name) == 0                  # other processes still find it
    sb.close(a)
    assert not exists(name)


def run_attach(name):
    p = start("sb.attach(sys.argv[1])", name)
    return finish(p)[0]


def test_attached_object_of_a_creator_lifetime_segment_has_no_claim_in_a_fork_child(names):
    name = names()
    a = sb.RawArray("i", 1, name=name)
    pid = os.fork()
    if pid == 0:
        try:
            sb.close(sb.attach(name))
            sb.close(a)                           # a fork child never unlinks its parent's
            os._exit(0 if exists(name) else 1)
        finally:
            os._exit(2)
    assert wait_pid(pid) == 0
    assert exists(name)
    sb.close(a)
    assert not exists(name)


@pytest.mark.parametrize("first", ["creator", "attached"])
@pytest.mark.parametrize("by", ["close", "collect"])
def test_one_process_with_two_objects_holds_a_last_closer_segment_until_the_last(names, first, by):
    name = names()
    objs = {"creator": sb.RawArray("i", 2, name=name, lifetime="last-closer")}
    objs["attached"] = sb.attach(name)
    second = "attached" if first == "creator" else "creator"
    if by == "close":
        sb.close(objs[first])
    else:
        del objs[first]
        gc.collect()
    assert exists(name), "the process left while one of its objects still held it"
    assert sb.reap(dry_run=True, prefix=name) == [], "the process no longer holds its flock"
    objs[second][0] = 3
    if by == "close":
        sb.close(objs[second])
    else:
        del objs[second]
        gc.collect()
    assert not exists(name), "the last object of the last process left: the name goes"


def test_last_closer_objects_of_one_process_share_one_descriptor(names):
    name = names()
    a = sb.RawArray("i", 2, name=name, lifetime="last-closer")
    before = len(os.listdir("/proc/self/fd"))
    others = [sb.attach(name) for _ in range(5)]
    assert len(os.listdir("/proc/self/fd")) == before
    for o in others:
        sb.close(o)
    assert exists(name)
    sb.close(a)
    assert not exists(name)


# --- 8. the signal cleanup never blocks on a lock ----------------------------------------

def test_sigterm_while_the_segment_cache_lock_is_held_ends_the_process(names):
    made, lc = names(), names()
    p = start("""
from sharedbridge._platform import segment as S
a = sb.Array("i", 4, name=sys.argv[1])
b = sb.RawArray("i", 4, name=sys.argv[2], lifetime="last-closer")
S._open_lock.acquire()          # held by the interrupted code
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(30)
""", made, lc)
    rc, err = finish(p, timeout=20)
    assert rc == -signal.SIGTERM, err
    assert not exists(made) and not exists(lc)


def test_a_finalizer_running_while_the_cache_lock_is_held_does_not_deadlock(names):
    name = names()
    p = start("""
from sharedbridge._platform import segment as S
b = sb.RawArray("i", 4, name=sys.argv[1], lifetime="last-closer")
with S._open_lock:              # a collection can run a finalizer anywhere
    del b
print("ok", flush=True)
""", name)
    rc, err = finish(p, timeout=20)
    assert rc == 0, err
    assert not exists(name)


# --- 14. a zombie is gone ----------------------------------------------------------------

def _state(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2:].split()[0]


def test_reap_removes_the_segment_of_a_zombie_creator(names):
    name = names()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                     # creates, then ends without cleaning up: not waited for
        try:
            made = sb.RawArray("i", 2, name=name)
            os.write(w, b"1" if made is not None else b"0")
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert select.select([r], [], [], 30)[0] and os.read(r, 1) == b"1"
        deadline = time.monotonic() + 30
        while _state(pid) != b"Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.005)
        info = [i for i in sb.list_segments() if i.name == name]
        assert [i.creator_alive for i in info] == [False], "ls calls a zombie creator alive"
        reaped = sb.reap(prefix=name)
        assert [(x.name, x.removed) for x in reaped] == [(name, True)]
        assert f"creator pid {pid}" in reaped[0].reason
        assert not exists(name)
    finally:
        os.close(r)
        wait_pid(pid)
