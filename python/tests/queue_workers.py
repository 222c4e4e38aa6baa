"""Functions run in child processes by the test_queue_*.py tests (importable by spawn
children). Every wait has a deadline, so that a bug shows as a failed assertion in the
test, never as a hung child."""

import os
import queue
import signal

import sharedbridge as sb

WAIT = 60


def produce(q, tag, count):
    for i in range(count):
        q.put((tag, i), timeout=WAIT)


def produce_many(q, tag, count, batch):
    for start in range(0, count, batch):
        q.put_many([(tag, i) for i in range(start, min(count, start + batch))], timeout=WAIT)


def consume(q, results):
    """Get until the queue is completed; send what was got (in order) to *results*."""
    got = []
    while True:
        try:
            got.append(q.get(timeout=WAIT))
        except sb.QueueCompleted:
            break
    results.put(got, timeout=WAIT)


def consume_many(q, results):
    got = []
    while True:
        try:
            got.extend(q.get_many(100, timeout=WAIT))
        except sb.QueueCompleted:
            break
    results.put(got, timeout=WAIT)


def put_by_name(name, obj):
    q = sb.attach(name)
    q.put(obj, timeout=WAIT)


def echo(q_in, q_out, count):
    for _ in range(count):
        q_out.put(q_in.get(timeout=WAIT), timeout=WAIT)


def pool_put(q, obj):
    q.put(obj, timeout=WAIT)
    return type(q).__name__


def put_then_die(name, where):
    """Attach the queue and die (SIGKILL) in the middle of a put, holding the mutex:
    *where* is "before commit" (record bytes written, tail not stored) or "after commit"
    (tail stored, the counts not updated)."""
    from sharedbridge._objects import queue_ring
    q = sb.attach(name)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "before commit":
        queue_ring._before_commit = die
    else:
        queue_ring._after_commit = die
    q.put(b"half-written message " * 4)
    raise SystemExit("still alive after the put")


def get_then_die(name):
    """Attach the queue and die (SIGKILL) in a get, holding the mutex, after copying the
    message out and before marking it done."""
    from sharedbridge._objects import queue_ring
    q = sb.attach(name)
    queue_ring._before_done = lambda: os.kill(os.getpid(), signal.SIGKILL)
    q.get(timeout=WAIT)
    raise SystemExit("still alive after the get")


def interrupted_get(q, ready, report):
    """Block in get until SIGINT; then report the KeyboardInterrupt and do a get that
    works."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ready.set()
    try:
        q.get(timeout=WAIT)
        report.put("no interrupt", timeout=WAIT)
        return
    except KeyboardInterrupt:
        report.put("interrupted", timeout=WAIT)
    report.put(q.get(timeout=WAIT), timeout=WAIT)


def interrupted_put(q, ready, report):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ready.set()
    try:
        q.put(b"y" * 500, timeout=WAIT)
        report.put("no interrupt", timeout=WAIT)
        return
    except KeyboardInterrupt:
        report.put("interrupted", timeout=WAIT)
    report.put(q.get(timeout=WAIT), timeout=WAIT)


def task_worker(q, count):
    for _ in range(count):
        q.get(timeout=WAIT)
        q.task_done()


def get_one(q, results):
    try:
        results.put(q.get(timeout=WAIT), timeout=WAIT)
    except queue.Empty:
        results.put("empty", timeout=WAIT)


def take_then_die(name, report):
    """Take a message zero-copy (section 11.3 take, as .NET reads), report what it saw,
    then die without releasing it."""
    q = sb.attach(name)
    m = q._ring.take()
    report.put(bytes(m.data), timeout=WAIT)
    os.kill(os.getpid(), signal.SIGKILL)
