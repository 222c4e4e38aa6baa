"""ndarray() and from_numpy(): n-dimensional arrays in a segment (docs/format.md section 12).

A :class:`SharedNDArray` is a wrapper, not a numpy.ndarray subclass (docs/api.md,
"N-dimensional arrays", gives the reasons): numpy is optional, so the object must exist
without it; with numpy, ``.numpy()`` (and ``numpy.asarray(obj)`` through
``__array__``) is a zero-copy view of the right dtype and shape; without it,
``.memoryview()`` is a multi-dimensional memoryview. ``__dlpack__`` hands the memory to
numpy.from_dlpack and torch.from_dlpack without a copy (dlpack.py).

The element type is described exactly as a queue's n-dimensional array message
describes it (section 12: "the same bounds, so that one reader's code checks both"): the
numpy dtype <-> typecode and field-table mapping is queue_messages.py's, the structure
layout struct_layout.py's, the element-type checks of a typed open raw_object.py's.
"""

import ctypes
import operator
import sys

from .._format import header as H
from .._format import struct_layout
from .._format.header_spec import new_header
from .._format.segment_name import base_name, external_lock_name, qualify
from .._format.typecodes import STRUCT, TYPECODE_SIZE, TYPECODE_TO_TYPE, same_typecode
from .._platform import robust_mutex
from .._platform.process_info import process_start_time
from .._platform.segment import create
from ..errors import CorruptDataError, TypeMismatchError, UnsupportedTypeError
from . import dlpack
from . import queue_messages as QM
from .lifetimes import resolve_lifetime
from .protocol import segment_of
from .raw_object import _pickled_type, _refuse_surrogates, rebuilt_struct, type_ref
from .shared_lock import lock_from_segment, open_external_lock
from .sharedctypes import _lock_fields
from .unavailable import attach_or_unavailable, signature

__all__ = ["SharedNDArray", "ndarray", "from_numpy"]

_NO_NUMPY_ADVICE = "pip install numpy (or apt-get install python3-numpy)"


def _numpy_or_raise(what):
    np = QM._numpy()
    if np is None:
        raise ImportError(f"{what} needs numpy: {_NO_NUMPY_ADVICE}; without numpy, use "
                          ".memoryview()")
    return np


# --- element types: typecode, ctypes type or numpy dtype -------------------------------

class _Element:
    """What a dtype argument means for the header: typecode, element_size, the field
    table and type_name of a structure, the ctypes class to use (the user's, or None to
    rebuild it from the table) and trailing dimensions (a ctypes array type or a numpy
    subarray dtype adds its dimensions after the shape)."""

    __slots__ = ("typecode", "size", "fields", "type_name", "ctype", "extra")

    def __init__(self, typecode, size, fields=(), type_name="", ctype=None, extra=()):
        self.typecode = typecode
        self.size = size
        self.fields = fields
        self.type_name = type_name
        self.ctype = ctype
        self.extra = extra


_CTYPES_BASES = (ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array,
                 ctypes._Pointer, ctypes._CFuncPtr)


def _element(dtype):
    """The _Element of a dtype argument of ndarray()/attach(): a typecode
    ('cubBhHiIlLqQfd?'), a ctypes simple type or Structure (or an array of them), or
    anything numpy.dtype() accepts (when numpy is installed) whose elements have a
    typecode or are a structured dtype the field table describes (docs/format.md
    section 4)."""
    if isinstance(dtype, str) and dtype in TYPECODE_TO_TYPE:
        return _Element(dtype, TYPECODE_SIZE[dtype], ctype=TYPECODE_TO_TYPE[dtype])
    if isinstance(dtype, type) and issubclass(dtype, _CTYPES_BASES):
        extra = []
        inner = dtype
        while issubclass(inner, ctypes.Array):
            extra.append(inner._length_)
            inner = inner._type_
        code = struct_layout.check_element_type(inner)
        if code != STRUCT:
            return _Element(code, TYPECODE_SIZE[code], ctype=inner, extra=tuple(extra))
        return _Element(STRUCT, ctypes.sizeof(inner), struct_layout.describe(inner),
                        struct_layout.type_name_of(inner), inner, tuple(extra))
    np = QM._numpy()
    if np is None:
        raise TypeError(f"dtype {dtype!r}: give a typecode of "
                        f"{''.join(TYPECODE_TO_TYPE)!r} or a ctypes type (numpy, which "
                        "would read other dtypes, is not installed)")
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype {dtype!r} is not a typecode, a ctypes type or a numpy "
                        f"dtype ({e})") from None
    return _element_of_dtype(dt)


