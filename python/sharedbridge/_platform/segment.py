"""One named POSIX shared-memory segment: create, attach, unlink, ownership.

Uses ``_posixshmem.shm_open`` and ``mmap`` directly rather than
``multiprocessing.shared_memory.SharedMemory``: SharedMemory registers attached
segments with the resource tracker, which unlinks them when the *attaching* process
exits (CPython gh-82300). Nothing here ever registers with the resource tracker.

Attaching treats the object as untrusted (docs/format.md section 6.2, rulings A.2/C):
the header is copied with pread, validated, and only then is exactly data_offset +
data_size mapped (never the whole object, never resizing it); an object that changes
size meanwhile is retried, then refused.

Mappings are made with libc mmap(2) through ctypes, not with the mmap module: CPython's
mmap.mmap duplicates the descriptor it is given and keeps it open for the mapping's life,
so every live object would hold a file descriptor (EMFILE after ~1,020 objects under
``ulimit -n 1024``). Here the descriptor is closed right after mmap(2) (except for a
last-closer segment: one descriptor per segment holds its flock, docs/format.md section 8); the mapping is a
ctypes ``c_char`` array over the mapped address (``Segment.mm``: a writable buffer that
supports len, slicing, struct.pack_into and from_buffer like an mmap) whose instance
dictionary holds an _Unmapper: munmap(2) runs when the last object using the mapping
(every from_buffer view, memoryview and numpy array keeps it alive) is gone. A mutex view
pinned in robust_mutex.PINNED keeps its mapping for the life of the process.
"""

import ctypes
import errno
import fcntl
import mmap
import os
import stat
import struct
import threading
import time
import weakref

import _posixshmem

from .._format import header as H
from .._format.segment_name import generate_name, os_name, validate_name
from ..errors import (CorruptSegmentError, InsufficientMemoryError, SegmentTooLargeError,
                      NotASharedBridgeSegmentError, SegmentExistsError, SegmentNotFoundError,
                      SegmentNotReadyError, SegmentPermissionError, SharedBridgeError)
from . import exit_cleanup

DEFAULT_MODE = 0o600

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long)
_munmap = _libc.munmap
_munmap.restype = ctypes.c_int
_munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value


class _Unmapper:
    """Unmaps one mapping when collected (kept in the mapping view's __dict__)."""

    __slots__ = ("addr", "length")

    def __init__(self, addr, length):
        self.addr = addr
        self.length = length

    def __del__(self):
        try:
            _munmap(self.addr, self.length)
        except Exception:       # interpreter shutdown: the process unmaps everything anyway
            pass


def map_shared(fd, length):
    """Map *length* bytes of *fd* read-write, MAP_SHARED, without keeping *fd*: returns a
    ctypes c_char array over the mapping, unmapped when it (and every view) is gone.
    Raises OSError (errno) like mmap.mmap, OverflowError for an impossible length."""
    if length <= 0:
        raise ValueError("cannot map an empty segment")
    if length >= 2 ** 63:
        raise OverflowError("mapping length too large")
    addr = _mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    try:
        view = (ctypes.c_char * length).from_address(addr)
    except BaseException:
        _munmap(addr, length)
        raise
    view.__dict__["_sb_unmapper"] = _Unmapper(addr, length)
    return view


def _fence():
    # A lock round trip is a full memory barrier (pthread/futex based) on every platform.
    _FENCE_LOCK.acquire()
    _FENCE_LOCK.release()


_FENCE_LOCK = threading.Lock()


