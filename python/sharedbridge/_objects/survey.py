"""What is in /dev/shm: list_segments() and inspect_segment(), the data of `sharedbridge ls`
and `sharedbridge inspect` (docs/cli.md).

Built on the ordinary attach path (``open_segment``: the header is validated there, never
parsed a second time here); an object that fails it is reported with the error's class
(``status``) and message (``reason``), never raised. Nothing here takes a lock: the lock's
state is read from the mutex words (``RobustMutex.state``), the data with a plain copy.
"""

import errno
import math
import os
import stat
import struct
import time
from dataclasses import dataclass, field, replace
from typing import Optional

from .._format import header as H
from .._format import queue_layout as QL
from .._format.segment_name import base_name, resolve_dir, validate_name
from .._format.typecodes import STRUCT
from .._platform import process_info
from .._platform.robust_mutex import FUTEX_TID_MASK, RobustMutex
from .._platform.segment import open_segment
from ..errors import (CorruptSegmentError, InvalidNameError, NotASharedBridgeSegmentError,
                      SegmentNotFoundError, SegmentNotReadyError, SegmentPermissionError,
                      SharedBridgeError, UnsupportedVersionError)
from .shared_lock import open_external_lock

SHM_DIR = "/dev/shm"

KINDS = H.KIND_NAMES
LOCK_KINDS = {H.LOCK_NONE: "none", H.LOCK_EMBEDDED: "embedded", H.LOCK_EXTERNAL: "external",
              H.LOCK_PROCESS_LOCAL: "process-local"}
STATES = {H.STATE_INITIALIZING: "initializing", H.STATE_READY: "ready",
          H.STATE_RETIRED: "retired"}
# status -> shown by list_segments() without include_foreign
SHARED_BRIDGE_STATUSES = ("ok", "initializing", "corrupt", "unsupported")

# typecode -> struct format of one item (little-endian, the format's sizes)
_ITEM = {"b": "b", "B": "B", "h": "h", "H": "H", "i": "i", "I": "I", "l": "q", "L": "Q",
         "q": "q", "Q": "Q", "f": "f", "d": "d", "c": "B", "u": "I", "?": "B"}


@dataclass(frozen=True)
class SegmentInfo:
    """One object in /dev/shm as `sharedbridge ls` shows it (docs/cli.md, "ls").

    status: 'ok', 'initializing', 'corrupt', 'unsupported' (a newer format), 'foreign'
    (not a SharedBridge segment) or 'inaccessible' (another user's, or no permission);
    reason: why, when not 'ok'. The header fields are None when the header could not be
    read. lock: 'none', 'embedded', 'external' (lock_name names the lock's segment) or
    'process-local'; lock_state: 'free', 'held' (lock_holder_pid), 'owner dead',
    'not recoverable', 'corrupt', 'missing' (an external lock segment that is gone) or
    'unreadable', None without a shared lock. lifetime: 'creator', 'last-closer' or
    'persistent' (docs/format.md section 8). mapped_by: pids whose /proc/PID/maps show
    it (readable ones only). header: the validated SegmentHeader; header_crc32,
    recovery_count, last_recovered_pid: the words of the segment's control region
    (recovery_count is this segment's own; recoveries counts the lock's); elements: the first
    elements asked of inspect_segment (numbers, bools, one-character strings for 'u',
    byte values for 'c', dicts for structures, lists for field arrays; NaN and the
    infinities as the strings "NaN", "Infinity", "-Infinity"); sync: for the
    synchronization kinds, their words decoded (docs/format.md section 10.2, read without
    the lock): always "waiters"; an event's "flag"; a semaphore's "value", "max_value" and
    "bounded"; a barrier's "parties", "count" and "state" ('filling', 'draining',
    'resetting', 'broken', or 'corrupt' for another value); None for other kinds.
    """
    name: str
    status: str
    reason: Optional[str] = None
    kind: Optional[str] = None
    typecode: Optional[str] = None
    type_name: Optional[str] = None
    length: Optional[int] = None
    bytes: Optional[int] = None
    lock: Optional[str] = None
    lock_name: Optional[str] = None
    lock_state: Optional[str] = None
    lock_holder_pid: Optional[int] = None
    recoveries: Optional[int] = None
    state: Optional[str] = None
    lifetime: Optional[str] = None
    creator_pid: Optional[int] = None
    creator_start_time: Optional[int] = None
    creator_alive: Optional[bool] = None
    created_unix_ns: Optional[int] = None
    age_seconds: Optional[float] = None
    mapped_by: tuple = ()
    header: Optional[H.SegmentHeader] = field(default=None, repr=False, compare=False)
    header_crc32: Optional[int] = None
    recovery_count: Optional[int] = None
    last_recovered_pid: Optional[int] = None
    elements: tuple = ()
    sync: Optional[dict] = None
    queue: Optional[dict] = None
    shape: Optional[tuple] = None
    ndim: Optional[int] = None

    @property
    def element_type(self):
        """What `ls` shows: the structure's name, or the typecode ('' for a lock)."""
        if self.typecode == STRUCT:
            return self.type_name or STRUCT
        return self.typecode


