"""One named POSIX shared-memory segment and its lifetime: create, open, close, unlink.

Segments are named by key (segment_name.py): a shared-memory object or a file of the
directory backend, opened by backend.py (docs/format.md section 1.3). Uses
``_posixshmem.shm_open`` (or open(2)) and mapping.py's ``mmap`` directly rather than
``multiprocessing.shared_memory.SharedMemory``: SharedMemory registers attached
segments with the resource tracker, which unlinks them when the *attaching* process
exits (CPython gh-82300). Nothing here ever registers with the resource tracker.

create() follows docs/format.md section 6.1; open_segment() opens with the checks of
section 6.2 (attach_checks.py) and joins a last-closer segment (last_closer.py, section
8); a Segment is one object's use of the mapping, and the creating one of a
creator-lifetime segment unlinks it, by identity (device and inode), when closed or
collected. open_for_reap() is the reaper's view of a segment (section 8, reaping).
Every operating-system error becomes our exception in os_errors.py.
"""

import errno
import os
import signal
import stat
import struct
import threading
import time
import weakref

from .._format import header as H
from .._format.segment_name import generated_key, is_template, path_of, validate_key
from ..errors import SharedBridgeError
from . import attach_checks, exit_cleanup, last_closer, os_errors
from .backend import list_dir, open_object, unlink_object
from .mapping import fence, map_shared

DEFAULT_MODE = 0o600


class _Shared:
    """What all of one process's objects over one segment object share: the mapping and
    its validated header (mapped once per process), the one lock object over its mutex,
    and for a last-closer segment the process's hold (one descriptor with a shared flock
    per segment and process, docs/format.md section 8) with the claims of the objects
    that keep it."""

    __slots__ = ("name", "header", "mm", "size", "ident", "holder", "claims", "lock_ref",
                 "creator", "trusted", "__weakref__")

    def __init__(self, name, header, mm, size, ident, holder):
        self.name = name
        self.header = header
        self.mm = mm
        self.size = size
        self.ident = ident
        self.holder = holder
        self.claims = set()      # one token per object holding the last-closer hold
        self.lock_ref = None     # weak reference to the one lock object over this mutex
        self.creator = None      # weak reference to the creating Segment (in its process)
        self.trusted = False     # attached with allow_other_owner=True here (see Segment)