class _FlockHolder:
    """The descriptor of a last-closer segment, holding a shared flock for as long as this
    process takes part (docs/format.md section 8): one per Segment, the accepted exception
    to "no descriptor per object".

    flock locks belong to the open file description, which a fork child shares with its
    parent: a child that converted or released it would act for the parent too. So before
    every fork, each holder opens a second description of the same object
    (/proc/self/fd/N: it works after the name is gone) with its own shared lock; the child
    keeps that one and closes the inherited descriptor (the parent still holds it, so its
    lock stays), the parent closes the child's copy. A child for which that failed
    (``fd == -1``) does not take part: it never unlinks.

    A mapping holds a reference to the open file description, and the kernel drops a
    flock only when the description's last reference goes: closing the descriptor while
    the memory is still mapped would keep the lock. Leaving is therefore always an
    explicit LOCK_UN before the close (close_unlocked), never the close alone.
    """

    __slots__ = ("_fds", "pid", "child_fd", "__weakref__")

    def __init__(self, fd):
        self.fd = fd
        self.pid = os.getpid()
        self.child_fd = -1
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
    ``holder`` (the flock descriptor of a last-closer segment, else None).
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

    @property
    def is_owner(self):
        """True in the process that created the segment (not in its fork children)."""
        return self.owner_pid == os.getpid()

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
        if unlink_if_same(self.name, self.ident):
            return
        if os.path.lexists(f"/dev/shm/{self.name}"):
            raise SegmentNotFoundError(
                errno.ENOENT, f"the shared-memory segment {self.name!r} no longer exists "
                "under that name: someone else unlinked it and reused the name for another "
                f"segment, which was left alone (sharedbridge.unlink({self.name!r}) removes "
                "whatever has the name)", self.name)
        raise SegmentNotFoundError(
            errno.ENOENT, f"no shared-memory segment named {self.name!r} (already "
            "unlinked?)", self.name)

    def read_u64(self, offset):
        return struct.unpack_from("<Q", self.mm, offset)[0]

    def read_state(self):
        return struct.unpack_from("<I", self.mm, H.STATE_OFFSET)[0]


# Larger than any file multiprocessing's disk-backed fallback could hold (ext4: 16 TiB):
# multiprocessing reports EFBIG there.
_NO_FILE_THAT_LARGE = 2 ** 44


def _full(name, total):
    try:
        st = os.statvfs("/dev/shm")
        capacity = st.f_blocks * st.f_frsize
        room = (f" (/dev/shm holds {capacity // 2**20} MiB, "
                f"{st.f_bavail * st.f_frsize // 2**20} MiB free)")
    except OSError:
        capacity, room = None, ""
    if capacity is not None and total > capacity:
        # It can never fit: also an OSError, as multiprocessing's disk-file fallback
        # raises for sizes no file can have (EFBIG); ENOSPC below that.
        code = errno.EFBIG if total >= _NO_FILE_THAT_LARGE else errno.ENOSPC
        return SegmentTooLargeError(
            code, f"cannot create a {total}-byte shared-memory segment {name!r}: /dev/shm is "
            f"full: the object is larger than the whole of /dev/shm{room}; create a smaller object, or give the "
            "machine a larger /dev/shm (in a container: docker run --shm-size=1g; "
            "Kubernetes: an emptyDir volume with medium: Memory mounted on /dev/shm)")
    return InsufficientMemoryError(
        f"cannot allocate {total} bytes of shared memory for {name!r}: /dev/shm is full "
        f"or smaller than that{room}; free space there, create a smaller object, or give "
        "the machine a larger /dev/shm (in a container: docker run --shm-size=1g, "
        "Kubernetes: an emptyDir volume with medium: Memory mounted on /dev/shm)")


def _too_big(name, total):
    return SegmentTooLargeError(
        errno.EFBIG, f"cannot create a {total}-byte shared-memory segment {name!r}: "
        "larger than a file can be (EFBIG)")


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
    _retire(mm)
    unlink_if_same(name, ident)
    exit_cleanup.unlinked(name, ident)


def _leave(name, mm, shared, token):
    # One object's claim on the process's last-closer hold goes; the last one releases
    # the hold (docs/format.md section 8: one descriptor per segment and process).
    shared.claims.discard(token)
    if not shared.claims:
        _release_last_closer(name, mm, shared.holder)


