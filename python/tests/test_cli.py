"""The `sharedbridge` command line (python -m sharedbridge; docs/cli.md), run as a real
subprocess against real segments: ls, inspect, unlink, reset-lock, --json, exit codes,
errors on stderr without a traceback."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

import sharedbridge as sb
from conftest import PYTHON_DIR, child_env, fresh_names, run_python



@pytest.fixture
def names():
    """names() -> a fresh sbcli_<pid>_<n>_ name (also used as a prefix); everything
    starting with one is removed afterwards."""
    yield from fresh_names("sbcli", as_prefix=True)


def cli(*args, check=None):
    """Run `python -m sharedbridge ARGS`: (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "sharedbridge", *args], capture_output=True,
                          text=True, env=child_env(), timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


def ls_json(prefix, *extra):
    return {i["name"]: i for i in json.loads(cli("ls", "--json", "--prefix", prefix, *extra,
                                                    check=0)[1])}


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double * 2)]


def test_ls_shows_every_column_of_this_process_segments(names):
    prefix = names()
    lock = sb.RLock(prefix + "_l")
    arr = sb.Array("d", [1.5, 2.5, 3.5], name=prefix + "a")
    val = sb.Value("i", 7, lock=lock, name=prefix + "v")
    pts = sb.RawArray(Point, 2, name=prefix + "p")
    names_made = {prefix + "a", prefix + "v", prefix + "p", prefix + "_l"}
    found = ls_json(prefix)
    assert set(found) == names_made
    a = found[prefix + "a"]
    assert (a["status"], a["kind"], a["typecode"], a["length"], a["lock"], a["lock_state"],
            a["state"], a["lifetime"]) == ("ok", "array", "d", 3, "embedded", "free", "ready",
                                            "creator")
    assert a["bytes"] == os.stat(f"/dev/shm/{prefix}a").st_size
    assert a["creator_pid"] == os.getpid() and a["creator_alive"] is True
    assert os.getpid() in a["mapped_by"] and a["recoveries"] == 0
    assert 0 <= a["age_seconds"] < 60
    v = found[prefix + "v"]
    assert (v["kind"], v["lock"], v["lock_name"], v["lock_state"]) == \
        ("value", "external", prefix + "_l", "free")
    p = found[prefix + "p"]
    assert (p["typecode"], p["type_name"], p["lock"], p["lock_state"], p["recoveries"]) == \
        ("T", "Point", "none", None, None)
    assert found[prefix + "_l"]["kind"] == "lock"
    # The table: one row per segment, the external lock as "-> name".
    code, out, err = cli("ls", "--prefix", prefix, check=0)
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == names_made and err == ""
    assert f"-> {prefix}_l" in rows[prefix + "v"] and "Point" in rows[prefix + "p"]
    assert f"{os.getpid()} (alive)" in rows[prefix + "a"]
    del arr, val, pts, lock


def test_ls_lists_corrupt_segments_and_foreign_objects_only_with_all(names):
    base = names()
    arr = sb.RawArray("i", 4, name=base + "ok")
    with open(f"/dev/shm/{base}ok", "rb") as f:
        good = f.read()
    bad = bytearray(good)
    bad[0x184] ^= 1                                       # header_crc32
    with open(f"/dev/shm/{base}bad", "xb") as f:
        f.write(bad)
    with open(f"/dev/shm/{base}text", "xb") as f:
        f.write(b"not a segment at all" * 40)
    found = ls_json(base)
    assert set(found) == {base + "ok", base + "bad"}
    assert found[base + "bad"]["status"] == "corrupt"
    assert "header_crc32" in found[base + "bad"]["reason"]
    assert found[base + "bad"]["kind"] is None and found[base + "bad"]["bytes"] == len(bad)
    everything = ls_json(base, "--all")
    assert everything[base + "text"]["status"] == "foreign"
    assert "not a SharedBridge segment" in everything[base + "text"]["reason"]
    code, out, err = cli("ls", "--all", "--prefix", base, check=0)
    assert "corrupt" in out and "foreign" in out
    del arr


