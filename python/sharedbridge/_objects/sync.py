"""Event, Condition, Semaphore, BoundedSemaphore and Barrier in named segments.

They behave like multiprocessing's (same signatures, results and exceptions) and follow
docs/format.md section 10, so .NET's SharedEvent, SharedCondition, SharedSemaphore and
SharedBarrier wait on the same objects. Each segment holds sixteen u32 words (a semaphore
and a barrier also a holder table, section 10.2); every word changes only under a robust
mutex (the segment's own, or for a Condition the lock it was
built on), and waiters sleep with the futex system call on the sequence word ``seq``,
in 50 ms slices: Ctrl-C interrupts a wait, and a wake-up whose notifier died before the
futex call is seen at the next slice. A notifier's wake-up is issued after it releases
the lock; a waiter first spins on ``seq`` (_platform/wake.py); on a segment of format
version 4 a waiter about to sleep registers in ``sleepers`` and a notifier wakes only when
one did (section 10.3). Python has no atomic instructions on shared
memory; the mutex makes them unnecessary and keeps crash recovery (EOWNERDEAD) for
every update.
"""

import ctypes
import errno
import os
import struct
import threading
import time

from .._format import header as H
from .._format.header_spec import new_header
from .._format.segment_name import base_name, external_lock_name, qualify
from .._platform import futex, robust_mutex
from .._platform.lock_core import accel
from .._platform.wake import Spinner
from .._platform.process_info import process_is_running, process_start_time
from .._platform.segment import create
from ..errors import CorruptSegmentError, TypeMismatchError
from .shared_lock import (NOT_A_CONDITION_LOCK, SharedLock, lock_from_segment,
                          open_external_lock)
from .lifetimes import resolve_lifetime
from .protocol import segment_of
from .unavailable import attach_or_unavailable, signature

# Word indexes (section 10.2); SLEEPERS from format version 4 (H.SLEEPERS_VERSION).
SEQ, WAITERS, SIGNALS, W3, W4, W5, SLEEPERS = range(7)
FLAG = VALUE = PARTIES = W3
SETS = MAX_VALUE = STATE = W4
BOUNDED = COUNT = W5
VALUE_MAX = 0x7FFFFFFF
FILLING, DRAINING, RESETTING, BROKEN = 0, 1, 2, 3
SLICE_NS = 50_000_000
NOTIFIED, WOKEN, TIMED_OUT = "notified", "woken", "timed out"    # wait() results
# The holder table (section 10.2): entry i is words TABLE + 4*i .. +3: pid, units,
# start_time (low, high).
TABLE = H.SYNC_WORDS
SEMAPHORE_SLOTS = 64

_now = time.monotonic_ns
_futex_wait = accel.futex_wait if accel is not None else futex.wait


def _deadline(timeout):
    return None if timeout is None else _now() + int(max(0.0, timeout) * 1e9)


def _slice_deadline(deadline):
    """The end of one wait slice, or *deadline* if it comes first."""
    end = _now() + SLICE_NS
    return end if deadline is None or deadline > end else deadline


def _create(name, lifetime, keep, kind, words, lock_kind=H.LOCK_EMBEDDED,
            lock_type=H.LOCK_TYPE_ERRORCHECK, lock_name="", slots=0):
    if not futex.available():
        raise OSError("sharedbridge synchronization objects need Linux on x86_64 or aarch64")
    header = new_header(
        kind, creator_start_time=process_start_time(), lifetime=resolve_lifetime(lifetime, keep),
        typecode="I", element_size=4, element_count=H.SYNC_WORDS + 4 * slots,
        lock_kind=lock_kind, lock_type=lock_type, lock_name=lock_name,
        what="sharedbridge synchronization objects")

    def init(mm):
        if header.lock_abi:
            robust_mutex.init_mutex(mm, lock_type, header.lock_size)
        for index, value in words.items():
            struct.pack_into("<I", mm, H.FIXED_SIZE + 4 * index, value)

    return create(name, header, init)