class Segment:
    """One object's use of a mapped segment, with the validated header.

    Claims belong to objects, not to processes (docs/api.md, "Lifetimes"): every object
    (created, attached, unpickled) has its own Segment; those of one process over one
    segment object share the mapping (_Shared). The Segment of the object that created a
    creator-lifetime segment unlinks it when closed or collected; an attached one never
    does. For a last-closer segment each Segment is a claim on the process's one hold,
    which is released (and the name unlinked if this process was the last) when its last
    claim goes.

    Attributes: ``name``, ``header`` (SegmentHeader, the private copy), ``mm`` (the
    mapping), ``size`` (mapped size), ``owner_pid`` (pid that created it, in the creating
    object's Segment; else 0), ``keep`` (the creator does not unlink it: lifetime other
    than creator), ``inode`` and ``ident`` ((st_dev, st_ino) of the object),
    ``holder`` (the last_closer.FlockHolder of a last-closer segment, else None).
    """

    __slots__ = ("name", "header", "mm", "size", "owner_pid", "keep", "inode", "ident",
                 "_finalizer", "_shared", "holder", "__weakref__")

    def __init__(self, name, header, mm, size, owner_pid, keep, ident, holder=None,
                 shared=None, join=True):
        if shared is None:
            shared = _Shared(name, header, mm, size, ident, holder)
        self.name = name
        self.header = header
        self.mm = mm
        self.size = size
        self.owner_pid = owner_pid
        self.keep = keep
        self.ident = ident
        self.inode = ident[1]
        self._finalizer = None
        self._shared = shared
        self.holder = shared.holder if join else None
        if self.holder is not None:
            token = object()
            shared.claims.add(token)
            self._finalizer = weakref.finalize(self, _leave, name, mm, shared, token)
            exit_cleanup.participate(self)
        elif owner_pid:
            shared.creator = weakref.ref(self)
            if not keep:
                self._finalizer = weakref.finalize(self, _release_ownership, name, mm,
                                                   owner_pid, ident)
                exit_cleanup.own(self)

    @property
    def trusted(self):
        """This process attached the segment with allow_other_owner=True: every object of
        it carries that permission when pickled (one lock object per mutex and process
        is shared by all of them)."""
        return self._shared.trusted

    @trusted.setter
    def trusted(self, trusted):
        self._shared.trusted = trusted

    @property
    def lock_ref(self):
        """Weak reference to the one lock object over this mutex in this process."""
        return self._shared.lock_ref

    @lock_ref.setter
    def lock_ref(self, ref):
        self._shared.lock_ref = ref

    def export(self):
        """This process is pickling an object of this segment: if this process created it
        (or the object holds a last-closer claim), the name now stays until the process
        ends (not until the object is collected), so that the receiver finds it
        (docs/api.md, "Pickling and ownership")."""
        if self._finalizer is not None and self._finalizer.alive \
                and (self.holder is not None or self.owner_pid == os.getpid()):
            exit_cleanup.export(self)
            return
        creator = self._shared.creator() if self._shared.creator is not None else None
        if creator is not None and creator is not self:
            creator.export()

    def close(self):
        """Give up this object's claim: the creating object of a creator-lifetime segment
        retires and unlinks the name now (if it is still this segment); a last-closer
        object drops its claim, and the process releases its flock, unlinking if it was
        the last, when its last object does. An attached object has no other claim. The
        memory stays valid for every object still using it."""
        if self._finalizer is not None:
            self._finalizer()
            # Only a Segment with a finalizer is ever exported (export()).
            exit_cleanup.forget_export(self)

    def unlink(self):
        """Remove the name now, whoever created it; SegmentNotFoundError if it is gone or
        refers to another segment now (never removes a newer segment under the name)."""
        if self._finalizer is not None:
            self._finalizer.detach()
        if self.holder is not None:
            self.holder.close()
        _retire(self.mm)
        exit_cleanup.unlinked(self.name, self.ident)
        if not unlink_if_same(self.name, self.ident):
            raise os_errors.name_gone(self.name)

    def read_u64(self, offset):
        return struct.unpack_from("<Q", self.mm, offset)[0]

    def read_state(self):
        return struct.unpack_from("<I", self.mm, H.STATE_OFFSET)[0]


# (st_dev, st_ino) -> what runs before the name of that segment is removed by its
# lifetime (the queue's out-of-line messages, docs/format.md section 11.5); only for the
# Segments that may remove it (a creating one of a creator-lifetime segment, a
# last-closer participant).
_removers = {}


def on_remove(seg, fn):
    """Call *fn()* just before this process removes *seg*'s name by its lifetime (the
    creator's close, collection or exit; the last closer). Best effort: errors ignored."""
    if (seg.owner_pid and not seg.keep) or seg.holder is not None:
        _removers[seg.ident] = fn


def _run_remover(ident):
    fn = _removers.pop(ident, None)
    if fn is not None:
        try:
            fn()
        except Exception:
            pass


def _retire(mm):
    try:
        struct.pack_into("<I", mm, H.STATE_OFFSET, H.STATE_RETIRED)
    except (ValueError, TypeError):
        pass


def _release_ownership(name, mm, owner_pid, ident):
    # Runs from close(), garbage collection, atexit or the signal handler: only the
    # creating process (not a fork child that inherited the object) removes the name,
    # and only while it still refers to the object it created (docs/format.md section 8).
    if os.getpid() != owner_pid:
        return
    _run_remover(ident)
    _retire(mm)
    unlink_if_same(name, ident)
    exit_cleanup.unlinked(name, ident)


