"""Segment lifetimes (creator, last-closer, persistent) and reap(): docs/format.md
section 8, docs/api.md "Lifetimes". Real processes everywhere: fork, spawn and
forkserver children, subprocesses killed with SIGKILL."""

import fcntl
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import fresh_names, image_of, reseal, write_segment

import sharedbridge as sb
from sharedbridge._objects.protocol import require_segment
from sharedbridge._platform import last_closer
from sharedbridge._platform import segment as S

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def names():
    """names() gives a fresh sblt_ name; every one is removed after the test."""
    yield from fresh_names("sblt")


@pytest.fixture
def rnames():
    """Like names(), with the prefix sbreap_ (the reaping tests of initializing segments)."""
    yield from fresh_names("sbreap")


def exists(name):
    return os.path.exists(f"/dev/shm/{name}")


def child(code):
    """A Python subprocess running *code*; it prints 'ready' when it has set up."""
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-c", "import sharedbridge as sb, sys, time\n" + code],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout.readline().strip() == "ready"
    return p


def kill(p):
    p.kill()
    p.wait(10)


# --- the header and the options --------------------------------------------------------

@pytest.mark.parametrize("lifetime,compat", [("creator", 1), ("last-closer", 2), ("persistent", 1)])
def test_every_create_records_its_lifetime(names, lifetime, compat):
    made = [sb.Array("d", 2, name=names(), lifetime=lifetime),
            sb.Value("i", 1, name=names(), lifetime=lifetime),
            sb.RawArray("b", 3, name=names(), lifetime=lifetime),
            sb.RawValue("q", name=names(), lifetime=lifetime),
            sb.Lock(names(), lifetime=lifetime), sb.RLock(names(), lifetime=lifetime),
            sb.copy(sb.RawValue("i", 7, name=names()), name=names(), lifetime=lifetime)]
    for obj in made:
        h = sb.header_of(obj)
        assert (h.lifetime, h.version, h.compat_version) == (lifetime, 2, compat)
        assert sb.header_of(obj.name).lifetime == lifetime     # read back by name
    for obj in made:
        sb.close(obj)
        if lifetime == "persistent":
            sb.unlink(obj.name)


def test_keep_is_an_alias_of_persistent_and_contradictions_are_refused(names):
    a = sb.RawArray("i", 1, name=names(), keep=True)
    assert sb.header_of(a).lifetime == "persistent"
    sb.unlink(a.name)
    for lifetime in ("creator", "last-closer"):
        with pytest.raises(ValueError, match="contradictory"):
            sb.Array("i", 1, name=names(), lifetime=lifetime, keep=True)
    with pytest.raises(ValueError, match="invalid lifetime"):
        sb.Value("i", name=names(), lifetime="forever")
    assert sb.header_of(sb.Lock(names(), keep=True, lifetime="persistent")).lifetime == "persistent"


# --- last-closer -----------------------------------------------------------------------

def _hold_until(obj, go, done):
    done.set()
    go.wait(30)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("parent_first", [True, False])
def test_last_closer_any_order_with_multiprocessing_children(names, method, parent_first):
    ctx = multiprocessing.get_context(method)
    a = sb.Array("i", 4, name=names(), lifetime="last-closer")
    go, done = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_until, args=(a, go, done))
    p.start()
    assert done.wait(30)
    if parent_first:
        sb.close(a)
        assert exists(a.name)          # the child still has it open
        go.set()
        p.join(30)
    else:
        go.set()
        p.join(30)
        assert exists(a.name)          # the parent still has it open
        sb.close(a)
    assert p.exitcode == 0
    assert not exists(a.name)


