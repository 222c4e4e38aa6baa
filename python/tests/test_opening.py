"""What attach() and header_of() make of whatever is at a name, before the header's fields
are read (docs/format.md section 6.2, the order of checks on open): an object that is not a
SharedBridge segment (not a regular file, too small for the magic, a wrong magic) is refused
at once; a segment smaller than its header is truncated; the state word decides between
waiting for the creator, using the segment and refusing it; only the size the header
describes is mapped, and a hostile process resizing the object meanwhile gets nothing but
the library's errors. Every forged object is named pyh_<pid>_<n> and removed by its test."""

import os
import socket
import struct
import threading
import time

import pytest

import sharedbridge as sb
from conftest import assert_attach_gives, image_of, reseal, run_python

# The directory backend run (docs/format.md section 1.3) sets SHAREDBRIDGE_DIR: segments are files there.
SHM = os.environ.get("SHAREDBRIDGE_DIR") or "/dev/shm"


def assert_at_once(fn, exc, match=None):
    """fn() raises *exc* without waiting for the (long) ready timeout."""
    t0 = time.monotonic()
    with pytest.raises(exc, match=match) as e:
        fn()
    assert time.monotonic() - t0 < 2
    return e.value


# --- not a SharedBridge segment ------------------------------------------------------------

@pytest.mark.parametrize("size", range(1, 8))
def test_one_to_seven_bytes_is_not_a_sharedbridge_segment(forge, size):
    name = forge(b"SHBRIDGE"[:size])
    assert_at_once(lambda: sb.attach(name, timeout=10), sb.NotASharedBridgeSegmentError, name)


@pytest.mark.parametrize("data,size", [
    (b"NOTOURS!", None), (b"NOTOURS!", 8), (b"\x7fELF", 4096), (b"SHBRIDGf", 600),
    (bytes(8), 100),                     # all-zero magic but too small to be ours
    (bytes(8), 511),
])
def test_wrong_magic_is_refused_at_once(forge, data, size):
    name = forge(data, size)
    err = assert_at_once(lambda: sb.attach(name, timeout=10), sb.NotASharedBridgeSegmentError,
                         "wrong magic|only|not a SharedBridge")
    assert name in str(err)
    assert isinstance(err, sb.CorruptSegmentError) and isinstance(err, ValueError)


def test_zero_magic_with_nonzero_state_is_not_ours(forge):
    img = bytearray(600)
    struct.pack_into("<I", img, 0x180, 1)
    name = forge(img)
    assert_at_once(lambda: sb.attach(name, timeout=10), sb.NotASharedBridgeSegmentError)


def test_magic_is_checked_before_the_state(forge):
    img = image_of(sb.Array("i", [4]))
    img[0:8] = b"FOREIGN!"
    struct.pack_into("<I", img, 0x180, 0)          # would wait if the state came first
    name = forge(img)
    assert_at_once(lambda: sb.attach(name, timeout=10), sb.NotASharedBridgeSegmentError)


def _cleanup_path(path):
    if os.path.islink(path) or not os.path.isdir(path):
        if os.path.lexists(path):
            os.unlink(path)
    else:
        os.rmdir(path)


@pytest.mark.parametrize("what", ["fifo", "directory", "socket", "symlink", "dangling_symlink"])
def test_not_a_regular_file_is_not_a_sharedbridge_segment(pyh_name, what):
    name = pyh_name()
    path = f"{SHM}/{name}"
    target = sb.RawArray("i", 1) if "symlink" in what else None
    sock = None
    try:
        if what == "fifo":
            os.mkfifo(path, 0o600)
        elif what == "directory":
            os.mkdir(path, 0o700)
        elif what == "socket":
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(path)
        elif what == "symlink":
            os.symlink(f"{SHM}/{target.name}", path)
        else:
            os.symlink(f"{SHM}/{name}_nowhere", path)
        for fn in (lambda: sb.attach(name, timeout=10), lambda: sb.header_of(name)):
            err = assert_at_once(fn, sb.NotASharedBridgeSegmentError)
            assert name in str(err)
    finally:
        if sock is not None:
            sock.close()
        _cleanup_path(path)


# --- truncated -----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [8, 9, 300, 511])
def test_magic_with_8_to_511_bytes_is_truncated(forge, size):
    img = image_of(sb.Array("i", 1))
    name = forge(img[:size])
    err = assert_at_once(lambda: sb.attach(name, timeout=10), sb.CorruptSegmentError,
                         "truncated")
    assert not isinstance(err, sb.NotASharedBridgeSegmentError)


@pytest.mark.parametrize("size", [8, 100, 511])
def test_truncated_below_the_header(forge, size):
    # 8..511 bytes starting with the magic: corrupt (truncated); 1..7 bytes cannot hold
    # the magic and are "not a SharedBridge segment" (above).
    img = image_of(sb.Array("i", 1))
    with pytest.raises(sb.CorruptSegmentError, match="smaller than the 512-byte header"):
        sb.attach(forge(img[:size]), timeout=0.2)


# --- the state word: initializing, ready, retired ------------------------------------------

@pytest.mark.parametrize("state,outcome", [(0, sb.SegmentNotReadyError), (1, None), (2, None),
                                           (3, sb.CorruptSegmentError),
                                           (0xFFFFFFFF, sb.CorruptSegmentError)])
