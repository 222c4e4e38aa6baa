"""Pipe(): multiprocessing.Pipe's two connection objects over queue segments (Python only).

A pipe named ``<base>`` is made of (docs/api.md, "Pipe"):

- ``<base>.q0`` and ``<base>.q1``: queue segments (docs/format.md section 11, flavour 3) of
  lifetime last-closer; ``q<i>`` carries what end ``i`` sends. A simplex pipe has only
  ``q1``: end 0 reads it, end 1 writes it.
- ``<base>.e0`` and ``<base>.e1``: one lock-only segment per end, lifetime last-closer
  (docs/format.md section 8), held by every process that has a connection object of that
  end. An end is *gone* when its segment is retired (its last closer closed it) or when
  nobody holds its flock (its last holder died: the same test as the reaper's).

End of file as multiprocessing's: recv() raises EOFError once the ring is drained and the
other end is gone, that is closed in every process that had it. The last closer of an end
completes both queues of that end (docs/format.md section 11.3 "complete"), which wakes a
reader waiting on the other side at once; a reader also looks at the other end once per
wait slice, which is how the death of its last holder is noticed. send() to an end whose
reader is gone raises BrokenPipeError.

A connection pickles by name. So that the name survives the common idiom (the parent closes
its copy of the child's end right after Process.start(), before a spawned child has
attached it), pickling also hands over, with multiprocessing.reduction.DupFd, descriptors
of the segments the connection uses, each with a shared flock of its own: they keep the
segments alive until the receiver has joined them, then the receiver drops them.
"""

import errno
import fcntl
import io
import os
import pickle
import queue as _pyqueue
import struct
import time
import weakref


from .._format import header as H
from .._format import queue_layout as L
from .._format.header_spec import new_header
from .._format.segment_name import base_name, generated_key, is_template, qualify
from .._platform import last_closer, robust_mutex
from .._platform.backend import open_object
from .._platform.process_info import process_start_time
from .._platform.segment import create, open_segment, unlink_if_same
from ..errors import SegmentNotFoundError, SharedBridgeError
from . import queues as _queues
from .protocol import segment_of

__all__ = ["Pipe", "Connection"]

# How often a waiting recv() looks at the other end (docs/format.md section 10.3's slice),
# and how often a send() blocked on a full ring does (each try encodes the object again).
RECV_SLICE = 0.05
SEND_SLICE = 0.25


class BufferTooShort(Exception):
    pass


try:                    # multiprocessing's own class, so that except clauses written for it work
    from multiprocessing import BufferTooShort  # noqa: F811
except ImportError:     # pragma: no cover
    pass


class _Boxed:
    """What send(obj) puts: obj wrapped so that it always travels as a Python object (tag 6,
    pickle protocol 5 with out-of-band buffers) and recv() tells it apart from the bytes
    of send_bytes(), which multiprocessing's recv() unpickles."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __reduce__(self):
        return _Boxed, (self.obj,)


def _end_name(base, i):
    return f"{base}.e{i}"


def _queue_name(base, i):
    return f"{base}.q{i}"


def _create_end(name):
    header = new_header(H.KIND_LOCK, creator_start_time=process_start_time(),
                        lifetime=H.LIFETIME_LAST_CLOSER, lock_kind=H.LOCK_EMBEDDED,
                        lock_type=H.LOCK_TYPE_ERRORCHECK)
    return create(name, header, lambda mm: robust_mutex.init_mutex(
        mm, H.LOCK_TYPE_ERRORCHECK, header.lock_size))


class _Direction(_queues.Queue):
    """One direction of a pipe: a queue of flavour 3 (docs/format.md section 11.2)."""

    _flavour = L.FLAVOUR_PIPE


def _create_direction(key, capacity):
    return _Direction(lifetime="last-closer", capacity=capacity, _key=key)


def _attach_direction(name):
    return _queues.queue_from_segment(open_segment(name))


def _close_queue(q):
    q.close()
    segment_of(q).close()       # this object's claim on the last-closer segment


def Pipe(duplex=True, *, name=None, capacity=None, dir=None):
    """Two Connection objects (conn1, conn2), as multiprocessing.Pipe: duplex (both send and
    receive) by default; Pipe(False) gives conn1 that only receives and conn2 that only
    sends. *name* is the base name of the pipe's segments (default: generated);
    *capacity* the ring bytes of each direction (default 1 MiB, see Queue); *dir* the
    directory backend's directory (default SHAREDBRIDGE_DIR, else /dev/shm)."""
    base = qualify(name, dir)
    if is_template(base):
        base = generated_key(base)
    made = []
    try:
        ends = []
        for i in (0, 1):
            ends.append(_create_end(_end_name(base, i)))
            made.append(ends[-1])
        directions = (0, 1) if duplex else (1,)      # simplex: end 1 writes q1, end 0 reads it
        qs0 = {}
        for i in directions:
            qs0[i] = _create_direction(_queue_name(base, i), capacity)
            made.append(qs0[i])
        qs1 = {}                 # end 1's own handles (closing one end closes its handles)
        for i in directions:
            qs1[i] = _attach_direction(_queue_name(base, i))
            made.append(qs1[i])
        c0 = Connection._build(base, 0, duplex, ends[0], qs0)
        c1 = Connection._build(base, 1, duplex, ends[1], qs1)
    except BaseException:
        for obj in made:
            try:
                _close_queue(obj) if isinstance(obj, _queues.Queue) else obj.close()
            except Exception:
                pass
        raise
    return c0, c1


