"""The directory backend (docs/format.md section 1.3): segments as files in a directory the
user names (dir= or SHAREDBRIDGE_DIR), with the same header, locks, lifetimes, reaping and
CLI; the prefix of generated names (section 1.1); attach waiting for a name to appear."""

import json
import os
import shutil
import stat
import tempfile
import threading

import pytest

import sharedbridge as sb
from sharedbridge import cli

PREFIX = "sbd22_"


@pytest.fixture
def d():
    """A fresh directory for segments, removed (with anything left in it) afterwards."""
    path = tempfile.mkdtemp(prefix=PREFIX)
    yield path
    left = os.listdir(path)
    shutil.rmtree(path)
    assert not left, f"segments left in the directory: {left}"


def _only_in(d, name):
    st = os.lstat(os.path.join(d, name))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert not os.path.lexists(f"/dev/shm/{name}"), f"{name} went to /dev/shm"


def test_every_kind_lives_in_the_directory_and_goes_with_its_creator(d):
    lock = sb.RLock(dir=d)
    objs = [sb.Array("i", [1, 2, 3], dir=d), sb.Value("d", 2.5, dir=d), sb.RawArray("b", 4, dir=d),
            lock, sb.Event(dir=d), sb.Semaphore(2, dir=d), sb.Condition(lock, dir=d),
            sb.Barrier(2, dir=d), sb.Queue(dir=d), sb.ndarray((2, 3), "f", dir=d)]
    for obj in objs:
        assert "/" not in obj.name            # the name, not the path
        _only_in(d, obj.name)
    a, q = objs[0], objs[8]
    assert sb.attach(a.name, dir=d)[:] == [1, 2, 3]
    assert sb.attach(objs[1].name, dir=d).value == 2.5
    with sb.attach(objs[6].name, dir=d):      # the condition's lock, found beside it
        pass
    # A large message's own segment goes beside its queue (docs/format.md section 11.5).
    q.put(b"x" * (q.capacity // 2))
    assert [n for n in os.listdir(d) if n.startswith(q.name + ".m")]
    assert len(sb.attach(q.name, dir=d).get(timeout=30)) == q.capacity // 2
    with pytest.raises(sb.SegmentNotFoundError):
        sb.attach(a.name)                     # not in /dev/shm
    assert {i.name for i in sb.list_segments(dir=d)} >= {o.name for o in objs}
    assert sb.inspect_segment(a.name, data=3, dir=d).elements == (1, 2, 3)
    for obj in objs:
        sb.close(obj)
    assert os.listdir(d) == []


def test_the_environment_variable_names_the_directory(d, monkeypatch):
    monkeypatch.setenv("SHAREDBRIDGE_DIR", d)
    arr = sb.Array("q", 2)
    _only_in(d, arr.name)
    assert sb.attach(arr.name).get_obj()[:] == [0, 0]
    assert sb.header_of(arr.name).kind == 1
    # The option wins over the variable: /dev/shm itself means the shared-memory objects.
    with pytest.raises(sb.SegmentNotFoundError):
        sb.attach(arr.name, dir="/dev/shm")
    sb.close(arr)


def test_an_external_lock_must_be_in_the_objects_directory(d):
    lock = sb.Lock(dir=d)
    with pytest.raises(ValueError, match="one directory"):
        sb.Value("i", 1, lock=lock)
    v = sb.Value("i", 1, lock=lock, dir=d)
    w = sb.attach(v.name, dir=d)
    with w.get_lock():
        w.value = 7
    assert v.value == 7
    sb.close(v)
    sb.close(lock)


def test_a_missing_directory_is_named(d):
    missing = os.path.join(d, "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        sb.RawArray("i", 1, dir=missing)


def test_a_segment_larger_than_dev_shm_names_the_directory_backend():
    st = os.statvfs("/dev/shm")
    with pytest.raises(sb.SegmentTooLargeError, match="SHAREDBRIDGE_DIR"):
        sb.RawArray("b", st.f_blocks * st.f_frsize + 1)


def test_cli_lists_inspects_reaps_and_unlinks_in_the_directory(d, capsys):
    kept = sb.RawArray("i", [5, 6], name=PREFIX + f"{os.getpid()}_k", keep=True, dir=d)
    name = kept.name
    assert cli.main(["ls", "--dir", d, "--prefix", PREFIX]) == 0
    assert name in capsys.readouterr().out
    assert cli.main(["inspect", name, "--dir", d, "--data", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == [5, 6]
    assert cli.main(["reap", "--dir", d, "--prefix", PREFIX]) == 0      # persistent: kept
    assert os.path.exists(os.path.join(d, name))
    capsys.readouterr()
    assert cli.main(["unlink", name, "--dir", d]) == 0
    assert not os.path.exists(os.path.join(d, name))
    assert cli.main(["ls", "--dir", os.path.join(d, "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_attach_waits_for_a_name_to_appear(d):
    name = f"{PREFIX}{os.getpid()}_w"
    made = []
    creator = threading.Timer(0.1, lambda: made.append(sb.Array("i", [42], name=name, dir=d)))
    # Without waiting, a consumer that starts first fails at once.
    with pytest.raises(sb.SegmentNotFoundError):
        sb.attach(name, dir=d)
    creator.start()
    try:
        assert sb.attach(name, dir=d, wait_for_name=30)[0] == 42
    finally:
        creator.join(30)
        for obj in made:
            sb.close(obj)
    with pytest.raises(sb.SegmentNotFoundError, match="appeared within"):
        sb.attach(name + "_never", dir=d, wait_for_name=0.02)
    with pytest.raises(ValueError, match="wait_for_name"):
        sb.attach(name, dir=d, wait_for_name=-1)


def test_generated_names_take_the_configured_prefix():
    assert sb.get_name_prefix() == "sb_"
    try:
        sb.set_name_prefix(PREFIX + "team.")
        ev = sb.Event()
        assert ev.name.startswith(PREFIX + "team.") and len(ev.name) == len(PREFIX) + 5 + 16
        assert [i.name for i in sb.list_segments(prefix=PREFIX + "team.")] == [ev.name]
        for bad in (".x", "sem.", "a/b", "é", "a" * 240, None):
            with pytest.raises(sb.InvalidNameError):
                sb.set_name_prefix(bad)
        assert sb.get_name_prefix() == PREFIX + "team."
        sb.close(ev)
    finally:
        sb.set_name_prefix("sb_")


def test_the_prefix_comes_from_the_environment(monkeypatch):
    from conftest import run_python
    from sharedbridge._format import segment_name
    monkeypatch.setenv("SHAREDBRIDGE_NAME_PREFIX", PREFIX + "env_")
    proc = run_python("import sharedbridge as sb\ne = sb.Event()\nprint(sb.get_name_prefix(), e.name)\n")
    prefix, name = proc.stdout.split()
    assert prefix == PREFIX + "env_" and name.startswith(prefix)
    with pytest.warns(RuntimeWarning, match="SHAREDBRIDGE_NAME_PREFIX"):
        assert segment_name._prefix_from_env("bad/prefix") == "sb_"
