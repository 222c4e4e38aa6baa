"""Segment lifetimes (creator, last-closer, persistent) and reap(): docs/format.md section 8.

reap() removes the segments that are garbage by the rules of the header alone: a
``creator`` segment whose creator (pid + start time) is gone, a ``last-closer`` segment
that no process holds open (the reaper gets the exclusive flock without waiting), and a
segment whose creator died while initializing it (state 0, older than the grace period,
its recorded creator gone, or nothing recorded and nobody has it open).
The out-of-line data segment of a queue message (``<queue>.m<16 hex>``, docs/format.md
section 11.5) is garbage when its queue no longer exists (persistent), or when nobody holds
it and no record of its queue references it (last-closer: a reusable one). Other
``persistent`` segments, version-1 segments (their header does not say whether they were
kept), segments being initialized by a live creator, corrupt or foreign objects and other
users' objects are never touched, and not reported.
"""

import os
import re
import stat
import struct
import time

from .._format import header as H
from .._format.segment_name import base_name, dir_of, path_of, resolve_dir, validate_key
from .._format import queue_layout as L
from .._platform import segment as S
from .._platform.backend import open_object
from .._platform.robust_mutex import RobustMutex, unlock as unlock_mutex
from .._platform.process_info import process_is_running, processes_mapping_any
from ..errors import SharedBridgeError

# A segment still initializing is garbage only when its object is at least this old
# (docs/format.md section 8): the default open timeout, after which attachers give up on it.
INITIALIZING_GRACE_NS = 5 * 10**9

__all__ = ["ReapedSegment", "reap", "resolve_lifetime", "lifetime_code"]


def resolve_lifetime(lifetime, keep):
    """The header's lifetime byte (SegmentHeader.lifetime_code) for a create's
    ``lifetime=`` and ``keep=`` arguments: keep=True is an alias of
    lifetime="persistent"; lifetime=None means "creator" (docs/api.md, "Lifetimes")."""
    if keep not in (True, False):
        raise TypeError(f"keep must be True or False, not {keep!r}")
    if lifetime is None:
        return H.LIFETIME_PERSISTENT if keep else H.LIFETIME_CREATOR
    code = H.lifetime_from_name(lifetime)
    if keep and code != H.LIFETIME_PERSISTENT:
        raise ValueError(
            f"contradictory options: keep=True means lifetime='persistent', but "
            f"lifetime={lifetime!r} was given; pass only one of them")
    return code


# The former name of resolve_lifetime, kept for the modules that import it: obsolete,
# use resolve_lifetime (lifetime_code is the header field's name).
lifetime_code = resolve_lifetime


class ReapedSegment:
    """One segment reap() removed (or, in a dry run, would remove)."""

    __slots__ = ("name", "reason", "removed", "mapped_by")

    def __init__(self, name, reason, removed, mapped_by=()):
        self.name = name          # the segment name (no leading slash)
        self.reason = reason      # why it is garbage, for people
        self.removed = removed    # False in a dry run
        # pids of the other processes that still map it (their memory stays valid; the
        # name is gone for everyone else), from /proc/*/maps where readable
        self.mapped_by = tuple(mapped_by)

    def __repr__(self):
        return (f"ReapedSegment(name={self.name!r}, reason={self.reason!r}, "
                f"removed={self.removed!r}, mapped_by={self.mapped_by!r})")

    def __eq__(self, other):
        if not isinstance(other, ReapedSegment):
            return NotImplemented
        return ((self.name, self.reason, self.removed, self.mapped_by)
                == (other.name, other.reason, other.removed, other.mapped_by))

    __hash__ = None


