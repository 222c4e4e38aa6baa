"""Targets of the child processes of test_pipes.py (importable by spawn children)."""

import os
import signal
import time


def echo(conn):
    """Send back every object received, until None (sent back too); then close."""
    while True:
        obj = conn.recv()
        conn.send(obj)
        if obj is None:
            break
    conn.close()


def echo_bytes(conn):
    """multiprocessing's own test idiom: recv_bytes/send_bytes until b''."""
    for msg in iter(conn.recv_bytes, b""):
        conn.send_bytes(msg)
    conn.send_bytes(b"")


def send_then_close(conn, items, close):
    """Send *items*; then close explicitly, or just exit (multiprocessing children exit
    with os._exit: no finalizer runs, only the process's death releases the end)."""
    for item in items:
        conn.send(item)
    if close:
        conn.close()


def send_then_hang(conn, items, ready):
    """Send *items*, say so, then wait to be killed (SIGKILL by the test)."""
    for item in items:
        conn.send(item)
    ready.set()
    time.sleep(60)


def receive_then_hang(conn, ready):
    """Hold the receiving end, never read from it; wait to be killed."""
    ready.set()
    time.sleep(60)


def close_reading_end(conn):
    conn.close()


def sum_array(conn):
    """Receive arrays and send back (sum, shape, dtype) until None."""
    while True:
        a = conn.recv()
        if a is None:
            break
        conn.send((float(a.sum()), a.shape, str(a.dtype)))
        conn.send(a)                      # and the array itself, back through the pipe


def send_later(conn, delay):
    time.sleep(delay)
    conn.send("late")
    conn.close()


def forward_connection(q, result):
    """Receive a connection through a queue and use it."""
    conn = q.get(timeout=30)
    conn.send(("hello from", os.getpid()))
    result.put(conn.recv())
    conn.close()


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def poll_and_report(conn, out):
    """Polls *conn* and sends the answer on *out*, receiving nothing."""
    out.send(conn.poll(10))
