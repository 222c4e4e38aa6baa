"""The futex system call on a shared 32-bit word (docs/format.md section 10.3).

Shared futexes only (no FUTEX_PRIVATE_FLAG): the word lives in a segment that other
processes map. FUTEX_WAIT takes a relative timeout, which the kernel measures on
CLOCK_MONOTONIC. Called through CDLL, so the GIL is released while the thread sleeps.
"""

import ctypes
import os

FUTEX_WAIT, FUTEX_WAKE = 0, 1
WAKE_ALL = 0x7FFFFFFF
_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(
    os.uname().machine.lower())

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def available():
    return _SYS_FUTEX is not None


def wait(address, expected, timeout_ns):
    """Sleep while the u32 at *address* equals *expected*, at most *timeout_ns*.
    Returns at a wake-up, a changed word (EAGAIN), a signal (EINTR) or the timeout: the
    caller re-reads the word in every case."""
    ts = _Timespec(*divmod(max(0, int(timeout_ns)), 1_000_000_000))
    _syscall(ctypes.c_long(_SYS_FUTEX), ctypes.c_void_p(address), ctypes.c_long(FUTEX_WAIT),
             ctypes.c_long(expected), ctypes.byref(ts), ctypes.c_void_p(None), ctypes.c_long(0))


def wake(address, count=WAKE_ALL):
    """Wake up to *count* threads (of any process) sleeping on the u32 at *address*."""
    _syscall(ctypes.c_long(_SYS_FUTEX), ctypes.c_void_p(address), ctypes.c_long(FUTEX_WAKE),
             ctypes.c_long(count), ctypes.c_void_p(None), ctypes.c_void_p(None),
             ctypes.c_long(0))
