"""Functions run in child processes by test_queue_recycle.py (importable by spawn
children). Every wait has a deadline, so that a bug shows as a failed assertion in the
test, never as a hung child."""

import time

import numpy as np

WAIT = 60


def array(n_bytes, value):
    """A float64 array of *n_bytes* bytes, every element *value*."""
    return np.full(n_bytes // 8, value, dtype="f8")


def produce_after_go(q, go, n_bytes, first, count):
    """Put array(first); wait for go; put count arrays of values first+1..first+count."""
    q.put(array(n_bytes, first), timeout=WAIT)
    go.get(timeout=WAIT)
    for i in range(1, count + 1):
        q.put(array(n_bytes, first + i), timeout=WAIT)


def produce(q, n_bytes, count):
    for i in range(count):
        q.put(array(n_bytes, i), timeout=WAIT)


def produce_sizes_then_wait(q, sizes, done):
    """Put one array per size (value = its index), report, then wait to be killed."""
    for i, n in enumerate(sizes):
        q.put(array(n, i), timeout=WAIT)
    done.put("put", timeout=WAIT)
    time.sleep(WAIT)


def get_hold_then_wait(q, held):
    """Get one array and keep it; report its first value; wait to be killed."""
    a = q.get(timeout=WAIT)
    held.put(float(a[0]), timeout=WAIT)
    time.sleep(WAIT)
    return a


def put_one(q, n_bytes, value):
    q.put(array(n_bytes, value), timeout=WAIT)


def put_one_then_wait(q, n_bytes, value, go):
    """Put one array, then wait for go (its consumer got it) and end."""
    q.put(array(n_bytes, value), timeout=WAIT)
    go.get(timeout=WAIT)


# ---- test_queue_consumer_cache.py -------------------------------------------------------------

def get_some_hold_last_then_wait(q, n, report):
    """Get *n* arrays, dropping all but the last; report their first values; wait to be
    killed (holding the last)."""
    firsts = []
    for _ in range(n):
        a = q.get(timeout=WAIT)
        firsts.append(float(a[0]))
    report.put(firsts, timeout=WAIT)
    time.sleep(WAIT)
    return a


def get_check_report(q, n, report):
    """Get *n* arrays, check each is uniform, report their values."""
    values = []
    for _ in range(n):
        a = q.get(timeout=WAIT)
        if not (a == a[0]).all():
            raise AssertionError(f"a mixed array: first {a[0]}")
        values.append(float(a[0]))
        del a
    report.put(values, timeout=WAIT)


def put_sizes_then_wait(q, sizes, go):
    """Put one array per size (value = its index), then wait for go and end."""
    for i, n in enumerate(sizes):
        q.put(array(n, i), timeout=WAIT)
    go.get(timeout=WAIT)


def put_values_then_wait(q, n_bytes, values, go):
    """Put array(n_bytes, v) for each of *values*, then wait for go and end."""
    for v in values:
        q.put(array(n_bytes, v), timeout=WAIT)
    go.get(timeout=WAIT)
