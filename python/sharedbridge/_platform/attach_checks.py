"""Opening an existing segment, with the checks of docs/format.md section 6.2 in order.

The object behind a name is untrusted (docs/security.md, "What it must never achieve"):
open_existing() is step 1 (shm_open, its errors), check_object() step 2 (fstat: a
regular file, our user), map_validated() steps 3 to 6: the fixed header is read with
pread while the creator may still be writing it, then copied once into private memory
(pread again), validated (_format/header.py), and only then are exactly data_offset +
data_size bytes mapped (never the whole object, never resizing it). An object that
changes size meanwhile is retried, then refused as corrupt. Joining a last-closer
segment (step 8) is last_closer.join; the Segment around the result is segment.py's.

With the compiled module (lock_core.accel), open_first() makes the system calls of steps
1 to 4 in one call (open, fstat, the pread of the state and the pread of the private
copy) and map_shared is compiled too; every rule stays here, applied to what they return
(check_opened, _attach_once, _decode_copy): the same checks in the same order, the same
errors, as without it.
"""

import os
import stat
import struct
import time

from .._format import header as H
from .._format import queue_layout as QL
from .._format.segment_name import validate_key
from ..errors import CorruptSegmentError, SegmentNotReadyError
from . import os_errors
from .backend import open_object
from .lock_core import accel
from .mapping import map_shared

# How many times attach starts over when the object changes size under it.
_SIZE_CHANGE_RETRIES = 5


def open_existing(name):
    """Step 1: the descriptor of the existing object *name*, opened read-write; our
    exception (not found, permission, not a shared-memory object) when that fails."""
    validate_key(name)
    try:
        return open_object(name, os.O_RDWR, 0)
    except OSError as e:
        error = os_errors.error_for(e, name, os_errors.OPEN)
        if error is e:
            raise
    try:
        raise error
    finally:
        del error      # no frame <-> traceback cycle (os_errors.translated says why)


def check_object(name, fd, allow_other_owner):
    """Step 2: fstat of *fd*; refuses an object that is not a regular file, and one of
    another user unless *allow_other_owner*. Returns the fstat result, which
    map_validated() takes for the object's identity and its first size."""
    st = os.fstat(fd)
    # The effective uid is asked each time: a process may change it (seteuid).
    _check_stat(name, st.st_mode, st.st_uid, os.geteuid(), allow_other_owner)
    return st


def _check_stat(name, mode, uid, euid, allow_other_owner):
    """Step 2's rules on the fstat fields *mode* and *uid*, *euid* the effective uid."""
    if not stat.S_ISREG(mode):
        raise os_errors.not_ours(name, "it is not a regular shared-memory object")
    if uid != euid and not allow_other_owner:
        raise os_errors.owned_by_other(name, uid)


# The arguments of accel.attach_read: the bytes up to the state word (step 3's poll),
# read from objects of at least the fixed header's size, and the private copy's size.
_POLL_LEN = H.STATE_OFFSET + 4


def open_first(name):
    """Step 1, and with the compiled module the system calls of steps 2 to 4: returns
    (fd, first), *first* being None (nothing more was done) or accel.attach_read's tuple
    (fd, st_mode, st_uid, st_dev, st_ino, st_size, poll, copy, euid) for check_opened and
    map_checked. Raises what open_existing raises."""
    if _attach_read is not None:
        validate_key(name)
        first = _attach_read(name, _POLL_LEN, H.FIXED_SIZE, _COPY_READ)
        if first is not None:
            return first[0], first
    return open_existing(name), None          # its errors, from its own calls


def check_opened(name, fd, first, allow_other_owner):
    """Step 2 on what open_first returned: returns the object's identity (st_dev, st_ino)
    and its size, for map_checked."""
    if first is None:
        st = check_object(name, fd, allow_other_owner)
        return ident_of(st), st.st_size
    _check_stat(name, first[1], first[2], first[8], allow_other_owner)
    return (first[3], first[4]), first[5]


