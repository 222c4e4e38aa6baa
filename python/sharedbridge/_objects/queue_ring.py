"""The ring of a queue segment (docs/format.md section 11): put, get, complete,
task_done, join, recovery and the head's advance, over the mapped segment.

Every word changes only under the queue's robust mutex. Getters wait on the R block,
putters on W, join() on J, each with the wait protocol of section 10.3 (the WaitCore of
sync.py, compiled or ctypes, bound to that block's four words). The positions, counts and
record headers are untrusted: they are checked on every operation that uses them, and a
violation raises CorruptSegmentError with nothing changed. The immutable words
(max_messages, flavour) and the capacity are read once at open and kept privately.

A recovered mutex (a holder died: its recovery_count moved) makes the next operation of
every process walk the records between read and tail again (section 11.3, recovery):
the walk is idempotent, so a recoverer that dies during it leaves nothing half done.
"""

import ctypes
import os
import struct
import weakref

from .._format import header as H
from .._format import queue_layout as L
from .._format.header_spec import new_header
from .._platform import robust_mutex
from .._platform.process_info import process_is_running, process_start_time
from .._platform.segment import create, open_segment, unlink_if_same
from ..errors import CorruptDataError, CorruptSegmentError, SharedBridgeError
from .sync import (VALUE_MAX, WOKEN, _Joined, _PyWaitCore, _WaitCore, _deadline, _now,
                   _slice_deadline)
from .._platform.wake import Spinner
from . import queue_fast
from . import queue_data_segments as DS

_FAST = queue_fast.FAST

_STATE, _RECORD, _PAD = L.STATE, L.RECORD, L.PAD_RECORD
# Module globals for the per-message paths (_write, _read_one): one lookup each.
(_READY, _TAKEN, _DONE, _PAD_STATE, _MAX_TAG, _RECORD_HEADER, _I_COUNT, _Q_HEAD, _Q_READ,
 _Q_TAIL, _Q_PUTS, _Q_GETS) = (L.READY, L.TAKEN, L.DONE, L.PAD, L.MAX_TAG, L.RECORD_HEADER,
                               L.I_COUNT, L.Q_HEAD, L.Q_READ, L.Q_TAIL, L.Q_PUTS, L.Q_GETS)
_M64 = (1 << 64) - 1
_ZEROS = bytes(8)
_COUNTS = struct.Struct("<II")       # count, unfinished
_TAKER = struct.Struct("<IQ")        # a taken record's taker_pid, taker_start_time (+12)


def _taker():
    return os.getpid(), process_start_time()

# Tests only: called between writing a record's bytes and committing it (storing tail),
# so that a test can kill a producer there (section 11.3: nothing of it may be visible).
_before_commit = None
# Tests only: called right after that store, before the counts are updated.
_after_commit = None
# Tests only: called after a get copied a message out and before it marked it done.
_before_done = None


def _bytes_view(part):
    """A part of a message (any C-contiguous buffer) as one-dimensional bytes."""
    m = memoryview(part)
    return m if m.format == "B" and m.ndim == 1 else m.cast("B")


class QueueCompletedSignal(Exception):
    """Internal: the queue is completed (queues.py raises QueueCompleted)."""


class _Block(_WaitCore):
    """One of the queue's wait blocks (R, W or J: section 11.2), four u32 words bound to
    the wait protocol of section 10.3 on the queue's mutex."""

    _sleepers = L.WAIT_BLOCK_SLEEPERS       # the ctypes twin's index of the sleepers word

    def _bind_block(self, mm, offset, lock, queue_name, which):
        self._w = (ctypes.c_uint32 * 4).from_buffer(mm, offset)
        self._seq_address = ctypes.addressof(self._w)
        self._lock = lock
        self._registers = True       # compat_version 5 >= 4: waiters register (10.3)
        self._queue_name = queue_name
        self._which = which
        if _WaitCore is _PyWaitCore:
            self._spinner = Spinner()
        self._wbind(self._w, lock, True, 0, 0, False, L.WAIT_BLOCK_SLEEPERS)
        return self

    def _corrupt(self, what):
        return L.corrupt(self._queue_name, f"wait block {self._which}: {what}")