class Connection:
    """One end of a Pipe(): multiprocessing.connection.Connection's API (send, recv,
    send_bytes, recv_bytes, recv_bytes_into, poll, close, closed, readable, writable,
    context manager) over shared memory. fileno() raises io.UnsupportedOperation: there
    is no file descriptor to select on; use poll(timeout)."""

    def __init__(self):
        raise TypeError("use sharedbridge.Pipe() to make connections")

    @classmethod
    def _build(cls, base, index, duplex, own_seg, qs):
        self = object.__new__(cls)
        self._base = base
        self._index = index
        self._duplex = duplex
        self._readable = duplex or index == 0
        self._writable = duplex or index == 1
        self._out = qs.get(index) if self._writable else None
        self._in = qs.get(1 - index) if self._readable else None
        self._own = own_seg
        self._eof = False
        self._peer = _Peer(_end_name(base, 1 - index))
        self._transfers = []     # descriptors handed to a child being started (__reduce__)
        self._closed = False
        self._finalizer = weakref.finalize(self, _finish, own_seg, self._out, self._in,
                                           self._peer, self._transfers)
        return self

    @property
    def closed(self):
        """True if the connection is closed."""
        return self._closed

    @property
    def readable(self):
        """True if the connection can receive."""
        return self._readable

    @property
    def writable(self):
        """True if the connection can send."""
        return self._writable

    @property
    def name(self):
        """The pipe's base name (its segments are <name>.e0/.e1 and <name>.q0/.q1)."""
        return base_name(self._base)

    def _check_closed(self):
        if self._closed:
            raise OSError("handle is closed")

    def _check_readable(self):
        if not self._readable:
            raise OSError("connection is write-only")

    def _check_writable(self):
        if not self._writable:
            raise OSError("connection is read-only")

    def fileno(self):
        """Not supported: raises io.UnsupportedOperation."""
        self._check_closed()
        raise io.UnsupportedOperation(
            "a sharedbridge Pipe connection has no file descriptor (its messages are in "
            "shared memory): use conn.poll(timeout) to wait for a message instead of "
            "select/selectors/multiprocessing.connection.wait()")

    def close(self):
        """Close this connection object. When every process has closed (or lost) its
        connection objects of this end, the other end's recv() raises EOFError after the
        messages already sent, and its send() raises BrokenPipeError."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sending ---------------------------------------------------------------------

    def send(self, obj):
        """Send a picklable object (pickle protocol 5: buffers such as numpy arrays are
        copied once into shared memory, not pickled)."""
        self._check_closed()
        self._check_writable()
        self._put(_Boxed(obj))

    def send_bytes(self, buf, offset=0, size=None):
        """Send bytes of a bytes-like object, as multiprocessing's send_bytes."""
        self._check_closed()
        self._check_writable()
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        n = m.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        self._put(bytes(m[offset:offset + size]))

    def _put(self, message):
        q = self._out
        while True:
            if self._peer.gone():
                raise self._broken()
            try:
                q.put(message, True, SEND_SLICE)
                return
            except _pyqueue.Full:
                continue
            except EOFError:             # completed: the reading end was closed everywhere
                raise self._broken() from None

    def _broken(self):
        return BrokenPipeError(
            errno.EPIPE, f"{os.strerror(errno.EPIPE)}: the other end of pipe {self._base!r} "
            "was closed in every process that had it")

    # -- receiving -------------------------------------------------------------------

    def _take(self, deadline):
        """The next message; EOFError at end of file; None at *deadline* (monotonic,
        None = no deadline)."""
        if self._eof:
            raise self._eof_error()
        q = self._in
        while True:
            wait = RECV_SLICE
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            try:
                if wait <= 0:
                    return q.get(False)
                return q.get(True, wait)
            except _pyqueue.Empty:
                pass
            except EOFError:             # completed: the other end was closed everywhere
                self._eof = True
                raise self._eof_error() from None
            # A slice went by without a message: is the other end still there?
            if self._peer.gone():
                # It can put nothing more: what is in the ring is all there is.
                try:
                    return q.get(False)
                except (_pyqueue.Empty, EOFError):
                    self._eof = True
                    raise self._eof_error() from None
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _eof_error(self):
        return EOFError(f"the other end of pipe {self._base!r} was closed and every "
                        "message it sent was received")

    def _recv_message(self):
        self._check_closed()
        self._check_readable()
        return self._take(None)

    @staticmethod
    def _as_bytes(message):
        if isinstance(message, _Boxed):      # sent with send(): its pickle, as multiprocessing
            return bytes(_ForkingPickler.dumps(message.obj))
        if isinstance(message, bytes):
            return message
        return bytes(message)

    def recv(self):
        """Receive an object sent with send() (or the unpickled bytes of send_bytes(), as
        multiprocessing). Blocks until there is one; EOFError when the other end is closed
        and everything it sent was received."""
        message = self._recv_message()
        if isinstance(message, _Boxed):
            return message.obj
        if isinstance(message, (bytes, bytearray, memoryview)):
            return _ForkingPickler.loads(message)
        return message          # a typed message put by a non-pipe writer of the queue

    def recv_bytes(self, maxlength=None):
        """Receive the bytes of one message. OSError if it is longer than *maxlength*;
        the message is gone and, as multiprocessing does, the connection can no longer
        receive: a duplex one becomes write-only, a read-only one is closed."""
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        data = self._as_bytes(self._recv_message())
        if maxlength is not None and len(data) > maxlength:
            if self._writable:
                self._readable = False
            else:
                self.close()
            raise OSError("bad message length")
        return data

    def recv_bytes_into(self, buf, offset=0):
        """Receive one message into the writable buffer *buf* at byte *offset*; returns its
        length. BufferTooShort (with the whole message as args[0]) if it does not fit."""
        self._check_closed()
        self._check_readable()
        with memoryview(buf) as m:
            bytesize = m.nbytes
            if offset < 0:
                raise ValueError("negative offset")
            elif offset > bytesize:
                raise ValueError("offset too large")
            data = self._as_bytes(self._take(None))
            size = len(data)
            if bytesize < offset + size:
                raise BufferTooShort(data)
            with m.cast("B") as flat:
                flat[offset:offset + size] = data
        return size

    def poll(self, timeout=0.0):
        """True if a message (or the end of file) is ready to be received, waiting up to
        *timeout* seconds (None: without limit) for one. It takes nothing: the message
        stays in the ring for whichever recv comes first (in any process that has this
        end), as a message stays in multiprocessing's pipe."""
        self._check_closed()
        self._check_readable()
        if self._eof:
            return True
        q = self._in
        if q._waiting():        # taken by an earlier recv that failed part way
            return True
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            wait = RECV_SLICE
            if deadline is not None:
                wait = max(min(wait, deadline - time.monotonic()), 0.0)
            if q._ring.wait_ready(wait):    # a message, or completed: the end of file
                return True
            # A slice went by without a message: is the other end still there?
            if self._peer.gone():
                return True                 # recv() raises EOFError (or gets a late one)
            if deadline is not None and time.monotonic() >= deadline:
                return False

    # -- pickling ----------------------------------------------------------------------

    def __reduce__(self):
        self._check_closed()
        names = [_end_name(self._base, self._index)]
        names += [q._seg.name for q in (self._out, self._in) if q is not None]
        handed = []
        for seg_name in names:
            fd = _hold_for_transfer(seg_name)
            if fd < 0:
                continue
            try:
                handed.append(_dup_fd(fd, self._transfers))
            except Exception:
                last_closer.close_unlocked(fd)
        return _rebuild, (self._base, self._index, self._duplex, tuple(handed))

    def __repr__(self):
        state = "closed" if self._closed else (
            "duplex" if self._duplex else ("read-only" if self._readable else "write-only"))
        return f"<sharedbridge.Connection {self._base!r} end {self._index} {state}>"


