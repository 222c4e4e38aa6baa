"""The compiled path of the queue ring (QueueCore in _platform/_fastlock.c), and its glue.

queue_ring.QueueRing derives from ``RingCore``: the compiled QueueCore when the extension
is loaded (lock_core.BACKEND "c"), else ``object`` (the ctypes path, or
SHAREDBRIDGE_NO_ACCEL=1). With the compiled core, queues.py hands put/put_many of bytes
and str going inline, and every get/get_many, to it: one call per operation,
the mutex taken once, the words and records of docs/format.md section 11.3 handled in C.
Everything rare (out-of-line messages, corrupt words and records, taken records, the
repair after a recovered mutex) goes back to QueueRing's Python methods from there, and
every other message type is encoded by the Python path. Both paths behave the same:
python/tests run the queue tests on each (scripts/test-python.sh, SHAREDBRIDGE_NO_ACCEL=1).
"""

import ctypes
import queue

from .._format import queue_layout as L
from .._platform.lock_core import accel
from . import queue_delivery as _delivery

FAST = accel is not None
RingCore = accel.QueueCore if FAST else object
BACKEND = "c" if FAST else "ctypes"


# The object of a message the compiled path got that is not inline bytes or str.
decode = _delivery.decode


def setup(completed_signal, ring_globals):
    """Called once by queue_ring: the exceptions, the decoder, and queue_ring's globals
    (the compiled path calls the test hooks _before_commit, _after_commit, _before_done
    at the same points as the Python path), and queue_delivery's hand-over."""
    if FAST:
        accel.queue_setup(completed_signal, queue.Full, queue.Empty, decode, ring_globals,
                          _delivery.finish_many, _delivery.deliver)


def bind(ring, mm, base, capacity, lock):
    """Bind the compiled core of *ring* to its mapped data area (control block and ring)."""
    area = (ctypes.c_uint8 * (L.RING + capacity)).from_buffer(mm, base)
    ring._qbind(area, ring._recoveries, lock, ring._R, ring._W, ring._J, capacity,
                ring.max_messages, ring.name, ring._undelivered)
