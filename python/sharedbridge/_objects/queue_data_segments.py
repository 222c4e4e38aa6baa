"""The data segments of a queue's out-of-line messages (docs/format.md section 11.5):
the producer's side (a single-use segment, or a reusable one from the pool of this
queue object in this process) and the consumer's side (opening one, and the hold that
keeps a reusable one while its bytes are used).

A single-use (``persistent``) segment is made for one message; its consumer removes the
name once it has mapped it. A reusable (``last-closer``, format version 6) one stays with
its producer after the commit, holding section 8's shared flock, in a pool of at most
MAX_POOLED per queue object; a later message of the same length is written into it once
the three checks of 11.5 "Reuse" hold, which saves faulting in fresh tmpfs pages for
every message. Its consumer maps it with a shared flock of its own, taken before the
record leaves state 1, and keeps it until the mapping is gone: the hold is tied to the
mapping object (every memoryview and numpy array of the bytes keeps it alive), so the
user's array stays valid and unchanged while later messages are put.

Fork: flock locks belong to the open file description, which a fork child shares with
its parent. A child takes no part in its parent's pool or holds: it closes the inherited
descriptors without any flock call (LOCK_UN would drop the parent's lock).
"""

import fcntl
import os
import struct
import threading
import weakref

from .._format import header as H
from .._format import queue_layout as L
from .._format.header_spec import new_header
from .._format.segment_name import base_name
from .._platform import attach_checks, exit_cleanup, last_closer
from .._platform.process_info import process_start_time
from .._platform.segment import create, same_object, unlink_if_same
from ..errors import CorruptDataError, SharedBridgeError

# How many reusable data segments one queue object keeps in one process (11.5: the
# producer's choice), and how many bytes of them at most (the newest one is always kept).
# A producer that runs ahead of its consumer has about as many segments in flight as
# messages, and each one it cannot reuse costs fresh tmpfs pages (about 1 us per 4 KiB
# here): with 4, a stream of 1 MiB messages made a new segment for one message in ten;
# the byte bound keeps a stream of huge messages from pinning more memory than this.
MAX_POOLED = 16
MAX_POOLED_BYTES = 128 * 1024 * 1024
# How long a consumer polls the shared flock of a data segment (a closer or reaper holds
# the exclusive one only for an instant, section 8 step 3).
OPEN_TIMEOUT = 1.0

_RETIRED = struct.pack("<I", H.STATE_RETIRED)
_STATE = struct.Struct("<I")


def _bytes_view(part):
    m = memoryview(part)
    return m if m.format == "B" and m.ndim == 1 else m.cast("B")


def _fill(mm, base, data_length, parts, offsets, zero_gaps):
    """Write the message's parts at their offsets (the bytes as they would be inline);
    *zero_gaps*: also clear what lies between them (a reused segment holds old bytes)."""
    mv = memoryview(mm).cast("B")
    try:
        p = base
        for part, off in zip(parts, offsets):
            start = base + off
            if zero_gaps and start > p:
                mv[p:start] = bytes(start - p)
            if type(part) is not bytes:
                part = _bytes_view(part)
            mv[start:start + len(part)] = part
            p = start + len(part)
        if zero_gaps and p < base + data_length:
            mv[p:base + data_length] = bytes(base + data_length - p)
    finally:
        mv.release()


def _reference(seg):
    raw = base_name(seg.name).encode("ascii")     # the name, not the directory (1.3)
    ref = L.REFERENCE.pack(seg.header.created_unix_ns, seg.header.creator_pid, len(raw)) + raw
    return ref + bytes(L.align8(len(ref)) - len(ref))


def _new_segment(queue_name, data_length, lifetime):
    header = new_header(H.KIND_ARRAY, creator_start_time=process_start_time(),
                        lifetime=lifetime, typecode="B", element_size=1,
                        element_count=data_length)
    while True:
        try:
            return create(f"{queue_name}.m{os.urandom(8).hex()}", header, lambda mm: None,
                          detached=True)
        except FileExistsError:
            continue


# ---- producer: single-use -------------------------------------------------------------

class SingleUse:
    """A persistent data segment made for one message (``ref``: the record's reference)."""

    __slots__ = ("seg", "ref")

    def __init__(self, queue_name, data_length, parts, offsets):
        self.seg = seg = _new_segment(queue_name, data_length, H.LIFETIME_PERSISTENT)
        try:
            _fill(seg.mm, seg.header.data_offset, data_length, parts, offsets, False)
        except BaseException:
            self.failed()
            raise
        self.ref = _reference(seg)

    def committed(self, end):
        """The record is in the ring: the segment belongs to the queue now."""

    def failed(self):
        """The put failed: remove the segment (if it is still the one made here)."""
        unlink_if_same(self.seg.name, self.seg.ident)


# ---- producer: the pool of reusable segments -------------------------------------------

