"""CPython's own queue tests (test._test_multiprocessing: _TestQueue, which covers
JoinableQueue through test_task_done, and TestSimpleQueue) pass with sharedbridge's Queue,
SimpleQueue and JoinableQueue substituted, under every start method; see cpython_queues.py
for how, and for the tests of multiprocessing internals that are not run."""

import sys

import pytest

from cpython_harness import run_checked, runs_on

# The tests run per interpreter version: _TestQueue's 10 (3.13: 11, with
# test_closed_queue_empty_exceptions) and TestSimpleQueue's 3 (3.13: 4, with
# test_empty_exceptions), minus the 3 excluded in cpython_queues.EXCLUDED. An exclusion
# added there changes this count, so it cannot grow silently.
EXPECTED_RUN = {(3, 10): 10, (3, 11): 10, (3, 12): 10, (3, 13): 12}
EXPECTED_EXCLUDED = ["test_queue_feeder_donot_stop_onexc",
                     "test_queue_feeder_on_queue_feeder_error", "test_closed"]


@runs_on(EXPECTED_RUN, "queue")
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_cpython_queue_tests_pass_with_sharedbridge_substituted(method):
    result = run_checked("cpython_queues.py", method, EXPECTED_RUN[sys.version_info[:2]],
                         ("Queue", "SimpleQueue", "JoinableQueue"), timeout=240,
                         excluded=EXPECTED_EXCLUDED)
    # The substitution took effect: the tests' queues came from sharedbridge and live in
    # sharedbridge segments (children put and got through them: the tests check the values).
    assert result["mixin_queue_is_ours"] and result["module_queue_is_ours"], result