def reap(*, dry_run=False, prefix=None, dir=None):
    """Remove the SharedBridge segments in /dev/shm (or in the directory backend's *dir*,
    else SHAREDBRIDGE_DIR: docs/format.md section 1.3) that are garbage (section 8) and
    return what was removed, as ReapedSegment objects (name, reason, removed).
    dry_run=True removes nothing (removed=False). prefix limits it to names starting with
    that string. mapped_by names the other processes that still map a
    segment (their memory stays valid; the name is gone). Call it at start-up to clean up
    after a crashed predecessor; it never touches persistent segments or anything it
    cannot prove dead."""
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string or None, not {type(prefix).__name__}")
    directory = resolve_dir(dir)
    reaped = []     # (ReapedSegment, inode)
    for name in S.shm_names(directory):
        if prefix and not name.startswith(prefix):
            continue
        key = name if directory is None else f"{directory}/{name}"
        seg = S.open_for_reap(key)
        if seg is None:
            result = _judge_initializing(key, dry_run)
        else:
            with seg:
                result = _judge(seg, dry_run)
        if result is not None:
            reaped.append(result)
    return _with_mappers(reaped, directory)


def _with_mappers(reaped, directory=None):
    """The ReapedSegments, each with mapped_by: the other processes that map it (one pass
    over /proc, after the reaper's own mappings are gone)."""
    mappers = processes_mapping_any({inode for _, inode in reaped}, directory)
    me = os.getpid()
    for r, inode in reaped:
        r.mapped_by = tuple(p for p in mappers.get(inode, ()) if p != me)
    return [r for r, _ in reaped]


def _judge(seg, dry_run):
    header = seg.header
    if header.version < 2:
        return None
    if header.lifetime_code == H.LIFETIME_CREATOR:
        if process_is_running(header.creator_pid, header.creator_start_time):
            return None
        reason = (f"creator pid {header.creator_pid} (started {header.creator_start_time}) "
                  "is gone")
    elif _orphan_out_of_line(seg):
        reason = (f"out-of-line message of queue "
                  f"{base_name(_OUT_OF_LINE.match(seg.name).group(1))!r}, "
                  "which does not exist")
    elif _is_data_segment(seg) and header.lifetime_code == H.LIFETIME_LAST_CLOSER:
        reason = _unreferenced_reusable(seg)
        if reason is None:
            return None
    elif header.lifetime_code == H.LIFETIME_LAST_CLOSER:
        # Holding the exclusive lock also keeps attachers out until the name is gone:
        # they re-check the name after their shared lock (section 8).
        if not seg.try_lock_exclusive():
            return None
        reason = "last-closer: no process holds it open"
    else:
        return None
    if dry_run:
        return ReapedSegment(base_name(seg.name), reason, False), seg.inode
    # retire_and_unlink re-checks the name: a segment replaced since it was judged is
    # not ours to remove.
    return (ReapedSegment(base_name(seg.name), reason, True), seg.inode) \
        if seg.retire_and_unlink() \
        else None


# The name of a queue message's out-of-line segment (docs/format.md section 11.5).
_OUT_OF_LINE = re.compile(r"(.+)\.m[0-9a-f]{16}\Z")


def _is_data_segment(seg):
    """A kind-1 'B' array without a lock named '<q>.m<16 hex>': the data segment of an
    out-of-line queue message (section 11.5)."""
    h = seg.header
    return (_OUT_OF_LINE.match(seg.name) is not None and h.kind == H.KIND_ARRAY
            and h.typecode == "B" and h.lock_kind == H.LOCK_NONE)


def _orphan_out_of_line(seg):
    """A persistent data segment whose queue <q> is gone: a producer died before
    committing it, or its queue went away (section 11.5)."""
    if not _is_data_segment(seg) or seg.header.lifetime_code != H.LIFETIME_PERSISTENT:
        return False
    return not os.path.lexists(path_of(_OUT_OF_LINE.match(seg.name).group(1)))


# How long the reaper tries to lock a queue's mutex to read its records (section 8: its
# open timeout; the default open timeout of attach).
QUEUE_LOCK_TIMEOUT = 5.0