class _PyWaitCore:
    """The ctypes twin of _fastlock.WaitCore (docs/format.md section 10.3): the same steps
    in the same order; used when the extension is missing or SHAREDBRIDGE_NO_ACCEL=1."""

    # The index of the sleepers word: 6 in a synchronization segment (section 10.2), 3 in
    # a queue's four-word wait block (section 11.2; set by its class).
    _sleepers = SLEEPERS

    def _wbind(self, words, lock, registers, slots, max_value, bounded, sleepers=SLEEPERS):
        """The compiled core's binding to the words; _setup keeps them in attributes."""

    def _join(self):
        """Section 10.3 join, with the lock held: this operation counts in waiters."""
        self._check_signals()
        self._w[WAITERS] += 1

    def _leave(self):
        """Section 10.3 leave, with the lock held (once per joined operation)."""
        w = self._w
        waiters = max(0, w[WAITERS] - 1)
        w[WAITERS] = waiters
        if self._registers:
            w[self._sleepers] = min(w[self._sleepers], waiters)
        w[SIGNALS] = min(w[SIGNALS], waiters)

    def _register(self):
        """Step 1 or 3 of wait on a version-4 segment, with the lock held: this waiter
        will sleep; True when it registered."""
        if not self._registers:
            return False
        self._w[self._sleepers] = min(self._w[self._sleepers] + 1, 0xFFFFFFFF)
        return True

    def _wait(self, deadline):
        """Section 10.3 wait(deadline) by a joined thread holding the lock: NOTIFIED,
        WOKEN or TIMED_OUT. The lock is held on return (to the depth it had), also when
        an exception (Ctrl-C) ends the wait; the caller stays joined either way."""
        w, lock, address = self._w, self._lock, self._seq_address
        seq = w[SEQ]
        spin_ns = self._spinner.budget()
        registered = not spin_ns and self._register()     # step 1: one that will not spin
        depth = lock._release_save()    # step 1; also issues this thread's deferred wake-up
        held = False
        try:
            if spin_ns and not self._spinner.spin(w, SEQ, address, seq, spin_ns):   # step 2
                if self._registers:     # step 3: register, unless seq moved meanwhile
                    lock._acquire_restore(depth)
                    held = True
                    if w[SEQ] == seq:
                        registered = self._register()
                        held = False
                        depth = lock._release_save()
            while not held:             # step 4
                now = _now()
                if w[SEQ] != seq or (deadline is not None and now >= deadline):
                    break
                _futex_wait(address, seq,
                            SLICE_NS if deadline is None else min(SLICE_NS, deadline - now))
        finally:
            if not held:
                lock._acquire_restore(depth)    # step 5
            if registered:                      # step 6
                w[self._sleepers] = max(0, w[self._sleepers] - 1)
        self._check_signals()
        if w[SIGNALS]:
            w[SIGNALS] -= 1
            return NOTIFIED
        return TIMED_OUT if deadline is not None and _now() >= deadline else WOKEN

    def _check_signals(self):
        w = self._w
        if w[SIGNALS] > w[WAITERS]:
            raise self._corrupt(f"signals {w[SIGNALS]} > waiters {w[WAITERS]}")
        if self._registers and w[self._sleepers] > w[WAITERS]:
            raise self._corrupt(f"sleepers {w[self._sleepers]} > waiters {w[WAITERS]}")

    def _notify(self, n):
        """Section 10.3 notify(n); the caller holds the lock. A wake-up is due when a
        waiter registered (always on a segment older than version 4); it is issued after
        the lock's outermost release (or in step 1 of this thread's next wait)."""
        w = self._w
        self._check_signals()
        k = min(n, w[WAITERS] - w[SIGNALS])
        if k > 0:
            w[SIGNALS] += k
            w[SEQ] = (w[SEQ] + 1) & 0xFFFFFFFF
            if not self._registers or w[self._sleepers]:
                self._lock._defer_wake(self._seq_address, w)