def _element_of_dtype(dt):
    extra = ()
    if dt.subdtype is not None:
        dt, extra = dt.subdtype
    if dt.names is not None:
        try:
            desc = QM._dtype_description(dt)
        except QM._NotDescribable:
            raise UnsupportedTypeError(
                f"cannot share the structured dtype {dt}: the field table (docs/format.md "
                "section 4) describes fields in increasing offset order that never "
                "overlap (aligned or packed), named by identifiers of at most 31 "
                "characters, whose types have a typecode; use such fields") from None
        head = QM._STRUCT_HEAD.size
        fields = H.decode_field_table(desc, head, H.FIELD_ENTRY_SIZE,
                                      (len(desc) - head) // H.FIELD_ENTRY_SIZE, dt.itemsize)
        return _Element(STRUCT, dt.itemsize, fields, extra=tuple(extra))
    code = QM._typecode_of_dtype(dt)
    if code is None:
        raise UnsupportedTypeError(
            f"cannot share elements of dtype {dt}: the format's element types are "
            "bool, int8..int64, uint8..uint64, float32, float64, S1 and U1 in native byte "
            f"order (docs/format.md section 3.4); convert with .astype()")
    return _Element(code, TYPECODE_SIZE[code], extra=tuple(extra))


def _check_shape(shape, extra, size):
    """The shape as a tuple of ints, checked as a reader would (docs/format.md 12.1)."""
    if shape is None:
        raise TypeError("shape must be an int or a sequence of ints, not None")
    try:
        dims = (operator.index(shape),)
    except TypeError:
        try:
            dims = tuple(operator.index(n) for n in shape)
        except TypeError:
            raise TypeError(f"shape must be an int or a sequence of ints, not {shape!r}") \
                from None
    dims += tuple(extra)
    if len(dims) > H.MAX_NDIM:
        raise ValueError(f"shape {dims} has {len(dims)} dimensions: at most {H.MAX_NDIM} "
                         "(docs/format.md section 12.1)")
    total = size
    for n in dims:
        if n < 0:
            raise ValueError(f"shape {dims}: negative dimension {n}")
        if n:
            total *= n
            if total > H.MAX_NDARRAY_BYTES:
                raise ValueError(f"shape {dims} of {size}-byte elements is more than "
                                 "2^63 - 1 bytes")
    return dims


def _same_element(h, want):
    """Raise TypeMismatchError unless the header's element type is *want*'s."""
    if h.typecode == STRUCT:
        recorded = f"structure {h.type_name or '?'} ({h.element_size} bytes)"
    else:
        recorded = f"typecode {h.typecode!r}"
    if want.typecode == STRUCT:
        ok = (h.typecode == STRUCT and want.size == h.element_size
              and struct_layout.same_layout(want.fields, h.fields))
        asked = f"structure {want.type_name or '(numpy)'} ({want.size} bytes)"
    else:
        ok = same_typecode(want.typecode, h.typecode)
        asked = f"typecode {want.typecode!r}"
    if not ok:
        raise TypeMismatchError(f"type mismatch: asked for {asked}, the segment holds "
                                f"{recorded}" + (" with a different layout" if
                                                 want.typecode == h.typecode else ""))


# --- the object -------------------------------------------------------------------------

# typecode -> numpy dtype of its elements (numpy.dtype(...) costs more than the lookup).
_dtypes = {}

_NO_LOCK = object()


class SharedNDArray:
    """An n-dimensional array (C order) in a named shared-memory segment.

    Made by sharedbridge.ndarray(), from_numpy() and attach(); pickles by name (the
    receiver attaches to the same memory). Views: .numpy() (zero copy, numpy),
    .memoryview() (zero copy, standard library), __dlpack__ (numpy.from_dlpack,
    torch.from_dlpack). None of the views is synchronized: hold get_lock() around
    access that races with other processes.

    Why a wrapper and not a numpy.ndarray subclass: numpy is optional in this package,
    and a subclass needs numpy to exist at all; every ndarray operation (slicing,
    arithmetic, reductions) returns new ndarrays that would be instances of the subclass
    without owning a segment, and numpy pickles an ndarray (subclass or not) by value,
    whereas this object pickles by name; close(), unlink(), name and get_lock() would
    sit among numpy's attributes. numpy.asarray(obj) / obj.numpy() give a plain ndarray
    over the shared memory in one call, at no copy.
    """

    __slots__ = ("_seg", "_ctype", "_lock", "_data", "__weakref__")

    def __init__(self, seg, ctype=None, lock=_NO_LOCK):
        h = seg.header
        if h.kind != H.KIND_NDARRAY:
            raise TypeMismatchError(f"type mismatch: segment {seg.name!r} is not an "
                                    f"n-dimensional array (kind {h.kind})")
        self._seg = seg
        self._ctype = ctype
        self._lock = lock
        self._data = None           # made at the first memoryview() (_data_view)

    # -- what it is

    @property
    def name(self):
        """The segment's name."""
        return base_name(self._seg.name)

    @property
    def shape(self):
        """The dimensions (a tuple of ints; () for rank 0), from the validated header."""
        return self._seg.header.shape

    @property
    def ndim(self):
        return len(self._seg.header.shape)

    @property
    def size(self):
        """The number of elements (the product of the shape)."""
        return self._seg.header.element_count

    @property
    def nbytes(self):
        return self._seg.header.data_size

    @property
    def itemsize(self):
        return self._seg.header.element_size

    @property
    def typecode(self):
        """The element type's typecode (docs/format.md section 3.4); 'T' for a structure."""
        return self._seg.header.typecode

    @property
    def ctype(self):
        """The ctypes type of one element: the typecode's, or the Structure (the class
        given when it was made or attached, else one rebuilt from the field table)."""
        if self._ctype is None:
            h = self._seg.header
            self._ctype = (rebuilt_struct(h.fields, h.element_size, h.type_name)
                           if h.typecode == STRUCT else TYPECODE_TO_TYPE[h.typecode])
        return self._ctype

    @property
    def dtype(self):
        """The numpy dtype of one element (ImportError without numpy)."""
        np = _numpy_or_raise("SharedNDArray.dtype")
        h = self._seg.header
        return QM._array_dtype(np, h.typecode, h.fields, h.element_size, self.name)

    @property
    def lifetime(self):
        return self._seg.header.lifetime

    def __len__(self):
        shape = self._seg.header.shape
        if not shape:
            raise TypeError("len() of a 0-dimensional array")
        return shape[0]

    def __repr__(self):
        h = self._seg.header
        element = (f"structure {h.type_name or '?'}" if h.typecode == STRUCT
                   else repr(h.typecode))
        return (f"<sharedbridge.SharedNDArray {self.name!r} shape={h.shape} "
                f"typecode={element}>")

    # -- views

    def numpy(self):
        """A numpy.ndarray over the shared memory (no copy), of this shape and dtype.
        It stays valid after this object is closed or collected."""
        np = sys.modules.get("numpy") or _numpy_or_raise("SharedNDArray.numpy()")
        seg = self._seg
        h = seg.header
        dtype = _dtypes.get(h.typecode)          # a structure's: None, not cached here
        if dtype is None:
            dtype = QM._array_dtype(np, h.typecode, h.fields, h.element_size, self.name)
            if h.typecode != STRUCT:
                _dtypes[h.typecode] = dtype
        # Bounds from the validated private header copy; the array keeps the mapping
        # alive (mapping.py).
        return np.frombuffer(seg.mm, dtype, h.element_count, h.data_offset).reshape(h.shape)

    def __array__(self, dtype=None, copy=None):
        view = self.numpy()
        if dtype is not None and view.dtype != dtype:
            if copy is False:
                raise ValueError(f"cannot view the shared array as {dtype} without a copy")
            return view.astype(dtype)
        return view.copy() if copy else view

    def memoryview(self):
        """A memoryview over the shared memory (no copy, standard library only), cast to
        the shape with the typecode as its format. What memoryview.cast cannot express
        gives a documented other view (docs/api.md, "N-dimensional arrays"): 'u' elements
        as 'I' (code points); a structure as unsigned bytes with one more dimension (the
        element's bytes); an array with a 0 in its shape as a one-dimensional empty
        view."""
        h = self._seg.header
        return QM._array_memoryview(h.typecode, h.shape, h.element_size, self._data_view())

    def _data_view(self):
        """The data area as flat bytes (a memoryview), bounds from the validated private
        header copy; it keeps the mapping alive (mapping.py), as every view made from it
        does."""
        data = self._data
        if data is None:
            h = self._seg.header
            data = self._data = memoryview(self._seg.mm).cast("B")[
                h.data_offset:h.data_offset + h.data_size]
        return data

    def as_ctypes(self):
        """The elements as one flat ctypes array of .ctype over the shared memory (no copy,
        standard library only): element k of the C order is [k]; a structure's fields by
        name (docs/api.md, "N-dimensional arrays")."""
        h = self._seg.header
        array_type = self.ctype * h.element_count
        return type(array_type).from_buffer(array_type, self._seg.mm, h.data_offset)

    def __iter__(self):
        self._check_chars()
        return iter(self._view())

    def __getitem__(self, index):
        self._check_chars(index)
        return self._view()[index]

    def __setitem__(self, index, value):
        if self._seg.header.typecode == "u":
            _refuse_surrogates(value)
        self._view()[index] = value

    def _view(self):
        return self.numpy() if QM._numpy() is not None else self.memoryview()

    def tolist(self):
        """The elements as nested lists (numpy's tolist, or the memoryview's)."""
        self._check_chars()
        return self._view().tolist()

    def _check_chars(self, index=None):
        """Element reads of a 'u' array (a[i], iteration, tolist) raise CorruptDataError
        for an element that is not a Unicode scalar value (docs/format.md section 3.4);
        the raw views (numpy(), memoryview(), as_ctypes()) are exempt. One element when
        *index* names one by its indices, else the whole array (a slice or numpy's fancy
        indexing may select any elements)."""
        h = self._seg.header
        if h.typecode != "u" or not h.element_count:
            return
        flat = _flat_index(h.shape, index)
        with self._data_view().cast("I") as codes:
            selected = range(len(codes)) if flat is None else (flat,)
            for k in selected:
                code = codes[k]
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    where, rest = [], k
                    for n in reversed(h.shape):
                        where.append(rest % n)
                        rest //= n
                    raise CorruptDataError(
                        f"corrupt data in segment {self.name!r}: element {tuple(reversed(where))} "
                        f"of a 'u' n-dimensional array holds {code:#x}, which is not a Unicode "
                        "scalar value (0..0x10FFFF without the surrogates 0xD800..0xDFFF); a "
                        "conforming writer never stores it", self.name, k)

    # -- DLPack

    def __dlpack_device__(self):
        """(kDLCPU, 0): the memory is the CPU's."""
        return (dlpack.KDL_CPU, 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """A DLPack capsule over the shared memory (no copy unless copy=True), for
        numpy.from_dlpack and torch.from_dlpack. The consumer's view keeps the mapping
        alive until it is gone, whatever happens to this object. A structure has no
        DLPack type: BufferError."""
        versioned = dlpack.check_request(stream, max_version, dl_device, copy)
        h = self._seg.header
        if h.typecode == STRUCT:
            raise BufferError(
                "a structure has no DLPack data type: use .numpy() (a structured ndarray) "
                "or share each field as its own array")
        if copy:
            owner = ctypes.create_string_buffer(max(1, h.data_size))
            ctypes.memmove(owner, self._address(), h.data_size)
            address = ctypes.addressof(owner)
        else:
            owner, address = self._seg.mm, self._address()
        return dlpack.export(h.typecode, h.shape, address, owner, versioned=versioned,
                             copied=bool(copy))

    def _address(self):
        return ctypes.addressof(self._seg.mm) + self._seg.header.data_offset

    # -- the lock

    def get_lock(self):
        """The lock that guards this array: the embedded robust RLock (lock=True), the
        shared lock given as lock= (or attached by name), or the process-local lock given
        as lock=. AttributeError when it has none (lock=False, or a process-local lock
        of another process)."""
        lock = self._lock
        if lock is _NO_LOCK:
            h = self._seg.header
            if h.lock_kind == H.LOCK_EMBEDDED:
                lock = lock_from_segment(self._seg)
            elif h.lock_kind == H.LOCK_EXTERNAL:
                lock = lock_from_segment(open_external_lock(
                    self._seg.name, h.lock_name, 5.0, self._seg.trusted))
            else:
                lock = None
            self._lock = lock
        if lock is None:
            raise AttributeError(
                f"the shared array {self.name!r} has no lock: it was created with "
                "lock=False, or with a process-local lock that only its creating process "
                "(and those it passed the lock to) can use; create it with lock=True or "
                "lock=<a sharedbridge Lock/RLock> to share one")
        return lock

    # -- lifetime and pickling

    def close(self):
        """Give up this object's claim now (see sharedbridge.close); every view of it
        (numpy, memoryview, DLPack) stays usable."""
        self._seg.close()

    def unlink(self):
        """Remove the segment's name now, whoever created it."""
        self._seg.unlink()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __reduce__(self):
        seg = self._seg
        seg.export()
        ctype = self._ctype if self._seg.header.typecode == STRUCT else None
        ref = type_ref(ctype) if ctype is not None else None
        local = self._lock if (seg.header.lock_kind == H.LOCK_PROCESS_LOCAL
                               and self._lock not in (None, _NO_LOCK)) else None
        return _attach_ndarray, (seg.name, ref, seg.trusted, local, signature(seg.header))


segment_of.register(SharedNDArray, lambda a: a._seg)


def _flat_index(shape, index):
    """The C-order position of the one element *index* names (an int for rank 1, a tuple
    of ints, () for rank 0), or None for any other index or one out of bounds (the view
    then selects several elements or raises IndexError itself)."""
    if not isinstance(index, tuple):
        index = (index,)
    if len(index) != len(shape):
        return None
    flat = 0
    for i, n in zip(index, shape):
        try:
            i = operator.index(i)
        except TypeError:
            return None
        if i < 0:
            i += n
        if not 0 <= i < n:
            return None
        flat = flat * n + i
    return flat


def _attach_ndarray(name, ref, allow_other_owner=False, local_lock=None, expect=None):
    # What a pickled SharedNDArray calls in the receiving process. Never raises
    # (unavailable.py: an exception here can hang multiprocessing.Pool).
    def build(seg):
        ctype = _pickled_type(seg.header, ref) if ref is not None else None
        return SharedNDArray(seg, ctype, _NO_LOCK if local_lock is None else local_lock)
    return attach_or_unavailable(name, build, allow_other_owner, expect)


def ndarray_from_segment(seg, requested=None, shape=None):
    """The SharedNDArray of an attached kind-9 segment, checking the element type
    (*requested*: a typecode, ctypes type or numpy dtype) and the *shape* asked for
    (docs/format.md section 12.2): TypeMismatchError naming both."""
    h = seg.header
    ctype = None
    if requested is not None:
        want = _element(requested)
        _same_element(h, want)
        if want.extra:
            raise TypeMismatchError(
                f"type mismatch: asked for elements of shape {want.extra}; an n-dimensional "
                "array's elements are scalars or structures (ask for the shape instead)")
        ctype = want.ctype if want.typecode == STRUCT else None
    if shape is not None:
        asked = _check_shape(shape, (), 1)
        if asked != h.shape:
            raise TypeMismatchError(f"type mismatch: asked for shape {asked}, the segment "
                                    f"{seg.name!r} has shape {h.shape}")
    return SharedNDArray(seg, ctype)


# --- the factories --------------------------------------------------------------------

def _create(shape, element, lock, name, lifetime, fill, dir=None):
    key = qualify(name, dir)
    lock_fields = _lock_fields(lock)
    lock_kind, lock_type, lock_name = lock_fields
    if lock_kind == H.LOCK_EXTERNAL:
        lock_name = external_lock_name(lock_name, key)
    dims = _check_shape(shape, element.extra, element.size)
    count = 1
    for n in dims:
        count *= n
    header = new_header(
        H.KIND_NDARRAY, creator_start_time=process_start_time(),
        lifetime=resolve_lifetime(lifetime, False), typecode=element.typecode,
        element_size=element.size, element_count=count, fields=element.fields,
        type_name=element.type_name, lock_kind=lock_kind, lock_type=lock_type,
        lock_name=lock_name, what="ndarray with a lock", advice="; use lock=False",
        shape=dims)

    def init(mm):
        if header.lock_abi:
            robust_mutex.init_mutex(mm, lock_type, header.lock_size)
        if fill is not None and header.data_size:
            fill(mm, header.data_offset)

    seg = create(key, header, init)
    if lock_kind == H.LOCK_NONE:
        kept = None
    elif lock_kind == H.LOCK_EMBEDDED:
        kept = _NO_LOCK             # the segment's own, made at the first get_lock()
    else:
        kept = lock                 # the shared lock or the process-local lock given
    return SharedNDArray(seg, element.ctype, kept)


def ndarray(shape, dtype="d", *, name=None, lock=True, lifetime=None, dir=None):
    """A new zero-filled n-dimensional array (C order) in a named segment.

    shape: an int or a sequence of ints (0 to 32 dimensions; () is a 0-dimensional
    array of one element). dtype: a typecode ('cubBhHiIlLqQfd?'), a ctypes simple type
    or Structure, or (with numpy) anything numpy.dtype() accepts whose elements have a
    typecode, or a structured dtype the field table describes; a ctypes array type or a
    numpy subarray dtype adds its dimensions after *shape*. name=None generates one.
    lock: True (a robust recursive lock embedded in the segment), a sharedbridge
    Lock/RLock (or another object's get_lock()), any object with acquire() (a
    process-local lock), or False. lifetime: "creator" (default), "last-closer" or
    "persistent" (docs/api.md, "Lifetimes"). dir: the directory backend's directory
    (default SHAREDBRIDGE_DIR, else /dev/shm; docs/format.md section 1.3).
    """
    return _create(shape, _element(dtype), lock, name, lifetime, None, dir)


def from_numpy(array, *, name=None, lock=True, lifetime=None, dir=None):
    """A new n-dimensional array in a named segment holding a copy of the numpy array
    *array* (one copy, straight into the shared memory; any memory layout, written in C
    order; a non-native byte order is converted to the native one). See ndarray() for
    name, lock, lifetime and dir."""
    np = _numpy_or_raise("sharedbridge.from_numpy")
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    dt = array.dtype
    if dt.names is None and not dt.isnative:
        dt = dt.newbyteorder("=")
    element = _element_of_dtype(dt)

    def fill(mm, offset):
        dst = np.ndarray(array.shape, dtype=dt, buffer=mm, offset=offset)
        np.copyto(dst, array, casting="equiv" if dt.names is None else "no")

    return _create(array.shape, element, lock, name, lifetime, fill, dir)
