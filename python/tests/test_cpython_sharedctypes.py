"""CPython's own shared-ctypes tests (test._test_multiprocessing: _TestValue, _TestArray,
_TestSharedCTypes, the Condition tests that use Value) pass with sharedbridge
substituted, under every start method; see cpython_sharedctypes.py for how."""

import importlib.util
import json
import os
import sys

import pytest

from conftest import run_script

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    HAVE_CPYTHON_TESTS = importlib.util.find_spec("test._test_multiprocessing") is not None
except ImportError:
    HAVE_CPYTHON_TESTS = False


@pytest.mark.skipif(
    not HAVE_CPYTHON_TESTS,
    reason=f"Python {sys.version.split()[0]} ({sys.executable}) does not ship CPython's test "
    "package (Debian moves it to libpython3.X-testsuite); pyenv's interpreters run this")
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_cpython_shared_ctypes_tests_pass_with_sharedbridge_substituted(method):
    proc = run_script(os.path.join(HERE, "cpython_sharedctypes.py"), method, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no result line (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert not result["failures"], "\n".join(tb for _, tb in result["failures"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["tests_run"] >= 12 and not result["skipped"], result
    # The substitution took effect: the tests' objects came from sharedbridge and live in
    # sharedbridge segments (the children wrote into them: the tests check what they wrote).
    assert result["mixin_value_is_ours"] and result["module_value_is_ours"]
    for name in ("Value", "Array", "RawValue", "RawArray", "copy"):
        assert result["calls"][name] > 0, (name, result)
        assert result["shared"][name] == result["calls"][name], (name, result)
