"""Functions run in child processes by test_ndarray.py (importable by spawn children)."""

import ctypes

import sharedbridge as sb


class Pt(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_int32)]


def _as_array(arr_or_name):
    return sb.attach(arr_or_name) if isinstance(arr_or_name, str) else arr_or_name


def change(v):
    """The write a child makes (numpy view *v*), the same for every dtype: the first
    field of a structure, the others in place."""
    if v.dtype.names:
        v[v.dtype.names[0]] += 1
    elif v.dtype.kind == "b":
        v[...] = ~v
    else:
        v[...] = v + v.dtype.type(1)      # numpy 1.x: uint64 + int is float64


def snapshot(v):
    """The values of numpy view *v*, comparable across processes (tolist() of a structured
    dtype with a subarray field holds ndarrays, which do not compare as one bool)."""
    return v.tobytes()


def read_then_write(arr_or_name, shape, descr, values):
    """Attach (by name, or as unpickled), check what the creator made, write, and return
    the values after the write, with what this process saw."""
    arr = _as_array(arr_or_name)
    v = arr.numpy()
    seen = (type(arr).__name__, arr.shape, arr.ndim, arr.size, arr.nbytes, v.dtype.descr,
            snapshot(v))
    assert seen[1:4] == (tuple(shape), len(shape), v.size), seen
    assert v.dtype.descr == descr and snapshot(v) == values, (seen, descr, values)
    with arr.get_lock():
        change(v)
    return snapshot(v)


def write_pattern(arr_or_name):
    """Fill a 'd' array with 0.5, 1.5, ... through the standard-library view."""
    arr = _as_array(arr_or_name)
    flat = arr.memoryview()
    n = arr.size
    mv = flat.cast("B").cast("d")
    for i in range(n):
        mv[i] = i + 0.5
    return arr.shape