def _block(mm, offset, lock, queue_name, which):
    return _Block.__new__(_Block)._bind_block(mm, offset, lock, queue_name, which)


def create_queue_segment(name, lifetime, capacity, max_messages, flavour):
    """A new queue segment (section 11.1) with its words initialized."""
    header = new_header(
        H.KIND_QUEUE, creator_start_time=process_start_time(), lifetime=lifetime,
        typecode="B", element_size=1, element_count=L.RING + capacity,
        lock_kind=H.LOCK_EMBEDDED, lock_type=H.LOCK_TYPE_ERRORCHECK,
        what="sharedbridge queues")

    def init(mm):
        robust_mutex.init_mutex(mm, H.LOCK_TYPE_ERRORCHECK, header.lock_size)
        L.IMMUTABLE.pack_into(mm, header.data_offset + L.MAX_MESSAGES, max_messages, flavour)

    return create(name, header, init)


class Message:
    """What get() found: tag, descriptor (bytes) and data (a memoryview: of a private
    copy, or of an out-of-line segment's mapping)."""

    __slots__ = ("tag", "descriptor", "data", "position")

    def __init__(self, tag, descriptor, data):
        self.tag = tag
        self.descriptor = descriptor
        self.data = data
        self.position = None        # a taken message: its record's position


def _unlink_reference(ring, capacity, position, fields, queue_name):
    """Remove the out-of-line segment of the message record *fields* at *position* (a lost
    message, or the queue going away), if it is still the one the reference names (its
    creator and creation time): best effort."""
    o = position & (capacity - 1)
    d = o + L.RECORD_HEADER + L.align8(fields[5])
    try:
        created, pid, name = L.check_reference(ring, d, o + fields[0] - d, position, queue_name)
        seg = open_segment(name, timeout=0.2, join=False)
    except (SharedBridgeError, OSError):
        return
    h = seg.header
    if h.kind == H.KIND_ARRAY and h.creator_pid == pid and h.created_unix_ns == created:
        unlink_if_same(name, seg.ident)


def remove_out_of_line(mm, data_offset, capacity, queue_name):
    """The queue's remover (section 11.5): unlink the out-of-line segments of the messages
    still in the ring (ready or taken). It runs as the name goes (the lock is not taken:
    a finalizer must not wait); the records are validated as they are read, and a
    corrupt ring ends the walk."""
    try:
        for ring, p, fields in L.out_of_line_records(mm, data_offset, capacity, queue_name):
            _unlink_reference(ring, capacity, p, fields, queue_name)
    except (CorruptSegmentError, ValueError, TypeError, struct.error):
        return


