"""as_numpy(net_obj): a zero-copy numpy view of a .NET SharedArray<T>, SharedValue<T> or
SharedTensor<T>, over .NET's own mapping. The element dtypes are the format's
(_format.typecodes); a tensor's shape is its header's (docs/format.md section 12)."""

import ctypes
import weakref

from .._format.typecodes import STRUCT, TYPECODE_DTYPE
from .error_map import errors

_dtype_cache = {}


def _struct_dtype(numpy, fields, parent, size):
    names, formats, offsets = [], [], []
    for index, f in enumerate(fields):
        if f[5] != parent:
            continue
        name, code, offset, count, item_size = f[:5]
        base = (_struct_dtype(numpy, fields, index, item_size) if code == STRUCT
                else numpy.dtype(TYPECODE_DTYPE[code]))
        names.append(name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(offset)
    return numpy.dtype({"names": names, "formats": formats, "offsets": offsets,
                        "itemsize": size})


def _dtype_of(numpy, net_obj, typecode):
    key = (type(net_obj), typecode)
    dtype = _dtype_cache.get(key)
    if dtype is None:
        if typecode == STRUCT:
            h = net_obj.Header
            fields = [(str(f.Name), str(f.TypeCode), int(f.Offset), int(f.Count),
                       int(f.ItemSize), int(f.Parent)) for f in h.Fields]
            dtype = _struct_dtype(numpy, fields, -1, int(h.ElementSize))
        else:
            dtype = numpy.dtype(TYPECODE_DTYPE[typecode])
        _dtype_cache[key] = dtype
    return dtype


def _kind(net_obj):
    name = type(net_obj).__name__
    if name.startswith("SharedArray"):
        return "array"
    if name.startswith("SharedValue"):
        return "value"
    if name.startswith("SharedTensor"):
        return "tensor"
    return None


# One numpy base array per .NET object (keyed by the id of its pythonnet wrapper, checked through a
# weak reference): building it takes four pythonnet member calls (about 25 us, mostly pythonnet's
# method binding), handing out a new view of it takes about a microsecond.
_views = {}


def as_numpy(net_obj):
    """A zero-copy numpy view of a .NET ``SharedArray<T>`` (shape (n,)), ``SharedValue<T>``
    (shape ()) or ``SharedTensor<T>`` (its shape, C order), over .NET's own mapping (no second
    mapping). Struct elements give a structured
    dtype with the field names the segment records. The view holds a ``SharedDataView``, so it
    stays valid as long as the view lives, even after the .NET object is disposed. Like the
    Python package's as_numpy, the view is raw memory and does not take the lock.

    The first call for an object makes its data view; later calls return new numpy views of the
    same memory (about a microsecond). That data view, and so the mapping, is released when the
    .NET object's Python wrapper and every numpy view of it are gone, or at the first call after
    the object is disposed (which raises ObjectDisposedException, as ever)."""
    key = id(net_obj)
    entry = _views.get(key)
    if entry is not None and entry[0]() is net_obj:
        if not net_obj.IsDisposed:
            return entry[1].view()
        _views.pop(key, None)
    try:
        import numpy
    except ImportError:
        raise ImportError("sharedbridge.dotnet.as_numpy needs numpy: pip install numpy "
                          "(or apt-get install python3-numpy)") from None
    kind = _kind(net_obj)
    if kind is None:
        raise TypeError(f"as_numpy expects a .NET SharedArray<T>, SharedValue<T> or "
                        f"SharedTensor<T>, not {type(net_obj).__name__}")
    with errors():
        dtype = _dtype_of(numpy, net_obj, str(net_obj.TypeCode))
        shape = tuple(int(d) for d in net_obj.GetShape()) if kind == "tensor" else None
        view = net_obj.CreateDataView()
    nbytes = int(view.ByteLength)
    if nbytes == 0:
        view.Dispose()
        return numpy.empty(shape if shape is not None else 0, dtype)
    buf = (ctypes.c_char * nbytes).from_address(view.Address.ToInt64())
    finalizer = weakref.finalize(buf, view.Dispose)
    finalizer.atexit = False        # at exit the runtime may be gone; the mapping goes anyway
    base = numpy.frombuffer(buf, dtype)
    if kind == "value":
        base = base.reshape(())
    elif kind == "tensor":
        base = base.reshape(shape)
    try:
        ref = weakref.ref(net_obj, lambda r, key=key: _views.pop(key, None)
                          if _views.get(key, (None,))[0] is r else None)
    except TypeError:               # a wrapper without weak references: no cache
        return base.view()
    _views[key] = (ref, base)
    return base.view()
