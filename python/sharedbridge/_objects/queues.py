"""Queue, SimpleQueue and JoinableQueue in a named segment (kind 8, docs/format.md
section 11), with multiprocessing's API and exceptions, plus names.

A put is complete when it returns: the message is in the shared ring (or, when it is
large, in a data segment whose name is in the ring, section 11.5: in a format-6 queue a
producer reuses its data segments, and a got array is a view that stays valid and
unchanged while it is used; queue_data_segments.py), so there is no feeder thread, and
none of multiprocessing's "items still buffered at exit" pitfalls: close() only gives up
this handle (and the data segments it keeps for reuse), join_thread() and
cancel_join_thread() exist for compatibility only. Messages
are typed (section 11.4; _objects/queue_messages.py): bytes, str, scalars, ctypes
structures and numpy arrays travel as such (and .NET reads them); anything else is
pickled with protocol 5, its buffers out of band (copied once).

Queues pickle by name, like every sharedbridge object: they can be passed to a Pool or
through another queue, which multiprocessing refuses.
"""

import functools
import queue as _queue
import weakref

from .._format import header as H
from .._format import queue_layout as L
from .._format.segment_name import base_name, qualify
from .._platform.segment import on_remove
from ..errors import QueueCompleted, TypeMismatchError
from . import queue_data_segments as DS
from . import queue_delivery as QD
from . import queue_ring as QR
from .lifetimes import resolve_lifetime
from .protocol import segment_of
from .shared_lock import lock_from_segment
from .unavailable import attach_or_unavailable, signature

from . import queue_messages as _codec

_encode = _codec.encode
_FLAVOUR_CLASS = {}


def _closed_error(q):
    return ValueError(f"Queue {q!r} is closed")