def _leave(name, mm, shared, token):
    # One object's claim on the process's last-closer hold goes; the last one releases
    # the hold (docs/format.md section 8: one descriptor per segment and process), and
    # if no other process holds the segment, this one retires it and unlinks the name.
    shared.claims.discard(token)
    if not shared.claims:
        last_closer.release(shared.holder, lambda st: _retire_and_unlink(name, mm, st))
        _removers.pop(shared.ident, None)


def _retire_and_unlink(name, mm, st):
    _run_remover(_ident(st))
    _retire(mm)
    unlink_if_same(name, st)


def same_object(name, st):
    """True if *name* refers now to the object whose fstat (or (st_dev, st_ino)) is *st*:
    device and inode, from lstat of /dev/shm/NAME (docs/format.md section 8)."""
    return exit_cleanup.same_object(name, _ident(st))


def unlink_if_same(name, st):
    """shm_unlink *name* if it still refers to the object *st* (an fstat result or
    (st_dev, st_ino)): never a stranger that reused the name (the window between the
    check and the unlink cannot be closed with shm_unlink, which takes a name). True if
    removed."""
    if not exit_cleanup.unlink_if_same(name, _ident(st)):
        return False
    _forget(name)
    return True


_ident = attach_checks.ident_of


def shm_names(directory=None):
    """The names in /dev/shm, or in *directory* of the directory backend (empty if it
    cannot be listed)."""
    return list_dir(directory)