try:
    from multiprocessing.reduction import ForkingPickler as _ForkingPickler
except ImportError:         # pragma: no cover
    _ForkingPickler = pickle


class _Peer:
    """The other end of a connection, looked at without taking part in its lifetime: its
    segment mapped (join=False) for the state word, and a descriptor of this process's own
    that never takes a shared flock, for the reaper's test (docs/format.md section 8)."""

    __slots__ = ("name", "seg", "fd", "pid", "is_gone")

    def __init__(self, name):
        self.name = name
        self.fd = -1
        self.pid = 0
        self.is_gone = False
        try:
            self.seg = open_segment(name, join=False)
        except (SegmentNotFoundError, SharedBridgeError):
            self.seg = None
            self.is_gone = True

    def gone(self):
        """True if no process has that end open any more (sticky: an end never comes back).
        An end whose last holder died is removed here, as a reaper would."""
        if self.is_gone:
            return True
        seg = self.seg
        if struct.unpack_from("<I", seg.mm, H.STATE_OFFSET)[0] == H.STATE_RETIRED:
            self.is_gone = True
            return True
        fd = self._probe_fd()
        if fd < 0:
            self.is_gone = True
            return True
        if not last_closer.try_exclusive(fd):
            return False
        # Nobody holds it: its last holder died without closing. Remove it while holding
        # the exclusive lock (joiners re-check the state after their shared lock).
        try:
            struct.pack_into("<I", seg.mm, H.STATE_OFFSET, H.STATE_RETIRED)
            unlink_if_same(self.name, seg.ident)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self.is_gone = True
        return True

    def _probe_fd(self):
        if self.fd >= 0 and self.pid == os.getpid():
            return self.fd
        # A fork child shares the parent's description: it opens its own.
        try:
            fd = open_object(self.name, os.O_RDONLY, 0)
        except OSError:
            return -1
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != tuple(self.seg.ident):
            os.close(fd)
            return -1
        self.fd, self.pid = fd, os.getpid()
        return fd

    def close(self):
        if self.fd >= 0 and self.pid == os.getpid():
            os.close(self.fd)
        self.fd = -1


