"""The one way to find the segment of any sharedbridge object.

segment_of(obj) answers for every kind of object this layer makes: raw ctypes objects
(raw_object), synchronized wrappers (synchronized), locks (shared_lock) and
synchronization objects (sync). Each of those modules registers, for its classes, how
their instances reach their segment; nothing else looks inside an object for it.
Registration is by class (functools.singledispatch), never by an attribute looked up
on the object: a ctypes Structure may have a field of any non-reserved name
(docs/format.md section 4), which would hide an attribute.
"""

import functools


@functools.singledispatch
def segment_of(obj):
    """The Segment of a sharedbridge object, or None for any other object (a private
    ctypes object, an UnavailableObject, ...)."""
    return None


def require_segment(obj):
    """The Segment of a sharedbridge object; TypeError for any other object."""
    seg = segment_of(obj)
    if seg is None:
        raise TypeError(f"{type(obj).__name__} is not a sharedbridge object")
    return seg