class Queue:
    """multiprocessing.Queue in a named segment.

    Queue(maxsize=0, *, name=None, lifetime=None, capacity=None, ctx=None): at most
    *maxsize* messages (<= 0: unbounded) in a ring of *capacity* bytes (default 1 MiB,
    rounded up to a power of two, at least 4096); messages larger than capacity/4 go
    into a segment of their own. *name* and *lifetime* as for every sharedbridge object;
    *ctx* is accepted for multiprocessing compatibility and ignored. *dir*: the
    directory backend's directory (default SHAREDBRIDGE_DIR, else /dev/shm; docs/format.md
    section 1.3); large messages' segments go there too.
    """

    _flavour = L.FLAVOUR_QUEUE

    def __init__(self, maxsize=0, *, name=None, lifetime=None, capacity=None, ctx=None,
                 dir=None, _key=None):
        if name is not None and isinstance(name, str) and len(name) > L.MAX_QUEUE_NAME:
            raise ValueError(f"queue name {name!r} is longer than {L.MAX_QUEUE_NAME} bytes "
                             "(its large messages use '<name>.m<16 hex digits>')")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
        max_messages = L.UNBOUNDED if maxsize <= 0 else min(maxsize, L.UNBOUNDED)
        cap = L.round_capacity(capacity)
        key = qualify(name, dir) if _key is None else _key
        seg = QR.create_queue_segment(key, resolve_lifetime(lifetime, False), cap,
                                      max_messages, self._flavour)
        self._setup(seg)

    def _setup(self, seg):
        self._seg = seg
        self._ring = QR.QueueRing(seg, lock_from_segment(seg))
        self._closed = False
        self._used = False          # a put was made through this handle (see empty())
        self._maxsize = 0 if self._ring.max_messages == L.UNBOUNDED else self._ring.max_messages
        self._inline_max = L.inline_limit(self._ring.capacity)      # format.md 11.5
        self._fast = self._ring if QR.queue_fast.FAST else None     # the compiled path
        # Reusable data segments (section 11.5) only in a queue of compat_version 6: a
        # version-5 consumer may read a version-5 queue (6.3). The pool is made by the
        # first out-of-line put of this object in this process.
        self._reuse = seg.header.compat_version >= H.QUEUE_REUSE_VERSION
        self._pool = None
        _register_remover(seg, self._ring)

    # ---- properties ----------------------------------------------------------------

    @property
    def name(self):
        return base_name(self._seg.name)

    @property
    def lifetime(self):
        return self._seg.header.lifetime

    @property
    def capacity(self):
        """The ring's bytes."""
        return self._ring.capacity

    @property
    def maxsize(self):
        return self._maxsize

    # ---- put -----------------------------------------------------------------------

    def _record(self, obj):
        """(args of QueueRing._write, data segment or None) for *obj*: the data segment
        (queue_data_segments.py) of an out-of-line message is told committed(end) or
        failed() once the put is over."""
        e = _encode(obj)
        dl = len(e.descriptor)
        n = L.record_size(dl, e.data_length)
        if n <= self._inline_max:
            return (n, e.tag, 0, e.descriptor, e.parts, e.offsets, e.data_length), None
        if self._reuse:
            data = self._data_pool().data_segment(e.data_length, e.parts, e.offsets)
        else:
            data = DS.SingleUse(self._seg.name, e.data_length, e.parts, e.offsets)
        n = L.RECORD_HEADER + L.align8(dl) + len(data.ref)
        if n > L.record_limit(self._ring.capacity):     # format.md 11.5
            data.failed()
            raise ValueError(f"the message's descriptor ({dl} bytes) does not fit in the "
                             f"queue's {self._ring.capacity}-byte ring: use a larger "
                             "capacity=")
        return (n, e.tag, L.FLAG_OUT_OF_LINE, e.descriptor, [data.ref], [0],
                e.data_length), data

    def _data_pool(self):
        pool = self._pool
        if pool is None:
            pool = self._pool = DS.Pool(self._seg.name, self._ring._u64)
            weakref.finalize(self, pool.release)
        return pool

    def put(self, obj, block=True, timeout=None):
        """Put *obj* in the queue; wait for room if block is true (at most *timeout*
        seconds, then queue.Full), else queue.Full at once. QueueCompleted if the queue
        was completed. The message is in shared memory when this returns."""
        if self._closed:
            raise _closed_error(self)
        self._used = True
        if self._fast is not None:      # bytes and str going inline: queue_fast.py
            try:
                if self._fast._fput(obj, block, timeout) is True:
                    return
            except QueueCompletedSignal:
                raise self._completed_error("put") from None
        record, data = self._record(obj)
        try:
            ok = self._ring.put(*record, block, timeout)
        except QueueCompletedSignal:
            ok = None
        except BaseException:
            if data is not None:
                data.failed()
            raise
        if ok:
            if data is not None:
                data.committed(ok)
            return
        if data is not None:
            data.failed()
        if ok is None:
            raise self._completed_error("put")
        raise _queue.Full

    def put_nowait(self, obj):
        return self.put(obj, False)

    def put_many(self, iterable, block=True, timeout=None):
        """Put every object of *iterable*, in order, taking the lock once for as many as
        fit. queue.Full (with ``.put``, how many went in) when the time ran out."""
        if self._closed:
            raise _closed_error(self)
        self._used = True
        if self._fast is not None:      # all bytes and str going inline: queue_fast.py
            iterable = list(iterable)
            try:
                done = self._fast._fput_many(iterable, block, timeout)
            except QueueCompletedSignal:
                raise self._completed_error("put") from None
            if done is not NotImplemented:
                if done == len(iterable):
                    return
                e = _queue.Full(f"{done} of {len(iterable)} messages were put")
                e.put = done
                raise e
        records, datas, ends = [], [], []
        try:
            for obj in iterable:
                record, data = self._record(obj)
                records.append(record)
                datas.append(data)
            # Out-of-line records take the Python path, which gives the end positions back.
            pooled = any(data is not None for data in datas)
            try:
                done = self._ring.put_many(records, block, timeout, ends if pooled else None)
            except QueueCompletedSignal:
                done = -1
        finally:
            # The first len(ends) records are in the ring (their data segments belong to
            # the queue now); the others were not put.
            for i, data in enumerate(datas):
                if data is not None:
                    data.committed(ends[i]) if i < len(ends) else data.failed()
        if done == len(records):
            return
        if done < 0:
            raise self._completed_error("put")
        e = _queue.Full(f"{done} of {len(records)} messages were put")
        e.put = done
        raise e

    # ---- get -----------------------------------------------------------------------

    def _decode(self, m):
        return QD.decode(m.tag, m.descriptor, m.data, self.name)

    def get(self, block=True, timeout=None):
        """Remove and return the oldest message; wait for one if block is true (at most
        *timeout* seconds, then queue.Empty), else queue.Empty at once. When the queue
        is completed and drained: QueueCompleted."""
        if self._closed:
            raise _closed_error(self)
        if self._fast is not None:      # queue_fast.py
            try:
                return self._fast._fget(block, timeout)
            except QueueCompletedSignal:
                raise self._completed_error("get") from None
        if self._ring._undelivered:     # queue_delivery.py
            return QD.deliver(self._ring._undelivered, None, self.name)
        try:
            m = self._ring.get(block, timeout)
        except QueueCompletedSignal:
            raise self._completed_error("get") from None
        if m is None:
            raise _queue.Empty
        return self._decode(m)

    def get_nowait(self):
        return self.get(False)

    def get_many(self, max_items, block=True, timeout=None):
        """Up to *max_items* messages as a list, taking the lock once: waits (as get
        does) for the first one only. queue.Empty when none came; QueueCompleted when
        the queue is completed and drained. Nothing it took is lost when it fails part
        way: queue_delivery.py says how the rest is handed over."""
        if self._closed:
            raise _closed_error(self)
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        if self._fast is not None:      # queue_fast.py
            try:
                return self._fast._fget_many(max_items, block, timeout)
            except QueueCompletedSignal:
                raise self._completed_error("get") from None
        undelivered = self._ring._undelivered
        if undelivered:
            return QD.deliver(undelivered, max_items, self.name)
        try:
            got, error = self._ring.get_many(max_items, block, timeout)
        except QueueCompletedSignal:
            raise self._completed_error("get") from None
        if not got:
            raise _queue.Empty
        return QD.finish_many(undelivered, got, error, self.name)

    # ---- state ---------------------------------------------------------------------

    def qsize(self):
        """The number of messages ready to be got (exact at the moment it is read)."""
        return self._ring.count() + self._waiting()

    def _waiting(self):
        """Messages this handle took and has not handed over yet (queue_delivery.py)."""
        undelivered = self._ring._undelivered
        return QD.count(undelivered) if undelivered else 0

    def empty(self):
        """True when no message is ready. On a handle closed after it put something,
        OSError, as multiprocessing's (whose close() then closes its pipe); a closed
        SimpleQueue always raises it."""
        if self._closed and (self._used or self._flavour == L.FLAVOUR_SIMPLE):
            raise OSError("handle is closed")
        return self._ring.count() == 0 and not self._waiting()

    def full(self):
        return self._ring.count() >= self._ring.max_messages

    def complete(self):
        """No more messages, for every process: puts raise QueueCompleted; getters
        drain the ready messages, then get raises QueueCompleted."""
        self._ring.complete()

    @property
    def completed(self):
        return self._ring.completed()

    def _completed_error(self, op):
        if op == "put":
            return QueueCompleted(f"the queue {self.name!r} was completed (complete()): no "
                                  "more messages can be put")
        return QueueCompleted(f"the queue {self.name!r} was completed (complete()) and every "
                              "message was got")

    # ---- multiprocessing compatibility ---------------------------------------------

    def close(self):
        """This handle is closed: later put/get raise ValueError (as multiprocessing).
        Messages already put stay in the queue (a put is complete when it returns); the
        queue's name is unaffected (sharedbridge.close(q) gives up the claim). The data
        segments this handle keeps for reuse are left (section 11.5)."""
        self._closed = True
        self._leave_kept_data_segments()

    def _leave_kept_data_segments(self):
        # close() and sharedbridge.close(q): the segments kept for reuse, and those kept
        # mapped for later messages, go (section 11.5)
        if self._pool is not None:
            self._pool.release()
        if self._ring.data_cache is not None:
            self._ring.data_cache.release()

    def join_thread(self):
        """multiprocessing compatibility: there is no feeder thread to join."""
        if not self._closed:
            raise AssertionError(f"Queue {self!r} not closed")

    def cancel_join_thread(self):
        """multiprocessing compatibility: there is no feeder thread."""

    # ---- pickling ------------------------------------------------------------------

    def __reduce__(self):
        self._seg.export()
        return _attach_queue, (self._seg.name, self._seg.trusted, signature(self._seg.header))

    def __repr__(self):
        return f"<sharedbridge.{type(self).__name__} {self.name!r}>"