def test_state_word(forge, state, outcome):
    img = image_of(sb.Array("i", [4]))
    struct.pack_into("<I", img, 0x180, state)
    name = forge(img)
    assert_attach_gives(name, outcome, 4)


def test_initializing_segment_times_out(forge):
    img = image_of(sb.Array("i", 1))
    struct.pack_into("<I", img, 0x180, 0)
    name = forge(img)
    with pytest.raises(sb.SegmentNotReadyError, match="still initializing") as e:
        sb.attach(name, timeout=0.1)
    assert isinstance(e.value, TimeoutError)


def test_empty_object_times_out(forge):
    with pytest.raises(sb.SegmentNotReadyError):
        sb.attach(forge(b""), timeout=0.05)


def test_retired_segment_is_usable(forge):
    img = image_of(sb.Array("i", [3]))
    struct.pack_into("<I", img, 0x180, 2)
    assert sb.attach(forge(img), timeout=0.2)[0] == 3


def test_attach_waits_for_the_creator_to_publish(forge):
    img = image_of(sb.Array("i", [8]))
    struct.pack_into("<I", img, 0x180, 0)
    name = forge(img)

    def publish():
        with open(f"{SHM}/{name}", "r+b") as f:
            f.seek(0x180)
            f.write(struct.pack("<I", 1))

    timer = threading.Timer(0.1, publish)
    timer.start()
    try:
        assert sb.attach(name, timeout=5)[0] == 8
    finally:
        timer.join()


def test_zero_magic_and_zero_state_waits_for_the_creator(forge):
    real = image_of(sb.Array("i", [8, 9]))
    name = forge(bytes(len(real)))
    with pytest.raises(sb.SegmentNotReadyError, match="still initializing"):
        sb.attach(name, timeout=0.1)

    def publish():               # the creator writes everything, magic and state last
        with open(f"{SHM}/{name}", "r+b") as f:
            f.seek(8)
            f.write(bytes(real[8:0x180]))
            f.seek(0x184)
            f.write(bytes(real[0x184:]))
            f.seek(0)
            f.write(bytes(real[:8]))
            f.flush()
            f.seek(0x180)
            f.write(bytes(real[0x180:0x184]))

    timer = threading.Timer(0.1, publish)
    timer.start()
    try:
        assert sb.attach(name, timeout=5)[:] == [8, 9]
    finally:
        timer.join()


# --- what is mapped ------------------------------------------------------------------------

def test_only_the_validated_size_is_mapped_and_nothing_is_resized(forge):
    img = image_of(sb.RawArray("d", [1.0, 2.0]))
    name = forge(img, size=1 << 20)
    got = sb.attach(name, timeout=0.1)
    assert got[:] == [1.0, 2.0]
    assert len(got._sb_segment.mm) == 0x210
    assert os.stat(f"{SHM}/{name}").st_size == 1 << 20
    empty = forge(b"")
    with pytest.raises(sb.SegmentNotReadyError):
        sb.attach(empty, timeout=0.05)
    assert os.stat(f"{SHM}/{empty}").st_size == 0


def test_too_large_to_map_is_insufficient_memory(forge):
    img = image_of(sb.RawArray("B", 1))
    count = 1 << 62
    struct.pack_into("<QQQ", img, 0x18, count, 0x200, count)
    name = forge(reseal(img[:0x200]), size=0x200 + count)
    with pytest.raises(sb.InsufficientMemoryError, match=str(0x200 + count)) as e:
        sb.attach(name, timeout=0.1)
    assert isinstance(e.value, MemoryError) and name in str(e.value)


SIZE_CHANGER = """
import os, struct, sys, threading, time, zlib
import sharedbridge as sb
name, img = sys.argv[1], bytes.fromhex(sys.argv[2])
path = (os.environ.get('SHAREDBRIDGE_DIR') or '/dev/shm') + '/' + name
with open(path, 'xb') as f:
    f.write(img)
stop = False
def churn():                                  # a hostile process resizing the object
    fd = os.open(path, os.O_RDWR)
    sizes = [len(img), 512, len(img) + 4096, 300]
    i = 0
    while not stop:
        size = sizes[i % 4]; i += 1
        os.ftruncate(fd, size)
        os.pwrite(fd, img[:size], 0)      # the header stays (a shrink drops the bytes)
    os.ftruncate(fd, len(img))
    os.close(fd)
t = threading.Thread(target=churn); t.start()
outcomes = {}
try:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            obj = sb.attach(name, timeout=0.01)
            key = 'ok'
            del obj
        except sb.SharedBridgeError as e:
            key = type(e).__name__ + (':changed' if 'changed size' in str(e) else '')
        outcomes[key] = outcomes.get(key, 0) + 1
finally:
    stop = True
    t.join()
    os.unlink(path)
print(sorted(outcomes.items()))
"""


def test_an_object_changing_size_while_attaching_gives_only_library_errors(pyh_name):
    """A hostile process resizes the object in a loop while we attach: every attempt
    ends in success or one of the library's errors (never ValueError from mmap, never
    a crash), and attaching never resizes the object."""
    img = image_of(sb.RawArray("d", 100))
    proc = run_python(SIZE_CHANGER, pyh_name(), bytes(img).hex())
    outcomes = dict(eval(proc.stdout))
    assert sum(outcomes.values()) > 10
    assert set(outcomes) <= {"ok", "CorruptSegmentError", "CorruptSegmentError:changed",
                             "NotASharedBridgeSegmentError", "SegmentNotReadyError"}, outcomes