def _finish(own, out_q, in_q, peer, transfers):
    """Close one connection object: its claim on its end (the end is gone when this was the
    last one in every process), then its queues; the last closer of an end completes both
    of its queues, waking the other side."""
    own.close()
    if own.read_state() == H.STATE_RETIRED:
        for q in (out_q, in_q):
            if q is not None:
                try:
                    q.complete()
                except Exception:
                    pass
    if not peer.is_gone and peer.seg is not None:
        try:
            peer.gone()             # removes the other end if its last holder died
        except Exception:
            pass
    for q in (out_q, in_q):
        if q is not None:
            try:
                _close_queue(q)
            except Exception:
                pass
    peer.close()
    while transfers:
        try:
            os.close(transfers.pop())
        except OSError:
            pass


def _hold_for_transfer(name):
    """A new descriptor of segment *name* holding a shared flock of its own (-1 if that is
    impossible): it keeps the last-closer segment alive until the receiver of a pickled
    connection has joined it."""
    try:
        fd = open_object(name, os.O_RDWR, 0)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return -1
    return fd


def _dup_fd(fd, transfers):
    """multiprocessing.reduction.DupFd(fd): the child being started inherits fd itself
    (the parent keeps its copy until the connection is closed); otherwise the resource
    sharer sends a duplicate to the receiver, and fd is closed here."""
    from multiprocessing import context, reduction
    dup = reduction.DupFd(fd)
    if context.get_spawning_popen() is not None:
        transfers.append(fd)
    else:
        os.close(fd)         # the sharer holds a duplicate of the same description
    return dup


def _rebuild(base, index, duplex, handed):
    fds = []
    try:
        for h in handed:
            try:
                fds.append(h.detach())
            except Exception:
                pass
        own = open_segment(_end_name(base, index))
        qs = {}
        for i in ((0, 1) if duplex else (1,)):      # simplex: both ends use q1
            qs[i] = _attach_direction(_queue_name(base, i))
        return Connection._build(base, index, duplex, own, qs)
    finally:
        for fd in fds:
            last_closer.close_unlocked(fd)
