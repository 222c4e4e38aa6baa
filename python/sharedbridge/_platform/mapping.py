"""Mapping a segment's descriptor into this process: map, unmap, the memory fence.

Mappings are made with libc mmap(2) through ctypes, not with the mmap module: CPython's
mmap.mmap duplicates the descriptor it is given and keeps it open for the mapping's life,
so every live object would hold a file descriptor (EMFILE after ~1,020 objects under
``ulimit -n 1024``). Here the caller closes the descriptor right after mapping (except
for a last-closer segment: one descriptor per segment holds its flock, docs/format.md
section 8, see last_closer.py). The mapping is a ctypes ``c_char`` array over the mapped
address (``Segment.mm``: a writable buffer that supports len, slicing, struct.pack_into
and from_buffer like an mmap) whose instance dictionary holds an _Unmapper: munmap(2)
runs when the last object using the mapping (every from_buffer view, memoryview and
numpy array keeps it alive) is gone. A mutex view pinned in robust_mutex.PINNED keeps its
mapping for the life of the process. With the compiled module (lock_core.accel), its
map_shared makes the same view in one call (a capsule that unmaps in place of the
_Unmapper): ctypes' call overhead is a sizeable share of an attach.
"""

import ctypes
import mmap
import os
import threading

from .lock_core import accel

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long)
_munmap = _libc.munmap
_munmap.restype = ctypes.c_int
_munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value
_PROT = mmap.PROT_READ | mmap.PROT_WRITE


class _Unmapper:
    """Unmaps one mapping when collected (kept in the mapping view's __dict__)."""

    __slots__ = ("addr", "length")

    def __init__(self, addr, length):
        self.addr = addr
        self.length = length

    def __del__(self):
        try:
            _munmap(self.addr, self.length)
        except Exception:       # interpreter shutdown: the process unmaps everything anyway
            pass


def map_shared(fd, length):
    """Map *length* bytes of *fd* read-write, MAP_SHARED, without keeping *fd*: returns a
    ctypes c_char array over the mapping, unmapped when it (and every view) is gone.
    Raises OSError (errno) like mmap.mmap, OverflowError for an impossible length."""
    if length <= 0:
        raise ValueError("cannot map an empty segment")
    if length >= 2 ** 63:
        raise OverflowError("mapping length too large")
    addr = _mmap(None, length, _PROT, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    try:
        view = (ctypes.c_char * length).from_address(addr)
    except BaseException:
        _munmap(addr, length)
        raise
    view.__dict__["_sb_unmapper"] = _Unmapper(addr, length)
    return view


if accel is not None:
    map_shared = accel.map_shared       # the same function, its errors included


def fence():
    """A full memory barrier: what was stored before it is visible to other processes
    before what is stored after it (the creator's header before state = ready:
    docs/format.md section 6.1, step 6)."""
    # A lock round trip is a full memory barrier (pthread/futex based) on every platform.
    _fence_lock.acquire()
    _fence_lock.release()


_fence_lock = threading.Lock()


def _fresh_lock_in_child():
    # A fork can happen while another thread holds it: the child, which has only the
    # forking thread, would then block forever in its first create.
    global _fence_lock
    _fence_lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_lock_in_child)
