"""Opening an existing segment, with the checks of docs/format.md section 6.2 in order.

The object behind a name is untrusted (docs/security.md, "What it must never achieve"):
open_existing() is step 1 (shm_open, its errors), check_object() step 2 (fstat: a
regular file, our user), map_validated() steps 3 to 6: the fixed header is read with
pread while the creator may still be writing it, then copied once into private memory
(pread again), validated (_format/header.py), and only then are exactly data_offset +
data_size bytes mapped (never the whole object, never resizing it). An object that
changes size meanwhile is retried, then refused as corrupt. Joining a last-closer
segment (step 8) is last_closer.join; the Segment around the result is segment.py's.
"""

import os
import stat
import struct
import time

import _posixshmem

from .._format import header as H
from .._format.segment_name import os_name, validate_name
from ..errors import CorruptSegmentError, SegmentNotReadyError
from . import os_errors
from .mapping import map_shared

# How many times attach starts over when the object changes size under it.
_SIZE_CHANGE_RETRIES = 5


def open_existing(name):
    """Step 1: the descriptor of the existing object *name*, opened read-write; our
    exception (not found, permission, not a shared-memory object) when that fails."""
    validate_name(name)
    with os_errors.translated(name, os_errors.OPEN):
        return _posixshmem.shm_open(os_name(name), os.O_RDWR, 0)


def check_object(name, fd, allow_other_owner):
    """Step 2: fstat of *fd*; refuses an object that is not a regular file, and one of
    another user unless *allow_other_owner*. Returns the fstat result."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise os_errors.not_ours(name, "it is not a regular shared-memory object")
    if st.st_uid != os.geteuid() and not allow_other_owner:
        raise os_errors.owned_by_other(name, st.st_uid)
    return st


def ident_of(st):
    """(st_dev, st_ino) of an fstat result, or an ident already: the object's identity."""
    return (st.st_dev, st.st_ino) if hasattr(st, "st_ino") else st


class _SizeChanged(Exception):
    """The object changed size while it was being attached: start over."""


def map_validated(name, fd, timeout):
    """Steps 3 to 6 on the object open as *fd*: wait up to *timeout* seconds for its
    creator, validate a private copy of the header, map exactly what it describes.
    Returns (header, mapping, (st_dev, st_ino))."""
    deadline = time.monotonic() + timeout
    for _ in range(_SIZE_CHANGE_RETRIES):
        try:
            return _attach_once(name, fd, deadline, timeout)
        except _SizeChanged:
            time.sleep(0.001)
    raise CorruptSegmentError(
        f"corrupt SharedBridge segment {name!r}: it changed size while attaching "
        f"({_SIZE_CHANGE_RETRIES} attempts); no conforming creator resizes a segment it "
        "has published: recreate it")


def _pread_exactly(fd, n, offset):
    data = os.pread(fd, n, offset)
    if len(data) != n:
        raise _SizeChanged()
    return data


def _wait_published(name, fd, deadline, timeout):
    """Step 3: poll the object until its creator has published it; returns its size."""
    delay = 0.001
    while True:
        size = os.fstat(fd).st_size
        if size == 0:
            pass                                     # not sized yet: wait
        elif size < len(H.MAGIC):
            raise os_errors.not_ours(name, f"the object is only {size} bytes")
        else:
            head = os.pread(fd, H.FIXED_SIZE, 0)
            if len(head) != min(size, H.FIXED_SIZE):
                raise _SizeChanged()
            magic = head[:len(H.MAGIC)]
            if magic == H.MAGIC:
                if size < H.FIXED_SIZE:
                    # ftruncate sets the final size in one step: a SharedBridge object of
                    # 8..511 bytes is never one being initialized.
                    raise CorruptSegmentError(
                        f"corrupt SharedBridge header: {name!r} is truncated: {size} bytes, "
                        "smaller than the 512-byte header: recreate it")
                if struct.unpack_from("<I", head, H.STATE_OFFSET)[0] != H.STATE_INITIALIZING:
                    return size
            elif not (magic == bytes(len(H.MAGIC)) and size >= H.FIXED_SIZE
                      and struct.unpack_from("<I", head, H.STATE_OFFSET)[0]
                      == H.STATE_INITIALIZING):
                raise os_errors.not_ours(name, "wrong magic")
            # else: all zero, state 0: the creator has sized it but not written yet.
        if time.monotonic() >= deadline:
            raise SegmentNotReadyError(
                f"segment {name!r} is still initializing after {timeout} s: its creator "
                "may have died while creating it; unlink it and create it again")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def _attach_once(name, fd, deadline, timeout):
    """One attempt at steps 3 to 6 (raises _SizeChanged to start over)."""
    size = _wait_published(name, fd, deadline, timeout)
    # Step 4, the private copy, read after the state word was seen published; nothing
    # below reads the header from shared memory.
    fixed = _pread_exactly(fd, H.FIXED_SIZE, 0)
    state = struct.unpack_from("<I", fixed, H.STATE_OFFSET)[0]
    header_size = H.peek_header_size(fixed)
    table = b""
    if H.FIXED_SIZE <= header_size <= min(size, H.MAX_HEADER_SIZE):
        table = _pread_exactly(fd, header_size - H.FIXED_SIZE, H.FIXED_SIZE)
    header = H.decode(fixed, table, size, state, name)        # step 5
    length = header.total_size
    if os.fstat(fd).st_size < length:     # it shrank: mapping past the end would SIGBUS
        raise _SizeChanged()
    with os_errors.translated(name, os_errors.MAP, length):   # step 6
        mm = map_shared(fd, length)
    st = os.fstat(fd)
    if st.st_size != size:
        del mm                      # unmapped now: nothing else refers to it
        raise _SizeChanged()
    return header, mm, ident_of(st)