def list_segments(*, include_foreign=False, prefix=None, dir=None):
    """Every SharedBridge segment in /dev/shm, or in the directory backend's *dir* (else
    SHAREDBRIDGE_DIR; docs/format.md section 1.3) (with include_foreign, every object
    there), sorted by name, optionally only names starting with *prefix*. Corrupt
    segments are listed with their reason; nothing is raised for one object."""
    directory = resolve_dir(dir)
    try:
        names = sorted(os.listdir(directory or SHM_DIR))
    except FileNotFoundError:
        names = []
    found = []
    for name in names:
        if prefix is not None and not name.startswith(prefix):
            continue
        try:
            info, inode = _survey(name, 0, directory)
        except SegmentNotFoundError:
            continue        # gone meanwhile
        if include_foreign or info.status in SHARED_BRIDGE_STATUSES:
            found.append((info, inode))
    return _with_mappers(found, directory)


def inspect_segment(name, *, data=0, dir=None):
    """The SegmentInfo of *name* (in /dev/shm, or in the directory backend's *dir*, else
    SHAREDBRIDGE_DIR) with its first *data* elements decoded (a snapshot copied
    without the lock). SegmentNotFoundError if no object has that name; a corrupt or
    foreign object is described, not raised."""
    validate_name(name)
    if data < 0:
        raise ValueError(f"data must be 0 or more, not {data}")
    directory = resolve_dir(dir)
    info, inode = _survey(name, data, directory)
    return _with_mappers([(info, inode)], directory)[0]


def _with_mappers(found, directory=None):
    """Fill mapped_by with one pass over /proc, after this module's own mappings are gone."""
    mappers = process_info.processes_mapping_any({inode for _, inode in found if inode},
                                                 directory)
    return [replace(info, mapped_by=tuple(mappers.get(inode, ()))) for info, inode in found]


def _survey(name, data, directory=None):
    where = directory or SHM_DIR
    path = os.path.join(where, name)
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        raise SegmentNotFoundError(
            errno.ENOENT, f"no shared-memory segment named {name!r} in {where}: check the "
            "name (`sharedbridge ls` lists them)", name) from None
    size = st.st_size if stat.S_ISREG(st.st_mode) else None
    inode = st.st_ino if stat.S_ISREG(st.st_mode) else 0
    try:
        validate_name(name)
        key = name if directory is None else path
        seg = open_segment(key, timeout=0, join=False)     # look only: never joins a lifetime
    except SegmentNotFoundError:
        raise
    except (SharedBridgeError, OSError) as e:
        return SegmentInfo(name, _status_of(e), reason=_reason(e), bytes=size,
                           state="initializing" if isinstance(e, SegmentNotReadyError) else None
                           ), inode
    return _describe(seg, size, data), inode


def _status_of(e):
    if isinstance(e, SegmentNotReadyError):
        return "initializing"
    if isinstance(e, (NotASharedBridgeSegmentError, InvalidNameError)):
        return "foreign"
    if isinstance(e, UnsupportedVersionError):
        return "unsupported"
    if isinstance(e, CorruptSegmentError):
        return "corrupt"
    if isinstance(e, (SegmentPermissionError, PermissionError)):
        return "inaccessible"
    return "corrupt"


def _reason(e):
    return str(e) or type(e).__name__


def _describe(seg, size, data):
    h = seg.header
    lock_state, holder, recoveries = _lock_of(seg)
    alive = process_info.process_is_running(h.creator_pid, h.creator_start_time)
    return SegmentInfo(
        base_name(seg.name), "ok", kind=KINDS[h.kind], typecode=h.typecode, type_name=h.type_name,
        length=h.element_count, bytes=size, lock=LOCK_KINDS[h.lock_kind],
        lock_name=h.lock_name or None, lock_state=lock_state, lock_holder_pid=holder,
        recoveries=recoveries, state=STATES.get(seg.read_state(), "corrupt"), lifetime=h.lifetime,
        creator_pid=h.creator_pid, creator_start_time=h.creator_start_time,
        creator_alive=alive, created_unix_ns=h.created_unix_ns,
        age_seconds=round(max(0, time.time_ns() - h.created_unix_ns) / 1e9, 3), header=h,
        header_crc32=struct.unpack_from("<I", seg.mm, H.CRC_OFFSET)[0],
        recovery_count=seg.read_u64(H.RECOVERY_COUNT_OFFSET),
        last_recovered_pid=struct.unpack_from("<I", seg.mm, H.LAST_RECOVERED_PID_OFFSET)[0],
        elements=tuple(_elements(seg, data)), sync=_sync_words(seg),
        queue=_queue_words(seg) if seg.header.kind == H.KIND_QUEUE else None,
        shape=h.shape, ndim=h.ndim)