class JoinableQueue(Queue):
    """multiprocessing.JoinableQueue: task_done() and join()."""

    _flavour = L.FLAVOUR_JOINABLE

    def task_done(self):
        """One message got earlier is processed; ValueError when called more times than
        messages were put."""
        if self._closed:
            raise _closed_error(self)
        self._ring.task_done()

    def join(self, timeout=None):
        """Wait until every message put was task_done(); with *timeout*, False when it
        expired first (multiprocessing's join has no timeout: it returns None)."""
        ok = self._ring.join(timeout)
        return None if timeout is None else ok


class SimpleQueue(Queue):
    """multiprocessing.SimpleQueue: put(obj), get(), empty(), close()."""

    _flavour = L.FLAVOUR_SIMPLE

    def __init__(self, *, name=None, lifetime=None, capacity=None, ctx=None, dir=None):
        super().__init__(0, name=name, lifetime=lifetime, capacity=capacity, ctx=ctx,
                         dir=dir)

    # After close(), multiprocessing's SimpleQueue has closed its pipe: OSError, not the
    # ValueError of a closed Queue.
    def put(self, obj):
        if self._closed:
            raise OSError("handle is closed")
        return Queue.put(self, obj)

    def get(self):
        if self._closed:
            raise OSError("handle is closed")
        return Queue.get(self)