def test_fork_child_that_closes_never_unlinks_under_its_parent(names):
    a = sb.Array("i", 1, name=names(), lifetime="last-closer")
    pid = os.fork()
    if pid == 0:
        sb.close(a)                    # the child's own flock description: not the last
        os._exit(0 if exists(a.name) else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert exists(a.name)
    a[0] = 1                           # still fine in the parent
    sb.close(a)
    assert not exists(a.name)


def test_last_closer_attacher_and_creator_in_one_process_share_one_hold(names):
    a = sb.RawArray("i", 1, name=names(), lifetime="last-closer")
    b = sb.attach(a.name)
    assert require_segment(a).holder is require_segment(b).holder   # one descriptor
    sb.close(b)
    assert exists(a.name)              # claims are per object: a still holds it
    sb.close(a)
    assert not exists(a.name)          # the process's last object left: it was the last


@pytest.mark.parametrize("victim", ["creator", "attacher", "last holder"])
def test_sigkill_drops_the_hold(names, victim):
    name = names()
    if victim == "attacher":
        a = sb.Array("d", 2, name=name, lifetime="last-closer")
        p = child(f"b = sb.attach({name!r}); print('ready', flush=True); time.sleep(60)")
        kill(p)
        assert exists(name)
        sb.close(a)                    # the killed attacher holds nothing any more
        assert not exists(name)
        return
    p = child(f"a = sb.Array('d', 2, name={name!r}, lifetime='last-closer'); "
              "print('ready', flush=True); time.sleep(60)")
    if victim == "creator":
        b = sb.attach(name)
        kill(p)
        assert exists(name)
        sb.close(b)
        assert not exists(name)
        return
    kill(p)                            # the only holder: nobody can unlink it now
    assert exists(name)
    assert sb.reap(dry_run=True, prefix=name) == [
        sb.ReapedSegment(name, "last-closer: no process holds it open", False)]
    assert exists(name)
    assert sb.reap(prefix=name) == [
        sb.ReapedSegment(name, "last-closer: no process holds it open", True)]
    assert not exists(name)


def test_header_of_a_name_only_looks(names):
    name = names()
    kill(child(f"a = sb.Array('d', 2, name={name!r}, lifetime='last-closer'); "
               "print('ready', flush=True); time.sleep(60)"))
    for _ in range(2):
        assert sb.header_of(name).lifetime == "last-closer"
    assert exists(name)                # nobody holds it, yet looking did not remove it
    sb.close(sb.attach(name))          # joining and leaving did: it was the last
    assert not exists(name)


def test_sigterm_of_an_attacher_releases_its_hold(names):
    name = names()
    p = child(f"a = sb.Array('d', 2, name={name!r}, lifetime='last-closer'); "
              "print('ready', flush=True); time.sleep(60)")
    q = child(f"b = sb.attach({name!r}); print('ready', flush=True); time.sleep(60)")
    kill(p)
    q.send_signal(signal.SIGTERM)
    assert q.wait(10) == -signal.SIGTERM
    assert not exists(name)            # the attacher was the last: its handler unlinked


def test_attach_racing_the_last_closer_raises_not_found(names):
    """An attacher whose shm_open came before the last closer's unlink re-checks after its
    shared flock: the name is gone, so it reports SegmentNotFoundError, never a
    half-dead segment."""
    a = sb.RawArray("i", 1, name=names(), lifetime="last-closer")
    fd = os.open(f"/dev/shm/{a.name}", os.O_RDWR)
    holder = last_closer.FlockHolder(fd)                    # plays the closer in another process
    seg = require_segment(a)
    seg.holder.close()                             # ... and is the only other holder
    seg._finalizer.detach()
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the closer won: it is the last
    outcome = []

    def attacher():
        try:
            outcome.append(sb.attach(a.name))
        except sb.SegmentNotFoundError as e:
            outcome.append(e)
    t = threading.Thread(target=attacher)
    t.start()
    time.sleep(0.2)                                # the attacher waits for its shared lock
    assert t.is_alive()
    S._retire(seg.mm)
    os.unlink(f"/dev/shm/{a.name}")
    holder.close()
    t.join(10)
    assert isinstance(outcome[0], sb.SegmentNotFoundError), outcome


def test_attach_racing_a_replaced_name_gets_the_new_segment(names):
    name = names()
    a = sb.RawArray("i", 1, name=name, lifetime="last-closer")
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
    old = require_segment(a)
    old.holder.close()
    old._finalizer.detach()
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    got = []
    t = threading.Thread(target=lambda: got.append(sb.attach(name)))
    t.start()
    time.sleep(0.2)
    os.unlink(f"/dev/shm/{name}")
    b = sb.RawArray("i", [42], name=name, lifetime="last-closer")   # same name, new object
    last_closer.close_unlocked(fd)
    t.join(10)
    assert got and got[0][0] == 42
    sb.close(b)
    sb.close(got[0])
    assert not exists(name)


# --- creator, persistent and reap ------------------------------------------------------

def test_reap_removes_a_dead_creators_segment_and_never_a_persistent_one(names):
    gone, kept, alive = names(), names(), names()
    p = child(f"a = sb.RawArray('i', 1, name={gone!r}); "
              f"b = sb.RawArray('i', 1, name={kept!r}, lifetime='persistent'); "
              "print('ready', flush=True); time.sleep(60)")
    mine = sb.RawArray("i", 1, name=alive)
    pid = p.pid
    kill(p)
    assert exists(gone) and exists(kept)
    start = sb.header_of(gone).creator_start_time
    reason = f"creator pid {pid} (started {start}) is gone"
    prefix = f"sblt_{os.getpid()}_"
    assert sb.reap(dry_run=True, prefix=prefix) == [sb.ReapedSegment(gone, reason, False)]
    assert sb.reap(prefix=prefix) == [sb.ReapedSegment(gone, reason, True)]
    assert not exists(gone) and exists(kept) and exists(alive)
    assert sb.reap(prefix=prefix) == []
    sb.unlink(kept)
    sb.close(mine)


def test_reap_prefix_limits_what_it_looks_at(names):
    first, second = names(), names()
    p = child(f"a = sb.RawArray('i', 1, name={first!r}); "
              f"b = sb.RawArray('i', 1, name={second!r}); print('ready', flush=True); "
              "time.sleep(60)")
    kill(p)
    assert [r.name for r in sb.reap(prefix=first)] == [first]
    assert exists(second)
    assert [r.name for r in sb.reap(prefix=second)] == [second]


def test_reap_leaves_foreign_corrupt_and_initializing_objects_alone(names):
    foreign, zero, corrupt = names(), names(), names()
    with open(f"/dev/shm/{foreign}", "wb") as f:
        f.write(b"not sharedbridge" * 64)
    with open(f"/dev/shm/{zero}", "wb") as f:
        f.write(bytes(4096))      # sized, nothing written yet: initializing, not yet old
    p = child(f"a = sb.RawArray('i', 1, name={corrupt!r}); print('ready', flush=True); "
              "time.sleep(60)")
    kill(p)
    with open(f"/dev/shm/{corrupt}", "r+b") as f:  # a dead creator, but a corrupt header
        f.seek(0x10)
        f.write(b"\x09")
    # Nothing recorded and open here: never garbage, however long the children took to start.
    held = os.open(f"/dev/shm/{zero}", os.O_RDONLY)
    try:
        assert sb.reap(prefix=f"sblt_{os.getpid()}_") == []
    finally:
        os.close(held)
    assert exists(foreign) and exists(zero) and exists(corrupt)


def _paused_creator(name, lifetime="creator"):
    """A child that creates *name* and stops between writing the identity and state =
    ready (the creator's test hook); it prints 'ready' when it has stopped there."""
    return child("from sharedbridge._platform import segment as S\n"
                 "S._before_ready = lambda n: (print('ready', flush=True), time.sleep(60))\n"
                 f"sb.Array('i', 4, name={name!r}, lifetime={lifetime!r})")


def _age(name, seconds=60):
    """Make the object look *seconds* old (its modification time, docs/format.md 8)."""
    t = time.time() - seconds
    os.utime(f"/dev/shm/{name}", (t, t))


def _recorded_creator(name):
    with open(f"/dev/shm/{name}", "rb") as f:
        head = f.read(0x200)
    assert head[:8] == b"SHBRIDGE" and head[0x180:0x184] == bytes(4)     # initializing
    return __import__("struct").unpack_from("<IQ", head, 0x44)


@pytest.mark.parametrize("lifetime", ["creator", "last-closer", "persistent"])
def test_reap_removes_a_segment_whose_creator_was_killed_while_initializing(rnames, lifetime):
    name = rnames()
    p = _paused_creator(name, lifetime)
    kill(p)
    pid, start = _recorded_creator(name)
    assert pid == p.pid and start > 0
    assert sb.reap(prefix=name) == []          # younger than the grace period
    assert exists(name)
    _age(name)
    reason = f"initializing: creator pid {pid} (started {start}) is gone"
    assert sb.reap(dry_run=True, prefix=name) == [sb.ReapedSegment(name, reason, False)]
    assert exists(name)
    assert sb.reap(prefix=name) == [sb.ReapedSegment(name, reason, True)]
    assert not exists(name)


def test_reap_never_removes_the_segment_of_a_live_initializing_creator(rnames):
    name = rnames()
    p = _paused_creator(name)
    try:
        _age(name, 3600)
        assert sb.reap(prefix=name) == []
        assert exists(name)
    finally:
        kill(p)


def test_reap_removes_an_initializing_object_with_nothing_recorded_only_if_nobody_has_it_open(
        rnames):
    empty, zero = rnames(), rnames()
    open(f"/dev/shm/{empty}", "wb").close()          # killed before ftruncate
    with open(f"/dev/shm/{zero}", "wb") as f:         # killed after ftruncate
        f.write(bytes(4096))
    for n in (empty, zero):
        os.chmod(f"/dev/shm/{n}", 0o600)
        _age(n)
    reason = "initializing: no creator recorded and no process has it open"
    held = os.open(f"/dev/shm/{zero}", os.O_RDONLY)
    try:
        assert sb.reap(prefix=f"sbreap_{os.getpid()}_") == [sb.ReapedSegment(empty, reason, True)]
        assert exists(zero) and not exists(empty)
    finally:
        os.close(held)
    assert sb.reap(prefix=zero) == [sb.ReapedSegment(zero, reason, True)]
    assert not exists(zero)


def test_reap_leaves_a_last_closer_segment_that_someone_holds(names):
    a = sb.RawArray("i", 1, name=names(), lifetime="last-closer")
    assert sb.reap(prefix=a.name) == []
    a[0] = 3
    sb.close(a)
    assert not exists(a.name)


def test_reap_re_verifies_the_name_before_unlinking(names, monkeypatch):
    """A segment replaced under the same name between the judgement and the unlink is a
    different object: the reaper leaves it."""
    name = names()
    p = child(f"a = sb.RawArray('i', 1, name={name!r}); print('ready', flush=True); "
              "time.sleep(60)")
    kill(p)
    real_same = S.same_object
    replaced = []

    def replace_then_check(n, st):
        if not replaced:
            os.unlink(f"/dev/shm/{n}")
            replaced.append(sb.RawArray("i", 1, name=n, lifetime="persistent"))
        return real_same(n, st)
    monkeypatch.setattr(S, "same_object", replace_then_check)
    assert sb.reap(prefix=name) == []
    assert exists(name) and sb.header_of(name).lifetime == "persistent"
    sb.unlink(name)


# --- the lifetime byte on open (docs/format.md 6.2 step 5, 6.3) ---------------------------

def _forge(name, img):
    """Write *img*, its checksum recomputed, as the new segment *name*."""
    return write_segment(name, reseal(img))


@pytest.mark.parametrize("version,compat,byte,outcome", [
    (2, 1, 3, sb.CorruptSegmentError),       # no such lifetime
    (2, 1, 255, sb.CorruptSegmentError),
    (2, 1, 1, sb.CorruptSegmentError),       # last-closer needs compat_version 2
    (2, 1, 2, "persistent"),
    (2, 2, 1, "last-closer"),
    (1, 1, 1, "creator"),                    # version 1: a reserved byte, ignored
    (1, 1, 200, "creator"),
])
def test_lifetime_byte_on_open(names, version, compat, byte, outcome):
    src = sb.RawArray("i", [6], name=names())
    img = image_of(src)
    img[8:12] = bytes([version, 0, compat, 0])
    img[0x39] = byte
    name = _forge(names(), img)
    if isinstance(outcome, str):
        h = sb.header_of(name)
        assert (h.lifetime, h.version) == (outcome, version)
        got = sb.attach(name)
        assert got[0] == 6
        sb.close(got)
    else:
        with pytest.raises(outcome, match="lifetime|compat_version"):
            sb.attach(name, timeout=0.1)
    sb.close(src)


def test_reap_never_touches_a_version_1_segment(names):
    """Version 1 did not record keep=True: a dead creator's version-1 segment may be a
    kept one, so the reaper leaves it."""
    name = names()
    kill(child(f"a = sb.RawArray('i', [6], name={name!r}); print('ready', flush=True); "
               "time.sleep(60)"))
    with open(f"/dev/shm/{name}", "rb") as f:
        img = bytearray(f.read())
    img[8:12] = bytes([1, 0, 1, 0])
    os.unlink(f"/dev/shm/{name}")
    _forge(name, img)
    assert sb.header_of(name).version == 1
    assert sb.reap(prefix=name) == []
    assert exists(name)


V1_GOLDEN = os.path.join(os.path.dirname(PYTHON_DIR), "tests", "cross", "vectors", "v1")


@pytest.mark.parametrize("path", sorted(
    os.path.join(V1_GOLDEN, f) for f in os.listdir(V1_GOLDEN) if f.endswith(".header.bin")),
    ids=os.path.basename)
def test_every_version_1_golden_header_is_still_read(names, path):
    """The golden headers of format version 1 (kept in tests/cross/vectors/v1) open with a
    version-2 reader, as lifetime "creator"."""
    import struct
    with open(path, "rb") as f:
        head = f.read()
    data_offset, data_size = struct.unpack_from("<QQ", head, 0x20)
    name = names()
    with open(f"/dev/shm/{name}", "xb") as f:
        f.write(head + bytes(data_offset + data_size - len(head)))
    h = sb.header_of(name)
    assert (h.version, h.compat_version, h.lifetime) == (1, 1, "creator")
    if h.lock_kind != 2:                   # an external lock needs its lock segment too
        sb.attach(name)