# The compiled core when the lock's is used (lock_core.BACKEND "c"), else its ctypes twin.
_WaitCore = accel.WaitCore if accel is not None else _PyWaitCore
WAIT_BACKEND = "c" if accel is not None else "ctypes"


class _Waitable(_WaitCore):
    """The words of one synchronization segment, its mutex, and the wait protocol of
    section 10.3 (_WaitCore)."""

    def _setup(self, seg, lock, words):
        """*words*: the sixteen words as read once at open (or written at creation); the
        immutable ones are taken from them, validated, never read again (section 10.2)."""
        h = seg.header
        self._seg = seg
        self._w = (ctypes.c_uint32 * h.element_count).from_buffer(seg.mm, h.data_offset)
        self._seq_address = ctypes.addressof(self._w)
        self._lock = lock
        # From the validated private header copy: never from shared memory.
        self._slots = H.table_slots(h.kind, h.compat_version, h.element_count) or 0
        # Format version 4: waiters register in SLEEPERS and a notify wakes only if one
        # did; on older segments nobody touches that word and every notify wakes.
        self._registers = h.compat_version >= H.SLEEPERS_VERSION
        self._table_format = struct.Struct(f"<{4 * self._slots}I")
        self._table_offset = h.data_offset + 4 * TABLE
        if _WaitCore is _PyWaitCore:   # the compiled WaitCore keeps its own spin state
            self._spinner = Spinner()
        self._me = (0, 0)
        self._hint = -1         # the entry this process held last (checked before use)
        if self._slots:     # now, not between counting a unit and recording it
            self._identity()
        semaphore = h.kind == H.KIND_SEMAPHORE
        self._wbind(self._w, lock, self._registers, self._slots,
                    words[MAX_VALUE] if semaphore else 0, bool(semaphore and words[BOUNDED]))

    # ---- the holder table (section 10.2), with the lock held --------------------------

    def _identity(self):
        """(pid, start_time) of this process, computed again after a fork."""
        pid = os.getpid()
        if self._me[0] != pid:
            self._me = (pid, process_start_time())
        return self._me

    def _entries(self):
        return self._table_format.unpack_from(self._seg.mm, self._table_offset)

    def _own_entry(self):
        """Index of the entry this process holds, or -1: the last one it used if it still
        holds it, else a search of the table."""
        pid, start = self._identity()
        w, i = self._w, self._hint
        if i >= 0:
            b = TABLE + 4 * i
            if w[b] == pid and w[b + 1] and w[b + 2] | w[b + 3] << 32 == start:
                return i
        entries = self._entries()
        pids = entries[0::4]
        i = -1
        while True:
            try:
                i = pids.index(pid, i + 1)
            except ValueError:
                return -1
            if entries[4 * i + 1] and entries[4 * i + 2] | entries[4 * i + 3] << 32 == start:
                self._hint = i
                return i

    def _clear_entry(self, i):
        base = TABLE + 4 * i
        for k in range(4):
            self._w[base + k] = 0

    def _record(self):
        """Record one unit (a semaphore unit, a barrier party) of this process; not
        recorded when the table is full or absent."""
        if not self._slots:
            return
        w = self._w
        pid, start = self._identity()
        i = self._hint          # the entry used last, even if freed since (units 0) by us
        if i >= 0 and w[TABLE + 4 * i] == pid and (
                w[TABLE + 4 * i + 2] | w[TABLE + 4 * i + 3] << 32 == start):
            w[TABLE + 4 * i + 1] = min(w[TABLE + 4 * i + 1] + 1, 0xFFFFFFFF)
            return
        i = self._own_entry()
        if i >= 0:
            w[TABLE + 4 * i + 1] = min(w[TABLE + 4 * i + 1] + 1, 0xFFFFFFFF)
            return
        entries = self._entries()
        free = [x.index(0) for x in (entries[0::4], entries[1::4]) if 0 in x]
        if free:
            i = min(free)
            base = TABLE + 4 * i
            w[base], w[base + 1] = pid, 1
            w[base + 2], w[base + 3] = start & 0xFFFFFFFF, start >> 32
            self._hint = i

    def _take_from(self, i, n):
        # units 0 frees the entry (section 10.2); pid and start_time stay, so that this
        # process can take it again without a search.
        units = self._w[TABLE + 4 * i + 1]
        k = min(units, n)
        self._w[TABLE + 4 * i + 1] = units - k
        return k

    def _take_units(self, n, own_only=False):
        """Take up to *n* units off the table: the entry this process holds first, then
        (unless *own_only*) the other entries in slot order. Returns how many it took."""
        if not self._slots:
            return 0
        taken = 0
        i = self._own_entry()
        if i >= 0:
            taken = self._take_from(i, n)
        if taken == n or own_only:
            return taken
        entries = self._entries()
        for i in range(self._slots):
            if entries[4 * i] and entries[4 * i + 1]:
                taken += self._take_from(i, n - taken)
                if taken == n:
                    break
        return taken

    def _free_gone(self):
        """Free the entries of holders that are gone (section 10.2); their units."""
        if not self._slots:
            return 0
        freed = 0
        entries = self._entries()
        for i in range(self._slots):
            pid, units = entries[4 * i], entries[4 * i + 1]
            if not pid:
                continue
            if units and process_is_running(pid, entries[4 * i + 2] | entries[4 * i + 3] << 32):
                continue
            self._clear_entry(i)
            freed += units
        return freed

    @property
    def name(self):
        """The name of the segment."""
        return base_name(self._seg.name)

    def _corrupt(self, what):
        return CorruptSegmentError(
            f"the {H.KIND_NAMES[self._seg.header.kind]} segment {self._seg.name!r} is corrupt: "
            f"{what} (another process overwrote its words): recreate it")

    def close(self):
        """The creator unlinks the name now (unless keep=True); the object keeps working."""
        self._seg.close()

    def unlink(self):
        """Remove the name now."""
        self._seg.unlink()

    def _reduce_args(self):
        self._seg.export()
        return (self._seg.name, self._seg.trusted)

    def __reduce__(self):
        return _attach_sync, self._reduce_args() + (signature(self._seg.header),)

    def __repr__(self):
        return f"<sharedbridge.{type(self).__name__} {self.name!r}>"


