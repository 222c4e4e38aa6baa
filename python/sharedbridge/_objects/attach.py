"""attach(name): rebuild the object a segment holds from its header alone."""

from .._format import header as H
from .._format.segment_name import qualify
from .._platform.segment import open_segment
from ..errors import TypeMismatchError
from .raw_object import element_type, raw_object
from .shared_lock import lock_from_segment, open_external_lock
from .sync import sync_from_segment
from .synchronized import synchronized
from .queues import queue_from_segment
from .ndarray import ndarray_from_segment


def attach(name, typecode_or_type=None, *, timeout=5.0, allow_other_owner=False, shape=None,
           wait_for_name=None, dir=None):
    """Open the existing segment *name* and rebuild the object it holds.

    Returns what the creator made: a synchronized wrapper (embedded or external lock),
    a raw ctypes array/object (no lock, or a process-local lock that other processes
    cannot reach), a Lock/RLock for a lock-only segment, or an Event, Semaphore,
    BoundedSemaphore, Condition or Barrier for a synchronization segment, a Queue,
    SimpleQueue or JoinableQueue for a queue. Structures are rebuilt from
    the field table unless *typecode_or_type* gives the class (then checked against
    the recorded layout). Attaching never unlinks anything.

    A segment owned by another user is refused (SegmentPermissionError) unless
    allow_other_owner=True: only attach to other users' segments you trust. Objects
    attached that way carry the permission when pickled to other processes.

    *timeout* is how long to wait for a creator that is still initializing the segment.
    A name that does not exist yet raises SegmentNotFoundError at once, unless
    *wait_for_name* (seconds, or None: do not wait) gives the creator that long to create
    it: a consumer started before its producer (docs/api.md, "Starting a pipeline").
    *dir*: the directory backend's directory (default SHAREDBRIDGE_DIR, else /dev/shm;
    docs/format.md section 1.3).
    """
    key = qualify(name, dir)
    seg = open_segment(key, timeout, allow_other_owner, wait_for_name=wait_for_name)
    h = seg.header
    if h.kind == H.KIND_NDARRAY:
        return ndarray_from_segment(seg, typecode_or_type, shape)
    if h.kind in H.SYNC_KINDS:
        if typecode_or_type is not None:
            raise TypeMismatchError(f"type mismatch: {name!r} is a synchronization object "
                                    f"(kind {h.kind}), not {typecode_or_type!r}")
        return sync_from_segment(seg, timeout, allow_other_owner)
    if h.kind == H.KIND_QUEUE:
        if typecode_or_type is not None:
            raise TypeMismatchError(f"type mismatch: {name!r} is a queue, not "
                                    f"{typecode_or_type!r}")
        return queue_from_segment(seg)
    if shape is not None:
        raise TypeMismatchError(f"type mismatch: asked for an n-dimensional array of shape "
                                f"{tuple(shape) if not isinstance(shape, int) else (shape,)}"
                                f", {name!r} is not one (kind {h.kind})")
    if h.kind == H.KIND_LOCK:
        if typecode_or_type is not None:
            raise TypeMismatchError(f"type mismatch: {name!r} is a lock, not {typecode_or_type!r}")
        return lock_from_segment(seg)
    raw = raw_object(seg, element_type(h, typecode_or_type))
    if h.lock_kind == H.LOCK_EMBEDDED:
        return synchronized(raw, lock_from_segment(seg))
    if h.lock_kind == H.LOCK_EXTERNAL:
        return synchronized(raw, lock_from_segment(
            open_external_lock(key, h.lock_name, timeout, allow_other_owner)))
    return raw
