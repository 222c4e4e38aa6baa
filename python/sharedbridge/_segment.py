"""One named POSIX shared-memory segment: create, attach, unlink, ownership.

Uses ``_posixshmem.shm_open`` and ``mmap`` directly rather than
``multiprocessing.shared_memory.SharedMemory``: SharedMemory registers attached
segments with the resource tracker, which unlinks them when the *attaching* process
exits (CPython gh-82300). Nothing here ever registers with the resource tracker.

The mmap is never closed explicitly: ctypes objects export its buffer, and closing a
mapping with live exports raises BufferError. The mapping goes away when the last
object using it does, or at process exit.
"""

import errno
import mmap
import os
import stat
import struct
import threading
import time
import weakref

import _posixshmem

from . import _header as H
from ._names import generate_name, os_name, validate_name
from .errors import (CorruptSegmentError, SegmentExistsError, SegmentNotFoundError,
                     SegmentNotReadyError)

DEFAULT_MODE = 0o600

_start_time_cache = {}


def process_start_time(pid=None):
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), or 0 if unknown."""
    pid = os.getpid() if pid is None else pid
    if pid not in _start_time_cache:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            _start_time_cache[pid] = int(data[data.rindex(b")") + 2:].split()[19])
        except (OSError, ValueError, IndexError):
            return 0
    return _start_time_cache[pid]


def _fence():
    # A lock round trip is a full memory barrier (pthread/futex based) on every platform.
    _FENCE_LOCK.acquire()
    _FENCE_LOCK.release()


_FENCE_LOCK = threading.Lock()


class Segment:
    """A mapped segment with its validated header.

    Attributes: ``name``, ``header`` (SegmentHeader, the private copy), ``mm`` (the
    mmap), ``size`` (object size), ``owner_pid`` (pid that created it here, or 0 when
    attached), ``keep``.
    """

    __slots__ = ("name", "header", "mm", "size", "owner_pid", "keep", "inode", "_finalizer",
                 "lock_ref", "__weakref__")

    def __init__(self, name, header, mm, size, owner_pid, keep, inode):
        self.name = name
        self.header = header
        self.mm = mm
        self.size = size
        self.owner_pid = owner_pid
        self.keep = keep
        self.inode = inode
        self._finalizer = None
        self.lock_ref = None     # weak reference to the one lock object over this mutex
        if owner_pid:
            self._finalizer = weakref.finalize(self, _release_ownership, name, mm, owner_pid, keep)

    @property
    def is_owner(self):
        """True in the process that created the segment (not in its fork children)."""
        return self.owner_pid == os.getpid()

    def close(self):
        """Give up this process's claim: the creator retires and unlinks the name now
        (unless keep=True). The memory stays valid for every object still using it."""
        if self._finalizer is not None:
            self._finalizer()

    def unlink(self):
        """Remove the name now, whoever created it; SegmentNotFoundError if it is gone."""
        if self._finalizer is not None:
            self._finalizer.detach()
        _retire(self.mm)
        unlink(self.name)

    def read_u64(self, offset):
        return struct.unpack_from("<Q", self.mm, offset)[0]

    def read_state(self):
        return struct.unpack_from("<I", self.mm, H.STATE_OFFSET)[0]


def _retire(mm):
    try:
        struct.pack_into("<I", mm, H.STATE_OFFSET, H.STATE_RETIRED)
    except (ValueError, TypeError):
        pass


def _release_ownership(name, mm, owner_pid, keep):
    # Runs from close(), garbage collection or atexit: only the creating process (not a
    # fork child that inherited the object) removes the name.
    if keep or os.getpid() != owner_pid:
        return
    _retire(mm)
    try:
        _posixshmem.shm_unlink(os_name(name))
    except FileNotFoundError:
        pass


def unlink(name):
    """Remove the segment name *name* (the memory stays valid where it is mapped)."""
    validate_name(name)
    try:
        _posixshmem.shm_unlink(os_name(name))
    except FileNotFoundError:
        raise SegmentNotFoundError(
            errno.ENOENT, f"no shared-memory segment named {name!r} (already unlinked?)",
            name) from None
    _forget(name)


def create(name, header, init, mode=DEFAULT_MODE, keep=False):
    """Create a segment (docs/format.md section 6.1) and return it.

    *header* is a SegmentHeader (state/crc ignored); *init(mm)* writes the mutex and the
    initial data, between writing the identity region and publishing state = ready.
    A name of None is generated, retrying on EEXIST.
    """
    generated = name is None
    if not generated:
        validate_name(name)
    while True:
        seg_name = generate_name() if generated else name
        try:
            fd = _posixshmem.shm_open(os_name(seg_name), os.O_CREAT | os.O_EXCL | os.O_RDWR, mode)
            break
        except FileExistsError:
            if generated:
                continue
            raise SegmentExistsError(
                errno.EEXIST, f"a shared-memory segment named {name!r} already exists: "
                "pick another name, attach to it with sharedbridge.attach(name), or remove "
                "it with sharedbridge.unlink(name)", name) from None
    try:
        total = header.total_size
        os.ftruncate(fd, total)
        # Reserve the pages now: on a full /dev/shm this fails cleanly (ENOSPC) instead
        # of a SIGBUS at the first write into an unbacked page.
        try:
            os.posix_fallocate(fd, 0, total)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise MemoryError(
                    f"cannot allocate {total} bytes of shared memory for {seg_name!r}: "
                    "/dev/shm is full (free space there or create a smaller object)") from None
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
        inode = os.fstat(fd).st_ino
        mm = mmap.mmap(fd, total)
    except BaseException:
        os.close(fd)
        _posixshmem.shm_unlink(os_name(seg_name))
        raise
    os.close(fd)
    try:
        raw = H.encode(header)
        mm[0:header.header_size] = raw
        init(mm)
        crc = H.checksum(raw, header.header_size)
        struct.pack_into("<I", mm, H.CRC_OFFSET, crc)
        _fence()
        struct.pack_into("<I", mm, H.STATE_OFFSET, H.STATE_READY)
    except BaseException:
        _posixshmem.shm_unlink(os_name(seg_name))
        raise
    seg = Segment(seg_name, header, mm, total, os.getpid(), keep, inode)
    _remember(seg)
    return seg


# name -> weak reference to the Segment this process already maps, so that unpickling
# many objects naming one segment maps it once. Checked against the inode: a name that
# was unlinked and created again is a different segment.
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
        _open_segments[seg.name] = weakref.ref(seg)


def _forget(name):
    with _open_lock:
        _open_segments.pop(name, None)


def open_segment(name, timeout=5.0):
    """Attach to the segment *name* (docs/format.md section 6.2) and return it."""
    validate_name(name)
    try:
        fd = _posixshmem.shm_open(os_name(name), os.O_RDWR, 0)
    except FileNotFoundError:
        raise SegmentNotFoundError(
            errno.ENOENT, f"no shared-memory segment named {name!r}: check the name, and "
            "that its creator is still running (a creator unlinks its segments when it "
            "closes them or exits unless keep=True)", name) from None
    try:
        st = os.fstat(fd)
        with _open_lock:
            ref = _open_segments.get(name)
            cached = ref() if ref is not None else None
        if cached is not None and cached.inode == st.st_ino:
            return cached
        seg = _map_and_validate(name, fd, timeout)
    finally:
        os.close(fd)
    _remember(seg)
    return seg


def _map_and_validate(name, fd, timeout):
    deadline = time.monotonic() + timeout
    delay = 0.001
    mm = None
    while True:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptSegmentError(f"{name!r} is not a shared-memory object")
        size = st.st_size
        if 0 < size < H.FIXED_SIZE:
            # ftruncate sets the final size in one step: 1..511 bytes is never a
            # segment being initialized, it is a truncated or foreign object.
            raise CorruptSegmentError(
                f"corrupt SharedBridge header: {name!r} is {size} bytes, smaller than the "
                "512-byte header: recreate it")
        if size:
            if mm is None:
                mm = mmap.mmap(fd, size)
            state = struct.unpack_from("<I", mm, H.STATE_OFFSET)[0]
            if state != H.STATE_INITIALIZING:
                break
        if time.monotonic() >= deadline:
            raise SegmentNotReadyError(
                f"segment {name!r} is still initializing after {timeout} s: its creator "
                "may have died while creating it; unlink it and create it again")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    # One private copy of the header; nothing below reads the header from shared memory.
    fixed = bytes(mm[0:H.FIXED_SIZE])
    header_size = H.peek_header_size(fixed)
    table = bytes(mm[H.FIXED_SIZE:header_size]) if H.FIXED_SIZE <= header_size <= min(
        size, H.MAX_HEADER_SIZE) else b""
    header = H.decode(fixed, table, size, state)
    return Segment(name, header, mm, size, 0, True, st.st_ino)
