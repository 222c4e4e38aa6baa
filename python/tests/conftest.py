"""Shared fixtures: segment-leak guard, helpers to run real child interpreters."""

import gc
import itertools
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zlib

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The directory backend run (docs/format.md section 1.3) sets SHAREDBRIDGE_DIR: segments are files there.
SHM = os.environ.get("SHAREDBRIDGE_DIR") or "/dev/shm"
_counter = itertools.count()


def _creator_pid(name):
    # Without blocking and only from a regular file: other suites running at the same time
    # (scripts/test-python.sh runs two interpreters at once) put FIFOs, directories and
    # symbolic links at names like ours on purpose, and opening a FIFO waits for a writer.
    try:
        fd = os.open(os.path.join(SHM, name), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        head = os.pread(fd, 0x48, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(head) == 0x48 and head[:8] == b"SHBRIDGE":
        return int.from_bytes(head[0x44:0x48], "little")
    return None


def segments_created_by(pid):
    """Segments in /dev/shm whose header names *pid* as the creator. Other programs
    (the .NET suite, the cross suite) may create sb_ segments at the same time: the
    creator pid tells ours apart."""
    return {n for n in os.listdir(SHM)
            if n.startswith(("sb", "pyh_")) and _creator_pid(n) == pid}


def our_segments():
    own = {n for n in os.listdir(SHM)
           if n.startswith((f"sbt_{os.getpid()}_", f"pyh_{os.getpid()}_"))}
    return own | segments_created_by(os.getpid())


def _check_child_left_nothing(pid, keep):
    left = segments_created_by(pid) - set(keep)
    for name in left:
        os.unlink(os.path.join(SHM, name))
    assert not left, f"child process {pid} left segments behind: {sorted(left)}"


@pytest.fixture(autouse=True)
def no_leaked_segments():
    """Every test must leave /dev/shm as it found it (after its objects are collected)."""
    before = our_segments()
    yield
    # Pickled segments stay until their creator ends (docs/api.md): end that here.
    from sharedbridge._platform import exit_cleanup
    exit_cleanup.release_exported()
    leaked = our_segments() - before
    if leaked:        # objects in reference cycles free their segments only in a collection
        gc.collect()
        leaked = our_segments() - before
    for name in leaked:            # clean up so one leak does not fail every later test
        path = os.path.join(SHM, name)
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)
    assert not leaked, f"test left shared-memory segments behind: {sorted(leaked)}"


def fresh_names(prefix, *, as_prefix=False, derived=None):
    """The body of a name fixture: yields make(), which returns a fresh
    ``<prefix>_<pid>_<n>`` name (with a trailing ``_`` when *as_prefix*: a name also used
    as an ``ls``/``reap`` prefix); after the test every name made is removed (with
    *as_prefix*, every segment starting with one, once garbage is collected).
    *derived*: the names are objects that make segments named after them (a queue's data
    segments, ``<name>.m...``): "remove" removes those too once garbage is collected,
    "fail" also fails the test if any was left (its objects must have removed them)."""
    made = []

    def make():
        made.append(f"{prefix}_{os.getpid()}_{next(_counter)}" + ("_" if as_prefix else ""))
        return made[-1]
    yield make
    if as_prefix or derived:
        gc.collect()
        left = [e for e in os.listdir(SHM) if e.startswith(tuple(made))]
        for entry in left:
            os.unlink(os.path.join(SHM, entry))
        if derived == "fail":
            assert not [n for n in left if n not in made], f"left behind: {left}"
        return
    for n in made:
        try:
            os.unlink(os.path.join(SHM, n))
        except FileNotFoundError:
            pass


def queue_data_segments(q):
    """The data segments of queue *q* in /dev/shm now (docs/format.md section 11.5)."""
    prefix = q.name + ".m"
    return sorted(n for n in os.listdir(SHM) if n.startswith(prefix))


@pytest.fixture
def seg_name():
    """A fresh explicit segment name for this test (prefix sbt_, checked by the guard)."""
    return f"sbt_{os.getpid()}_{next(_counter)}"


@pytest.fixture
def pyh_name():
    """Fresh explicit segment names for forged and hostile objects (prefix pyh_<pid>_,
    checked by the leak guard): pyh_name() returns a new one at each call."""
    return lambda: f"pyh_{os.getpid()}_{next(_counter)}"


# --- hand-made segments: the bytes of a real one, changed, written under a new name -------

def image_of(obj_or_name):
    """The exact bytes of a segment (an object's, or the one at a name), read from /dev/shm."""
    name = obj_or_name if isinstance(obj_or_name, str) else obj_or_name.name
    with open(os.path.join(SHM, name), "rb") as f:
        return bytearray(f.read())


def crc_of(buf, header_size):
    """header_crc32 computed here, independently of the package (docs/format.md 3.3)."""
    return zlib.crc32(bytes(buf[:0x180]) + bytes(buf[0x200:header_size]))


def reseal(img):
    """Recompute header_crc32, so that the rule under test (not the checksum) fires."""
    header_size = int.from_bytes(img[0x0C:0x10], "little")
    img[0x184:0x188] = crc_of(img, header_size).to_bytes(4, "little")
    return img


def write_segment(name, data, size=None):
    """Write *data* as a new shared-memory object *name* (0600, O_EXCL), then size it to
    *size* if given."""
    fd = os.open(os.path.join(SHM, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, bytes(data))
        if size is not None:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return name


def assert_attach_gives(name, outcome, first):
    """attach(name) gives an object whose element 0 is *first* (outcome None), or raises
    *outcome*; a not-ready segment is given 0.1 s."""
    import sharedbridge as sb
    if outcome is None:
        assert sb.attach(name, timeout=0.1)[0] == first
    else:
        with pytest.raises(outcome):
            sb.attach(name, timeout=0.1)


@pytest.fixture
def forge(pyh_name):
    """forge(data, size=None) writes *data* as a new shared-memory object (then sized to
    *size* if given) and returns its name; every forged object is removed afterwards."""
    made = []

    def make(data, size=None):
        made.append(pyh_name())
        return write_segment(made[-1], data, size)

    yield make
    for name in made:
        if os.path.lexists(os.path.join(SHM, name)):
            os.unlink(os.path.join(SHM, name))


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONWARNINGS", None)
    # A child ended for a timeout (SIGABRT first, stop_tree) prints the stacks of its threads.
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def _descendants(pid):
    """*pid*'s living descendants, read from /proc (grandchildren too: Pool workers,
    forkservers)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rfind(b")") + 2:].split()[1])
    found, frontier = [], {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found += frontier
    return found


def _ended(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def stop_tree(child, grace=1.0):
    """End *child* (a Popen) and every process under it: SIGABRT first, one process at a
    time so that their stacks (Python processes: PYTHONFAULTHANDLER=1, child_env) do not
    interleave on the shared pipe, then SIGKILL for any left. The tree is read before
    anything is killed: once the child is gone its workers are orphans. Returns the pids."""
    tree = [child.pid] + _descendants(child.pid)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGABRT)
        except OSError:
            continue
        deadline = time.monotonic() + grace
        while not _ended(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return tree


def _communicate(child, timeout):
    """communicate() with a deadline; on timeout the whole process tree is ended and the
    test fails with what the processes printed (their stacks included). The output is read
    with a deadline too: an orphaned grandchild could hold the pipes open."""
    try:
        return child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    tree = stop_tree(child)
    try:
        out, err = child.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        out, err = "(the output pipes stayed open)", ""
    left = set()
    for pid in tree:               # killed processes cannot clean up: do it for them
        left |= segments_created_by(pid)
    for name in left:
        try:
            os.unlink(os.path.join(SHM, name))
        except FileNotFoundError:
            pass
    pytest.fail(f"child {child.args} timed out after {timeout} s and was ended with its "
                f"processes {tree} (their segments removed: {sorted(left)}); its output:\n"
                f"{out}\n{err}")


def run_python(code, *args, timeout=60, check=True, keep=()):
    """Run *code* in a fresh interpreter (the one running the tests); returns the
    CompletedProcess. With check=True, a non-zero exit fails the test with stderr.
    Segments the child created must be gone when it exits, except those named in keep.
    A child still running after *timeout* seconds fails the test (stop_tree)."""
    # A real file, not -c: spawn/forkserver children re-import the main module.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "child_main.py")
        with open(path, "w") as f:
            f.write(code)
        child = subprocess.Popen([sys.executable, path, *args], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=child_env(),
                                 cwd=PYTHON_DIR)
        out, err = _communicate(child, timeout)
    proc = subprocess.CompletedProcess(child.args, child.returncode, out, err)
    _check_child_left_nothing(child.pid, keep)
    if check and proc.returncode != 0:
        pytest.fail(f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_script(path, *args, timeout=90):
    child = subprocess.Popen([sys.executable, path, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=child_env(), cwd=PYTHON_DIR)
    out, err = _communicate(child, timeout)
    _check_child_left_nothing(child.pid, ())
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


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