class Reusable:
    """A last-closer data segment of this process's pool, in use for one put: ``ref`` is
    the record's reference (the same for every message it carries); ``end`` the end
    position (p + size) of the last record that referenced it (0: none yet)."""

    __slots__ = ("pool", "seg", "ref", "end")

    def __init__(self, pool, seg):
        self.pool = pool
        self.seg = seg
        self.ref = _reference(seg)
        self.end = 0

    def committed(self, end):
        self.end = end
        self.pool._give_back(self)

    def failed(self):
        # Not referenced by the failed record; the last one that referenced it (if any)
        # is still end: back to the pool, reusable by the next put.
        self.pool._give_back(self)


def _over_bounds(entries):
    """Remove from *entries* (oldest first) and return the oldest ones beyond MAX_POOLED
    entries or MAX_POOLED_BYTES bytes; the newest entry always stays."""
    total = sum(e.seg.header.element_count for e in entries)
    n = 0
    while len(entries) - n > 1 and (len(entries) - n > MAX_POOLED or total > MAX_POOLED_BYTES):
        total -= entries[n].seg.header.element_count
        n += 1
    evicted = entries[:n]
    del entries[:n]
    return evicted


class Pool:
    """The reusable data segments of one queue object in this process (section 11.5).

    *words* is the queue's control block as ctypes u64 words (QueueRing._u64): head is
    read there without the queue's mutex, which is safe because it only grows (a stale
    value only delays a reuse). The pool never refers to the Queue object, whose
    finalizer releases it."""

    def __init__(self, queue_name, words):
        self._name = queue_name
        self._words = words
        self._entries = []          # Reusable, oldest first
        self._lock = threading.Lock()
        self._pid = os.getpid()
        _pools.add(self)

    def _head(self):
        return self._words[L.Q_HEAD]

    def data_segment(self, data_length, parts, offsets):
        """A Reusable holding the message: a pooled one that may be reused now, else a
        new one. Its committed(end) or failed() gives it back to the pool."""
        entry = self._reusable(data_length)
        if entry is not None:
            try:
                _fill(entry.seg.mm, entry.seg.header.data_offset, data_length, parts,
                      offsets, True)
            except BaseException:
                self._give_back(entry)
                raise
            return entry
        entry = Reusable(self, _new_segment(self._name, data_length, H.LIFETIME_LAST_CLOSER))
        try:
            _fill(entry.seg.mm, entry.seg.header.data_offset, data_length, parts, offsets,
                  False)
        except BaseException:
            self._leave(entry)
            raise
        return entry

    def _reusable(self, data_length):
        """Take out of the pool the oldest entry of *data_length* that passes the checks
        of 11.5 "Reuse", in their order; entries found dead are left."""
        dead = []
        found = None
        with self._lock:
            self._forget_if_child()
            head = None
            for entry in self._entries:
                if entry.seg.header.element_count != data_length:
                    continue
                if head is None:
                    head = self._head()
                if head < entry.end:                    # (1) a record may still use it
                    continue
                verdict = _exclusive_check(entry.seg)   # (2) and (3)
                if verdict is None:
                    dead.append(entry)
                elif verdict:
                    found = entry
                    break
            for entry in dead:
                self._entries.remove(entry)
            if found is not None:
                self._entries.remove(found)
        for entry in dead:
            entry.seg.holder.close()        # its name is gone: leave (nothing to unlink)
        return found

    def _give_back(self, entry):
        # Also a fork child's first entry: its multiprocessing bootstrap cleared the
        # registry of what to release at its end.
        exit_cleanup.at_end(release_all)
        with self._lock:
            self._forget_if_child()
            if entry.seg.holder.pid != os.getpid():
                return
            self._entries.append(entry)
            evicted = _over_bounds(self._entries)
        for old in evicted:
            self._leave(old)

    def _leave(self, entry):
        """Section 8 step 2 for a pooled segment, except that one a record may still
        reference (head < end) is only released: its consumer takes its own hold before
        the record leaves state 1 and will be the last to leave (11.5)."""
        holder = entry.seg.holder
        fd = holder.take()
        if fd < 0:
            return
        try:
            if self._head() >= entry.end and last_closer.try_exclusive(fd):
                seg = entry.seg
                if same_object(seg.name, seg.ident):
                    os.pwrite(fd, _RETIRED, H.STATE_OFFSET)
                    unlink_if_same(seg.name, seg.ident)
        except (OSError, ValueError):
            pass
        finally:
            last_closer.close_unlocked(fd)

    def release(self):
        """Leave every pooled segment (the queue object's close(), collection, the
        process's end). Never waits: it may run from a signal handler."""
        entries, self._entries = self._entries, []
        if self._pid != os.getpid():
            for entry in entries:
                entry.seg.holder.forget_in_child()
            return
        for entry in entries:
            self._leave(entry)

    def _forget_if_child(self):
        if self._pid != os.getpid():
            for entry in self._entries:
                entry.seg.holder.forget_in_child()
            self._entries = []
            self._pid = os.getpid()

    def names(self):
        """The names of the pooled segments (tests, tools)."""
        return [e.seg.name for e in self._entries]