def test_inspect_decodes_header_fields_and_data(names):
    name = names()
    pts = sb.RawArray(Point, [(1, (0.5, 2.0)), (-3, (float("nan"), float("-inf")))], name=name)
    code, out, err = cli("inspect", name, "--json", "--data", "5", check=0)
    info = json.loads(out)
    assert info["header"]["element_count"] == 2 and info["header"]["typecode"] == "T"
    assert info["header"]["type_name"] == "Point" and info["header"]["element_size"] == 24
    assert [f["name"] for f in info["fields"]] == ["x", "y"]
    assert info["fields"][1] == {"name": "y", "typecode": "d", "offset": 8, "count": 2,
                                 "item_size": 8, "fields": []}
    assert info["data"] == [{"x": 1, "y": [0.5, 2.0]}, {"x": -3, "y": ["NaN", "-Infinity"]}]
    code, out, err = cli("inspect", name, "--data", "1", check=0)
    assert "fields of Point:" in out and "y[2]: 'd' at offset 8" in out
    assert '[0] {"x": 1, "y": [0.5, 2.0]}' in out and "[1]" not in out
    del pts


def test_lock_held_by_another_process_then_its_owner_dead(names):
    name = names()
    code = f"""
import os, sys, sharedbridge as sb
lock = sb.Lock({name!r}, keep=True)
lock.acquire()
print('held', flush=True)
sys.stdin.readline()
os._exit(0)
"""
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, env=child_env()) as child:
        assert child.stdout.readline().strip() == "held"
        info = json.loads(cli("inspect", name, "--json", check=0)[1])
        assert (info["lock_state"], info["lock_holder_pid"]) == ("held", child.pid)
        assert info["creator_alive"] is True and info["mapped_by"] == [child.pid]
        assert f"held by pid {child.pid}" in cli("ls", "--prefix", name, check=0)[1]
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=20) == 0
    info = json.loads(cli("inspect", name, "--json", check=0)[1])
    assert (info["lock_state"], info["lock_holder_pid"]) == ("owner dead", None)
    assert info["creator_alive"] is False and info["mapped_by"] == []
    assert "owner dead: will be recovered" in cli("ls", "--prefix", name, check=0)[1]
    # unlink removes it; a second unlink is an error.
    assert cli("unlink", name, check=0)[1].strip() == f"unlinked {name}"
    assert not os.path.exists(f"/dev/shm/{name}")
    code, out, err = cli("unlink", name, check=1)
    assert name in err and out == ""


def test_reset_lock_repairs_a_corrupt_mutex_and_refuses_while_mapped(names):
    name = names()
    run_python(f"""
import struct, sharedbridge as sb
from sharedbridge._format import header as H
arr = sb.Array('i', 2, name={name!r}, keep=True)
struct.pack_into('<i', arr.get_lock()._seg.mm, H.LOCK_OFFSET + 16, 0)   # the kind word
""", timeout=30, keep=(name,))
    assert ls_json(name)[name]["lock_state"] == "corrupt"
    code = f"""
import sys, sharedbridge as sb
a = sb.attach({name!r})
print('attached', flush=True)
sys.stdin.readline()
"""
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, env=child_env()) as child:
        assert child.stdout.readline().strip() == "attached"
        code, out, err = cli("reset-lock", name, check=1)
        assert str(child.pid) in err
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=20) == 0
    assert cli("reset-lock", name, check=0)[1].strip() == f"reset the lock of {name}"
    info = ls_json(name)[name]
    assert (info["lock_state"], info["recoveries"]) == ("free", 1)
    assert "healthy: nothing done" in cli("reset-lock", name, check=0)[1]
    raw = names()
    r = sb.RawArray("i", 1, name=raw)
    code, out, err = cli("reset-lock", raw, check=1)
    assert "no shared lock" in err
    del r


