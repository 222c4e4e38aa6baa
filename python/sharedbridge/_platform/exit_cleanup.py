"""Remove the creator's segments when its process ends by a signal (docs/api.md, Endings).

A normal exit and an unhandled exception end with the interpreter's exit path, which runs
every Segment finalizer (weakref.finalize is atexit-aware): the creator retires and
unlinks its segments. A signal whose action is the default one (SIGTERM, SIGHUP, and
SIGINT when its handler was set to SIG_DFL) kills the process without that path; for
these, the first owned, non-kept segment installs a handler that retires and unlinks
this process's owned segments, restores the default action and re-sends the signal, so
the process still dies by that signal with the same exit status.

Python-level handlers run only in the main thread, between bytecodes (CPython's C
handler just sets a flag): a signal that arrives just before the main thread enters a
blocking C call (a multiprocessing SemLock wait, as in a Pool worker's get() when
terminate() sends SIGTERM), or that is delivered to another thread while the main thread
is blocked, would never run the handler and the process would hang for ever
(python/cpython#73945). With the compiled accelerator, _fastlock.chain_resend wraps
CPython's C handler: each delivery arms a POSIX timer that re-sends the signal to the
main thread every 50 ms, which interrupts the blocking call (EINTR, CPython's handlers
have no SA_RESTART) until _on_signal runs (it calls chain_stop first). Timers are not
inherited: a fork child whose handler is still ours makes its own (_reset_in_child). A fork
child with nothing to release (no last-closer segment inherited) restores the default
action instead, so a Pool worker that only receives objects cannot hang this way on either
path; it installs again when it creates or takes part in a segment itself. On
the ctypes path (no accelerator, SHAREDBRIDGE_NO_ACCEL=1) there is no C code to do
this: such a signal is lost until something else wakes the main thread (the process
stays blocked and its segments stay); the advice is to build the accelerator (Python
headers at install time, or a binary wheel). docs/api.md, Endings.

What is left alone:
- a signal set to SIG_IGN stays ignored;
- a signal with a Python handler (the application's, or Python's own SIGINT handler that
  raises KeyboardInterrupt) keeps it: that handler decides, and if it ends the process
  by an exception or sys.exit the normal exit path unlinks; if it keeps running, the
  segments stay;
- a handler installed from C (signal.getsignal() is None) is not replaced.
Handlers can only be installed from the main thread of the main interpreter: when the
first owned segment is created anywhere else, nothing is installed (silently) until a
later segment is created from the main thread.

Processes started by multiprocessing (fork, spawn, forkserver) end with os._exit, which
runs no atexit handler and no weakref.finalize: for them, the first owned segment also
registers multiprocessing.util.Finalize(None, release_owned, exitpriority=0), which
multiprocessing's own bootstrap runs before os._exit (workers that return, Pool workers
stopped by close()/join(), maxtasksperchild, ProcessPoolExecutor shutdown; terminate()
sends SIGTERM, handled above).

Segments whose object was pickled by the creating process (exported) stay until the
process ends: kept here with a strong reference, so that garbage collection does not
unlink a name a receiver may not have attached yet (a Pool worker returning an object).

Only the creating process unlinks: a fork child inherits the handler, but the
finalizers check the creator's pid, so the child unlinks nothing of its parent's. And it
unlinks only what it made: a name is recorded only once shm_open(O_EXCL) has created the
object, with that object's device and inode, and every unlink here first checks that the
name still refers to that object (docs/format.md section 8), so a create that failed
(EEXIST) or a name someone else removed and reused is never touched.

The signal handler never blocks: it takes no lock (the interrupted code may hold it), and
the segment module's cache lock is only ever tried without waiting on these paths.

Last-closer segments (docs/format.md section 8) are different: every process that has
one open, creator or attacher, takes part (participate()), and the same endings run the
last-closer release for them (the last one unlinks). Fork children keep taking part with
their own flock description (last_closer.FlockHolder); multiprocessing's bootstrap clears
the Finalize registry in a fork child, so an after-fork hook registers it again there.
A process killed by SIGKILL drops its flock in the kernel: if it was the last, the
segment is left for reap().
"""

import os
import signal
import threading
import weakref

from .._format.segment_name import path_of
from .backend import unlink_object

SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, n))

_owned = weakref.WeakSet()     # Segments this process created and does not keep
_participants = weakref.WeakSet()  # last-closer Segments this process holds open
_installed = set()             # signals whose handler is ours
_checked = False               # installation was attempted from the main thread
_exported = set()              # owned Segments that were pickled: alive until the end
_finalize_pid = 0              # pid for which the multiprocessing Finalize is registered
_resender = None               # _fastlock once it re-sends a signal (chain_resend)


def own(seg):
    """Register a segment created here (not kept); install the handlers the first time."""
    _owned.add(seg)
    _names[(seg.name, seg.ident)] = seg.owner_pid
    if _finalize_pid != os.getpid():
        _register_mp_finalizer()
    if not _checked:
        _install()


def participate(seg):
    """Register a last-closer segment this process holds open (created or attached)."""
    global _after_fork_registered
    _participants.add(seg)
    if _finalize_pid != os.getpid():
        _register_mp_finalizer()
    if not _after_fork_registered:
        _after_fork_registered = True
        from multiprocessing import util      # stdlib; imported lazily
        util.register_after_fork(_participate_after_fork, _participate_after_fork_in_mp_child)
    if not _checked:
        _install()


# Functions release_owned() runs first (a queue's reusable data segments, held by its
# producers and consumers: docs/format.md section 11.5); each ignores fork children.
_enders = []


_end_finalizers = {}             # fn -> its multiprocessing Finalize in this process


def at_end(fn):
    """Run *fn()* when this process ends by the paths above (normal exit, a handled
    signal, a multiprocessing child's end), and from release_owned(). Cheap to call again;
    call it whenever *fn* gets something to release (a multiprocessing child clears the
    Finalize registry it inherited or made while unpickling its arguments)."""
    if fn not in _enders:
        _enders.append(fn)
        import atexit
        atexit.register(fn)
    fin = _end_finalizers.get(fn)
    if fin is None or not fin.still_active() or fin._pid != os.getpid():
        from multiprocessing import util          # stdlib; imported lazily
        _end_finalizers[fn] = util.Finalize(None, fn, exitpriority=0)
    if not _checked:
        _install()


class _AfterFork:
    """Key of multiprocessing.util.register_after_fork (it needs a weak-referenceable object)."""


_participate_after_fork = _AfterFork()
_after_fork_registered = False


def _participate_after_fork_in_mp_child(_):
    # A multiprocessing child's bootstrap has just cleared the Finalize registry (after
    # a fork, and after unpickling the arguments under spawn and forkserver, which may
    # have attached): register again. forkserver children end with os._exit.
    if len(_participants):
        _register_mp_finalizer()


# name -> (st_dev, st_ino) of the objects between a successful shm_open(O_EXCL) and their
# Segment (being created by this process).
_pending = {}
# (name, (st_dev, st_ino)) -> creator pid of every owned name not yet unlinked, dropped
# only once shm_unlink has returned: the signal handler unlinks these itself, so a signal
# that interrupts a finalizer (which has already consumed itself) in the middle still
# removes the name (if it is still that object).
_names = {}


def same_object(name, ident):
    """True if *name* refers now to the object whose (st_dev, st_ino) is *ident*: lstat of
    /dev/shm/NAME (Linux's shm_open directory) or the directory backend's file
    (docs/format.md sections 1.3 and 8)."""
    try:
        st = os.stat(path_of(name), follow_symlinks=False)
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == ident


def unlink_if_same(name, ident):
    """shm_unlink *name* if it still refers to the object *ident* (never a stranger that
    reused the name; the window between the check and shm_unlink, which takes a name,
    cannot be closed). True if removed."""
    if not same_object(name, ident):
        return False
    try:
        unlink_object(name)
    except OSError:
        return False
    return True


def prepare():
    """Before creating: install the handlers now (main thread), so that a signal that
    arrives while the segment is being made finds them."""
    if not _checked:
        _install()


def unlinked(name, ident=None):
    """The owned name *name* of object *ident* is gone (unlinked by its finalizer or
    explicitly, or not ours any more); ident=None: every object this process had under
    that name (an unlink by name)."""
    if ident is not None:
        _names.pop((name, ident), None)
        return
    for key in [k for k in list(_names) if k[0] == name]:
        _names.pop(key, None)


