"""sharedbridge.Pipe: multiprocessing.Pipe's connections over queue segments, across real
processes (fork, spawn, forkserver): messages both ways, end of file when the other end is closed in
every process (or its last holder is killed), BrokenPipeError, the byte methods, poll, large
objects, pickling, and no segment left behind."""

import gc
import io
import multiprocessing
import os
import pickle
import signal
import threading
import time

import pytest

import sharedbridge as sb
import pipe_workers as W
from conftest import HAVE_NUMPY, SHM

METHODS = ["fork", "spawn", "forkserver"]
WAIT = 30            # every wait in these tests ends by then


@pytest.fixture
def base():
    """A fresh pipe base name (prefix sbt_pp_); after the test, nothing may be left of it."""
    name = f"sbt_pp_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    yield name
    left = [n for n in os.listdir(SHM) if n.startswith(name)]
    for n in left:
        os.unlink(os.path.join(SHM, n))
    assert not left, f"pipe segments left behind: {left}"


def segments_of(base):
    return sorted(n for n in os.listdir(SHM) if n.startswith(base))


def recv_within(conn, timeout=WAIT):
    assert conn.poll(timeout), f"nothing received within {timeout} s"
    return conn.recv()


def start(ctx, target, *args):
    p = ctx.Process(target=target, args=args)
    p.daemon = True
    p.start()
    return p


def joined(p):
    p.join(WAIT)
    assert p.exitcode is not None, "child did not finish"
    return p.exitcode


@pytest.mark.parametrize("method", METHODS)
def test_ping_pong_objects_and_bytes(method, base):
    ctx = multiprocessing.get_context(method)
    a, b = sb.Pipe(name=base)
    assert segments_of(base) == [f"{base}.e0", f"{base}.e1", f"{base}.q0", f"{base}.q1"]
    p = start(ctx, W.echo, b)
    b.close()                                  # the idiom: the child has its own copy
    objects = [1, "two", b"three", 4.5, {"five": [6, (7, 8)]}, None]
    for obj in objects:
        a.send(obj)
        assert recv_within(a) == obj
    assert joined(p) == 0
    with pytest.raises(EOFError):              # the child closed its end: end of file
        recv_within(a)
    with pytest.raises(BrokenPipeError):
        a.send("nobody reads this")
    a.close()
    assert segments_of(base) == []


@pytest.mark.parametrize("method", METHODS)
def test_bytes_idiom_of_multiprocessing(method, base):
    # send() and recv_bytes() interoperate as in multiprocessing: recv_bytes of an object
    # is its pickle, recv() of bytes sent with send_bytes unpickles them.
    ctx = multiprocessing.get_context(method)
    a, b = sb.Pipe(name=base)
    p = start(ctx, W.echo_bytes, b)
    b.close()
    a.send_bytes(b"abcdefghij", 2, 3)
    assert a.recv_bytes() == b"cde"
    a.send([1, 2, 3])                           # echoed as bytes by recv_bytes/send_bytes
    assert recv_within(a) == [1, 2, 3]
    a.send_bytes(pickle.dumps({"k": 1}))
    assert recv_within(a) == {"k": 1}
    a.send_bytes(b"")
    assert a.recv_bytes() == b""
    assert joined(p) == 0
    a.close()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("child_closes", [True, False], ids=["close", "exit"])
def test_eof_after_the_child_closes_or_exits(method, child_closes, base):
    ctx = multiprocessing.get_context(method)
    r, w = sb.Pipe(duplex=False, name=base)
    assert (r.readable, r.writable, w.readable, w.writable) == (True, False, False, True)
    p = start(ctx, W.send_then_close, w, list(range(5)), child_closes)
    w.close()              # right after start(): a spawned child may not have attached yet
    got = []
    with pytest.raises(EOFError):
        while True:
            got.append(recv_within(r))
    assert got == list(range(5))
    assert joined(p) == 0
    r.close()
    assert segments_of(base) == []


def test_eof_needs_every_copy_closed(base):
    # Two processes hold the writing end: closing it in one is not the end of file.
    ctx = multiprocessing.get_context("fork")
    r, w = sb.Pipe(duplex=False, name=base)
    ready = ctx.Event()
    p = start(ctx, W.send_then_hang, w, ["from child"], ready)
    assert ready.wait(WAIT)
    assert recv_within(r) == "from child"
    w.send("from parent")
    w.close()                                   # the child still holds it
    assert recv_within(r) == "from parent"
    assert r.poll(0.3) is False                 # no end of file yet
    p.kill()
    assert joined(p) == -signal.SIGKILL
    with pytest.raises(EOFError):               # its last holder died
        recv_within(r)
    r.close()


