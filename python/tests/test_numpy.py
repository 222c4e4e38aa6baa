"""as_numpy: zero-copy views (skipped where numpy is not installed)."""

import ctypes

import pytest

import sharedbridge as sb
from conftest import HAVE_NUMPY, needs_numpy


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_int)]


@pytest.mark.skipif(HAVE_NUMPY, reason="numpy is installed here")
def test_without_numpy_as_numpy_says_how_to_install_it():
    with pytest.raises(ImportError, match="pip install numpy"):
        sb.as_numpy(sb.RawArray("d", 2))


@needs_numpy
@pytest.mark.parametrize("typecode", list("bBhHiIlLqQfd"))
def test_view_shares_memory(typecode):
    import numpy as np
    arr = sb.Array(typecode, [1, 2, 3])
    view = sb.as_numpy(arr)
    assert view.dtype == np.dtype(typecode) and view.shape == (3,)
    assert view.ctypes.data == ctypes.addressof(arr.get_obj())
    view[1] = 7
    assert arr[1] == 7
    arr[2] = 9
    assert view[2] == 9
    assert np.frombuffer(arr.get_obj(), dtype=typecode)[2] == 9


@needs_numpy
def test_special_types_values_and_structs():
    import numpy as np
    assert sb.as_numpy(sb.RawArray("c", b"ab")).tolist() == [b"a", b"b"]
    assert sb.as_numpy(sb.RawArray("u", "xy")).tolist() == ["x", "y"]
    assert sb.as_numpy(sb.RawArray(ctypes.c_bool, [True, False])).dtype == np.bool_
    v = sb.Value("d", 2.5)
    nv = sb.as_numpy(v)
    assert nv.shape == () and float(nv) == 2.5
    nv[...] = 4.0
    assert v.value == 4.0
    pts = sb.RawArray(Point, [(1.5, 2), (3.5, 4)])
    npts = sb.as_numpy(pts)
    assert npts["x"].tolist() == [1.5, 3.5] and npts["y"].tolist() == [2, 4]
    npts["y"][1] = 40
    assert pts[1].y == 40


@needs_numpy
def test_view_of_an_attached_segment():
    a = sb.RawArray("d", 1000)
    b = sb.as_numpy(sb.attach(a.name))
    b[:] = 1.5
    assert a[999] == 1.5


@needs_numpy
def test_rejects_non_ctypes():
    with pytest.raises(TypeError):
        sb.as_numpy([1, 2, 3])


@needs_numpy
def test_rows_of_an_array_element_give_a_two_dimensional_view():
    arr = sb.Array(ctypes.c_int * 2, [(1, 2), (3, 4), (5, 6)])
    view = sb.as_numpy(arr)
    assert view.shape == (3, 2) and view.tolist() == [[1, 2], [3, 4], [5, 6]]
    view[2, 1] = 60
    assert arr[2][1] == 60