BARRIER_STATES = ("filling", "draining", "resetting", "broken")


def _sync_words(seg):
    """The words of a synchronization segment, decoded (section 10.2), or None."""
    h = seg.header
    if h.kind not in H.SYNC_KINDS:
        return None
    (waiters,) = struct.unpack_from("<I", seg.mm, h.data_offset + 4)
    w3, w4, w5 = struct.unpack_from("<3I", seg.mm, h.data_offset + 12)
    if h.kind == H.KIND_EVENT:
        return {"waiters": waiters, "flag": w3}
    if h.kind == H.KIND_SEMAPHORE:
        return {"waiters": waiters, "value": w3, "max_value": w4, "bounded": w5}
    if h.kind == H.KIND_BARRIER:
        return {"waiters": waiters, "parties": w3, "count": w5,
                "state": BARRIER_STATES[w4] if w4 < len(BARRIER_STATES) else "corrupt"}
    return {"waiters": waiters}


def _queue_words(seg):
    """The words of a queue segment (section 11.2), read without the lock (a snapshot)."""
    h = seg.header
    base = h.data_offset
    r_waiters = struct.unpack_from("<I", seg.mm, base + QL.R_BLOCK + 4)[0]
    w_waiters = struct.unpack_from("<I", seg.mm, base + QL.W_BLOCK + 4)[0]
    count, unfinished, completed, _, head, _, tail, puts, gets = QL.STATE.unpack_from(
        seg.mm, base + QL.COUNT)
    max_messages, flavour = QL.IMMUTABLE.unpack_from(seg.mm, base + QL.MAX_MESSAGES)
    # The keys and their order of the .NET CLI (SegmentJson.Queue): both CLIs print the same JSON.
    return {"count": count, "capacity": H.queue_capacity(h.element_count),
            "bytes_used": tail - head, "max_messages": max_messages, "unfinished": unfinished,
            "completed": completed != 0, "puts": puts, "gets": gets,
            "flavour": QL.FLAVOUR_NAMES[flavour] if flavour < len(QL.FLAVOUR_NAMES)
            else "corrupt", "readers_waiting": r_waiters, "writers_waiting": w_waiters}


def _lock_of(seg):
    """(lock_state, holder pid, recoveries) of the segment's shared lock, read without
    taking it."""
    h = seg.header
    if h.lock_kind == H.LOCK_EMBEDDED:
        lock_seg = seg
    elif h.lock_kind == H.LOCK_EXTERNAL:
        try:
            lock_seg = open_external_lock(seg.name, h.lock_name, 0, False, join=False)
        except SegmentNotFoundError:
            return "missing", None, None
        except (SharedBridgeError, OSError):
            return "unreadable", None, None
    else:
        return None, None, None
    lh = lock_seg.header
    mx = RobustMutex(lock_seg.mm, lh.lock_type, lh.lock_size, lock_seg.name)
    word = mx.lock_word.value
    state = mx.state()
    holder = None
    if state == "held":
        holder = process_info.process_of_thread(word & FUTEX_TID_MASK) or None
        if mx.lock_word.value != word:      # released or taken again meanwhile
            state = mx.state()
            holder = None
    recoveries = lock_seg.read_u64(H.RECOVERY_COUNT_OFFSET)
    del mx
    return state, holder, recoveries


def _elements(seg, count):
    h = seg.header
    if h.kind == H.KIND_QUEUE:
        return []           # a ring of records, not elements (sync shows its words)
    count = min(count, h.element_count)
    if count <= 0:
        return []
    raw = bytes(seg.mm[h.data_offset:h.data_offset + count * h.element_size])
    if h.typecode == STRUCT:
        return [_struct_value(raw, i * h.element_size, h.fields, -1) for i in range(count)]
    return _items(raw, 0, h.typecode, count)


def _struct_value(raw, base, fields, parent):
    value = {}
    for index, f in enumerate(fields):
        if f.parent != parent:
            continue
        if f.typecode == STRUCT:
            items = [_struct_value(raw, base + f.offset + k * f.item_size, fields, index)
                     for k in range(f.count)]
        else:
            items = _items(raw, base + f.offset, f.typecode, f.count)
        value[f.name] = items[0] if f.count == 1 else items
    return value


def _items(raw, offset, typecode, count):
    values = struct.unpack_from(f"<{count}{_ITEM[typecode]}", raw, offset)
    if typecode == "?":
        return [v != 0 for v in values]
    if typecode == "u":
        return [chr(v) if v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else v for v in values]
    if typecode in "fd":
        return [_number(v) for v in values]
    return list(values)


def _number(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v
