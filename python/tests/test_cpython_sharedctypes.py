"""CPython's own shared-ctypes tests (test._test_multiprocessing: _TestValue, _TestArray,
_TestSharedCTypes, the Condition tests that use Value) pass with sharedbridge
substituted, under every start method; see cpython_sharedctypes.py for how."""

import pytest

from cpython_harness import HAVE_CPYTHON_TESTS, SKIP_REASON, run_checked


@pytest.mark.skipif(not HAVE_CPYTHON_TESTS, reason=SKIP_REASON)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_cpython_shared_ctypes_tests_pass_with_sharedbridge_substituted(method):
    # The substitution took effect: the tests' objects came from sharedbridge and live in
    # sharedbridge segments (the children wrote into them: the tests check what they wrote).
    result = run_checked("cpython_sharedctypes.py", method, 12,
                         ("Value", "Array", "RawValue", "RawArray", "copy"), timeout=120)
    assert result["mixin_value_is_ours"] and result["module_value_is_ours"]
