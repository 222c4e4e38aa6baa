"""The last-closer protocol of docs/format.md section 8, and its fork hand-over.

Every process that has a last-closer segment open, creator or attacher, holds a shared
flock on it through one descriptor (FlockHolder). Leaving is a try to convert that lock
to an exclusive one without waiting: whoever gets it is the last process that has the
segment open, and retires and unlinks it (if the name is still this object) before
releasing the lock (release). An attacher takes its shared lock, then re-checks that the
segment is still alive, because the last closer may have removed it between the
attacher's shm_open and its lock (join). The reaper uses the same exclusive try
(try_exclusive).

A mapping holds a reference to the open file description, and the kernel drops a flock
only when the description's last reference goes: closing the descriptor while the
memory is still mapped would keep the lock. Leaving is therefore always an explicit
LOCK_UN before the close (close_unlocked), never the close alone.
"""

import fcntl
import os
import struct
import time
import weakref

from .._format import header as H
from ..errors import SegmentNotReadyError
from . import exit_cleanup


class FlockHolder:
    """The descriptor of a last-closer segment, holding a shared flock for as long as this
    process takes part (docs/format.md section 8): one per segment and process, the
    accepted exception to "no descriptor per object".

    flock locks belong to the open file description, which a fork child shares with its
    parent: a child that converted or released it would act for the parent too. So before
    every fork, each holder opens a second description of the same object
    (/proc/self/fd/N: it works after the name is gone) with its own shared lock; the child
    keeps that one and closes the inherited descriptor (the parent still holds it, so its
    lock stays), the parent closes the child's copy. A child for which that failed
    (``fd == -1``) does not take part: it never unlinks.
    """

    __slots__ = ("_fds", "pid", "child_fd", "__weakref__")

    def __init__(self, fd, fork_handover=True):
        self.fd = fd
        self.pid = os.getpid()
        self.child_fd = -1
        if fork_handover:
            _holders.add(self)

    # The descriptor lives in a list of at most one: list.pop() hands it out exactly
    # once even when two threads close the last two objects of the segment at once.
    @property
    def fd(self):
        fds = self._fds
        return fds[0] if fds else -1

    @fd.setter
    def fd(self, fd):
        self._fds = [fd] if fd >= 0 else []

    def take(self):
        """Give the descriptor to the caller (the release protocol); -1 if this process
        has none (released already, or a fork child without its own description)."""
        try:
            fd = self._fds.pop()
        except IndexError:
            return -1
        if self.pid != os.getpid():
            return -1
        return fd

    def close(self):
        """Leave without the last-closer check (explicit unlink, a failed create)."""
        close_unlocked(self.take())

    def forget_in_child(self):
        """In a fork child of a holder without hand-over: close the inherited descriptor
        without any flock call (the description is the parent's: LOCK_UN would release
        the parent's lock). Does nothing in the holder's own process."""
        if self.pid == os.getpid():
            return
        try:
            fd = self._fds.pop()
        except IndexError:
            return
        os.close(fd)

    def before_fork(self):
        if self.fd < 0 or self.pid != os.getpid():
            return
        try:
            child_fd = os.open(f"/proc/self/fd/{self.fd}", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return
        try:
            fcntl.flock(child_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(child_fd)
            return
        self.child_fd = child_fd

    def after_fork_in_parent(self):
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1

    def after_fork_in_child(self):
        inherited, self.fd, self.child_fd = self.fd, self.child_fd, -1
        self.pid = os.getpid()
        if inherited >= 0:
            os.close(inherited)      # the parent's description: closing never unlocks it


_holders = weakref.WeakSet()


def _holders_before_fork():
    for holder in list(_holders):
        holder.before_fork()


def _holders_after_fork_in_parent():
    for holder in list(_holders):
        holder.after_fork_in_parent()


def _holders_after_fork_in_child():
    for holder in list(_holders):
        holder.after_fork_in_child()


os.register_at_fork(before=_holders_before_fork, after_in_parent=_holders_after_fork_in_parent,
                    after_in_child=_holders_after_fork_in_child)


def hold_new(fd, fork_handover=True):
    """The creator's hold, taken right after its shm_open(O_EXCL) (docs/format.md 6.1
    step 1): nobody else can hold a lock on the object yet, so this never waits.
    fork_handover=False: fork children get no description of their own (they take no
    part: FlockHolder.forget_in_child)."""
    fcntl.flock(fd, fcntl.LOCK_SH)
    return FlockHolder(fd, fork_handover)


def join(name, fd, ident, mm, timeout):
    """Take the shared flock of a last-closer segment an attacher has opened as *fd*
    (polling without waiting in the kernel: a closer or reaper holds the exclusive lock
    only for an instant), then make sure the segment is still alive: the name still
    refers to the object *ident* ((st_dev, st_ino)) and the state in its mapping *mm* is
    not retired. Returns the FlockHolder, which keeps *fd*; None when the last closer
    (or a reaper) removed the segment meanwhile (the lock is released and *fd* left to
    the caller, who starts over with the name: docs/format.md section 8)."""
    if take_shared(name, fd, ident, mm, timeout):
        return FlockHolder(fd)
    return None


def take_shared(name, fd, ident, mm, timeout):
    """Steps 1 and 3 of section 8 for an attacher: the shared flock on *fd* (polled),
    then the re-check (the name is still *ident*, the state in *mm* is not retired).
    True when held; False when the segment was removed meanwhile (lock released)."""
    deadline = time.monotonic() + max(timeout, 0.1)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise SegmentNotReadyError(
                    f"segment {name!r} stayed locked exclusively for {timeout} s: a process "
                    "is removing it, or holds its flock for another reason; retry later") \
                    from None
            time.sleep(0.001)
    state = struct.unpack_from("<I", mm, H.STATE_OFFSET)[0]
    if state != H.STATE_RETIRED and exit_cleanup.same_object(name, ident):
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def release(holder, when_last):
    """This process leaves the segment of *holder*: the shared lock is converted to an
    exclusive one without waiting; if that succeeds this process was the last to have
    it open and ``when_last(fstat)`` retires and unlinks it (the name re-checked against
    that identity) before the lock is released (docs/format.md section 8). Best effort,
    never raises an OSError: it runs from finalizers and signal handlers."""
    fd = holder.take()
    if fd < 0:
        return
    try:
        if try_exclusive(fd):
            when_last(os.fstat(fd))
    except OSError:
        pass
    finally:
        close_unlocked(fd)


def close_unlocked(fd):
    """Release the flock of *fd* explicitly, then close it (a mapping of the object
    would otherwise keep the lock alive: see the module docstring). Does nothing for -1."""
    if fd < 0:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def unlock(fd):
    """flock(fd, LOCK_UN): give up this description's lock, keeping the descriptor."""
    fcntl.flock(fd, fcntl.LOCK_UN)


def try_exclusive(fd):
    """flock(fd, LOCK_EX | LOCK_NB): True if acquired (then no other description of the
    object holds a lock), False if another process holds it open."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