def _unreferenced_reusable(seg):
    """The reason to remove a reusable (last-closer) data segment, or None to keep it
    (section 8, reaping): nobody holds it (the exclusive flock is taken and kept), and
    either its queue is gone or no record of the queue in state 1 or 2 references it,
    read with the queue's mutex held. The exclusive flock is never kept while waiting
    for the mutex: a consumer holding that mutex may be polling its shared flock (section
    8 step 3), so between tries both are released; a queue whose mutex stays busy past
    QUEUE_LOCK_TIMEOUT leaves the segment for a later run."""
    queue_name = _OUT_OF_LINE.match(seg.name).group(1)
    gone = (f"out-of-line message of queue {base_name(queue_name)!r}, which does not exist")
    queue = None
    if os.path.lexists(path_of(queue_name)):
        try:
            queue = S.open_segment(queue_name, timeout=0.2, join=False)
            h = queue.header
            if h.kind != H.KIND_QUEUE or h.lock_kind != H.LOCK_EMBEDDED:
                return None
            mutex = RobustMutex(queue.mm, h.lock_type, h.lock_size, queue_name)
        except (SharedBridgeError, OSError):
            return None
    deadline = time.monotonic() + QUEUE_LOCK_TIMEOUT
    while True:
        if not seg.try_lock_exclusive():
            return None
        if queue is None:
            return gone
        try:
            locked = mutex.try_lock()
        except (SharedBridgeError, OSError, RuntimeError):
            return None
        if locked:
            try:
                names = L.referenced_names(queue.mm, h.data_offset,
                                           H.queue_capacity(h.element_count), queue_name)
            except SharedBridgeError:
                return None
            finally:
                unlock_mutex(mutex.m)
            if seg.name in names:
                return None
            return (f"out-of-line message of queue {base_name(queue_name)!r} that no record "
                    "references, and nobody holds")
        seg.unlock()
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.001)


def _judge_initializing(name, dry_run):
    """A segment still initializing (state 0) that can never become ready: its creator died
    between shm_open and publishing it (docs/format.md section 8). Only the bytes a creator
    writes first are read (magic, state, creator_pid, creator_start_time); nothing is written
    to it (an empty object has no state word). None for anything else."""
    try:
        validate_key(name)
        st = os.lstat(path_of(name))
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return None
        fd = open_object(name, os.O_RDONLY, 0)
    except (OSError, ValueError, SharedBridgeError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return None
        creator = _initializing_creator(fd, st.st_size)
        if creator is None or time.time_ns() - st.st_mtime_ns < INITIALIZING_GRACE_NS:
            return None
        pid, start = creator
        if pid:
            if process_is_running(pid, start):
                return None
            reason = f"initializing: creator pid {pid} (started {start}) is gone"
        else:
            if _opened_by_any(st, fd, name):
                return None
            reason = "initializing: no creator recorded and no process has it open"
        if dry_run:
            return ReapedSegment(base_name(name), reason, False), st.st_ino
        # Still unpublished and recording the same creator (the name is re-checked next).
        if _initializing_creator(fd, os.fstat(fd).st_size) != creator:
            return None
        return (ReapedSegment(base_name(name), reason, True), st.st_ino) \
            if S.unlink_if_same(name, st) \
            else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _initializing_creator(fd, size):
    """(creator_pid, creator_start_time) of a state-0 object: (0, 0) when nothing is
    recorded (size 0, or a sized object whose magic and state are still zero); None when
    it is not an initializing SharedBridge segment."""
    if size == 0:
        return 0, 0
    if size < H.FIXED_SIZE:
        return None
    head = os.pread(fd, H.FIXED_SIZE, 0)
    if len(head) != H.FIXED_SIZE or struct.unpack_from("<I", head, H.STATE_OFFSET)[0] != 0:
        return None
    magic = head[:len(H.MAGIC)]
    if magic == bytes(len(H.MAGIC)):
        return 0, 0
    if magic != H.MAGIC:
        return None
    return struct.unpack_from("<IQ", head, CREATOR_OFFSET)


CREATOR_OFFSET = 0x044       # creator_pid, then creator_start_time (docs/format.md 3.1)


def _opened_by_any(st, own_fd, own_name):
    """True when some process (where /proc lets us look) has the object open or mapped:
    /proc/PID/fd and /proc/PID/maps, same device and inode. The reaper's own descriptor
    does not count."""
    if processes_mapping_any({st.st_ino}):
        return True
    if dir_of(own_name) is not None and processes_mapping_any({st.st_ino}, dir_of(own_name)):
        return True
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            if pid == me and fd == str(own_fd):
                continue
            try:
                other = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if other.st_ino == st.st_ino and other.st_dev == st.st_dev:
                return True
    return False