segment_of.register(_Waitable, lambda obj: obj._seg)


class _Joined:
    """One waiting operation's place in ``waiters`` (section 10.3): it joins at its first
    wait, stays joined across its waits, and leaves once on every way out. Used inside
    ``with obj._lock``, so that leaving happens with the lock held."""

    __slots__ = ("_obj", "_joined")

    def __init__(self, obj):
        self._obj = obj
        self._joined = False

    def __enter__(self):
        return self

    def wait(self, deadline):
        if not self._joined:
            self._obj._join()
            self._joined = True
        return self._obj._wait(deadline)

    def __exit__(self, *exc_info):
        if self._joined:
            self._obj._leave()

class Event(_Waitable):
    """multiprocessing.Event in a named segment (kind 4).

    Event(*, name=None, lifetime=None, keep=False): name=None generates sb_...; who removes
    the name is the lifetime's rule (docs/format.md section 8): by default the creating
    process, when the object is closed or collected; keep=True means lifetime="persistent".
    """

    def __init__(self, *, name=None, lifetime=None, keep=False, ctx=None, dir=None):
        seg = _create(qualify(name, dir), lifetime, keep, H.KIND_EVENT, {})
        self._setup(seg, lock_from_segment(seg), (0,) * H.SYNC_WORDS)

    def _flag(self):
        flag = self._w[FLAG]
        if flag > 1:
            raise self._corrupt(f"flag {flag}")
        return flag

    def is_set(self):
        with self._lock:
            return self._flag() == 1

    def set(self):
        with self._lock:
            self._flag()
            self._w[FLAG] = 1
            self._w[SETS] = (self._w[SETS] + 1) & 0xFFFFFFFF
            self._notify(VALUE_MAX)

    def clear(self):
        with self._lock:
            self._flag()
            self._w[FLAG] = 0

    def wait(self, timeout=None):
        """Block until the flag is set or *timeout* seconds pass; returns the flag. A set()
        during the wait ends it even if clear() followed at once (then False), as
        multiprocessing.Event does (docs/format.md section 10.3)."""
        deadline = _deadline(timeout)
        w = self._w
        with self._lock:
            if self._flag():
                return True
            sets = w[SETS]
            with _Joined(self) as joined:
                while deadline is None or _now() < deadline:
                    joined.wait(_slice_deadline(deadline))
                    if self._flag() or w[SETS] != sets:
                        return self._flag() == 1
                return False

    def __repr__(self):
        state = "set" if self._w[FLAG] == 1 else "unset"
        return f"<sharedbridge.Event {self.name!r} {state}>"