class QueueRing(queue_fast.RingCore):
    """The ring of one mapped queue segment and its operations (with the compiled core,
    queues.py uses its _fput/_fput_many/_fget/_fget_many: queue_fast.py)."""

    def __init__(self, seg, lock):
        h = seg.header
        mm = seg.mm
        base = h.data_offset
        self.name = seg.name
        self._seg = seg
        self._mm = mm
        self._lock = lock
        self.capacity = cap = H.queue_capacity(h.element_count)
        self._mask = cap - 1
        self.max_messages, self.flavour = L.check_immutable(mm, base, seg.name)
        self._soff = base + L.COUNT
        self._u32 = (ctypes.c_uint32 * (L.RING // 4)).from_buffer(mm, base)
        self._u64 = (ctypes.c_uint64 * (L.RING // 8)).from_buffer(mm, base)
        self._ring = memoryview(mm).cast("B")[base + L.RING:base + L.RING + cap]
        self._R = _block(mm, base + L.R_BLOCK, lock, seg.name, "R")
        self._W = _block(mm, base + L.W_BLOCK, lock, seg.name, "W")
        self._J = _block(mm, base + L.J_BLOCK, lock, seg.name, "J")
        self._recoveries = ctypes.c_uint64.from_buffer(mm, H.RECOVERY_COUNT_OFFSET)
        self._seen = self._recoveries.value
        self.data_cache = None      # the reusable data segments kept mapped (11.5)
        self._undelivered = []      # taken, not yet handed over: queue_delivery.py
        if queue_fast.FAST:
            queue_fast.bind(self, mm, base, cap, lock)

    # ---- checks, with the lock held ------------------------------------------------

    def _corrupt(self, what):
        return L.corrupt(self.name, what)

    def _state(self):
        """The mutable words, validated (section 11.2 invariants)."""
        st = _STATE.unpack_from(self._mm, self._soff)
        count, _, completed, _, head, read, tail, _, _ = st
        if (head <= read <= tail and tail - head <= self.capacity and not (head | read | tail) & 7
                and count <= self.max_messages and completed <= 1
                and count * L.MIN_MESSAGE <= tail - read):
            return st
        return L.check_state(st, self.capacity, self.max_messages, self.name)

    def _record_at(self, position, limit):
        """(size, state, fields) of the record at *position*, validated; fields is None
        for a pad."""
        o = position & self._mask
        if self.capacity - o < L.RECORD_HEADER:
            size, state = _PAD.unpack_from(self._ring, o)
            if state != L.PAD:
                raise self._corrupt(f"record at position {position}: state {state} in the "
                                    f"last {self.capacity - o} bytes of the ring")
            fields = (size, state, 0, 0, 0, 0, 0, 0, 0)
        else:
            fields = _RECORD.unpack_from(self._ring, o)
        size = L.check_record(fields, position, limit, self.capacity, self.name)
        return size, fields[1], fields

    def _check_recovery(self):
        """Walk the records again when the mutex was recovered since this object last
        looked (section 11.3, recovery)."""
        if self._recoveries.value != self._seen:
            self._recover()

    def _recover(self):
        st = _STATE.unpack_from(self._mm, self._soff)
        count, unfinished, completed, _, head, read, tail, _, _ = st
        L.check_state((0,) + st[1:], self.capacity, self.max_messages, self.name)
        ready = 0
        p = read
        while p < tail:
            size, state, _ = self._record_at(p, tail)
            if state == L.READY:
                ready += 1
            p += size
        if ready > self.max_messages:
            raise self._corrupt(f"{ready} ready messages, max_messages {self.max_messages}")
        u32 = self._u32
        u32[L.I_COUNT] = ready
        u32[L.I_UNFINISHED] = max(unfinished, ready)
        self._advance_head(head, read, reclaim=True)
        self._seen = self._recoveries.value
        self._R._notify(VALUE_MAX)
        self._W._notify(VALUE_MAX)
        self._J._notify(VALUE_MAX)

    # ---- the head ------------------------------------------------------------------

    def _advance_head(self, head, read, reclaim=False):
        """Section 11.3 advance head: step over the records behind read that are done,
        pads, ready ones a dead getter left (they count as done) and, with *reclaim*,
        taken ones whose taker is gone (that message is lost). True if head moved."""
        start = head
        while head < read:
            size, state, fields = self._record_at(head, read)
            if state == L.TAKEN:
                if not reclaim or process_is_running(fields[6], fields[7]):
                    break
                if fields[3] & L.FLAG_OUT_OF_LINE:
                    self._unlink_out_of_line(head, fields)
            head += size
        if head != start:
            self._u64[L.Q_HEAD] = head
            return True
        return False

    # ---- put -----------------------------------------------------------------------

    def _write(self, n, tag, flags, descriptor, parts, offsets, data_length):
        """Put one record of *n* bytes if there is room (section 11.3 put steps 1-3): its
        end position (p + size, the pad excluded from p: the reuse check of a data
        segment, 11.5); False when there is no room. QueueCompletedSignal when completed."""
        count, unfinished, completed, _, head, read, tail, puts, _ = self._state()
        if completed:
            raise QueueCompletedSignal
        if count >= self.max_messages:
            return False
        cap = self.capacity
        ring = self._ring
        o = tail & self._mask
        pad = cap - o if o + n > cap else 0
        if cap - (tail - head) < n + pad:
            return False
        if pad:
            _PAD.pack_into(ring, o, pad, _PAD_STATE)
            o = 0
        dl = len(descriptor)
        _RECORD.pack_into(ring, o, n, _READY, tag, flags, 0, dl, 0, 0, data_length)
        d = o + _RECORD_HEADER
        if dl:
            ring[d:d + dl] = descriptor
            end = d + ((dl + 7) & -8)
            ring[d + dl:end] = _ZEROS[:end - d - dl]
            d = end
        p = d
        for part, off in zip(parts, offsets):
            start = d + off
            if start > p:
                ring[p:start] = bytes(start - p)
            if type(part) is not bytes:
                part = _bytes_view(part)
            k = len(part)
            ring[start:start + k] = part
            p = start + k
        end = o + n
        if p < end:
            ring[p:end] = _ZEROS[:end - p] if end - p <= 8 else bytes(end - p)
        if _before_commit is not None:
            _before_commit()
        end = tail + pad + n
        self._u64[_Q_TAIL] = end                         # commits the message
        if _after_commit is not None:
            _after_commit()
        _COUNTS.pack_into(self._mm, self._soff, count + 1,
                          unfinished + 1 if unfinished < 0xFFFFFFFF else unfinished)
        self._u64[_Q_PUTS] = (puts + 1) & _M64
        self._R._notify(1)
        return end

    def put(self, n, tag, flags, descriptor, parts, offsets, data_length, block, timeout):
        """Put one record (blocking as asked): its end position (see _write; the compiled
        twin gives True for an inline record, which needs none); False when there was
        no room in time. An out-of-line record's end is what the reuse of its data
        segment checks (11.5)."""
        if _FAST:       # the compiled twin (queue_fast.py), unless it hands the record back
            done = self._cput(n, tag, flags, descriptor, parts, offsets, data_length, block,
                              timeout)
            if done is not NotImplemented:
                return done
        lock = self._lock
        lock.acquire()
        try:
            if self._recoveries.value != self._seen:
                self._recover()
            end = self._write(n, tag, flags, descriptor, parts, offsets, data_length)
            if end or not block:
                return end
            deadline = _deadline(timeout)
            with _Joined(self._W) as joined:
                while True:
                    st = self._state()
                    if self._advance_head(st[4], st[5], reclaim=True):
                        end = self._write(n, tag, flags, descriptor, parts, offsets,
                                          data_length)
                        if end:
                            return end
                    if deadline is not None and _now() >= deadline:
                        return False
                    joined.wait(_slice_deadline(deadline))
                    self._check_recovery()
                    end = self._write(n, tag, flags, descriptor, parts, offsets, data_length)
                    if end:
                        return end
        finally:
            lock.release()

    def put_many(self, records, block, timeout, ends=None):
        """Put the records in order, taking the lock once while they fit; returns how
        many were put (fewer only when the time ran out or block is false). *ends*: a
        list to which each put record's end position is appended (the Python path)."""
        if _FAST and ends is None:  # the compiled twin (queue_fast.py), unless it hands
            # them back
            done = self._cput_many(records, block, timeout)
            if done is not NotImplemented:
                return done
        lock = self._lock
        done = 0
        total = len(records)
        deadline = _deadline(timeout) if block else None
        lock.acquire()
        try:
            self._check_recovery()
            while done < total:
                end = self._write(*records[done])
                if not end:
                    if not block:
                        return done
                    with _Joined(self._W) as joined:
                        while True:
                            st = self._state()
                            if self._advance_head(st[4], st[5], reclaim=True):
                                end = self._write(*records[done])
                                if end:
                                    break
                            if deadline is not None and _now() >= deadline:
                                return done
                            joined.wait(_slice_deadline(deadline))
                            self._check_recovery()
                            end = self._write(*records[done])
                            if end:
                                break
                if ends is not None:
                    ends.append(end)
                done += 1
            return done
        finally:
            lock.release()

    # ---- get -----------------------------------------------------------------------

    def _read_one(self, take=False):
        """Take the next ready message (section 11.3 get): a Message, None when empty,
        QueueCompletedSignal when empty and completed. With *take* (section 11.3 take,
        zero-copy) the record stays in the ring, taken by this process, its data a view
        of the ring, until release(message.position)."""
        count, _, completed, _, head, read, tail, _, gets = self._state()
        cap = self.capacity
        ring = self._ring
        start = read
        while read != tail:
            o = read & self._mask
            if cap - o >= _RECORD_HEADER:
                fields = _RECORD.unpack_from(ring, o)
                size, state, tag, flags, _, dl, _, _, data_length = fields
                # The common case checked inline: an inline ready message whose size is
                # the one its lengths give and which ends within the ring and tail.
                if (state == _READY and not flags and 0 < tag <= _MAX_TAG
                        and size == 32 + ((dl + 7) & -8) + ((data_length + 7) & -8)
                        and o + size <= cap and read + size <= tail):
                    break
                size = L.check_record(fields, read, tail, cap, self.name)
                if state == _READY:
                    break
            else:
                size, _, _ = self._record_at(read, tail)      # a pad (else corrupt)
            read += size
        else:
            if read != start:
                self._u64[_Q_READ] = read
                self._advance_head(head, read)
            if completed:
                raise QueueCompletedSignal
            return None
        if not count:
            raise self._corrupt(f"count 0 with a ready message at position {read}")
        d = o + _RECORD_HEADER
        descriptor = ring[d:d + dl].tobytes() if dl else b""
        d += (dl + 7) & -8
        corrupt = None
        if flags:
            try:
                data = self._map_out_of_line(read, fields, d, o + size - d)
            except CorruptDataError as e:
                # A missing or mismatched data segment is corrupt data, not a corrupt
                # ring: the record is consumed all the same (format.md 11.4, 11.5), so one
                # bad message never wedges the queue.
                corrupt, take, flags = e, False, 0
                data = None
        elif take:
            data = ring[d:d + data_length]
        elif tag == 1:
            data = ring[d:d + data_length].tobytes()
        else:
            data = memoryview(bytearray(ring[d:d + data_length]))
        if _before_done is not None:
            _before_done()
        position = read
        if take:
            _TAKER.pack_into(ring, o + 12, *_taker())
            ring[o + 4] = _TAKEN
        else:
            ring[o + 4] = _DONE
        read += size
        u64 = self._u64
        u64[_Q_READ] = read
        self._u32[_I_COUNT] = count - 1
        u64[_Q_GETS] = (gets + 1) & _M64
        if flags:
            data, name, single_use = data
            if single_use is not None:      # its consumer removes the name (11.5)
                unlink_if_same(name, single_use)
        if take:
            m = Message(tag, descriptor, data)
            m.position = position
            return m
        if head == position:        # nothing older holds bytes: the head follows
            u64[_Q_HEAD] = read
            moved = True
        else:
            moved = self._advance_head(head, read)
        if moved or count == self.max_messages:
            self._W._notify(VALUE_MAX)
        if corrupt is not None:
            raise corrupt
        return Message(tag, descriptor, data)

    def _look_or_wait(self, look, block, timeout):
        """What look() finds (not None), the lock held: at once, or, if *block*, after
        waiting on R for it (section 11.3 get step 2), looking again after every wake-up,
        up to *timeout* seconds (None: no limit); None when nothing came."""
        found = look()
        if found is not None or not block:
            return found
        deadline = _deadline(timeout)
        with _Joined(self._R) as joined:
            while True:
                if deadline is not None and _now() >= deadline:
                    return None
                joined.wait(deadline)
                self._check_recovery()
                found = look()
                if found is not None:
                    return found

    def get(self, block, timeout):
        lock = self._lock
        lock.acquire()
        try:
            if self._recoveries.value != self._seen:
                self._recover()
            return self._look_or_wait(self._read_one, block, timeout)
        finally:
            lock.release()

    def take(self):
        """The next ready message, taken (zero-copy: its data is a view of the ring,
        valid until release(message.position)); None when empty."""
        with self._lock:
            self._check_recovery()
            return self._read_one(take=True)

    def release(self, position):
        """Section 11.3 release: the taken record at *position* (taken by this process)
        is done; the head advances over it if it can."""
        with self._lock:
            self._check_recovery()
            _, _, _, _, head, read, _, _, _ = self._state()
            if not head <= position < read:
                raise ValueError(f"no taken message at position {position} (released twice?)")
            size, state, fields = self._record_at(position, read)
            if state != L.TAKEN or (fields[6], fields[7]) != _taker():
                raise ValueError(f"the message at position {position} is not taken by this "
                                 "process (released twice?)")
            self._ring[(position & self._mask) + 4] = L.DONE
            if self._advance_head(head, read):
                self._W._notify(VALUE_MAX)

    def get_many(self, max_items, block, timeout):
        """(messages, error): up to *max_items* messages, waiting (as asked) for the first
        only, and None or what was raised after the first had been taken (they are no
        longer in the ring: queue_delivery.finish_many hands them over all the same)."""
        lock = self._lock
        got = []
        lock.acquire()
        try:
            self._check_recovery()
            m = self._look_or_wait(self._read_one, block, timeout)
            while m is not None:
                got.append(m)
                if len(got) >= max_items:
                    break
                try:
                    m = self._read_one()
                except QueueCompletedSignal:
                    break
                except BaseException as e:
                    return got, e
            return got, None
        finally:
            lock.release()

    # ---- out of line (section 11.5) ------------------------------------------------

    def _map_out_of_line(self, position, fields, offset, rest):
        """(view of the data, name, ident of a single-use segment else None): mapped, and
        a reusable one held, before the record leaves state 1 (11.5, consumer)."""
        created, pid, name = L.check_reference(self._ring, offset, rest, position, self.name)
        cache = self.data_cache
        if cache is None:
            cache = self.data_cache = DS.MappedCache()
            weakref.finalize(self, cache.release)
        view, single_use = DS.open_data_segment(self.name, name, fields[8], pid, created, cache)
        return view, name, single_use

    def _unlink_out_of_line(self, position, fields):
        _unlink_reference(self._ring, self.capacity, position, fields, self.name)

    # ---- completion, task_done, join, statistics ------------------------------------

    def complete(self):
        with self._lock:
            self._check_recovery()
            self._state()
            self._u32[L.I_COMPLETED] = 1
            self._R._notify(VALUE_MAX)
            self._W._notify(VALUE_MAX)

    def task_done(self):
        if _FAST:       # the compiled twin (queue_fast.py)
            return self._ctask_done()
        with self._lock:
            self._check_recovery()
            unfinished = self._state()[1]
            if not unfinished:
                raise ValueError("task_done() called too many times")
            self._u32[L.I_UNFINISHED] = unfinished - 1
            if unfinished == 1:
                self._J._notify(VALUE_MAX)

    def join(self, timeout=None):
        """Wait until unfinished is 0; False when *timeout* expired first."""
        deadline = _deadline(timeout)
        with self._lock, _Joined(self._J) as joined:
            while True:
                self._check_recovery()
                if not self._state()[1]:
                    return True
                if deadline is not None and _now() >= deadline:
                    return False
                joined.wait(deadline)

    def snapshot(self):
        """(count, unfinished, completed, head, read, tail, puts, gets), validated."""
        with self._lock:
            self._check_recovery()
            count, unfinished, completed, _, head, read, tail, puts, gets = self._state()
            return count, unfinished, completed, head, read, tail, puts, gets

    def count(self):
        if _FAST:       # the compiled twin (queue_fast.py)
            return self._ccount()
        with self._lock:
            self._check_recovery()
            return self._state()[0]

    def completed(self):
        with self._lock:
            return bool(self._state()[2])

    def wait_ready(self, timeout):
        """True as soon as a message is ready or the queue is completed, False after
        *timeout* seconds (None: no limit). Takes nothing: a poll (Pipe.poll). A waiter
        woken by a put that it does not take costs the getters nothing: every wake-up
        wakes every sleeper, and a getter looks at the ring after each (section 10.3)."""
        lock = self._lock
        lock.acquire()
        try:
            self._check_recovery()
            return self._look_or_wait(self._ready_or_completed, True, timeout) is True
        finally:
            lock.release()

    def _ready_or_completed(self):
        state = self._state()
        return True if state[0] or state[2] else None


queue_fast.setup(QueueCompletedSignal, globals())