def creating(name, ident):
    """shm_open(O_EXCL) has just created *name*, the object *ident*: this process made it.
    Never called before that: a create that fails (EEXIST) marks nothing."""
    _pending[name] = ident


def created(name):
    _pending.pop(name, None)


def export(seg):
    """An owned segment was pickled: keep its name until this process ends."""
    _exported.add(seg)


def forget_export(seg):
    _exported.discard(seg)


def release_exported():
    """Retire and unlink now every segment kept only because it was pickled (tests, and
    long-lived processes that know their receivers have attached)."""
    for seg in list(_exported):
        try:
            seg.close()
        except Exception:
            pass
    _exported.clear()


def _register_mp_finalizer():
    global _finalize_pid
    _finalize_pid = os.getpid()
    from multiprocessing import util          # stdlib; imported lazily (cheap when unused)
    util.Finalize(None, release_owned, exitpriority=0)


def _install():
    global _checked
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        try:
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_signal)
                _installed.add(sig)
                _resend(sig)
        except (ValueError, OSError, RuntimeError):
            return       # not the main interpreter (or signals unavailable): skip silently
    _checked = True


def _resend(sig):
    """Make sure _on_signal runs even if the main thread is blocked in a C call when
    *sig* arrives (compiled accelerator only; see the module docstring)."""
    global _resender
    from . import lock_core                  # imported lazily: it imports robust_mutex
    if lock_core.accel is None:
        return
    try:
        lock_core.accel.chain_resend(sig)
    except OSError:
        return           # no timer could be made: the handler works as without re-send
    _resender = lock_core.accel


def release_owned():
    """Retire and unlink every segment this process created and still owns, and release
    every last-closer segment it holds open (the last one unlinks)."""
    for fn in list(_enders):
        try:
            fn()
        except Exception:
            pass
    for seg in list(_participants):
        try:
            seg.close()
        except Exception:
            pass
    for seg in list(_owned):
        try:
            seg.close()
        except Exception:
            pass
    _exported.clear()
    pid = os.getpid()
    for key, owner in list(_names.items()):      # finalizers interrupted half-way
        if owner == pid:
            unlink_if_same(*key)
        _names.pop(key, None)
    for name, ident in list(_pending.items()):   # interrupted while being created
        unlink_if_same(name, ident)
    _pending.clear()


def die_by_default_action(signum):
    """End the process by *signum*'s default action, exactly as if no handler had been
    installed (the same exit status for the parent, a service manager or Jupyter)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    except (AttributeError, OSError, ValueError):
        pass
    os._exit(128 + signum)      # only if the signal could not be delivered


def _on_signal(signum, frame):
    if _resender is not None:
        _resender.chain_stop(signum)  # running now: no more re-sends while cleaning up
    release_owned()
    _installed.discard(signum)
    die_by_default_action(signum)


def restore_default_actions(signals, handler):
    """Give each of *signals* whose handler is still *handler* its default action back
    (others set a handler of their own since: left alone); returns the signals restored."""
    restored = set()
    for sig in list(signals):
        try:
            if signal.getsignal(sig) is handler:
                signal.signal(sig, signal.SIG_DFL)
                restored.add(sig)
        except (ValueError, OSError, RuntimeError):
            pass
    return restored


def _reset_in_child():
    # A fork child owns nothing yet: it installs again when it creates a segment itself.
    global _checked
    _owned.clear()
    _exported.clear()
    _pending.clear()
    _names.clear()
    if not len(_participants):
        # Nothing here for the handler to release (a queue's enders ignore fork children),
        # so the default action ends this process the same way, and without the lost-signal
        # hang above: a Pool worker that only receives objects is stopped by terminate()
        # even on the ctypes path. own(), participate() and at_end() install again.
        _installed.difference_update(restore_default_actions(_installed, _on_signal))
        _checked = False
        return
    # The re-send's timer is not inherited and this process's main thread is another
    # thread: make the child's own, for every signal whose handler is still ours.
    for sig in list(_installed):
        try:
            if signal.getsignal(sig) is _on_signal:
                _resend(sig)
        except (ValueError, OSError, RuntimeError):
            pass


os.register_at_fork(after_in_child=_reset_in_child)