class Semaphore(_Waitable):
    """multiprocessing.Semaphore in a named segment (kind 5).

    Semaphore(value=1, *, name=None, lifetime=None, keep=False, reclaim=True): with
    reclaim=True the segment records which processes hold units (up to 64 processes), and
    an acquire that finds the value at 0 takes back the units of holders that have died
    (docs/format.md sections 10.3 and 10.4, like System V's SEM_UNDO). Use reclaim=False
    for a semaphore that counts items (producers release, consumers acquire and keep).
    """

    _bounded = 0

    def __init__(self, value=1, *, name=None, lifetime=None, keep=False, ctx=None,
                 reclaim=True, dir=None):
        if value < 0:      # OSError(EINVAL), as multiprocessing's sem_open reports it
            raise OSError(errno.EINVAL, "semaphore initial value must be >= 0")
        if value > VALUE_MAX:
            raise OverflowError(f"semaphore initial value must be <= {VALUE_MAX}")
        words = {VALUE: value, MAX_VALUE: value if self._bounded else VALUE_MAX,
                 BOUNDED: self._bounded}
        seg = _create(qualify(name, dir), lifetime, keep, H.KIND_SEMAPHORE, words,
                      slots=SEMAPHORE_SLOTS if reclaim else 0)
        self._setup(seg, lock_from_segment(seg),
                    tuple(words.get(i, 0) for i in range(H.SYNC_WORDS)))

    def _setup(self, seg, lock, words):
        super()._setup(seg, lock, words)
        self._max = words[MAX_VALUE]

    def _value(self):
        value = self._w[VALUE]
        if value > self._max:
            raise self._corrupt(f"value {value} > max_value {self._max}")
        return value

    def acquire(self, block=True, timeout=None):
        """Take one unit; with block=False or a timeout, False when none came in time."""
        deadline = _deadline(timeout if block else 0)
        w = self._w
        with self._lock, _Joined(self) as joined:
            while True:
                value = self._value()
                if value:
                    w[VALUE] = value - 1
                    self._record()
                    return True
                freed = self._free_gone()
                if freed:       # holders that died: their units come back (section 10.3)
                    value = min(freed, self._max)
                    w[VALUE] = value
                    self._notify(value)
                    continue
                if deadline is not None and _now() >= deadline:
                    return False
                joined.wait(_slice_deadline(deadline) if self._slots else deadline)

    def release(self):
        """Return one unit, waking one waiter."""
        with self._lock:
            value = self._value()
            if value >= self._max:
                if self._bounded:
                    raise ValueError("semaphore or lock released too many times")
                raise OverflowError(f"semaphore value would exceed {VALUE_MAX}")
            self._w[VALUE] = value + 1
            self._take_units(1)
            self._notify(1)

    def get_value(self):
        with self._lock:
            return self._value()

    __enter__ = acquire

    def __exit__(self, *exc_info):
        self.release()

    def __repr__(self):
        return f"<sharedbridge.{type(self).__name__} {self.name!r} value={self._w[VALUE]}>"


class BoundedSemaphore(Semaphore):
    """multiprocessing.BoundedSemaphore: releasing above the initial value raises
    ValueError. Reclaimed units never take the value above the bound."""

    _bounded = 1


