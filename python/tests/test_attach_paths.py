"""Attach behaves the same with and without the compiled module (docs/format.md section 6.2).

With _fastlock built, attach makes its system calls there (attach_read: open, fstat and the
header's reads; map_sized: the mapping and the size check after it); with
SHAREDBRIDGE_NO_ACCEL=1 (or without the module) it makes them from Python. The rules are
the same Python code on both paths, and so must be every outcome: each object below is
attached in this process (compiled) and in a child on the ctypes path, and the outcomes
(the exception's type and message, or the object and its validated header) are compared.
The objects: every invalid vector of the cross suite (tests/cross/vectors/invalid, those
standing alone), a FIFO, a directory, a symbolic link, a missing name, and valid segments
whose header is longer than the first read (a structure of many fields, an array of many
dimensions). Names: sbt_att_<pid>_<n>, all removed by the test.
"""

import ctypes
import glob
import json
import os

import pytest

import sharedbridge as sb
from sharedbridge._platform import lock_core
from conftest import PYTHON_DIR, SHM, run_python, write_segment

VECTORS = os.path.join(os.path.dirname(PYTHON_DIR), "tests", "cross", "vectors", "invalid")

# What one attach gives, written once for this process and the child: the exception's
# type and message, or the object's type and its validated header. The objects attached
# are kept in *kept* (closed by the caller): the parent keeps its own while the child
# attaches, so that no last-closer segment goes with the first process that closes it.
OUTCOME = '''
def outcome(name, timeout, kept):
    import sharedbridge as sb
    from sharedbridge._objects.protocol import segment_of
    try:
        obj = sb.attach(name, timeout=timeout)
    except Exception as e:
        return [type(e).__module__ + "." + type(e).__qualname__, str(e)]
    kept.append(obj)
    return ["attached", type(obj).__qualname__, repr(segment_of(obj).header)]
'''

CHILD = '''
import json, os, sys
os.environ["SHAREDBRIDGE_NO_ACCEL"] = "1"
import sharedbridge as sb
from sharedbridge._platform import lock_core
assert lock_core.BACKEND == "ctypes", lock_core.BACKEND
''' + OUTCOME + '''
kept = []
print(json.dumps({name: outcome(name, 0.05, kept) for name in json.loads(sys.argv[1])}))
for obj in kept:
    sb.close(obj)
'''

# Headers longer than the first read of the private copy (attach_checks._COPY_READ).
class _Wide(ctypes.Structure):
    _fields_ = [(f"f{i}", ctypes.c_double) for i in range(24)]


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.unlink(path)


@pytest.fixture
def objects():
    """Every object above, each at a fresh name; returns the names."""
    made = []

    def fresh():
        made.append(f"sbt_att_{os.getpid()}_{len(made)}")
        return made[-1]

    try:
        for meta_path in sorted(glob.glob(os.path.join(VECTORS, "*.json"))):
            with open(meta_path) as f:
                meta = json.load(f)
            # The cases standing alone (no companion lock segment, no special object),
            # and not the companions themselves (no "expect").
            if "expect" not in meta or meta["lock"] or meta["special"]:
                continue
            with open(meta_path[:-len(".json")] + ".bin", "rb") as f:
                write_segment(fresh(), f.read(), meta["size"])
        os.mkfifo(os.path.join(SHM, fresh()), 0o600)
        os.mkdir(os.path.join(SHM, fresh()), 0o700)
        wide = sb.Array(_Wide, 2, name=fresh(), lifetime="persistent")
        sb.close(wide)
        os.symlink(os.path.join(SHM, made[-1]), os.path.join(SHM, fresh()))
        sb.close(sb.ndarray((1,) * 32, "d", name=fresh(), lifetime="persistent"))
        sb.close(sb.ndarray((3, 1, 2), "q", name=fresh(), lifetime="persistent", lock=False))
        fresh()                                  # a name with nothing at it
        yield list(made)
    finally:
        for name in made:
            _remove(os.path.join(SHM, name))


@pytest.mark.skipif(lock_core.BACKEND != "c", reason="the compiled module is not built (or "
                    "SHAREDBRIDGE_NO_ACCEL=1): there is one path, the ctypes one")
def test_the_compiled_and_the_ctypes_attach_give_the_same_outcomes(objects):
    namespace = {}
    exec(OUTCOME, namespace)
    kept = []
    try:
        here = {name: namespace["outcome"](name, 0.05, kept) for name in objects}
        there = json.loads(run_python(CHILD, json.dumps(objects)).stdout)
    finally:
        for obj in kept:
            sb.close(obj)
    differ = {k: (v, there[k]) for k, v in here.items() if v != there[k]}
    assert differ == {}, json.dumps(differ, indent=1)
    # The objects cover what they should: refusals of several kinds, and attaches.
    kinds = {v[0] for v in here.values()}
    assert {"attached", "sharedbridge.errors.CorruptSegmentError",
            "sharedbridge.errors.NotASharedBridgeSegmentError",
            "sharedbridge.errors.SegmentNotFoundError",
            "sharedbridge.errors.SegmentNotReadyError",
            "sharedbridge.errors.UnsupportedVersionError"} <= kinds, kinds