def _release_last_closer(name, mm, holder):
    # The last-closer protocol (docs/format.md section 8): drop the shared lock by trying
    # to convert it to an exclusive one without waiting. Whoever gets it is the last
    # process that has the segment open: it retires the segment and unlinks the name, if
    # the name still refers to this object, before releasing it (closing the descriptor).
    fd = holder.take()
    if fd < 0:
        return
    try:
        if try_exclusive(fd):
            _retire(mm)
            unlink_if_same(name, os.fstat(fd))
    except OSError:
        pass        # best effort: called from finalizers and signal handlers
    finally:
        close_unlocked(fd)


def close_unlocked(fd):
    """Release the flock of *fd* explicitly, then close it (a mapping of the object
    would otherwise keep the lock alive: see _FlockHolder). Does nothing for -1."""
    if fd < 0:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def try_exclusive(fd):
    """flock(fd, LOCK_EX | LOCK_NB): True if acquired (then no other description of the
    object holds a lock), False if another process holds it open."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _ident(st):
    """(st_dev, st_ino) of an fstat result, or an ident already."""
    return (st.st_dev, st.st_ino) if hasattr(st, "st_ino") else st


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


def shm_names():
    """The names in /dev/shm (empty if it cannot be listed)."""
    try:
        return sorted(os.listdir("/dev/shm"))
    except OSError:
        return []


def open_for_reap(name):
    """(descriptor, fstat, Segment) for a SharedBridge segment *name* that this user owns,
    validated like an attach without waiting; None for anything else (not a valid name,
    not a regular file, another owner, not SharedBridge, corrupt, still initializing,
    too new). The caller closes the descriptor. The Segment takes no part in any
    lifetime protocol (no finalizer, no flock)."""
    try:
        validate_name(name)
        st = os.lstat(f"/dev/shm/{name}")
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return None
        fd = _posixshmem.shm_open(os_name(name), os.O_RDWR, 0)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            return fd, st, _map_and_validate(name, fd, 0)
    except (OSError, ValueError, SharedBridgeError):
        pass
    os.close(fd)
    return None


def retire_by_descriptor(fd):
    """Store state = retired through the descriptor (the reaper does not map data)."""
    os.pwrite(fd, struct.pack("<I", H.STATE_RETIRED), H.STATE_OFFSET)


def unlink(name):
    """Remove the segment name *name* (the memory stays valid where it is mapped)."""
    validate_name(name)
    try:
        _posixshmem.shm_unlink(os_name(name))
    except FileNotFoundError:
        raise SegmentNotFoundError(
            errno.ENOENT, f"no shared-memory segment named {name!r} (already unlinked?)",
            name) from None
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


def create(name, header, init, mode=DEFAULT_MODE):
    """Create a segment (docs/format.md section 6.1) and return it.

    *header* is a SegmentHeader (state/crc ignored; its lifetime_code says who unlinks
    it); *init(mm)* writes the mutex and the initial data, between writing the identity
    region and publishing state = ready. A name of None is generated, retrying on EEXIST.
    The object gets exactly *mode*, whatever the umask. A last-closer segment keeps its
    descriptor, with a shared flock taken right after shm_open (section 8).
    """
    check_mode(mode)
    lifetime = header.lifetime_code
    keep = lifetime != H.LIFETIME_CREATOR
    persistent = lifetime == H.LIFETIME_PERSISTENT
    generated = name is None
    if not generated:
        validate_name(name)
    if not persistent:
        exit_cleanup.prepare()
    holder = None
    ident = None
    while True:
        seg_name = generate_name() if generated else name
        try:
            fd = _posixshmem.shm_open(os_name(seg_name), os.O_CREAT | os.O_EXCL | os.O_RDWR, mode)
            break
        except FileExistsError:
            # Not ours, and never marked as ours: nothing here may unlink it.
            if generated:
                continue
            raise SegmentExistsError(
                errno.EEXIST, f"a shared-memory segment named {name!r} already exists: "
                "pick another name, attach to it with sharedbridge.attach(name), or remove "
                "it with sharedbridge.unlink(name)", name) from None
    try:
        # Marked as being created only now that O_EXCL made it ours, with its device and
        # inode: the signal cleanup removes it only while the name is still this object.
        ident = _ident(os.fstat(fd))
        if not persistent:
            exit_cleanup.creating(seg_name, ident)
        if lifetime == H.LIFETIME_LAST_CLOSER:
            fcntl.flock(fd, fcntl.LOCK_SH)   # nobody else can hold it yet: never waits
            holder = _FlockHolder(fd)
        os.fchmod(fd, mode)          # the exact mode asked for, whatever the umask
        total = header.total_size
        try:
            os.ftruncate(fd, total)
        except OSError as e:
            if e.errno not in (errno.EFBIG, errno.EINVAL, errno.ENOSPC):
                raise
            if e.errno != errno.ENOSPC:
                raise _too_big(seg_name, total) from None
            raise _full(seg_name, total) from None
        # Reserve the pages now: on a full /dev/shm this fails cleanly (ENOSPC) instead
        # of a SIGBUS at the first write into an unbacked page.
        try:
            os.posix_fallocate(fd, 0, total)
        except OSError as e:
            if e.errno == errno.EFBIG:
                raise _too_big(seg_name, total) from None
            if e.errno == errno.ENOSPC:
                raise _full(seg_name, total) from None
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
        try:
            mm = map_shared(fd, total)
        except (OverflowError, MemoryError):
            raise _too_large(seg_name, total) from None
        except OSError as e:
            if e.errno != errno.ENOMEM:
                raise
            raise _too_large(seg_name, total) from None
    except BaseException:
        if holder is not None:
            holder.take()
        close_unlocked(fd) if holder is not None else os.close(fd)
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
        _fence()
        struct.pack_into("<I", mm, H.STATE_OFFSET, H.STATE_READY)
    except BaseException:
        if holder is not None:
            holder.close()
        _unlink_failed_create(seg_name, ident)
        exit_cleanup.created(seg_name)
        raise
    seg = Segment(seg_name, header, mm, total, os.getpid(), keep, ident, holder)
    exit_cleanup.created(seg_name)
    _remember(seg)
    return seg


def _unlink_failed_create(name, ident):
    """Remove the object a create made before failing, if the name is still it (only
    an fstat that failed leaves no identity: then the name, created an instant ago)."""
    if ident is not None:
        unlink_if_same(name, ident)
        return
    try:
        _posixshmem.shm_unlink(os_name(name))
    except FileNotFoundError:
        pass


# name -> weak reference to the _Shared of the segment this process already maps, so
# that unpickling many objects naming one segment maps it once. Checked against device
# and inode: a name that was unlinked and created again is a different segment.
_open_segments = {}
_open_lock = threading.Lock()


def _fresh_locks_in_child():
    # A fork can happen while another thread holds one of these: the child, which has
    # only the forking thread, would then block forever on its first create/attach.
    global _open_lock, _FENCE_LOCK
    _open_lock = threading.Lock()
    _FENCE_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


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


# errno values of shm_open on a (valid) name that is not a regular shared-memory object:
# a symbolic link (ELOOP: shm_open uses O_NOFOLLOW), a directory (EISDIR, which glibc's
# shm_open reports as EINVAL), a socket (ENXIO), a device.
_NOT_AN_OBJECT_ERRNOS = {errno.ELOOP, errno.EISDIR, errno.EINVAL, errno.ENXIO, errno.ENODEV,
                         errno.ENOTDIR, errno.EOPNOTSUPP}
# How many times attach starts over when the object changes size under it.
_SIZE_CHANGE_RETRIES = 5


# How many times attach starts over when a last-closer segment was removed by its last
# closer between shm_open and the attacher's shared flock (docs/format.md section 8).
_LAST_CLOSER_RETRIES = 3


def open_segment(name, timeout=5.0, allow_other_owner=False, join=True):
    """Attach to the segment *name* (docs/format.md section 6.2) and return it.

    Refuses an object owned by another user (SegmentPermissionError) unless
    *allow_other_owner* is true. A last-closer segment is joined: this process holds a
    shared flock on it until the Segment is closed or collected (section 8). join=False
    only looks (header_of, tools): the Segment takes part in no lifetime protocol and is
    not reused by later opens.
    """
    for _ in range(_LAST_CLOSER_RETRIES):
        seg = _open_once(name, timeout, allow_other_owner, join)
        if seg is not None:
            return seg
    raise SegmentNotFoundError(
        errno.ENOENT, f"the shared-memory segment {name!r} was removed by its last closer "
        "while this process attached to it: it is gone; create it again", name)


def _open_once(name, timeout, allow_other_owner, join):
    validate_name(name)
    try:
        fd = _posixshmem.shm_open(os_name(name), os.O_RDWR, 0)
    except FileNotFoundError:
        raise SegmentNotFoundError(
            errno.ENOENT, f"no shared-memory segment named {name!r}: check the name, and "
            "that it is still alive (by default a creator unlinks its segments when it "
            "closes them or exits; lifetime='last-closer' or 'persistent' keep them "
            "longer)", name) from None
    except PermissionError as e:
        raise SegmentPermissionError(
            e.errno, f"no permission to open the shared-memory segment {name!r} "
            "(it belongs to another user or its mode does not let you read and write it)",
            name) from None
    except OSError as e:
        if e.errno in _NOT_AN_OBJECT_ERRNOS or not _is_regular_file(name):
            raise _not_ours(name, f"it is not a shared-memory object ({os.strerror(e.errno)})") \
                from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_ours(name, "it is not a regular shared-memory object")
        if st.st_uid != os.geteuid() and not allow_other_owner:
            raise SegmentPermissionError(
                errno.EPERM, f"shared-memory segment {name!r} is owned by uid {st.st_uid}, "
                f"not you (uid {os.geteuid()}); pass allow_other_owner=True if you trust it",
                name)
        with _open_lock:
            ref = _open_segments.get(name)
            cached = ref() if ref is not None else None
        if cached is not None and cached.ident == _ident(st) and (
                cached.holder is None or cached.holder.fd >= 0):
            # Mapped here already: this object gets its own Segment (its own claim).
            if allow_other_owner:
                cached.trusted = True
            return Segment(name, cached.header, cached.mm, cached.size, 0, True,
                           cached.ident, shared=cached, join=join)
        seg = _map_and_validate(name, fd, timeout)
        if not join:
            return seg
        if seg.header.lifetime_code == H.LIFETIME_LAST_CLOSER:
            if not _join_last_closer(name, fd, st, seg, timeout):
                return None
            seg = Segment(name, seg.header, seg.mm, seg.size, 0, True, seg.ident,
                          _FlockHolder(fd))
            fd = -1          # the holder keeps it
    finally:
        if fd >= 0:
            os.close(fd)
    seg.trusted = allow_other_owner
    _remember(seg)
    return seg


def _join_last_closer(name, fd, st, seg, timeout):
    """Take the shared flock of a last-closer segment (polling without waiting in the
    kernel: a closer or reaper holds the exclusive lock only for an instant), then make
    sure the segment is still alive: the name still refers to this object and its state
    is not retired. False when the last closer (or a reaper) removed it meanwhile: the
    caller starts over with the name (docs/format.md section 8)."""
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
    return seg.read_state() != H.STATE_RETIRED and same_object(name, st)


def _is_regular_file(name):
    try:
        return stat.S_ISREG(os.lstat(f"/dev/shm/{name}").st_mode)
    except OSError:
        return True         # cannot tell: report the original error


def _not_ours(name, why):
    return NotASharedBridgeSegmentError(
        f"{name!r} is not a SharedBridge segment: {why}; this name belongs to another "
        "program")


class _SizeChanged(Exception):
    """The object changed size while it was being attached: start over."""


def _map_and_validate(name, fd, timeout):
    deadline = time.monotonic() + timeout
    for _ in range(_SIZE_CHANGE_RETRIES):
        try:
            return _attach_once(name, fd, deadline, timeout)
        except _SizeChanged:
            time.sleep(0.001)
    raise CorruptSegmentError(
        f"corrupt SharedBridge segment {name!r}: it changed size while attaching "
        f"({_SIZE_CHANGE_RETRIES} attempts); no conforming creator resizes a segment it "
        "has published: recreate it")


def _pread_exactly(fd, n, offset):
    data = os.pread(fd, n, offset)
    if len(data) != n:
        raise _SizeChanged()
    return data


def _attach_once(name, fd, deadline, timeout):
    """One attach attempt (docs/format.md section 6.2 and its order of checks): wait for
    the creator, copy and validate the header, then map exactly the validated size.

    The header is read with pread (a private copy, never a mapping of untrusted
    length); only data_offset + data_size bytes are mapped, never the whole object."""
    delay = 0.001
    while True:
        size = os.fstat(fd).st_size
        if size == 0:
            pass                                     # not sized yet: wait
        elif size < len(H.MAGIC):
            raise _not_ours(name, f"the object is only {size} bytes")
        else:
            head = os.pread(fd, H.FIXED_SIZE, 0)
            if len(head) != min(size, H.FIXED_SIZE):
                raise _SizeChanged()
            magic = head[:len(H.MAGIC)]
            if magic == H.MAGIC:
                if size < H.FIXED_SIZE:
                    # ftruncate sets the final size in one step: a SharedBridge object of
                    # 8..511 bytes is never one being initialized.
                    raise CorruptSegmentError(
                        f"corrupt SharedBridge header: {name!r} is truncated: {size} bytes, "
                        "smaller than the 512-byte header: recreate it")
                if struct.unpack_from("<I", head, H.STATE_OFFSET)[0] != H.STATE_INITIALIZING:
                    break
            elif not (magic == bytes(len(H.MAGIC)) and size >= H.FIXED_SIZE
                      and struct.unpack_from("<I", head, H.STATE_OFFSET)[0]
                      == H.STATE_INITIALIZING):
                raise _not_ours(name, "wrong magic")
            # else: all zero, state 0: the creator has sized it but not written yet.
        if time.monotonic() >= deadline:
            raise SegmentNotReadyError(
                f"segment {name!r} is still initializing after {timeout} s: its creator "
                "may have died while creating it; unlink it and create it again")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    # The private copy, read after the state word was seen published; nothing below
    # reads the header from shared memory.
    fixed = _pread_exactly(fd, H.FIXED_SIZE, 0)
    state = struct.unpack_from("<I", fixed, H.STATE_OFFSET)[0]
    header_size = H.peek_header_size(fixed)
    table = b""
    if H.FIXED_SIZE <= header_size <= min(size, H.MAX_HEADER_SIZE):
        table = _pread_exactly(fd, header_size - H.FIXED_SIZE, H.FIXED_SIZE)
    header = H.decode(fixed, table, size, state, name)
    length = header.total_size
    try:
        if os.fstat(fd).st_size < length:     # it shrank: mapping past the end would SIGBUS
            raise _SizeChanged()
        mm = map_shared(fd, length)
    except (OverflowError, MemoryError):
        raise _too_large(name, length) from None
    except OSError as e:
        if e.errno in (errno.ENOMEM, errno.EOVERFLOW, errno.EFBIG):
            raise _too_large(name, length) from None
        raise
    st = os.fstat(fd)
    if st.st_size != size:
        del mm                      # unmapped now: nothing else refers to it
        raise _SizeChanged()
    return Segment(name, header, mm, length, 0, True, _ident(st))


def _too_large(name, length):
    return InsufficientMemoryError(
        f"cannot map the {length} bytes of segment {name!r}: not enough address space or "
        "memory in this process")