CLI_BATCH = r"""
import contextlib, io, json, sys
from sharedbridge.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def cli_batch(*argvs):
    """Run several command lines in one child interpreter, each through the main() that
    `python -m sharedbridge` exits with (sharedbridge/__main__.py): one (exit status,
    stdout, stderr) per command line. For command lines that touch no segment; cli()
    runs one real `python -m sharedbridge` each."""
    proc = run_python(CLI_BATCH, json.dumps(argvs), timeout=60)
    return [tuple(r) for r in json.loads(proc.stdout)]


def test_errors_and_usage(names):
    code, out, err = cli("inspect", names(), check=1)
    assert "no shared-memory segment named" in err and out == ""
    code, out, err = cli("inspect", "bad/name", check=1)
    assert "invalid segment name" in err
    code, out, err = cli(check=2)
    assert err.startswith("usage:") and out == ""
    usage_errors = (["frobnicate"], ["inspect"], ["inspect", "x", "--data", "-1"],
                    ["ls", "--nope"], ["unlink", "a", "b"], ["reap", "NAME"])
    verbs = ("ls", "inspect", "reap", "unlink", "reset-lock")
    results = cli_batch(*usage_errors, *[[verb, "--help"] for verb in verbs])
    for args, (code, out, err) in zip(usage_errors, results):
        assert code == 2 and err.startswith("usage:") and out == "", (args, code, out, err)
    code, out, err = cli("--help", check=0)
    for verb in verbs:
        assert verb in out
    assert "exit status" in out
    for verb, (code, out, err) in zip(verbs, results[len(usage_errors):]):
        assert code == 0 and out.startswith(f"usage: sharedbridge {verb}"), (verb, code, out, err)


def test_an_initializing_segment_is_shown_as_such(names):
    name = names()
    with open(f"/dev/shm/{name}", "xb") as f:
        f.write(bytes(1024))                # sized, nothing written yet: state 0
    info = ls_json(name)[name]
    assert (info["status"], info["state"], info["bytes"]) == ("initializing", "initializing", 1024)
    code, out, err = cli("inspect", name, check=1)
    assert "initializing" in err


def test_main_runs_in_process_too(names, capsys):
    from sharedbridge.cli import main
    name = names()
    arr = sb.RawArray("b", [1, -2], name=name)
    assert main(["inspect", name, "--json", "--data", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == [1, -2]
    del arr


def test_the_package_runs_from_its_directory():
    # `python -m sharedbridge` with only the package on sys.path (what the console script runs).
    proc = subprocess.run([sys.executable, "-m", "sharedbridge", "ls", "--prefix", "sbcli_none_"],
                          capture_output=True, text=True, cwd=PYTHON_DIR,
                          env={**os.environ, "PYTHONPATH": PYTHON_DIR})
    assert proc.returncode == 0 and proc.stdout.startswith("NAME")


def test_reap_is_a_dry_run_unless_yes_and_spares_persistent_segments(names):
    base = names()
    # A creator that dies without cleaning up (os._exit skips it), a last-closer segment
    # nobody holds any more, and a persistent one: only the first two are garbage.
    run_python(f"""
