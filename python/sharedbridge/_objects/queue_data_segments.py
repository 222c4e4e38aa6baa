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

import ctypes
import fcntl
import os
import struct
import threading
import weakref

from .._format import header as H
from .._format import queue_layout as L
from .._format.header_spec import new_header
from .._format.segment_name import base_name, path_of
from .._platform import attach_checks, exit_cleanup, last_closer
from .._platform.lock_core import accel
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
        if len(parts) == 1 and offsets[0] == 0:
            # One part from the start (an array, bytes): no gap to clear unless it is
            # shorter than the data, which never happens for such a message.
            part = parts[0]
            if type(part) is not bytes:
                part = _bytes_view(part)
            k = len(part)
            mv[base:base + k] = part
            if zero_gaps and k < data_length:
                mv[base + k:base + data_length] = bytes(data_length - k)
            return
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
            seg = create(f"{queue_name}.m{os.urandom(8).hex()}", header, lambda mm: None,
                         detached=True)
            break
        except FileExistsError:
            continue
    if _populate is not None:
        # The message's bytes are written next: their pages mapped in one call (create
        # reserved them) rather than one fault per page.
        _populate(seg.mm)
    return seg


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
    position (p + size) of the last record that referenced it (0: none yet). ``length``,
    ``base``, ``fd`` and ``stat_path`` are the private copies of what the pool uses for
    every reuse (its data_length, data offset, the holder's descriptor, the lstat path of
    its name)."""

    __slots__ = ("pool", "seg", "ref", "end", "length", "base", "stat_path", "check_args")

    def __init__(self, pool, seg):
        self.pool = pool
        self.seg = seg
        self.ref = _reference(seg)
        self.end = 0
        self.length = seg.header.element_count
        self.base = seg.header.data_offset
        self.stat_path = path_of(seg.name)
        # the arguments of the compiled reuse check (_exclusive_check) but the descriptor
        self.check_args = (os.fsencode(self.stat_path), seg.ident[0], seg.ident[1], seg.mm,
                           H.STATE_OFFSET, H.STATE_READY)

    def committed(self, end):
        self.end = end
        self.pool._give_back(self)

    def failed(self):
        # Not referenced by the failed record; the last one that referenced it (if any)
        # is still end: back to the pool, reusable by the next put.
        self.pool._give_back(self)


def _over_bounds(entries, total=None):
    """Remove from *entries* (oldest first) and return the oldest ones beyond MAX_POOLED
    entries or MAX_POOLED_BYTES bytes (*total*: their bytes, if the caller knows them);
    the newest entry always stays."""
    if total is None:
        total = sum(e.seg.header.element_count for e in entries)
    if len(entries) <= MAX_POOLED and total <= MAX_POOLED_BYTES:
        return []
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
        self._bytes = 0             # their data bytes
        self._lock = threading.Lock()
        self._pid = _PID[0]
        self._at_end_pid = 0        # the process in which release_all was registered
        _pools.add(self)

    def _head(self):
        return self._words[L.Q_HEAD]

    def data_segment(self, data_length, parts, offsets):
        """A Reusable holding the message: a pooled one that may be reused now, else a
        new one. Its committed(end) or failed() gives it back to the pool."""
        entry = self._reusable(data_length)
        if entry is not None:
            try:
                _fill(entry.seg.mm, entry.base, data_length, parts, offsets, True)
            except BaseException:
                self._give_back(entry)
                raise
            return entry
        entry = Reusable(self, _new_segment(self._name, data_length, H.LIFETIME_LAST_CLOSER))
        try:
            _fill(entry.seg.mm, entry.base, data_length, parts, offsets, False)
        except BaseException:
            self._leave(entry)
            raise
        return entry

    def _reusable(self, data_length):
        """Take out of the pool an entry of *data_length* that passes the checks of 11.5
        "Reuse", in their order; entries found dead are left.

        Which one first: the newest but one, then the older ones newest first, the
        newest last. A consumer that keeps up has freed the segment of the message
        before last, whose bytes are still in the processor's caches (rotating through
        all the pooled ones, oldest first, made the 1 MiB copy about half as slow again
        here). The newest is tried last because its consumer most likely still uses it,
        and a check of a held segment is not free: the failed conversion drops this
        process's shared lock for an instant, in which the consumer's own leave
        (section 8 step 2) finds itself the last and removes the segment."""
        dead = None
        found = None
        with self._lock:
            if self._pid != _PID[0]:
                self._forget_if_child()
            entries = self._entries
            n = len(entries)
            if not n:
                return None
            head = None
            # Indexes n-2, n-3, ..., 0, then n-1.
            for i in range(n - 2, -2, -1):
                entry = entries[i]
                if entry.length != data_length:
                    continue
                if head is None:
                    head = self._words[L.Q_HEAD]
                if head < entry.end:                    # (1) a record may still use it
                    continue
                verdict = _exclusive_check(entry)       # (2) and (3)
                if verdict is None:
                    if dead is None:
                        dead = []
                    dead.append(entry)
                elif verdict:
                    found = entry
                    break
            if dead is not None:
                for entry in dead:
                    entries.remove(entry)
                    self._bytes -= entry.length
            if found is not None:
                entries.remove(found)
                self._bytes -= found.length
        if dead is not None:
            for entry in dead:
                entry.seg.holder.close()    # its name is gone: leave (nothing to unlink)
        return found

    def _give_back(self, entry):
        pid = _PID[0]
        if self._at_end_pid != pid:
            # Also a fork child's first entry: its multiprocessing bootstrap cleared the
            # registry of what to release at its end.
            exit_cleanup.at_end(release_all)
            self._at_end_pid = pid
        with self._lock:
            if self._pid != pid:
                self._forget_if_child()
            if entry.seg.holder.pid != pid:
                return
            entries = self._entries
            entries.append(entry)
            self._bytes += entry.length
            if len(entries) <= MAX_POOLED and self._bytes <= MAX_POOLED_BYTES:
                return
            evicted = _over_bounds(entries, self._bytes)
            for old in evicted:
                self._bytes -= old.length
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
        self._bytes = 0
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
            self._bytes = 0
            self._pid = os.getpid()

    def names(self):
        """The names of the pooled segments (tests, tools)."""
        return [e.seg.name for e in self._entries]


def _exclusive_check(entry):
    """Checks (2) and (3) of 11.5 "Reuse" on a pooled segment (a Reusable), the caller's
    shared lock converted back afterwards: True (nobody else holds it, the name is still
    it, state 1), False (another process holds it), None (its name was removed: leave
    it)."""
    seg = entry.seg
    fd = seg.holder.fd
    if _reuse_check is not None:        # the same steps in one compiled call
        return _reuse_check(fd, *entry.check_args)
    try:
        _flock(fd, _LOCK_EX_NB)
    except BlockingIOError:
        # On Linux a failed conversion has dropped the shared lock: take it again (only
        # a closer or reaper holds the exclusive lock, for an instant).
        _flock(fd, _LOCK_SH)
        return False
    try:
        alive = _STATE.unpack_from(seg.mm, H.STATE_OFFSET)[0] == H.STATE_READY
        if alive:
            # section 8's identity check (exit_cleanup.same_object), on the path kept
            try:
                st = _lstat(entry.stat_path, follow_symlinks=False)
                alive = (st.st_dev, st.st_ino) == seg.ident
            except (OSError, ValueError):
                alive = False
    finally:
        _flock(fd, _LOCK_SH)
    return True if alive else None


_reuse_check = accel.reuse_check if accel is not None else None
_take_check = accel.take_check if accel is not None else None
_leave_try = accel.leave_try if accel is not None else None
_populate = accel.populate if accel is not None else None
_flock = fcntl.flock
_lstat = os.stat
_LOCK_EX_NB = fcntl.LOCK_EX | fcntl.LOCK_NB
_LOCK_SH = fcntl.LOCK_SH

# This process's id, kept up to date by the fork hook at the end of this module (so the
# per-message paths need no getpid system call).
_PID = [os.getpid()]


_pools = weakref.WeakSet()


# ---- consumer ----------------------------------------------------------------------------

class _Hold:
    """A consumer's shared flock on a reusable data segment opened for one message (not
    through a MappedCache), kept until its mapping is collected (weakref.finalize on the
    mapping: this object never references it)."""

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
        _leave_fd(fd, self.name, self.ident)
        os.close(fd)

    def forget_in_child(self):
        try:
            fd = self.fds.pop()
        except IndexError:
            return
        os.close(fd)


_holds = set()


def _leave_fd(fd, name, ident):
    """Section 8 step 2 on *fd*, which holds the shared lock: the exclusive lock without
    waiting; if it is granted this process is the last to leave: it retires the segment
    and removes its name (if it is still this object). The lock is released either way;
    *fd* stays open. True when another process still holds the segment (and *fd* is
    fine): only then may a consumer keep it mapped for a later message."""
    granted = None
    if _leave_try is not None:          # the first step in one compiled call
        try:
            refused = _leave_try(fd)
        except OSError:
            refused = None
        if refused:
            return True                 # another process holds it; lock released
        if refused is None:             # as an error of try_exclusive below
            try:
                last_closer.unlock(fd)
            except OSError:
                pass
            return False
        granted = True
    others = False
    try:
        if granted or (granted is None and last_closer.try_exclusive(fd)):
            if same_object(name, ident):
                os.pwrite(fd, _RETIRED, H.STATE_OFFSET)
                unlink_if_same(name, ident)
        else:
            others = True
    except OSError:
        pass
    finally:
        try:
            last_closer.unlock(fd)
        except OSError:
            others = False
    return others


# How many reusable data segments one queue object keeps mapped in one consumer process,
# and how many bytes of them: as the producer's pool (a producer reuses its segments in
# turn, so its consumer meets the same ones again).
MAX_MAPPED = MAX_POOLED
MAX_MAPPED_BYTES = MAX_POOLED_BYTES


class _Mapped:
    """One reusable data segment a consumer keeps mapped (MappedCache): its descriptor
    (in ``fds``, a list of at most one, so that it is handed out once), its mapping, the
    private copy of what was validated when it was opened (11.5: the reference's words,
    the object's size), and whether a got message uses it now (``held``: the descriptor
    then has the shared flock)."""

    __slots__ = ("name", "ident", "fds", "mm", "base", "length", "creator_pid", "created",
                 "size", "held", "pid", "check_args")

    def __init__(self, name, ident, fd, mm, h, size):
        self.name = name
        self.ident = ident
        self.fds = [fd]
        self.mm = mm
        self.base = h.data_offset
        self.length = h.element_count
        self.creator_pid = h.creator_pid
        self.created = h.created_unix_ns
        self.size = size
        self.held = True
        self.pid = os.getpid()
        # the arguments of the compiled take_check (MappedCache.open) but the descriptor
        self.check_args = (os.fsencode(path_of(name)), ident[0], ident[1], mm,
                           H.STATE_OFFSET, H.STATE_RETIRED)

    def close(self):
        """Close the descriptor (it holds no lock: the caller made sure) and drop the
        mapping (unmapped once no view of it is left)."""
        try:
            fd = self.fds.pop()
        except IndexError:
            fd = -1
        self.mm = None
        self.check_args = None
        if fd >= 0:
            os.close(fd)


class _HoldEnd:
    """Kept in the __dict__ of the object a got message's bytes are a view of: when the
    last view (memoryview, numpy array) is gone, this process's use of the segment for
    that message ends (MappedCache._end)."""

    __slots__ = ("cache", "entry")

    def __init__(self, cache, entry):
        self.cache = cache
        self.entry = entry

    def __del__(self):
        try:
            self.cache._end(self.entry)
        except Exception:       # interpreter shutdown: the process leaves with its end
            pass


class MappedCache:
    """The reusable data segments (section 11.5) one queue object keeps mapped in a
    consumer process, by name: a producer puts the same few segments in the ring again
    and again, and opening one afresh for every message (open, fstat, two preads, mmap,
    munmap, and the page faults of the fresh mapping on every first touch of a page) cost
    more than the copy of the data itself.

    Between messages an entry keeps its descriptor and mapping but no lock, so that its
    producer may reuse it (11.5 "Reuse" (2)), nobody counts it as holding the segment and
    a reaper may remove it. Each message that references it again is opened as 11.5 and
    section 8 step 3 say, against the private copy kept from the first open: the
    reference's words and the object's size unchanged, the shared flock taken, then the
    name still this object (device and inode) and the state not retired; an entry that
    fails a check is closed and the name opened afresh (a name that now refers to another
    object is never served from the cache). Its hold ends when the last view of that
    message's bytes is gone, as section 8 step 2 says (the last to leave retires and
    removes the name; else the lock is only released and the entry stays).

    Bounded like the producer's pool (MAX_MAPPED entries, MAX_MAPPED_BYTES); left at the
    same endings (the queue object's close(), its collection, the process's end), and
    forgotten in a fork child (which never calls flock on the parent's descriptors). It
    never removes a name it is not the last to leave."""

    def __init__(self):
        self._entries = {}          # name -> _Mapped, least recently used first
        self._held = set()          # entries a got message uses now (cached or not)
        self._lock = threading.Lock()
        self._ended = []            # (entry, fd, keep) of holds that ended meanwhile
        self._pid = os.getpid()
        _caches.add(self)

    def open(self, name, data_length, creator_pid, created_unix_ns):
        """A view of the message's data in the cached mapping of *name*, held; None when
        it is not cached (or no longer valid: then it is closed)."""
        if self._pid != _PID[0]:
            self._forget_in_child()
        self._lock.acquire()
        try:
            e = self._entries.pop(name, None)
            if e is not None:
                self._entries[name] = e         # the most recently used last
                if e.held or not e.fds:
                    # Held already (a conforming producer does not reuse it then) or its
                    # hold is ending now: a description of its own, opened afresh.
                    return None
                e.held = True
                self._held.add(e)
        finally:
            self._lock.release()
            if self._ended:
                self._drain()
        if e is None:
            return None
        ok = False
        try:
            fd = e.fds[0]
            ok = (e.length == data_length and e.creator_pid == creator_pid
                  and e.created == created_unix_ns and attach_checks._size_of(fd) == e.size)
            if ok:
                # take_shared's steps, the first try compiled (None: not granted at once)
                held = None if _take_check is None else _take_check(fd, *e.check_args)
                if held is None:
                    held = last_closer.take_shared(name, fd, e.ident, e.mm, OPEN_TIMEOUT)
                ok = held
        except (OSError, SharedBridgeError):
            pass
        finally:
            if not ok:
                # No lock is held (take_shared released it): close it; the caller opens
                # the name afresh, which reports what is wrong.
                self._ended.append((e, None, False))
                self._drain()
        return self._view(e) if ok else None

    def add(self, name, ident, fd, mm, h, size):
        """Keep the segment *name* just opened and held (fd holds the shared lock) and
        return the held view of its data."""
        # Also in a fork child: its multiprocessing bootstrap cleared the registry of
        # what to release at its end.
        exit_cleanup.at_end(release_all)
        e = _Mapped(name, ident, fd, mm, h, size)
        evicted = []
        self._lock.acquire()
        try:
            if self._pid != os.getpid():
                self._forget_in_child()
            old = self._entries.pop(name, None)
            if old is not None and not old.held:
                evicted.append(old)
            self._entries[name] = e
            self._held.add(e)
            self._bound(evicted)
        finally:
            self._lock.release()
            self._drain()
        for old in evicted:
            old.close()
        return self._view(e)

    def _bound(self, evicted):
        """Drop (into *evicted*, or at their hold's end) the entries whose segment was
        retired (its memory is freed once unmapped), then the least recently used beyond
        the bounds; the newest always stays. Called with the lock held."""
        entries = self._entries
        for name, e in list(entries.items()):
            if not e.held and e.mm is not None and \
                    _STATE.unpack_from(e.mm, H.STATE_OFFSET)[0] == H.STATE_RETIRED:
                del entries[name]
                evicted.append(e)
        total = sum(e.length for e in entries.values())
        while len(entries) > 1 and (len(entries) > MAX_MAPPED or total > MAX_MAPPED_BYTES):
            name = next(iter(entries))
            e = entries.pop(name)
            total -= e.length
            if not e.held:
                evicted.append(e)

    def _view(self, e):
        exporter = (ctypes.c_char * e.length).from_buffer(e.mm, e.base)
        exporter.__dict__["_sb_hold"] = _HoldEnd(self, e)
        return memoryview(exporter).cast("B")

    def _end(self, e):
        """The last view of a message's bytes is gone: section 8 step 2 on the entry's
        descriptor; it stays cached unless this process was the last (then it retired
        and removed the segment) or it was dropped meanwhile. A no-op in a fork child."""
        if e.pid != _PID[0]:
            return
        try:
            fd = e.fds.pop()
        except IndexError:
            return              # left already (the process's end)
        keep = _leave_fd(fd, e.name, e.ident)
        self._ended.append((e, fd, keep))
        self._drain()

    def _drain(self):
        """Finish the holds that ended (their lock released already): the entry is kept
        for the next message, or closed. Never waits for the lock (a hold may end in a
        garbage collection while this thread holds it): whoever holds it drains after."""
        ended = self._ended
        while ended:
            if not self._lock.acquire(False):
                return
            try:
                while ended:
                    e, fd, keep = ended.pop()
                    e.held = False
                    self._held.discard(e)
                    cached = self._entries.get(e.name) is e
                    if keep and cached and fd is not None and e.pid == os.getpid():
                        e.fds.append(fd)
                        continue
                    if cached:
                        del self._entries[e.name]
                    if fd is not None:
                        e.fds.append(fd)
                    e.close()
            finally:
                self._lock.release()

    def release(self):
        """Close every entry not in use (the queue object's close() and collection, the
        process's end); one in use is closed when its hold ends. Never waits: it may run
        from a signal handler."""
        locked = self._lock.acquire(False)
        try:
            entries, self._entries = self._entries, {}
        finally:
            if locked:
                self._lock.release()
        if self._pid != os.getpid():
            self._forget_in_child(entries)
            return
        for e in entries.values():
            if not e.held:
                e.close()
        if locked:
            self._drain()

    def leave_held(self):
        """The process's end: leave the segments got messages still use (section 8 step
        2: the last one retires and removes the name)."""
        if self._pid != os.getpid():
            return
        for e in list(self._held):
            try:
                fd = e.fds.pop()
            except IndexError:
                continue
            _leave_fd(fd, e.name, e.ident)
            os.close(fd)

    def _forget_in_child(self, entries=None):
        """In a fork child: close the inherited descriptors without any flock call (they
        are the parent's descriptions)."""
        if entries is None:
            entries, self._entries = self._entries, {}
        held, self._held = self._held, set()
        self._ended = []
        for e in list(entries.values()) + list(held):
            try:
                fd = e.fds.pop()
            except IndexError:
                continue
            os.close(fd)
        self._pid = os.getpid()

    def names(self):
        """The names of the mapped segments (tests, tools)."""
        return list(self._entries)


_caches = weakref.WeakSet()


def open_data_segment(queue_name, name, data_length, creator_pid, created_unix_ns,
                      cache=None):
    """Open and map the data segment *name* of a record (11.5, consumer), checked against
    its reference; a reusable one with its shared flock held until the returned view's
    bytes are no longer used (kept mapped in *cache*, a MappedCache, when given). Returns
    (memoryview of the data, ident of a single-use one whose name the caller removes once
    the record has left state 1, else None). CorruptDataError when it is missing or does
    not match."""
    if cache is not None:
        view = cache.open(name, data_length, creator_pid, created_unix_ns)
        if view is not None:
            return view, None

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
        if h.lifetime_code == H.LIFETIME_PERSISTENT:
            return memoryview(mm).cast("B")[base:base + data_length], ident
        if h.lifetime_code != H.LIFETIME_LAST_CLOSER:
            raise corrupt(f"has lifetime {h.lifetime_code} (1 or 2 expected)")
        size = attach_checks._size_of(fd)
        try:
            held = last_closer.take_shared(name, fd, ident, mm, OPEN_TIMEOUT)
        except SharedBridgeError as e:
            raise corrupt(f"cannot be held ({e})") from e
        if not held:
            raise corrupt("was removed by its last closer")
        if cache is not None:
            view = cache.add(name, ident, fd, mm, h, size)
            fd = -1
            return view, None
        hold = _Hold(fd, name, ident)
        fd = -1
        weakref.finalize(mm, hold.leave)
        exit_cleanup.at_end(release_all)
        return memoryview(mm).cast("B")[base:base + data_length], None
    finally:
        if fd >= 0:
            os.close(fd)


# ---- the process's end and fork ----------------------------------------------------------

def release_all():
    """Leave every hold and pooled segment of this process (its end, exit_cleanup)."""
    for hold in list(_holds):
        hold.leave()
    for cache in list(_caches):
        cache.release()
        cache.leave_held()
    for pool in list(_pools):
        pool.release()


def _forget_in_child():
    _PID[0] = os.getpid()
    for hold in list(_holds):
        hold.forget_in_child()
    _holds.clear()
    for cache in list(_caches):
        cache._lock = threading.Lock()      # a thread of the parent may have held it
        cache._forget_in_child()
    for pool in list(_pools):
        pool._lock = threading.Lock()       # a thread of the parent may have held it
        pool._forget_if_child()


os.register_at_fork(after_in_child=_forget_in_child)
