"""as_numpy(obj): a zero-copy numpy view of a shared object (numpy is optional)."""

import ctypes

from .._format.typecodes import TYPECODE_DTYPE, typecode_of_simple
from ..errors import UnsupportedTypeError
from .ndarray import SharedNDArray
from .raw_object import base_type


def _dtype(numpy, elem):
    """The numpy dtype of one element of ctypes type *elem*: the format's table for a
    simple type with a typecode, numpy's own reading of the ctypes type otherwise (a
    Structure, or a private object of a type no segment can hold)."""
    if issubclass(elem, ctypes._SimpleCData):
        try:
            return numpy.dtype(TYPECODE_DTYPE[typecode_of_simple(elem)])
        except UnsupportedTypeError:
            pass
    return numpy.dtype(elem)


def as_numpy(obj):
    """Return a numpy array sharing memory with *obj* (a raw object or a synchronized
    wrapper; the view is NOT synchronized: hold obj.get_lock() around access that
    races with other processes). Arrays give shape (n,), values shape (), rows of
    an array element (Array(c_int * 2, n)) shape (n, 2).

    Raises ImportError (with instructions) when numpy is not installed.
    """
    try:
        import numpy
    except ImportError:
        raise ImportError("sharedbridge.as_numpy needs numpy: pip install numpy "
                          "(or apt-get install python3-numpy)") from None
    if isinstance(obj, SharedNDArray):
        return obj.numpy()
    raw = obj.get_obj() if hasattr(obj, "get_obj") else obj
    if not isinstance(raw, (ctypes.Array, ctypes.Structure, ctypes._SimpleCData)):
        raise TypeError(f"as_numpy expects a sharedbridge or ctypes object, not "
                        f"{type(raw).__name__}")
    elem, shape = base_type(type(raw)), []
    while issubclass(elem, ctypes.Array):      # rows of a multi-dimensional element too
        shape.append(elem._length_)
        elem = elem._type_
    dtype = _dtype(numpy, elem)
    view = numpy.frombuffer(raw, dtype=numpy.uint8)    # the raw bytes, no copy
    return view.view(dtype).reshape(tuple(shape))