@pytest.mark.parametrize("method", METHODS)
def test_eof_after_the_peer_is_killed(method, base):
    ctx = multiprocessing.get_context(method)
    a, b = sb.Pipe(name=base)
    ready = ctx.Event()
    p = start(ctx, W.send_then_hang, b, ["x", "y"], ready)
    b.close()
    assert ready.wait(WAIT)
    os.kill(p.pid, signal.SIGKILL)
    assert joined(p) == -signal.SIGKILL
    assert recv_within(a) == "x"                # what it sent before it died
    assert recv_within(a) == "y"
    with pytest.raises(EOFError):
        recv_within(a)
    with pytest.raises(BrokenPipeError):
        a.send("z")
    a.close()
    assert segments_of(base) == []              # the dead end's segment too


@pytest.mark.parametrize("method", METHODS)
def test_send_to_a_closed_or_killed_reader_raises_broken_pipe(method, base):
    ctx = multiprocessing.get_context(method)
    r, w = sb.Pipe(duplex=False, name=base)
    p = start(ctx, W.close_reading_end, r)
    r.close()
    assert joined(p) == 0
    with pytest.raises(BrokenPipeError):
        w.send("x")
    with pytest.raises(BrokenPipeError):
        w.send_bytes(b"x")
    w.close()

    # A writer blocked on a full ring notices that its reader was killed.
    r, w = sb.Pipe(duplex=False, name=base + "k", capacity=4096)
    ready = ctx.Event()
    p = start(ctx, W.receive_then_hang, r, ready)
    r.close()
    assert ready.wait(WAIT)
    errors = []

    def writer():
        try:
            for _ in range(10_000):               # 4096 bytes hold 7 of these
                w.send_bytes(b"x" * 512)
        except BrokenPipeError as e:
            errors.append(e)
    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.5)                               # the ring fills up, the writer waits
    assert t.is_alive()
    p.kill()
    assert joined(p) == -signal.SIGKILL
    t.join(WAIT)
    assert not t.is_alive() and len(errors) == 1
    w.close()
    assert segments_of(base) == []


def test_a_writer_blocked_on_a_full_ring_gets_broken_pipe_when_the_reader_closes(base):
    r, w = sb.Pipe(duplex=False, name=base, capacity=4096)
    errors = []

    def writer():
        try:
            for _ in range(10_000):
                w.send_bytes(b"x" * 512)
        except BrokenPipeError as e:
            errors.append(e)
    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.5)                               # the ring fills up, the writer waits
    assert t.is_alive()
    r.close()                                     # completes the queue: wakes the writer
    t.join(WAIT)
    assert not t.is_alive() and len(errors) == 1
    w.close()


def test_recv_bytes_into_and_buffer_too_short(base):
    a, b = sb.Pipe(name=base)
    with a, b:
        a.send_bytes(b"0123456789")
        buf = bytearray(16)
        assert b.recv_bytes_into(buf, 4) == 10
        assert buf == bytes(4) + b"0123456789" + bytes(2)
        a.send_bytes(b"too long for it")
        small = bytearray(8)
        with pytest.raises(multiprocessing.BufferTooShort) as e:
            b.recv_bytes_into(small)
        assert e.value.args[0] == b"too long for it"
        assert small == bytes(8)
        with pytest.raises(ValueError, match="negative offset"):
            b.recv_bytes_into(buf, -1)
        with pytest.raises(ValueError, match="offset too large"):
            b.recv_bytes_into(buf, 17)
        a.send_bytes(b"\x01\x00\x00\x00\x02\x00\x00\x00")
        import array
        arr = array.array("i", [0, 0, 0])
        assert b.recv_bytes_into(arr, 4) == 8
        assert arr.tolist() == [0, 1, 2]
        with pytest.raises(ValueError):
            a.send_bytes(b"abc", 4)
        with pytest.raises(ValueError):
            a.send_bytes(b"abc", 1, 3)
        with pytest.raises(ValueError):
            a.send_bytes(b"abc", 0, -1)
        a.send_bytes(b"x" * 100)
        with pytest.raises(OSError, match="bad message length"):
            b.recv_bytes(10)


@pytest.mark.parametrize("duplex", [True, False])
def test_a_message_longer_than_maxlength_ends_receiving_as_multiprocessing(base, duplex):
    seen = []
    for a, b in (multiprocessing.Pipe(duplex), sb.Pipe(duplex, name=base)):
        reader, writer = (b, a) if duplex else (a, b)
        writer.send_bytes(b"x" * 100)
        writer.send_bytes(b"next")
        with pytest.raises(OSError, match="bad message length"):
            reader.recv_bytes(10)
        after = [reader.closed, reader.readable, reader.writable]
        if not reader.closed:
            with pytest.raises(OSError, match="connection is write-only"):
                reader.recv()
            with pytest.raises(OSError, match="connection is write-only"):
                reader.poll()
            reader.send("still writes")                 # a duplex end keeps sending
            after.append(writer.recv())
        seen.append(after)
        reader.close()
        writer.close()
    assert seen[0] == seen[1]
    assert seen[0][0] is (not duplex)


