"""Rules docs/format.md revision 7.1 settles for opening (section 6.2) and lifetimes (section
8), in this language; the cross suite's invalid vectors check both languages agree."""

import fcntl
import os
import struct
import threading
import time
import zlib

import pytest

import sharedbridge as sb
from conftest import SHM, fresh_names, write_segment


@pytest.fixture
def names():
    yield from fresh_names("sbh23")


def _poke(name, offset, value):
    fd = os.open(os.path.join(SHM, name), os.O_RDWR)
    try:
        os.pwrite(fd, struct.pack("<I", value), offset)
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind, offset, value, said", [
    ("barrier", 12, 0, "parties 0"),
    ("semaphore", 20, 2, "bounded 2"),
    ("semaphore", 16, 5, "max_value 5"),
    ("queue", 128, 0, "max_messages 0"),
])
def test_every_open_validates_the_immutable_words(names, kind, offset, value, said):
    # Sections 6.2 step 6, 10.2, 11.2: header_of and attach alike (and .NET's untyped open).
    name = names()
    make = {"barrier": lambda: sb.Barrier(2, name=name, lifetime="persistent"),
            "semaphore": lambda: sb.Semaphore(1, name=name, lifetime="persistent"),
            "queue": lambda: sb.Queue(name=name, lifetime="persistent")}[kind]
    sb.close(make())        # not mapped here any more: the opens below map it afresh
    sb.header_of(name)
    _poke(name, 0x200 + offset, value)
    with pytest.raises(sb.CorruptSegmentError, match=said):
        sb.header_of(name)
    with pytest.raises(sb.CorruptSegmentError):
        sb.attach(name)


def test_a_directory_at_the_name_is_not_a_sharedbridge_segment(names):
    # Section 6.2 step 1: glibc's shm_open says EINVAL, shm_unlink EISDIR.
    name = names()
    os.mkdir(os.path.join(SHM, name), 0o700)
    try:
        with pytest.raises(sb.NotASharedBridgeSegmentError):
            sb.attach(name, timeout=0)
        with pytest.raises(sb.NotASharedBridgeSegmentError, match="directory"):
            sb.unlink(name)
        assert os.path.isdir(os.path.join(SHM, name))
    finally:
        os.rmdir(os.path.join(SHM, name))


def test_a_magic_being_written_is_waited_for(names):
    # Section 6.2 step 3: zeros and part of the magic with state 0 is what a pread sees
    # while the creator stores the magic: initializing, never another program's.
    name = write_segment(names(), b"SHBR", 512)
    with pytest.raises(sb.SegmentNotReadyError):
        sb.attach(name, timeout=0.05)


def test_attachers_racing_creators_of_one_name_never_see_a_wrong_magic(names):
    name = names()
    until = time.monotonic() + 1.0
    wrong, opened = [], []

    def create():
        while time.monotonic() < until:
            try:
                sb.close(sb.RawArray("q", 4, name=name))
            except sb.SegmentExistsError:
                pass

    def attach():
        while time.monotonic() < until:
            try:
                sb.header_of(name)
                opened.append(1)
            except sb.SegmentNotFoundError:
                pass                        # between a close and the next create
            except sb.SharedBridgeError as e:
                wrong.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=f) for f in (create, create, attach, attach)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not wrong, wrong[:3]
    assert opened


def test_a_shared_flock_not_granted_in_time_is_still_initializing(names):
    # Section 8 step 3: a process holds the last-closer segment's flock exclusively.
    name = names()
    sb.close(sb.RawArray("i", 2, name=name, lifetime="persistent"))
    fd = os.open(os.path.join(SHM, name), os.O_RDWR)
    try:
        head = bytearray(os.pread(fd, 0x200, 0))
        head[0x39] = 1                                  # lifetime last-closer ...
        struct.pack_into("<H", head, 0x0A, 2)           # ... needs compat_version 2
        struct.pack_into("<I", head, 0x184, zlib.crc32(bytes(head[:0x180])))
        os.pwrite(fd, bytes(head), 0)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(sb.SegmentNotReadyError, match="exclusively"):
            sb.attach(name, timeout=0.2)
    finally:
        os.close(fd)