class SegmentForReap:
    """The reaper's view of one segment (docs/format.md section 8, reaping): its validated
    header, the exclusive-lock test of a last-closer segment, and its removal. It takes
    part in no lifetime protocol (no finalizer, no shared flock); close() it when done
    (or use it in a with statement)."""

    __slots__ = ("name", "header", "ident", "inode", "_fd", "_mm")

    def __init__(self, name, fd, header, mm, ident):
        self.name = name
        self.header = header
        self.ident = ident
        self.inode = ident[1]
        self._fd = fd
        self._mm = mm

    def try_lock_exclusive(self):
        """True when the exclusive flock was taken without waiting: no other process holds
        this last-closer segment open. Held until close(); attachers meanwhile wait, and
        re-check the name after their shared lock (docs/format.md section 8)."""
        return last_closer.try_exclusive(self._fd)

    def unlock(self):
        """Release the exclusive flock try_lock_exclusive took (the descriptor stays)."""
        last_closer.unlock(self._fd)

    def retire_and_unlink(self):
        """Remove the segment: re-checks that the name still refers to this object (a
        segment replaced since it was judged is not ours to remove), stores state =
        retired, unlinks the name. False when the name was replaced or is gone."""
        if not same_object(self.name, self.ident):
            return False
        _retire(self._mm)
        return unlink_if_same(self.name, self.ident)

    def close(self):
        """Release the lock and the descriptor, and this view's mapping (which would
        otherwise keep an exclusive lock alive: last_closer.py)."""
        self._mm = None
        fd, self._fd = self._fd, -1
        last_closer.close_unlocked(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_for_reap(name):
    """The SegmentForReap of the SharedBridge segment *name* if this user owns it and it
    opens like an attach without waiting; None for anything else (not a valid name,
    not a regular file, another owner, not SharedBridge, corrupt, still initializing,
    too new)."""
    try:
        validate_key(name)
        st = os.lstat(path_of(name))
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return None
        fd = attach_checks.open_existing(name)
    except (OSError, ValueError):
        return None
    try:
        st = attach_checks.check_object(name, fd, allow_other_owner=False)
        header, mm, ident = attach_checks.map_validated(name, fd, 0, st)
        return SegmentForReap(name, fd, header, mm, ident)
    except (OSError, ValueError, SharedBridgeError):
        pass
    os.close(fd)
    return None


def unlink(name):
    """Remove the segment name *name* (the memory stays valid where it is mapped)."""
    validate_key(name)
    with os_errors.translated(name, os_errors.UNLINK):
        unlink_object(name)
    exit_cleanup.unlinked(name)
    _forget(name)


def check_mode(mode):
    """A configured creation mode: permission bits only, and the owner reads and writes."""
    if isinstance(mode, bool) or not isinstance(mode, int) or mode & ~0o777:
        raise ValueError(f"invalid mode {mode!r}: give permission bits only (0o000..0o777), "
                         "for example 0o600")
    if mode & 0o600 != 0o600:
        raise ValueError(f"invalid mode {mode:#o}: the owner must be able to read and write "
                         "the segment (mode & 0o600 == 0o600)")
    return mode


# Tests only: called with the name between initialization and state = ready, so that a
# test can kill a creator there (the reaper's rule for state-0 segments, format.md section 8).
_before_ready = None

# Tests only: called with the name right after shm_open(O_EXCL) made the object, before it
# is recorded and sized, so that a test can signal a creator while the object is 0 bytes.
_after_open = None

# The signals whose Python handlers (exit_cleanup's, or SIGINT's KeyboardInterrupt) must not
# run between shm_open and exit_cleanup.creating: there, a handler would end the process (or
# raise outside the cleanup below) with the new name recorded nowhere, leaving a 0-byte object
# no one removes (docs/format.md section 8: the creator removes what it made).
_END_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def _hold_end_signals():
    """Block the end signals in the main thread (the only one whose Python handlers run);
    returns the mask to restore, or None (another thread, or no pthread_sigmask)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.pthread_sigmask(signal.SIG_BLOCK, _END_SIGNALS)
    except (AttributeError, OSError, ValueError):
        return None


def _release_end_signals(held):
    """Restore the mask _hold_end_signals replaced: a signal that came meanwhile is delivered
    now, and its handler runs at the next bytecode, once the name is recorded."""
    if held is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


# posix_fallocate errors of a file system that cannot reserve space: the pages then come
# at the first write, as without it.
_NO_RESERVE = (errno.EOPNOTSUPP, errno.EINVAL)


def create(name, header, init, mode=DEFAULT_MODE, detached=False):
    """Create a segment (docs/format.md section 6.1) and return it.

    *header* is a SegmentHeader (state/crc ignored; its lifetime_code says who unlinks
    it); *init(mm)* writes the mutex and the initial data, between writing the identity
    region and publishing state = ready. A name of None (or a directory, "DIR/", from
    segment_name.qualify) is generated there, retrying on EEXIST.
    The object gets exactly *mode*, whatever the umask. A last-closer segment keeps its
    descriptor, with a shared flock taken right after shm_open (section 8).

    *detached* (a queue's reusable data segment, section 11.5): return a Detached, not a
    Segment: the caller alone manages its lifetime (no finalizer, no exit cleanup, no
    sharing with later opens), and its FlockHolder is not handed over to fork children
    (a child inherits nothing of it to leave).
    """
    check_mode(mode)
    lifetime = header.lifetime_code
    keep = lifetime != H.LIFETIME_CREATOR
    persistent = lifetime == H.LIFETIME_PERSISTENT
    generated = is_template(name)
    if not generated:
        validate_key(name)
    if not persistent:
        exit_cleanup.prepare()
    holder = None
    ident = None
    held = _hold_end_signals()
    try:
        while True:
            seg_name = generated_key(name) if generated else name
            try:
                fd = open_object(seg_name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode)
                break
            except FileExistsError as e:
                # Not ours, and never marked as ours: nothing here may unlink it.
                if generated:
                    continue
                raise os_errors.error_for(e, name, os_errors.CREATE) from None
    except BaseException:
        _release_end_signals(held)
        raise
    try:
        try:
            if _after_open is not None:
                _after_open(seg_name)
            # Marked as being created only now that O_EXCL made it ours, with its device and
            # inode: the signal cleanup removes it only while the name is still this object.
            ident = _ident(os.fstat(fd))
            if not persistent:
                exit_cleanup.creating(seg_name, ident)
        finally:
            _release_end_signals(held)
        if lifetime == H.LIFETIME_LAST_CLOSER:
            holder = last_closer.hold_new(fd, fork_handover=not detached)
        os.fchmod(fd, mode)          # the exact mode asked for, whatever the umask
        total = header.total_size
        with os_errors.translated(seg_name, os_errors.SIZE, total):
            os.ftruncate(fd, total)
        # Reserve the pages now: on a full /dev/shm this fails cleanly (ENOSPC) instead
        # of a SIGBUS at the first write into an unbacked page.
        try:
            os.posix_fallocate(fd, 0, total)
        except OSError as e:
            if e.errno not in _NO_RESERVE:
                raise os_errors.error_for(e, seg_name, os_errors.RESERVE, total) from None
        with os_errors.translated(seg_name, os_errors.MAP, total):
            mm = map_shared(fd, total)
    except BaseException:
        if holder is not None:
            holder.take()
        last_closer.close_unlocked(fd) if holder is not None else os.close(fd)
        _unlink_failed_create(seg_name, ident)
        exit_cleanup.created(seg_name)
        raise
    if holder is None:
        os.close(fd)
    try:
        raw = H.encode(header)
        # The magic goes in last, as one aligned 8-byte store: a reader polling the
        # object sees either all zeros (wait) or the whole magic, never a part of it.
        mm[len(H.MAGIC):header.header_size] = raw[len(H.MAGIC):]
        struct.pack_into("<Q", mm, 0, int.from_bytes(H.MAGIC, "little"))
        init(mm)
        if _before_ready is not None:
            _before_ready(seg_name)
        crc = H.checksum(raw, header.header_size)
        struct.pack_into("<I", mm, H.CRC_OFFSET, crc)
        fence()
        struct.pack_into("<I", mm, H.STATE_OFFSET, H.STATE_READY)
    except BaseException:
        if holder is not None:
            holder.close()
        _unlink_failed_create(seg_name, ident)
        exit_cleanup.created(seg_name)
        raise
    if detached:
        exit_cleanup.created(seg_name)
        return Detached(seg_name, header, mm, ident, holder)
    seg = Segment(seg_name, header, mm, total, os.getpid(), keep, ident, holder)
    exit_cleanup.created(seg_name)
    _remember(seg)
    return seg


class Detached:
    """A segment create(detached=True) made: name, header, mm, ident, holder (the
    FlockHolder of a last-closer one, else None). Nothing removes it but its caller."""

    __slots__ = ("name", "header", "mm", "ident", "holder")

    def __init__(self, name, header, mm, ident, holder):
        self.name, self.header, self.mm, self.ident, self.holder = name, header, mm, ident, holder


def _unlink_failed_create(name, ident):
    """Remove the object a create made before failing, if the name is still it (only
    an fstat that failed leaves no identity: then the name, created an instant ago)."""
    if ident is not None:
        unlink_if_same(name, ident)
        return
    try:
        unlink_object(name)
    except FileNotFoundError:
        pass


# name -> weak reference to the _Shared of the segment this process already maps, so
# that unpickling many objects naming one segment maps it once. Checked against device
# and inode: a name that was unlinked and created again is a different segment.
_open_segments = {}
_open_lock = threading.Lock()


def _fresh_lock_in_child():
    # A fork can happen while another thread holds it: the child, which has only the
    # forking thread, would then block forever on its first create/attach.
    global _open_lock
    _open_lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_lock_in_child)


def _remember(seg):
    with _open_lock:
        _open_segments[seg.name] = weakref.ref(seg._shared)


def _forget(name):
    # Called from finalizers (which garbage collection may run while this thread holds
    # the lock) and from the signal handler (which may interrupt code holding it): never
    # waits. A stale entry is harmless: it is checked against device, inode and the
    # hold before it is reused.
    if not _open_lock.acquire(blocking=False):
        return
    try:
        _open_segments.pop(name, None)
    finally:
        _open_lock.release()


# The bounded poll of wait_for_name_of: the first interval, doubled up to the last. A
# creator is found at most _NAME_POLL_MAX_S after it created the name (the poll costs one
# open(2) per interval: nothing while the name exists).
_NAME_POLL_FIRST_S = 0.001
_NAME_POLL_MAX_S = 0.05


def wait_for_name_of(name, seconds):
    """Wait up to *seconds* (> 0, or math.inf) for something to exist under the key *name*
    (docs/api.md, "Starting a pipeline"): polls with lstat, 1 ms doubling to 50 ms.
    Returns when it exists (attach then opens it, waiting for its creator's ready state
    as always); SegmentNotFoundError when the time is up."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"wait_for_name must be a number of seconds >= 0 (or None), not "
                         f"{seconds!r}")
    validate_key(name)
    path = path_of(name)
    deadline = time.monotonic() + seconds
    interval = _NAME_POLL_FIRST_S
    while not os.path.lexists(path):
        left = deadline - time.monotonic()
        if left <= 0:
            raise os_errors.never_appeared(name, seconds)
        time.sleep(min(interval, left))
        interval = min(interval * 2, _NAME_POLL_MAX_S)


# How many times attach starts over when a last-closer segment was removed by its last
# closer between shm_open and the attacher's shared flock (docs/format.md section 8).
_LAST_CLOSER_RETRIES = 3


def open_segment(name, timeout=5.0, allow_other_owner=False, join=True, wait_for_name=None):
    """Attach to the segment *name* (docs/format.md section 6.2) and return it.

    Refuses an object owned by another user (SegmentPermissionError) unless
    *allow_other_owner* is true. A last-closer segment is joined: this process holds a
    shared flock on it until the Segment is closed or collected (section 8). join=False
    only looks (header_of, tools): the Segment takes part in no lifetime protocol and is
    not reused by later opens. *wait_for_name* (seconds) waits that long for a name that
    does not exist yet (wait_for_name()).
    """
    if wait_for_name:
        wait_for_name_of(name, wait_for_name)
    for _ in range(_LAST_CLOSER_RETRIES):
        seg = _open_once(name, timeout, allow_other_owner, join)
        if seg is not None:
            return seg
    raise os_errors.removed_by_last_closer(name)


def _open_once(name, timeout, allow_other_owner, join):
    fd, first = attach_checks.open_first(name)              # section 6.2 step 1
    try:
        ident, size = attach_checks.check_opened(name, fd, first, allow_other_owner)  # step 2
        with _open_lock:
            ref = _open_segments.get(name)
            cached = ref() if ref is not None else None
        if cached is not None and cached.ident == ident and (
                cached.holder is None or cached.holder.fd >= 0):
            # Mapped here already: this object gets its own Segment (its own claim).
            if allow_other_owner:
                cached.trusted = True
            return Segment(name, cached.header, cached.mm, cached.size, 0, True,
                           cached.ident, shared=cached, join=join)
        header, mm = attach_checks.map_checked(name, fd, timeout, size, first)  # steps 3-6
        holder = None
        if join and header.lifetime_code == H.LIFETIME_LAST_CLOSER:       # step 8
            holder = last_closer.join(name, fd, ident, mm, timeout)
            if holder is None:
                return None
            fd = -1          # the holder keeps it
        seg = Segment(name, header, mm, header.total_size, 0, True, ident, holder)
    finally:
        if fd >= 0:
            os.close(fd)
    if not join:
        return seg
    seg._shared.trusted = allow_other_owner
    _remember(seg)
    return seg
