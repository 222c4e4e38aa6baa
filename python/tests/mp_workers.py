"""Functions run in child processes by test_processes.py (importable by spawn children)."""

import ctypes


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


def add_under_lock(arr, count):
    for _ in range(count):
        with arr.get_lock():
            arr[0] += 1
    return arr.name


def square_everything(n, raw, s, A, lock):
    n.value **= 2
    raw[1] = raw[0] * 10
    with lock:
        s.value = s.value.upper()
    for a in A:
        a.x **= 2
    return None


def describe(obj):
    inner = obj.get_obj() if hasattr(obj, "get_obj") else obj
    return (type(obj).__name__, obj.name, inner[:] if hasattr(inner, "__len__") else inner.value)


def write_at(args):
    arr, index, value = args
    arr[index] = value
    return index