QueueCompletedSignal = QR.QueueCompletedSignal
_FLAVOUR_CLASS.update({L.FLAVOUR_QUEUE: Queue, L.FLAVOUR_SIMPLE: SimpleQueue,
                       L.FLAVOUR_JOINABLE: JoinableQueue, L.FLAVOUR_PIPE: Queue})
segment_of.register(Queue, lambda q: q._seg)


def queue_from_segment(seg):
    """The Queue, SimpleQueue or JoinableQueue of a queue segment (by its flavour)."""
    if seg.header.kind != H.KIND_QUEUE:
        raise TypeMismatchError(f"type mismatch: {seg.name!r} is not a queue (kind "
                                f"{seg.header.kind})")
    flavour = L.check_immutable(seg.mm, seg.header.data_offset, seg.name)[1]
    cls = _FLAVOUR_CLASS[flavour]
    q = cls.__new__(cls)
    q._setup(seg)
    return q


def _attach_queue(name, allow_other_owner=False, expect=None):
    # Never raises: see unavailable.py.
    return attach_or_unavailable(name, queue_from_segment, allow_other_owner, expect)


# ---- the queue's remover unlinks the out-of-line segments still in the ring --------

def _register_remover(seg, ring):
    on_remove(seg, functools.partial(QR.remove_out_of_line, seg.mm, seg.header.data_offset,
                                     ring.capacity, seg.name))
