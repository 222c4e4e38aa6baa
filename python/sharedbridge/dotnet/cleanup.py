"""Release this process's segments at exit and on signals, under pythonnet.

Under pythonnet ``AppDomain.ProcessExit`` never runs, and the .NET library's
SIGTERM/SIGINT/SIGHUP handlers would fight the interpreter's. take_over() (called by
load) hands the signals to Python and registers an atexit function after pythonnet's
own, so that it runs first (docs/api.md, "sharedbridge.dotnet"; docs/format.md section 8
for who unlinks what).
"""

import atexit
import signal
import threading

from .._platform import exit_cleanup

_HANDLED = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n))
_installed = set()
_sb = None              # the SharedBridge .NET namespace, once take_over ran


def release_created_segments():
    """Retire and unlink every segment this process created and did not keep, .NET's and
    Python's (objects stay usable; their names are gone). Returns how many .NET segments
    were released. Runs by itself at exit and on SIGTERM/SIGHUP; call it from your own
    shutdown path if you have one."""
    released = 0
    sb = _sb
    if sb is not None:
        try:
            released = int(sb.SegmentCleanup.ReleaseCreatedSegments())
        except Exception:
            pass
    exit_cleanup.release_owned()
    return released


def at_exit():
    """The atexit function: release, then give the handled signals their default back."""
    release_created_segments()
    # Nothing is left to release: during pythonnet's slow unload that follows, SIGTERM (a
    # Jupyter kernel's shutdown deadline) may have its default action again.
    exit_cleanup.restore_default_actions(_installed, on_signal)


def on_signal(signum, frame):
    """The handler of a signal left at its default action: release, then die by it."""
    release_created_segments()
    _installed.discard(signum)
    exit_cleanup.die_by_default_action(signum)


def taken_over():
    """True once take_over ran in this process."""
    return _sb is not None


def take_over(sb, at_exit_hook=True):
    """Take the cleanup of .NET namespace *sb* over from the .NET library."""
    global _sb
    _sb = sb
    # The .NET handlers would run on a .NET thread, beside the interpreter's: SIGINT (a
    # notebook's interrupt) would unlink every .NET segment while the kernel goes on.
    sb.SegmentCleanup.SignalHandlersEnabled = False
    if at_exit_hook:
        atexit.unregister(at_exit)
        atexit.register(at_exit)      # after pythonnet.load's atexit(unload): runs before it
    if threading.current_thread() is not threading.main_thread():
        return
    python_handler = getattr(exit_cleanup, "_on_signal", None)
    for sig in _HANDLED:
        try:
            current = signal.getsignal(sig)
            if current == signal.SIG_DFL or (current is python_handler and python_handler):
                signal.signal(sig, on_signal)
                _installed.add(sig)
        except (ValueError, OSError, RuntimeError):
            return