def ident_of(st):
    """(st_dev, st_ino) of an fstat result, or an ident already: the object's identity."""
    return (st.st_dev, st.st_ino) if hasattr(st, "st_ino") else st


class _SizeChanged(Exception):
    """The object changed size while it was being attached: start over."""


def map_validated(name, fd, timeout, st=None):
    """Steps 3 to 6 on the object open as *fd*: wait up to *timeout* seconds for its
    creator, validate a private copy of the header, map exactly what it describes.
    *st* is check_object's fstat of *fd* (None: fstat it here). Returns (header,
    mapping, (st_dev, st_ino))."""
    if st is None:
        st = os.fstat(fd)
    # A descriptor's device and inode never change: the identity is this fstat's.
    header, mm = map_checked(name, fd, timeout, st.st_size)
    return header, mm, ident_of(st)


def map_checked(name, fd, timeout, size, first=None):
    """map_validated for an object whose size was *size* (check_opened's), returning
    (header, mapping); *first* is open_first's, whose reads serve the first attempt."""
    deadline = time.monotonic() + timeout
    for _ in range(_SIZE_CHANGE_RETRIES):
        try:
            return _attach_once(name, fd, deadline, timeout, size, first)
        except _SizeChanged:
            first = None
            time.sleep(0.001)
            size = _size_of(fd)
    raise CorruptSegmentError(
        f"corrupt SharedBridge segment {name!r}: it changed size while attaching "
        f"({_SIZE_CHANGE_RETRIES} attempts); no conforming creator resizes a segment it "
        "has published: recreate it")


def _size_of(fd):
    """The object's size now: lseek to its end (the descriptor's offset is never used:
    every read here is a pread), one cheap system call where fstat builds a stat
    result."""
    return os.lseek(fd, 0, os.SEEK_END)


# How much the private copy reads at once: the fixed header and, in the same pread, the
# rest of any header of up to this size (every kind without a field table: at most
# 0x300 bytes, kind 9 of 32 dimensions; a structure of up to 7 fields of up to 8
# dimensions); a longer header's remaining bytes are read by a second pread. Reading
# past header_size reads bytes that are ignored; nothing is mapped before validation.
# Not more: the copy is a kernel copy and an allocation on every attach.
_COPY_READ = 1024
# H.decode_image caches headers of at most this many bytes (its bound).
assert _COPY_READ <= H._CACHE_MAX_BYTES


def _pread_exactly(fd, n, offset):
    data = os.pread(fd, n, offset)
    if len(data) != n:
        raise _SizeChanged()
    return data


_STATE_0 = bytes(4)


def _unwritten_magic(magic):
    """True when every byte of *magic* is 0 or the byte of H.MAGIC at its place: nothing
    of the creator's 8-byte store, or the part of it a pread (a kernel copy, not one
    8-byte load) saw while it happened (docs/format.md section 6.2 step 3)."""
    return all(b == 0 or b == m for b, m in zip(magic, H.MAGIC))


def _wait_published(name, fd, deadline, timeout, size):
    """Step 3: poll the object, whose size was *size* a moment ago, until its creator
    has published it; returns its size."""
    delay = 0.001
    while True:
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
            elif not (_unwritten_magic(magic) and size >= H.FIXED_SIZE
                      and struct.unpack_from("<I", head, H.STATE_OFFSET)[0]
                      == H.STATE_INITIALIZING):
                raise os_errors.not_ours(name, "wrong magic")
            # else: state 0 and the magic all zero (the creator has sized the object but not
            # written yet) or part of it (pread copied it while the creator stored it).
        if time.monotonic() >= deadline:
            raise SegmentNotReadyError(
                f"segment {name!r} is still initializing after {timeout} s: its creator "
                "may have died while creating it; unlink it and create it again")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
        size = _size_of(fd)


