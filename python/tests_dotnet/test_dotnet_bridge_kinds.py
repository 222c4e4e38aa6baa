"""sharedbridge.dotnet.open(name) opens every kind the library has, and the bridge uses a
SharedBridge assembly the application loaded itself (clr.AddReference), releasing the
.NET-created segments at exit however the assembly was loaded (child interpreters)."""
import os
import subprocess
import sys
import textwrap

import pytest

import sharedbridge
import sharedbridge.dotnet as sbn

import pathlib

ASSEMBLY_DIR = pathlib.Path(__file__).resolve().parents[2] / "src/Dotnet/SharedBridge/bin/Release/net10.0"


@pytest.fixture
def sbn22():
    """Unique sbn22_ names; whatever is left in /dev/shm afterwards is removed (and fails)."""
    made = []

    def make(tag):
        made.append(f"sbn22_{os.getpid()}_{tag}")
        return made[-1]

    yield make
    for n in os.listdir("/dev/shm"):
        if n.startswith(f"sbn22_{os.getpid()}_"):
            os.unlink("/dev/shm/" + n)


def test_open_gives_the_dotnet_object_of_every_kind(sb, sbn22):
    from System import TimeSpan
    objs = {
        "lock": sharedbridge.Lock(name=sbn22("lock")),
        "rlock": sharedbridge.RLock(name=sbn22("rlock")),
        "event": sharedbridge.Event(name=sbn22("event")),
        "sem": sharedbridge.Semaphore(2, name=sbn22("sem")),
        "bsem": sharedbridge.BoundedSemaphore(3, name=sbn22("bsem")),
        "cond": sharedbridge.Condition(name=sbn22("cond")),
        "barrier": sharedbridge.Barrier(3, name=sbn22("barrier")),
        "queue": sharedbridge.Queue(name=sbn22("queue")),
        "jqueue": sharedbridge.JoinableQueue(name=sbn22("jqueue")),
        "squeue": sharedbridge.SimpleQueue(name=sbn22("squeue")),
        "array": sharedbridge.Array("i", [1, 2, 3], name=sbn22("array")),
        "value": sharedbridge.Value("d", 2.5, name=sbn22("value")),
        "chars": sharedbridge.Array("c", b"abc", name=sbn22("chars")),
        "nd": sharedbridge.ndarray((2, 3), "d", name=sbn22("nd")),      # no numpy needed
    }
    expected = {"lock": "SharedLock", "rlock": "SharedLock", "event": "SharedEvent",
                "sem": "SharedSemaphore", "bsem": "SharedSemaphore", "cond": "SharedCondition",
                "barrier": "SharedBarrier", "queue": "SharedQueue", "jqueue": "SharedQueue",
                "squeue": "SharedQueue", "array": "SharedArray", "value": "SharedValue",
                "chars": "SharedCharArray", "nd": "SharedTensor"}
    net = {}
    try:
        for key, obj in objs.items():
            net[key] = sbn.open(obj.name)
            assert type(net[key]).__name__.startswith(expected[key]), (key, type(net[key]))
            assert str(net[key].Name) == obj.name and not net[key].IsOwner
        # Each is the same object in both languages.
        objs["event"].set()
        assert net["event"].IsSet
        assert net["sem"].CurrentCount == 2 and not net["sem"].IsBounded
        assert net["bsem"].IsBounded and net["bsem"].MaximumCount == 3
        assert net["barrier"].ParticipantCount == 3
        net["queue"].Write("from .NET")
        assert objs["queue"].get(timeout=5) == "from .NET"
        assert net["array"].Get(2) == 3 and net["value"].Value == 2.5
        objs["nd"][1, 2] = 5.0
        assert list(net["nd"].GetShape()) == [2, 3] and net["nd"].Get(1, 2) == 5.0
        with net["lock"].LockUnscoped(TimeSpan.FromSeconds(5)):
            pass
        # to_dotnet reaches every kind too (it opens by name).
        assert type(sbn.to_dotnet(objs["cond"])).__name__ == "SharedCondition"
        # A net_type for a kind without elements is a usage error, not a type mismatch.
        from System import Double
        with pytest.raises(TypeError, match="without net_type"):
            sbn.open(objs["event"].name, Double)
        assert sbn.attach is sbn.open
    finally:
        for n in net.values():
            n.Dispose()


# ---- An assembly the application loaded itself, and the end of the process ---------------

CHILD = textwrap.dedent("""
    import os, sys
    base, scenario, dll = sys.argv[1], sys.argv[2], sys.argv[3]
    import sharedbridge
    if scenario == "import-first":
        import sharedbridge.dotnet as sbn          # before pythonnet and the assembly
    import pythonnet
    pythonnet.load("coreclr")
    import clr
    clr.AddReference(dll)                          # the application loads SharedBridge by path
    import SharedBridge
    from System import Double
    net = SharedBridge.SharedArray[Double].Create(base + "_net", 4)   # .NET creates a segment
    if scenario == "import-after":
        import sharedbridge.dotnet as sbn          # no call: the import alone takes over
        raise SystemExit(3)
    py = sharedbridge.Array("d", 2, name=base + "_py")
    back = sbn.to_dotnet(py)                       # the bridge uses the loaded assembly
    assert sbn.loader._assembly_path == os.path.abspath(dll), sbn.loader._assembly_path
    assert not SharedBridge.SegmentCleanup.SignalHandlersEnabled
    print("bridged", type(back).__name__, sbn.open(base + "_net").Length, flush=True)
    raise RuntimeError("the script ends on an error")
""")


@pytest.mark.skipif(sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"),
                    reason="two pythonnet children: run once, on Debian's python3 (test-time budget)")
def test_an_assembly_loaded_by_path_is_used_and_dev_shm_is_clean_after_exit(sb):
    env = dict(os.environ)
    env.pop("SHAREDBRIDGE_DOTNET_ASSEMBLY", None)   # nothing tells the bridge where it is
    env["PYTHONPATH"] = os.pathsep.join(sys.path)     # the package and pythonnet, as here
    dll = str(ASSEMBLY_DIR / "SharedBridge.dll")
    runs = {}
    for scenario in ("import-first", "import-after"):
        base = f"sbn22_{os.getpid()}_{scenario.replace('-', '')}"
        runs[scenario] = (base, subprocess.Popen(
            [sys.executable, "-c", CHILD, base, scenario, dll], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        for scenario, (base, p) in runs.items():
            out, err = p.communicate(timeout=120)
            if scenario == "import-first":
                assert p.returncode == 1 and "the script ends on an error" in err, err
                assert "bridged SharedArray`1 4" in out or "bridged SharedArray" in out, (out, err)
            else:
                assert p.returncode == 3, err
            left = sorted(n for n in os.listdir("/dev/shm") if n.startswith(base))
            assert left == [], f"{scenario}: left in /dev/shm after the process ended: {left}"
    finally:
        for base, p in runs.values():
            if p.poll() is None:
                p.kill()
                p.wait(30)
            for n in os.listdir("/dev/shm"):
                if n.startswith(base):
                    os.unlink("/dev/shm/" + n)
