"""Handing over what a get took from the ring (docs/api.md, Queue, "Nothing taken is lost").

A get_many takes its messages from the ring under one acquisition of the mutex and turns
them into objects after the release (decoding can run user code: unpickling). Something can
fail between the two: one message cannot be decoded (a corrupt string, a class this process
cannot import), the ring turns out corrupt after the first messages, or a KeyboardInterrupt
arrives. The messages already taken are no longer in the ring, so they stay with the queue
handle, in ring order, in its ``_undelivered`` list, and the handle's next get or get_many
hands them over before it looks at the ring again:

- message *i* of a batch cannot be decoded: the messages before it are returned; its error
  is raised by the next get (as a single get would have raised it), then the rest follow;
- the ring fails after *n* messages were taken: the *n* are returned, the error is raised
  by the next get (the ring raises it again on the one after, if it is still corrupt);
- a BaseException that is not an Exception (KeyboardInterrupt, SystemExit) is raised at
  once, and every message of the batch not yet handed over stays for the next get.

So no message taken by a handle is lost while the handle lives, and the order stays FIFO.
The list is private to the handle (a process, not the segment): close() drops it.

The compiled path (queue_fast.py) calls finish_many and deliver only in these rare cases
and when a batch holds a message that needs decoding; bytes and str never do.
"""

from . import queue_messages as _codec


class Decoded:
    """An object already decoded (kept when a KeyboardInterrupt came after it)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj


class Failed:
    """The error a get raises in this message's place."""

    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error


def decode(tag, descriptor, data, name):
    """The object of a message's tag, descriptor and data (bytes put inline as they are)."""
    if tag == 1 and type(data) is bytes and not descriptor:
        return data
    return _codec.decode(tag, memoryview(descriptor), data, name=name)


def finish(item, name):
    """The object of one item the ring gave: bytes and str as they are; a (tag,
    descriptor, data) tuple of the compiled path, or a queue_ring.Message, decoded;
    Decoded and Failed as above."""
    t = type(item)
    if t is bytes or t is str:
        return item
    if t is tuple:
        tag, descriptor, data = item
    elif t is Decoded:
        return item.obj
    elif t is Failed:
        raise item.error
    else:
        tag, descriptor, data = item.tag, item.descriptor, item.data
    return decode(tag, descriptor, data, name)


def finish_many(undelivered, items, error, name):
    """The objects of *items*, taken from the ring in this order, and *error* (None, or
    what the ring raised after them). What cannot be handed over now goes to the front of
    *undelivered* (the module's docstring says when)."""
    after = [] if error is None else [Failed(error)]
    if error is not None and not isinstance(error, Exception):
        undelivered[:0] = list(items)       # a KeyboardInterrupt is not kept waiting
        raise error
    out = []
    for i, item in enumerate(items):
        try:
            out.append(finish(item, name))
        except Exception as e:
            rest = list(items[i + 1:]) + after
            if not out:                     # the first: raised now, as a single get raises
                undelivered[:0] = rest
                raise
            undelivered[:0] = [Failed(e), *rest]
            return out
        except BaseException:
            undelivered[:0] = [Decoded(x) for x in out] + list(items[i:]) + after
            raise
    undelivered[:0] = after
    return out


def deliver(undelivered, max_items, name):
    """What the next get (*max_items* None: one object) or get_many (a list of at most
    *max_items*) hands over from *undelivered*, which is not empty. A batch stops before an
    error that is not its first item."""
    if max_items is None:
        item = undelivered.pop(0)
        try:
            return finish(item, name)
        except BaseException as e:
            if not isinstance(e, Exception):    # interrupted: it is still this one's turn
                undelivered.insert(0, item)
            raise
    batch = [undelivered.pop(0)]
    while undelivered and len(batch) < max_items and type(undelivered[0]) is not Failed:
        batch.append(undelivered.pop(0))
    return finish_many(undelivered, batch, None, name)


def count(undelivered):
    """How many messages wait in *undelivered* (its errors are not messages)."""
    return sum(type(x) is not Failed for x in undelivered)