def test_poll_timeouts_and_errors(base):
    ctx = multiprocessing.get_context("fork")
    a, b = sb.Pipe(name=base)
    assert a.poll() is False
    t0 = time.monotonic()
    assert a.poll(0.2) is False
    assert time.monotonic() - t0 >= 0.15
    b.send("now")
    assert a.poll() is True and a.poll(0) is True      # polling does not consume it
    assert a.recv() == "now"
    p = start(ctx, W.send_later, b, 0.3)
    b.close()
    assert a.poll(None) is True                        # waits without a limit
    assert a.recv() == "late"
    assert joined(p) == 0
    assert a.poll(WAIT) is True                        # end of file is "ready" too
    with pytest.raises(EOFError):
        a.recv()
    with pytest.raises(io.UnsupportedOperation, match="poll"):
        a.fileno()
    r, w = sb.Pipe(False, name=base + "s")
    with pytest.raises(OSError, match="write-only"):
        w.recv()
    with pytest.raises(OSError, match="read-only"):
        r.send(1)
    for c in (a, r, w):
        c.close()
        c.close()                                      # twice is fine
        assert c.closed
        with pytest.raises(OSError, match="handle is closed"):
            c.poll()


@pytest.mark.skipif(not HAVE_NUMPY, reason="numpy is not installed for this interpreter")
@pytest.mark.parametrize("method", METHODS)
def test_large_numpy_arrays_through_a_small_ring(method, base):
    import numpy as np
    ctx = multiprocessing.get_context(method)
    a, b = sb.Pipe(name=base, capacity=1 << 20)
    p = start(ctx, W.sum_array, b)
    b.close()
    big = np.arange(1 << 20, dtype=np.float64)          # 8 MiB through a 1 MiB ring
    for _ in range(3):
        a.send(big)
        total, shape, dtype = recv_within(a)
        assert (total, shape, dtype) == (float(big.sum()), big.shape, "float64")
        back = recv_within(a)
        assert np.array_equal(back, big)
    a.send(None)
    assert joined(p) == 0
    a.close()
    del back        # a view of its data segment, which stays while it is used (11.5)
    gc.collect()
    assert segments_of(base) == []


@pytest.mark.parametrize("method", METHODS)
def test_connection_passed_through_a_queue(method, base):
    # Pickled by name (not at Process.start): the receiver attaches and uses it.
    ctx = multiprocessing.get_context(method)
    a, b = sb.Pipe(name=base)
    q = ctx.Queue()
    result = ctx.Queue()
    p = start(ctx, W.forward_connection, q, result)
    q.put(b)
    msg, pid = recv_within(a)
    assert (msg, pid) == ("hello from", p.pid)
    a.send("and back")
    assert result.get(timeout=WAIT) == "and back"
    assert joined(p) == 0
    b.close()
    with pytest.raises(EOFError):
        recv_within(a)
    a.close()


def test_connection_objects_are_not_constructible_and_repr(base):
    with pytest.raises(TypeError):
        sb.Connection()
    a, b = sb.Pipe(name=base)
    assert base in repr(a) and "end 0" in repr(a)
    a.close()
    b.close()
    assert "closed" in repr(a)


def test_a_taken_name_is_refused_and_nothing_is_left(base):
    a, b = sb.Pipe(name=base)
    with pytest.raises(sb.SegmentExistsError):
        sb.Pipe(name=base)
    a.send("still works")
    assert b.recv() == "still works"
    a.close()
    b.close()
    os.close(os.open(os.path.join(SHM, base + ".q1"), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    try:
        with pytest.raises(sb.SegmentExistsError):    # fails at the queues: ends removed
            sb.Pipe(name=base)
        assert segments_of(base) == [base + ".q1"]
    finally:
        os.unlink(os.path.join(SHM, base + ".q1"))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_poll_takes_nothing_another_process_can_receive_what_was_polled(base, method):
    # As with multiprocessing: the message stays in the pipe; polling in a process that
    # then ends (or never calls recv) must not take it away from the end's other holders.
    ctx = multiprocessing.get_context(method)
    a, b = sb.Pipe(name=base)
    out_r, out_w = sb.Pipe(name=base + "_o")
    a.send("polled, not taken")
    p = start(ctx, W.poll_and_report, b, out_w)
    assert recv_within(out_r) is True
    joined(p)
    assert b.poll(0) is True
    assert b.recv() == "polled, not taken"
    assert b.poll(0) is False
    for c in (a, b, out_r, out_w):
        c.close()