def _exclusive_check(seg):
    """Checks (2) and (3) of 11.5 "Reuse" on a pooled segment, the caller's shared lock
    converted back afterwards: True (nobody else holds it, the name is still it, state 1),
    False (another process holds it), None (its name was removed: leave it)."""
    fd = seg.holder.fd
    if not last_closer.try_exclusive(fd):
        # On Linux a failed conversion has dropped the shared lock: take it again (only
        # a closer or reaper holds the exclusive lock, for an instant).
        fcntl.flock(fd, fcntl.LOCK_SH)
        return False
    try:
        alive = (_STATE.unpack_from(seg.mm, H.STATE_OFFSET)[0] == H.STATE_READY
                 and same_object(seg.name, seg.ident))
    finally:
        fcntl.flock(fd, fcntl.LOCK_SH)
    return True if alive else None


_pools = weakref.WeakSet()


# ---- consumer ----------------------------------------------------------------------------

class _Hold:
    """A consumer's shared flock on a reusable data segment, kept until its mapping is
    collected (weakref.finalize on the mapping: this object never references it)."""

    __slots__ = ("fds", "pid", "name", "ident", "__weakref__")

    def __init__(self, fd, name, ident):
        self.fds = [fd]
        self.pid = os.getpid()
        self.name = name
        self.ident = ident
        _holds.add(self)

    def leave(self):
        """Section 8 step 2: convert to exclusive without waiting; the last one retires
        the segment (state = 2 through the descriptor: the mapping may be gone) and
        removes its name if it is still this object. A no-op in a fork child."""
        try:
            fd = self.fds.pop()
        except IndexError:
            return
        _holds.discard(self)
        if self.pid != os.getpid():
            os.close(fd)
            return
        try:
            if last_closer.try_exclusive(fd) and same_object(self.name, self.ident):
                os.pwrite(fd, _RETIRED, H.STATE_OFFSET)
                unlink_if_same(self.name, self.ident)
        except OSError:
            pass
        finally:
            last_closer.close_unlocked(fd)

    def forget_in_child(self):
        try:
            fd = self.fds.pop()
        except IndexError:
            return
        os.close(fd)


_holds = set()


def open_data_segment(queue_name, name, data_length, creator_pid, created_unix_ns):
    """Open and map the data segment *name* of a record (11.5, consumer), checked against
    its reference; a reusable one with its shared flock held until the returned view's
    mapping is collected. Returns (memoryview of the data, ident of a single-use one
    whose name the caller removes once the record has left state 1, else None).
    CorruptDataError when it is missing or does not match."""
    def corrupt(what):
        return CorruptDataError(
            f"the queue {queue_name!r} holds a message whose out-of-line segment {name!r} "
            f"{what}: it was removed or damaged by another program", queue_name)

    try:
        fd = attach_checks.open_existing(name)
    except SharedBridgeError as e:
        raise corrupt(f"cannot be opened ({e})") from e
    try:
        try:
            attach_checks.check_object(name, fd, False)
            h, mm, ident = attach_checks.map_validated(name, fd, OPEN_TIMEOUT)
        except SharedBridgeError as e:
            raise corrupt(f"cannot be opened ({e})") from e
        if (h.kind != H.KIND_ARRAY or h.typecode != "B" or h.element_count != data_length
                or h.creator_pid != creator_pid or h.created_unix_ns != created_unix_ns
                or h.lock_kind):
            raise corrupt(f"does not match its reference (kind {h.kind}, typecode "
                          f"{h.typecode!r}, {h.element_count} elements for {data_length} "
                          f"bytes, creator {h.creator_pid})")
        base = h.data_offset
        view = memoryview(mm).cast("B")[base:base + data_length]
        if h.lifetime_code == H.LIFETIME_PERSISTENT:
            return view, ident
        if h.lifetime_code != H.LIFETIME_LAST_CLOSER:
            raise corrupt(f"has lifetime {h.lifetime_code} (1 or 2 expected)")
        try:
            held = last_closer.take_shared(name, fd, ident, mm, OPEN_TIMEOUT)
        except SharedBridgeError as e:
            raise corrupt(f"cannot be held ({e})") from e
        if not held:
            raise corrupt("was removed by its last closer")
        hold = _Hold(fd, name, ident)
        fd = -1
        weakref.finalize(mm, hold.leave)
        exit_cleanup.at_end(release_all)
        return view, None
    finally:
        if fd >= 0:
            os.close(fd)


# ---- the process's end and fork ----------------------------------------------------------

def release_all():
    """Leave every hold and pooled segment of this process (its end, exit_cleanup)."""
    for hold in list(_holds):
        hold.leave()
    for pool in list(_pools):
        pool.release()


def _forget_in_child():
    for hold in list(_holds):
        hold.forget_in_child()
    _holds.clear()
    for pool in list(_pools):
        pool._lock = threading.Lock()       # a thread of the parent may have held it
        pool._forget_if_child()


os.register_at_fork(after_in_child=_forget_in_child)