def _decode_copy(name, fd, head, size):
    """Step 5 on the private copy *head*: the first min(size, _COPY_READ) bytes of the
    object, completed by a pread of the rest of a longer header. Nothing after this
    reads the header from shared memory."""
    header_size = H.peek_header_size(head)
    if H.FIXED_SIZE <= header_size <= len(head):
        return H.decode_image(head[:header_size], size, name)
    fixed = head[:H.FIXED_SIZE]
    state = struct.unpack_from("<I", fixed, H.STATE_OFFSET)[0]
    table = b""
    if len(head) < header_size <= min(size, H.MAX_HEADER_SIZE):    # a header longer than the read
        table = head[H.FIXED_SIZE:] + _pread_exactly(fd, header_size - len(head), len(head))
    return H.decode(fixed, table, size, state, name)


# The kinds with immutable words in their data area (what _check_data_words checks).
_WORD_KINDS = (H.KIND_QUEUE,) + H.IMMUTABLE_WORD_KINDS


def _check_data_words(name, header, mm):
    """Step 6: the immutable words of a semaphore's, a barrier's (docs/format.md section
    10.2) or a queue's (11.2) data area, checked by every open that maps it, untyped ones
    included; the objects read and keep their own copy."""
    if header.kind == H.KIND_QUEUE:
        QL.check_immutable(mm, header.data_offset, name)
        return
    why = H.immutable_words_problem(header.kind, mm, header.data_offset)
    if why is not None:
        raise CorruptSegmentError(
            f"corrupt SharedBridge segment {name!r}: its data area holds a {why}, which "
            "docs/format.md section 10.2 forbids (a process overwrote it): recreate it")


def _attach_once(name, fd, deadline, timeout, size, first=None):
    """One attempt at steps 3 to 6 (raises _SizeChanged to start over). *first*:
    open_first's tuple, whose poll and copy (read in that order from the object of
    *size* bytes) are used instead of reading them again, or None."""
    n = min(size, _COPY_READ)
    published = False
    if size >= H.FIXED_SIZE:
        # Step 3 at its most common, a segment published before this attach: one pread
        # shows the right magic and a non-zero state; anything else goes through
        # _wait_published.
        poll = os.pread(fd, _POLL_LEN, 0) if first is None else first[6]
        published = (len(poll) == _POLL_LEN and poll[:8] == H.MAGIC
                     and poll[H.STATE_OFFSET:] != _STATE_0)
    if not published:
        size = _wait_published(name, fd, deadline, timeout, size)
        n = min(size, _COPY_READ)
        first = None
    # Step 4, the private copy, read after the state word was seen published: bytes read
    # together with the state could predate the creator's last stores (section 6.2).
    if first is None:
        head = _pread_exactly(fd, n, 0)
    else:
        head = first[7]
        if len(head) != n:
            raise _SizeChanged()
    header = _decode_copy(name, fd, head, size)
    length = header.total_size
    # Step 6. Mapping never reads the object, so a shrink before the mmap is harmless
    # until the mapping is used; the size check after it catches any change since
    # *size* (which the header was validated against) before a byte is read through the
    # mapping (a read past the end would be a SIGBUS).
    try:
        mm, now = _map_sized(fd, length)
    except (OSError, OverflowError, MemoryError) as e:
        error = os_errors.error_for(e, name, os_errors.MAP, length)
        if error is e:
            raise
    else:
        if now < 0:
            now = _size_of(fd)
        if now == size:
            if header.kind in _WORD_KINDS:
                _check_data_words(name, header, mm)
            return header, mm
        del mm                      # unmapped now: nothing else refers to it
        raise _SizeChanged()
    try:
        raise error
    finally:
        del error


def _map_then_size(fd, length):
    """accel.map_sized's twin: the mapping, and -1 for the size (not asked yet)."""
    return map_shared(fd, length), -1


_attach_read = accel.attach_read if accel is not None else None
_map_sized = accel.map_sized if accel is not None else _map_then_size
