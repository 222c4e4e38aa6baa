"""CPython's own connection tests (test._test_multiprocessing: _TestConnection and _TestPoll)
pass with sharedbridge.Pipe substituted, under every start method; see cpython_pipes.py for
how, and for the tests that need a file descriptor, which are not run."""


import sys

import pytest

from cpython_harness import run_checked, runs_on

# _TestConnection's 8 tests minus the 4 of cpython_pipes.EXCLUDED, plus
# test_connection_without_fileno, and _TestPoll's 4: the same in 3.10 to 3.13. An exclusion
# added there changes this count, so it cannot grow silently.
EXPECTED_RUN = {(3, 10): 9, (3, 11): 9, (3, 12): 9, (3, 13): 9}
EXPECTED_EXCLUDED = ["test_connection", "test_fd_transfer", "test_large_fd_transfer",
                     "test_missing_fd_transfer"]


@runs_on(EXPECTED_RUN, "connection")
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_cpython_connection_tests_pass_with_sharedbridge_pipe(method):
    result = run_checked("cpython_pipes.py", method, EXPECTED_RUN[sys.version_info[:2]],
                         ("Pipe",), timeout=240,
                         excluded=EXPECTED_EXCLUDED)
    # The substitution took effect: every pipe of the tests was ours, over our segments.
    assert result["mixin_pipe_is_ours"] and result["module_pipe_is_ours"], result