class Condition(_Waitable):
    """multiprocessing.Condition in a named segment (kind 6), built on a sharedbridge lock.

    Condition(lock=None, *, name=None, keep=False): with lock=None the condition has its
    own recursive lock; otherwise *lock* is any sharedbridge Lock or RLock, including the
    lock of a synchronized Array or Value (``Condition(arr.get_lock())``), and the segment
    records that lock's name, so other processes and .NET use the same lock. The internal
    lock of an Event, Semaphore or Barrier is refused (ValueError; docs/format.md 10.1).
    """

    def __init__(self, lock=None, *, name=None, lifetime=None, keep=False, ctx=None,
                 dir=None):
        key = qualify(name, dir)
        if lock is None:
            seg = _create(key, lifetime, keep, H.KIND_CONDITION, {},
                          lock_type=H.LOCK_TYPE_RECURSIVE)
            lock = lock_from_segment(seg)
        elif isinstance(lock, SharedLock):
            kind = lock._seg.header.kind
            if kind in NOT_A_CONDITION_LOCK:
                raise ValueError(
                    f"Condition(lock): {lock.name!r} is the internal lock of "
                    f"{NOT_A_CONDITION_LOCK[kind]}, which guards that object's own words: a "
                    "condition may not use it (docs/format.md section 10.1); use a sharedbridge "
                    "Lock or RLock, or the lock of an Array or a Value")
            seg = _create(key, lifetime, keep, H.KIND_CONDITION, {}, lock_kind=H.LOCK_EXTERNAL,
                          lock_type=H.LOCK_TYPE_NONE,
                          lock_name=external_lock_name(lock._seg.name, key))
        else:
            raise TypeError(
                f"Condition(lock): the lock must be a sharedbridge Lock or RLock (for example "
                f"arr.get_lock() of a sharedbridge Array), not {type(lock).__name__}: other "
                "processes must be able to find it by name")
        self._setup(seg, lock, (0,) * H.SYNC_WORDS)

    def get_lock(self):
        return self._lock

    def acquire(self, block=True, timeout=None):
        return self._lock.acquire(block, timeout)

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)

    def wait(self, timeout=None):
        """Release the lock, wait for a notification or *timeout* seconds, take the lock
        again. True unless the timeout expired. An RLock held several times is released
        completely and taken back to the same depth, as multiprocessing's (section 10.3)."""
        if not self._lock._held_by_me():
            raise AssertionError("must acquire() condition before using wait()")
        deadline = _deadline(timeout)
        with _Joined(self) as joined:
            while True:
                result = joined.wait(deadline)
                if result != WOKEN:
                    return result == NOTIFIED

    def wait_for(self, predicate, timeout=None):
        """multiprocessing.Condition.wait_for: wait until predicate() is true."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n=1):
        """Wake at most *n* waiters (in any process); the caller holds the lock."""
        if not self._lock._held_by_me():
            raise AssertionError("lock is not owned")
        self._notify(n)

    def notify_all(self):
        self.notify(VALUE_MAX)

    def __repr__(self):
        return (f"<sharedbridge.Condition {self.name!r} lock={self._lock.name!r} "
                f"waiters={self._w[WAITERS] - self._w[SIGNALS]}>")


class Barrier(_Waitable):
    """multiprocessing.Barrier in a named segment (kind 7), with the algorithm of
    docs/format.md section 10.3 (CPython's threading.Barrier, every timeout honoured, and
    parties recorded so that one that dies inside wait() breaks the barrier for the others
    within one wait slice). *action* and *timeout* belong to this object (they travel in
    pickles, as multiprocessing's do); other processes and .NET give their own.
    """

    def __init__(self, parties, action=None, timeout=None, *, name=None, lifetime=None,
                 keep=False, ctx=None, dir=None):
        if parties < 1:
            raise ValueError("parties must be >= 1")
        if parties > VALUE_MAX:
            raise OverflowError(f"parties must be <= {VALUE_MAX}")
        seg = _create(qualify(name, dir), lifetime, keep, H.KIND_BARRIER, {PARTIES: parties},
                      slots=min(parties, H.MAX_SLOTS))
        words = [0] * H.SYNC_WORDS
        words[PARTIES] = parties
        self._setup(seg, lock_from_segment(seg), words)
        self._action = action
        self._timeout = timeout

    def _setup(self, seg, lock, words):
        super()._setup(seg, lock, words)
        self._parties = words[PARTIES]
        self._action = None
        self._timeout = None

    def _state(self):
        state = self._w[STATE]
        if state > BROKEN or self._w[COUNT] > self._parties:
            raise self._corrupt(f"state {state}, count {self._w[COUNT]}")
        return state

    def _reap(self):
        """Section 10.3 barrier step 1: parties that died inside wait() leave the count;
        a round they were part of is broken."""
        freed = self._free_gone()
        if not freed:
            return
        w = self._w
        state = self._state()
        w[COUNT] = w[COUNT] - min(freed, w[COUNT])
        if state == FILLING:
            w[STATE] = BROKEN
        elif w[COUNT] == 0 and state in (DRAINING, RESETTING):
            w[STATE] = FILLING
        self._notify(VALUE_MAX)

    def wait(self, timeout=None):
        """Wait until all parties have called wait(); returns this party's index (0 to
        parties - 1). BrokenBarrierError when the barrier breaks, is reset or aborted,
        a party dies inside wait(), or the timeout (this call's, else the barrier's)
        expires."""
        if timeout is None:
            timeout = self._timeout
        deadline = _deadline(timeout)
        w = self._w
        with self._lock, _Joined(self) as joined:
            self._reap()
            while self._state() in (DRAINING, RESETTING):
                if w[COUNT] == 0:       # nobody left to finish the drain (section 10.3)
                    w[STATE] = FILLING
                    self._notify(VALUE_MAX)
                    break
                if deadline is not None and _now() >= deadline:
                    self._break()
                    raise threading.BrokenBarrierError
                joined.wait(_slice_deadline(deadline))
                self._reap()
            if self._state() == BROKEN:
                raise threading.BrokenBarrierError
            index = w[COUNT]
            w[COUNT] = index + 1
            self._record()
            try:
                if index + 1 == self._parties:
                    self._release()
                else:
                    self._wait_round(deadline, joined)
                return index
            finally:
                self._take_units(1, own_only=True)
                count = w[COUNT]
                w[COUNT] = count - 1 if count else 0
                if w[COUNT] == 0 and self._state() in (DRAINING, RESETTING):
                    w[STATE] = FILLING
                    self._notify(VALUE_MAX)

    def _release(self):
        try:
            if self._action:
                self._action()
            self._w[STATE] = DRAINING
            self._notify(VALUE_MAX)
        except BaseException:
            self._break()
            raise

    def _wait_round(self, deadline, joined):
        while self._state() == FILLING:
            if deadline is not None and _now() >= deadline:
                self._break()
                raise threading.BrokenBarrierError
            joined.wait(_slice_deadline(deadline))
            self._reap()
        if self._state() in (RESETTING, BROKEN):
            raise threading.BrokenBarrierError

    def _break(self):
        self._w[STATE] = BROKEN
        self._notify(VALUE_MAX)

    def reset(self):
        """Return the barrier to its empty state; parties waiting now get
        BrokenBarrierError. Parties that died inside wait() no longer count."""
        with self._lock:
            self._reap()
            if self._w[COUNT] > 0:
                if self._state() in (FILLING, BROKEN):
                    self._w[STATE] = RESETTING
            else:
                self._w[STATE] = FILLING
            self._notify(VALUE_MAX)

    def abort(self):
        """Put the barrier into the broken state."""
        with self._lock:
            self._break()

    @property
    def parties(self):
        return self._parties

    @property
    def n_waiting(self):
        with self._lock:
            self._reap()
            return self._w[COUNT] if self._state() == FILLING else 0

    @property
    def broken(self):
        with self._lock:
            self._reap()
            return self._state() == BROKEN

    def __reduce__(self):
        return _attach_barrier, self._reduce_args() + (self._action, self._timeout,
                                                       signature(self._seg.header))

    def __repr__(self):
        return (f"<sharedbridge.Barrier {self.name!r} waiters={self._w[COUNT]}/"
                f"{self._parties}>")


def _new(cls, seg, lock, words):
    obj = cls.__new__(cls)
    obj._setup(seg, lock, words)
    return obj


def sync_from_segment(seg, timeout=5.0, allow_other_owner=False):
    """The object of a synchronization segment (kinds 4 to 7). The immutable words of
    section 10.2 are read once, validated, and the object keeps that copy. Another kind
    (the name was removed and made again as something else before an unpickling opened
    it): TypeMismatchError, the segment closed."""
    h = seg.header
    if h.kind not in H.SYNC_KINDS:
        seg.close()
        raise TypeMismatchError(
            f"type mismatch: segment {seg.name!r} is of kind {h.kind}, not an event, a "
            "semaphore, a condition or a barrier (kinds 4 to 7): its name was given to "
            "another object; open it with sharedbridge.attach(name)")
    if h.lock_kind == H.LOCK_EXTERNAL:
        lock = lock_from_segment(open_external_lock(seg.name, h.lock_name, timeout,
                                                    allow_other_owner, kind=h.kind))
    else:
        lock = lock_from_segment(seg)
    words = struct.unpack_from(f"<{H.SYNC_WORDS}I", seg.mm, h.data_offset)
    if h.kind == H.KIND_EVENT:
        return _new(Event, seg, lock, words)
    if h.kind == H.KIND_CONDITION:
        return _new(Condition, seg, lock, words)
    if h.kind == H.KIND_SEMAPHORE:
        bounded, max_value = words[BOUNDED], words[MAX_VALUE]
        if bounded > 1 or max_value > VALUE_MAX or (not bounded and max_value != VALUE_MAX):
            raise CorruptSegmentError(
                f"the semaphore segment {seg.name!r} is corrupt: bounded {bounded}, max_value "
                f"{max_value}: recreate it")
        return _new(BoundedSemaphore if bounded else Semaphore, seg, lock, words)
    if not 1 <= words[PARTIES] <= VALUE_MAX:
        raise CorruptSegmentError(
            f"the barrier segment {seg.name!r} is corrupt: parties {words[PARTIES]}: "
            "recreate it")
    return _new(Barrier, seg, lock, words)


def _attach_sync(name, allow_other_owner=False, expect=None):
    # Never raises: see unavailable.py.
    return attach_or_unavailable(
        name, lambda seg: sync_from_segment(seg, allow_other_owner=allow_other_owner),
        allow_other_owner, expect)


def _attach_barrier(name, allow_other_owner, action, timeout, expect=None):
    barrier = _attach_sync(name, allow_other_owner, expect)
    if isinstance(barrier, Barrier):
        barrier._action = action
        barrier._timeout = timeout
    return barrier


if accel is not None:
    # The operations as single calls of the compiled core (_fastlock.c, WaitCore): the
    # same steps as the methods above, which are the ctypes path (docs/wakeups-design.md
    # section 4). Barrier keeps its Python algorithm over the compiled _join/_wait/_leave.
    Event.set, Event.clear = _WaitCore._event_set, _WaitCore._event_clear
    Event.is_set, Event.wait = _WaitCore._event_is_set, _WaitCore._event_wait
    Semaphore.acquire, Semaphore.release = _WaitCore._sem_acquire, _WaitCore._sem_release
    Semaphore.__enter__, Semaphore.__exit__ = _WaitCore._sem_enter, _WaitCore._sem_exit
    Semaphore.get_value = _WaitCore._sem_get_value
    Condition.wait, Condition.notify = _WaitCore._cond_wait, _WaitCore._cond_notify