import os, sharedbridge as sb
a = sb.RawArray('i', 1, name={base + 'creator'!r})
b = sb.RawArray('i', 1, name={base + 'last'!r}, lifetime='last-closer')
c = sb.RawArray('i', 1, name={base + 'kept'!r}, lifetime='persistent')
os._exit(0)
""", timeout=30, keep=(base + "creator", base + "last", base + "kept"))
    assert ls_json(base)[base + "last"]["lifetime"] == "last-closer"
    code, out, err = cli("reap", "--prefix", base, "--json", check=0)
    dry = {r["name"]: r for r in json.loads(out)}
    assert set(dry) == {base + "creator", base + "last"}
    assert not any(r["removed"] for r in dry.values())
    assert "is gone" in dry[base + "creator"]["reason"]
    assert "no process holds it open" in dry[base + "last"]["reason"]
    assert set(ls_json(base)) == {base + "creator", base + "last", base + "kept"}
    out = cli("reap", "--prefix", base, check=0)[1]
    assert f"would remove {base}creator: " in out and "--yes" in out.splitlines()[-1]
    out = cli("reap", "--yes", "--prefix", base, check=0)[1]
    assert f"removed {base}last: " in out and out.splitlines()[-1] == "removed 2 segment(s)"
    assert set(ls_json(base)) == {base + "kept"}
    assert cli("reap", "--prefix", base, check=0)[1].strip() == "nothing to reap"


@pytest.fixture
def rnames():
    """Like names(), with the prefix sbreap_ (the reap and synchronization-word tests)."""
    yield from fresh_names("sbreap", as_prefix=True)


def _holder(code):
    """A Python child running *code*, then printing 'ready' and waiting to be killed."""
    p = subprocess.Popen([sys.executable, "-c", "import sharedbridge as sb, time\n" + code
                          + "\nprint('ready', flush=True)\ntime.sleep(120)"],
                         stdout=subprocess.PIPE, text=True, env=child_env())
    assert p.stdout.readline().strip() == "ready"
    return p


def _stop(p):
    p.kill()
    p.wait(30)
    p.stdout.close()


def test_reap_dry_run_suggests_the_command_with_the_users_own_prefix(rnames):
    base = rnames()
    p = _holder(f"a = sb.RawArray('i', 1, name={base + 'a'!r})")
    _stop(p)
    out = cli("reap", "--prefix", base, check=0)[1]
    assert out.splitlines()[-1] == ("dry run: 1 segment(s) would be removed; run "
                                    f"`sharedbridge reap --yes --prefix {base}` to remove them")
    assert os.path.exists(f"/dev/shm/{base}a")
    cli("reap", "--yes", "--prefix", base, check=0)
    assert not os.path.exists(f"/dev/shm/{base}a")


def test_reap_names_the_live_processes_that_still_map_what_it_removes(rnames):
    base = rnames()
    name = base + "a"
    creator = _holder(f"a = sb.RawArray('i', 1, name={name!r})")
    attacher = _holder(f"a = sb.attach({name!r}); assert a[0] == 0")
    try:
        pid, start = creator.pid, sb.header_of(name).creator_start_time
        _stop(creator)
        reason = f"creator pid {pid} (started {start}) is gone"
        dry = json.loads(cli("reap", "--prefix", base, "--json", check=0)[1])
        assert dry == [{"name": name, "reason": reason, "removed": False,
                        "mapped_by": [attacher.pid]}]
        out = cli("reap", "--yes", "--prefix", base, check=0)[1]
        assert out.splitlines()[0] == (
            f"removed {name}: {reason} (still mapped by pid {attacher.pid}: memory stays valid "
            "for it, the name is gone)")
        assert not os.path.exists(f"/dev/shm/{name}")
    finally:
        _stop(attacher)


def test_ls_and_inspect_decode_the_synchronization_words(rnames):
    base = rnames()
    event = sb.Event(name=base + "e")
    event.set()
    bounded = sb.BoundedSemaphore(3, name=base + "s")
    bounded.acquire()
    waited = sb.Semaphore(0, name=base + "w")
    barrier = sb.Barrier(3, name=base + "b")
    cond = sb.Condition(name=base + "c")
    waiter = subprocess.Popen([sys.executable, "-c", "import sharedbridge as sb\n"
                               f"s = sb.attach({base + 'w'!r}); print(s.acquire(timeout=60))"],
                              stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        deadline = __import__("time").monotonic() + 30
        while ls_json(base)[base + "w"]["sync"]["waiters"] != 1:
            assert __import__("time").monotonic() < deadline, "the waiter never waited"
        barrier.abort()
        # A waiting semaphore leaves `waiters` for an instant once per wait slice (it looks
        # for units of dead holders, docs/format.md section 10.3) and the tool reads the
        # words without the mutex: a reading may catch that instant, so read again.
        expected = {
            "e": {"waiters": 0, "flag": 1},
            "s": {"waiters": 0, "value": 2, "max_value": 3, "bounded": 1},
            "w": {"waiters": 1, "value": 0, "max_value": 0x7FFFFFFF, "bounded": 0},
            "b": {"waiters": 0, "parties": 3, "count": 0, "state": "broken"},
            "c": {"waiters": 0}}
        for _ in range(20):
            found = {n[len(base):]: i["sync"] for n, i in ls_json(base).items()}
            if found == expected:
                break
        assert found == expected
        for _ in range(20):
            rows = {line.split()[0]: line for line in cli("ls", "--prefix", base, check=0)[1]
                    .splitlines()[1:]}
            if "  value 0, 1 waiting  " in rows[base + "w"]:
                break
        assert "  set  " in rows[base + "e"]
        assert "  value 2 of at most 3  " in rows[base + "s"]
        assert "  value 0, 1 waiting  " in rows[base + "w"]
        assert "  broken, 0 of 3 parties waiting  " in rows[base + "b"]
        assert "  0 waiting  " in rows[base + "c"]
        assert " I " not in rows[base + "e"] and " 16 " not in rows[base + "e"]
        text = cli("inspect", base + "s", check=0)[1].splitlines()
        assert "element type: -" in text and "length: -" in text
        assert "sync: value 2 of at most 3" in text
    finally:
        waited.release()
        assert waiter.communicate(timeout=60)[0].strip() == "True"
        for o in (event, bounded, waited, barrier, cond):
            sb.close(o)
