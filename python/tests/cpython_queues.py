"""CPython's own queue tests with sharedbridge substituted: the drop-in claim of docs/api.md
for Queue, SimpleQueue and JoinableQueue checked by the interpreter's own tests.

Run as a script by test_cpython_queues.py, once per start method:

    python cpython_queues.py fork|spawn|forkserver

Runs _TestQueue (Queue, and JoinableQueue through test_task_done) in its "processes"
flavour and TestSimpleQueue from the interpreter's test._test_multiprocessing (pyenv's
CPython ships it, Debian's python3 does not). Before that module is imported,
multiprocessing's Queue, SimpleQueue and JoinableQueue (the module's names and every
context's methods, which the tests' ProcessesMixin and multiprocessing.Queue() reach) are
replaced by sharedbridge's, counting each call and how many of the objects returned live in
a sharedbridge segment. The substitution is done at import, so spawn and forkserver
children (which import this file as __mp_main__) run with it too.

The tests of multiprocessing internals sharedbridge deliberately does not have are not run:
EXCLUDED names each with its reason. Prints one JSON line: the unittest result, the tests
that ran and the excluded ones, and the calls counted in this process.
"""

import multiprocessing
import multiprocessing.context as mpctx
import sys

import sharedbridge as sb
from cpython_harness import counted, install, run_all_but

SUBSTITUTED = ("Queue", "SimpleQueue", "JoinableQueue")
CALLS = {name: 0 for name in SUBSTITUTED}
SHARED = {name: 0 for name in SUBSTITUTED}


def _is_shared(obj):
    return sb.segment_of(obj) is not None      # the queue lives in a sharedbridge segment


FACTORIES = {name: counted(getattr(sb, name), name, CALLS, SHARED, _is_shared)
             for name in SUBSTITUTED}
for _name, _factory in FACTORIES.items():
    setattr(mpctx.BaseContext, _name, staticmethod(_factory))    # every context's ctx.Queue()
    setattr(multiprocessing, _name, _factory)                    # multiprocessing.Queue()

from test import _test_multiprocessing as tm  # noqa: E402  (after the substitution)

START_METHOD = sys.argv[1] if __name__ == "__main__" else None
install(globals(), START_METHOD)


class TestSimpleQueue(tm.TestSimpleQueue):
    """CPython's TestSimpleQueue, in this module so that the module fixture above (which sets
    the start method) covers it and children find its class methods in __mp_main__."""


# Tests of multiprocessing internals that sharedbridge's queues deliberately do not have.
EXCLUDED = {
    "test_queue_feeder_donot_stop_onexc":
        "feeder thread: our put() pickles synchronously, so an unpicklable object raises "
        "from put() instead of being dropped by a feeder thread (docs/api.md)",
    "test_queue_feeder_on_queue_feeder_error":
        "feeder thread: subclasses multiprocessing.queues.Queue to override "
        "_on_queue_feeder_error, a hook of the feeder thread we do not have",
    "test_closed":
        "pipes: asserts queue._reader.closed and queue._writer.closed, the pipe ends of "
        "multiprocessing's SimpleQueue; ours has no pipe",
}

CASES = ("WithProcessesTestQueue", "TestSimpleQueue")


def main():
    return run_all_but(
        globals(), CASES, EXCLUDED, START_METHOD, calls=CALLS, shared=SHARED,
        mixin_queue_is_ours=all(getattr(tm.ProcessesMixin, n) is FACTORIES[n]
                                for n in ("Queue", "JoinableQueue")),
        module_queue_is_ours=all(getattr(tm.multiprocessing, n) is FACTORIES[n]
                                 for n in SUBSTITUTED))


if __name__ == "__main__":
    sys.exit(main())
