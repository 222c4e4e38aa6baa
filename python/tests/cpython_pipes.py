"""CPython's own connection tests with sharedbridge.Pipe substituted (the Python-only Pipe of
docs/api.md checked by the interpreter's own tests).

Run as a script by test_cpython_pipes.py, once per start method:

    python cpython_pipes.py fork|spawn|forkserver

Runs _TestConnection and _TestPoll from the interpreter's test._test_multiprocessing in their
"processes" flavour, with multiprocessing.Pipe (the module's name and every context's
method, which the tests' ProcessesMixin.Pipe reaches) replaced by sharedbridge.Pipe before
that module is imported, counting the calls and how many returned connections whose
segments exist. Our connections have no file descriptor (fileno() raises
io.UnsupportedOperation), so the tests that pass descriptors over a connection are not run
(EXCLUDED, each with its reason), and test_connection, whose only use of a descriptor is one
assertion that fileno() returns an int, runs with exactly that assertion removed from its
source (test_connection_without_fileno). Prints one JSON line as cpython_queues.py does.
"""

import inspect
import multiprocessing
import multiprocessing.context as mpctx
import os
import sys
import textwrap

import sharedbridge as sb
from cpython_harness import counted, install, run_all_but

CALLS = {"Pipe": 0}
SHARED = {"Pipe": 0}


def _is_shared(pipe):
    # The connections are ours, over sharedbridge segments.
    return all(isinstance(c, sb.Connection) for c in pipe) and all(
        os.path.exists(f"/dev/shm/{pipe[0].name}.{s}") for s in ("e0", "e1", "q1"))


_pipe = counted(sb.Pipe, "Pipe", CALLS, SHARED, _is_shared)
mpctx.BaseContext.Pipe = staticmethod(_pipe)         # every context's ctx.Pipe()
multiprocessing.Pipe = _pipe                         # multiprocessing.Pipe()

from test import _test_multiprocessing as tm  # noqa: E402  (after the substitution)

START_METHOD = sys.argv[1] if __name__ == "__main__" else None
install(globals(), START_METHOD)


# Tests that need the connection's file descriptor, which our connections do not have.
EXCLUDED = {
    "test_connection": "asserts type(conn.fileno()) is int: run as "
                       "test_connection_without_fileno, that assertion removed",
    "test_fd_transfer": "passes a file descriptor over the connection "
                        "(multiprocessing.reduction.send_handle on conn.fileno())",
    "test_large_fd_transfer": "passes a file descriptor over the connection and dup2()s "
                              "conn.fileno()",
    "test_missing_fd_transfer": "os.write()s to conn.fileno() to fake a message without "
                                "a descriptor",
}

_FILENO_CHECK = ("        if self.TYPE == 'processes':\n"
                 "            self.assertEqual(type(conn.fileno()), int)\n")


def _without_fileno():
    """CPython's test_connection with its one fileno() assertion removed, compiled in the
    test module's namespace (it uses its helpers: SENTINEL, latin, TimingWrapper...)."""
    src = inspect.getsource(tm._TestConnection.test_connection)
    if src.count(_FILENO_CHECK) != 1:
        raise RuntimeError("test_connection changed: review the fileno() removal")
    namespace = {}
    exec(compile(textwrap.dedent(src.replace(_FILENO_CHECK, "")), tm.__file__, "exec"),
         vars(tm), namespace)
    return namespace["test_connection"]


WithProcessesTestConnection.test_connection_without_fileno = _without_fileno()  # noqa: F821

CASES = ("WithProcessesTestConnection", "WithProcessesTestPoll")


def main():
    return run_all_but(
        globals(), CASES, EXCLUDED, START_METHOD, calls=CALLS, shared=SHARED,
        mixin_pipe_is_ours=tm.ProcessesMixin.Pipe is _pipe,
        module_pipe_is_ours=tm.multiprocessing.Pipe is _pipe)


if __name__ == "__main__":
    sys.exit(main())
