"""The typed messages of a queue (docs/format.md section 11.4): Python object <-> tag,
descriptor and data.

:func:`encode` picks the message type of an object (the typed mapping of docs/api.md,
"Queue messages") and returns the bytes to write as parts, without copying large data;
:func:`decode` turns a message read from a ring back into an object, validating the
descriptor and the data as untrusted input (a violation is a CorruptDataError naming
the queue). The standard library only: numpy is imported when an object is a numpy
object (it is then already imported) or when an n-d array message is decoded.
"""

import ctypes
import operator
import pickle
import struct
import sys
import weakref

from .._format import header as H
from .._format import struct_layout
from .._format.typecodes import STRUCT, TYPECODE_DTYPE, TYPECODE_SIZE
from ..errors import CorruptDataError, SharedBridgeError
from .raw_object import _raw_segment, rebuilt_struct

TAG_BYTES, TAG_STR, TAG_SCALAR, TAG_RECORD, TAG_ARRAY, TAG_PICKLE = 1, 2, 3, 4, 5, 6
MAX_NDIM = 32
# The largest struct description a message may carry: the field table of the largest
# header (section 3), so that every record type can also be a segment's element type.
MAX_FIELDS = (H.MAX_HEADER_SIZE - H.FIXED_SIZE) // H.FIELD_ENTRY_SIZE
# Buffers a pickle hands to buffer_callback (numpy arrays, PickleBuffer objects) of at
# least this many bytes travel out of band (copied once, straight into the message, and
# rebuilt over the message's data without a copy); smaller ones stay inside the pickle
# stream. Each out-of-band buffer costs an 8-byte descriptor entry, up to 7 bytes of
# alignment and, on both sides, Python-level work (a callback call, a memoryview slice, a
# numpy frombuffer) of about a microsecond: below 4 KiB copying the bytes is cheaper.
OUT_OF_BAND_MIN = 4096
# The largest structure of a message: what a .NET struct (and a numpy itemsize) can be.
MAX_ELEMENT_SIZE = (1 << 31) - 1
# Largest element count x element size numpy (and a memoryview) can address (ssize_t).
_MAX_BYTES = (1 << 63) - 1

_SCALAR_DESC = struct.Struct("<B7x")
_ARRAY_HEAD = struct.Struct("<BBHI")
_STRUCT_HEAD = struct.Struct("<II32s")
_PICKLE_HEAD = struct.Struct("<IIQ")
_U64 = struct.Struct("<Q")


def align8(n):
    return (n + 7) & ~7


class Encoded:
    """One message ready to write: *tag* (section 11.4), *descriptor* (bytes), *parts*
    (C-contiguous one-dimensional unsigned-byte memoryviews or bytes, written at
    *offsets* of the data, multiples of 8) and *data_length*, the data's bytes (the
    end of the last part; the gaps between parts are zero bytes)."""

    __slots__ = ("tag", "descriptor", "parts", "offsets", "data_length")

    def __init__(self, tag, descriptor, parts, offsets, data_length):
        self.tag = tag
        self.descriptor = descriptor
        self.parts = parts
        self.offsets = offsets
        self.data_length = data_length

    def __repr__(self):
        return (f"Encoded(tag={self.tag}, descriptor={self.descriptor!r}, "
                f"offsets={self.offsets}, data_length={self.data_length})")


def _one(tag, descriptor, part):
    part = part if type(part) is bytes else _byte_view(part)
    return Encoded(tag, descriptor, [part], [0], len(part))


def _byte_view(obj):
    """A one-dimensional unsigned-byte view of a buffer (a C-contiguous copy if it is
    not contiguous in C order)."""
    view = memoryview(obj)
    if not view.nbytes:
        return b""                  # a shape with a 0 cannot be cast
    if view.c_contiguous:
        return view.cast("B") if view.format != "B" or view.ndim != 1 else view
    return memoryview(view.tobytes())


# --- scalars ------------------------------------------------------------------------

_INT_RANGE = {}
for _code in "bhilq":
    _bits = 8 * TYPECODE_SIZE[_code]
    _INT_RANGE[_code] = (-(1 << (_bits - 1)), (1 << (_bits - 1)) - 1)
    _INT_RANGE[_code.upper()] = (0, (1 << _bits) - 1)
_FLOAT_FORMAT = {"f": struct.Struct("<f"), "d": struct.Struct("<d")}
_INT64 = _INT_RANGE["q"]


class Scalar:
    """A value with an explicit typecode (section 3.4), made by :func:`scalar`: a queue
    sends it as a scalar message of that typecode, which a reader gets back as a plain
    Python int, float, bool, bytes (typecode 'c') or str (typecode 'u')."""

    __slots__ = ("typecode", "value", "_packed")

    def __init__(self, typecode, value):
        self._packed = _pack_scalar(typecode, value)
        self.typecode = typecode
        self.value = _unpack_scalar(typecode, self._packed)

    def __repr__(self):
        return f"scalar({self.typecode!r}, {self.value!r})"

    def __eq__(self, other):
        if type(other) is not Scalar:
            return NotImplemented
        return self.typecode == other.typecode and self._packed == other._packed

    def __hash__(self):
        return hash((self.typecode, self._packed))

    def __reduce__(self):
        return scalar, (self.typecode, self.value)


def scalar(typecode, value):
    """*value* as a scalar message of *typecode* (docs/format.md section 3.4, any
    typecode but 'T'), for a queue's put(): the way to send an int or a float as
    something other than int64 ('q') or double ('d'), e.g. scalar('i', 5) for a .NET
    ``int``. The value is checked now: TypeError for a value of the wrong kind,
    OverflowError for an integer or a float outside the typecode's range, ValueError
    for a 'c' value that is not one byte or a 'u' value that is not one character."""
    return Scalar(typecode, value)


def _pack_scalar(typecode, value):
    if not isinstance(typecode, str) or typecode not in TYPECODE_SIZE:
        raise TypeError(f"unknown typecode {typecode!r}: use one of 'cubBhHiIlLqQfd?' "
                        "(a structure is sent as its ctypes Structure instance)")
    if typecode in _INT_RANGE:
        if isinstance(value, (float, str, bytes)):
            raise TypeError(f"typecode {typecode!r} needs an integer, not "
                            f"{type(value).__name__} {value!r}")
        v = operator.index(value)
        lo, hi = _INT_RANGE[typecode]
        if not lo <= v <= hi:
            raise OverflowError(f"{v} does not fit typecode {typecode!r} ({lo}..{hi})")
        return v.to_bytes(TYPECODE_SIZE[typecode], "little", signed=lo < 0)
    if typecode in _FLOAT_FORMAT:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
            raise TypeError(f"typecode {typecode!r} needs a real number, not "
                            f"{type(value).__name__} {value!r}")
        try:
            return _FLOAT_FORMAT[typecode].pack(float(value))
        except OverflowError:
            raise OverflowError(f"{value!r} does not fit typecode {typecode!r} (a "
                                f"{8 * TYPECODE_SIZE[typecode]}-bit float)") from None
    if typecode == "?":
        np = sys.modules.get("numpy")
        if type(value) is bool or (np is not None and isinstance(value, np.bool_)):
            return b"\x01" if value else b"\x00"
        if isinstance(value, int) and value in (0, 1):
            return bytes((value,))
        raise TypeError(f"typecode '?' needs a bool (or 0 or 1), not {value!r}")
    if typecode == "c":
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"typecode 'c' needs one byte (bytes of length 1), not {value!r}")
        if len(value) != 1:
            raise ValueError(f"typecode 'c' needs exactly one byte, not {len(value)}")
        return bytes(value)
    if not isinstance(value, str):                      # 'u'
        raise TypeError(f"typecode 'u' needs one character (str of length 1), not {value!r}")
    if len(value) != 1 or 0xD800 <= ord(value) <= 0xDFFF:
        raise ValueError(f"typecode 'u' needs one character that is a Unicode scalar value, "
                         f"not {value!r}")
    return ord(value).to_bytes(4, "little")


def _unpack_scalar(typecode, raw):
    """The Python value of one element (raw: exactly its bytes), or None for a 'u'
    element that is not a Unicode scalar value."""
    if typecode in _INT_RANGE:
        return int.from_bytes(raw, "little", signed=_INT_RANGE[typecode][0] < 0)
    if typecode in _FLOAT_FORMAT:
        return _FLOAT_FORMAT[typecode].unpack(raw)[0]
    if typecode == "?":
        return raw[0] != 0          # any non-zero byte is true (section 3.4)
    if typecode == "c":
        return bytes(raw)
    code = int.from_bytes(raw, "little")
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def _scalar_message(typecode, packed):
    return Encoded(TAG_SCALAR, _SCALAR_DESC.pack(ord(typecode)), [packed], [0], len(packed))


# --- records (ctypes structures) and structured dtypes ---------------------------------

class _NotDescribable(Exception):
    """A numpy dtype or ctypes class the field table cannot describe: pickled instead."""


_record_descriptions = weakref.WeakKeyDictionary()     # Structure class -> description or None


def _struct_description(fields, element_size, type_name):
    return (_STRUCT_HEAD.pack(len(fields), element_size, type_name.encode("ascii"))
            + H.encode_field_table(fields))


def _record_description(cls):
    """The struct description of a ctypes Structure class, or None if the field table
    cannot describe it (then its instances are pickled)."""
    try:
        return _record_descriptions[cls]
    except KeyError:
        pass
    try:
        desc = _struct_description(struct_layout.describe(cls), ctypes.sizeof(cls),
                                   struct_layout.type_name_of(cls))
    except (SharedBridgeError, TypeError, ValueError):
        desc = None
    _record_descriptions[cls] = desc
    return desc


# numpy dtype (kind, itemsize) -> typecode, for native byte order.
_DTYPE_TYPECODE = {
    ("b", 1): "?", ("i", 1): "b", ("u", 1): "B", ("i", 2): "h", ("u", 2): "H",
    ("i", 4): "i", ("u", 4): "I", ("i", 8): "q", ("u", 8): "Q", ("f", 4): "f",
    ("f", 8): "d", ("S", 1): "c", ("U", 4): "u",
}


def _typecode_of_dtype(dt):
    """The typecode of a non-structured numpy dtype, or None."""
    if dt.names is not None or dt.subdtype is not None or not dt.isnative:
        return None
    return _DTYPE_TYPECODE.get((dt.kind, dt.itemsize))


def _dtype_fields(dt, parent, entries, depth):
    if depth > H.MAX_STRUCT_DEPTH:
        raise _NotDescribable()
    for name in dt.names:
        fdt, offset = dt.fields[name][:2]
        if (not isinstance(name, str) or not name.isascii() or not name.isidentifier()
                or len(name) > 31 or H.is_reserved_field_name(name)):
            raise _NotDescribable()
        count = 1
        if fdt.subdtype is not None:
            fdt, shape = fdt.subdtype
            for n in shape:
                count *= n
        if fdt.names is not None:
            code, item_size = STRUCT, fdt.itemsize
        elif fdt.kind == "S" and fdt.isnative:          # bytes of N: 'c' x N
            code, item_size, count = "c", 1, count * fdt.itemsize
        elif fdt.kind == "U" and fdt.isnative:          # N characters: 'u' x N
            code, item_size, count = "u", 4, count * (fdt.itemsize // 4)
        else:
            code, item_size = _typecode_of_dtype(fdt), fdt.itemsize
        if code is None or count < 1 or item_size < 1:
            raise _NotDescribable()
        index = len(entries)
        entries.append(H.StructField(name, code, offset, count, item_size, parent))
        if code == STRUCT:
            _dtype_fields(fdt, index, entries, depth + 1)


def _dtype_description(dt):
    """The struct description of a structured numpy dtype; _NotDescribable if the field
    table cannot describe it exactly (offsets out of order, overlapping, names that are
    not identifiers, field types without a typecode). Packed and explicit offsets are
    recorded as they are (docs/format.md section 4)."""
    entries = []
    _dtype_fields(dt, -1, entries, 1)
    if not entries or len(entries) > MAX_FIELDS:
        raise _NotDescribable()
    desc = _struct_description(entries, dt.itemsize, "")

    def refuse(_what):
        return _NotDescribable()
    H.decode_field_table(desc, _STRUCT_HEAD.size, H.FIELD_ENTRY_SIZE, len(entries),
                         dt.itemsize, corrupt=refuse)
    return desc


# The descriptors of arrays of a dtype with a typecode, by (dtype, shape): a stream of
# arrays repeats the same few (equal dtypes have the same typecode; bounded: cleared when
# full).
_array_descriptors = {}
_MAX_ARRAY_DESCRIPTORS = 256


def _array_message(np, arr):
    """Tag 5 for an ndarray whose dtype has a typecode or is a describable structure;
    None otherwise (it is pickled)."""
    dt = arr.dtype
    shape = arr.shape
    desc = _array_descriptors.get((dt, shape))
    if desc is not None:    # a dtype with a typecode, with this shape before (the same bytes)
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")
        data = memoryview(arr.reshape(-1).view(np.uint8))
        return Encoded(TAG_ARRAY, desc, [data], [0], data.nbytes)
    if arr.ndim > MAX_NDIM:
        return None
    if dt.names is not None:
        try:
            tail = _dtype_description(dt)
        except _NotDescribable:
            return None
        code = STRUCT
    else:
        code, tail = _typecode_of_dtype(dt), b""
        if code is None:
            return None
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    desc = (_ARRAY_HEAD.pack(ord(code), arr.ndim, 0, 0)
            + struct.pack(f"<{arr.ndim}Q", *arr.shape) + tail)
    if not tail:
        if len(_array_descriptors) >= _MAX_ARRAY_DESCRIPTORS:
            _array_descriptors.clear()
        _array_descriptors[(dt, shape)] = desc
    data = memoryview(arr.reshape(-1).view(np.uint8))
    return Encoded(TAG_ARRAY, desc, [data], [0], data.nbytes)


# --- pickles --------------------------------------------------------------------------

def _pickle_message(obj):
    buffers = []

    def out_of_band(buf):
        raw = buf.raw()
        if raw.nbytes < OUT_OF_BAND_MIN:
            return True             # in band
        buffers.append(raw)
        return False
    stream = pickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
    parts, offsets, end = [stream], [0], len(stream)
    for raw in buffers:
        start = align8(end)
        parts.append(raw)
        offsets.append(start)
        end = start + raw.nbytes
    desc = (_PICKLE_HEAD.pack(len(buffers), 0, len(stream))
            + struct.pack(f"<{len(buffers)}Q", *(b.nbytes for b in buffers)))
    return Encoded(TAG_PICKLE, desc, parts, offsets, end)


# --- encode ---------------------------------------------------------------------------

def encode(obj):
    """The message of *obj* (docs/api.md, "Queue messages"): bytes, bytearray and
    memoryview -> tag 1; str -> 2; bool, int in the int64 range, float, numpy scalars
    with a typecode and scalar() values -> 3; ctypes Structure instances -> 4; numpy
    arrays with a typecode or a describable structured dtype -> 5; anything else
    (subclasses of these types too, so they come back as themselves) -> 6, a pickle.
    Raises what pickle raises for an object that cannot be pickled."""
    t = type(obj)
    if t is bytes:
        return Encoded(TAG_BYTES, b"", [obj], [0], len(obj))
    if t is str:
        try:
            return _one(TAG_STR, b"", obj.encode("utf-8"))
        except UnicodeEncodeError:      # a lone surrogate: not UTF-8 text, pickle keeps it
            return _pickle_message(obj)
    if t is int:
        if _INT64[0] <= obj <= _INT64[1]:
            return _scalar_message("q", obj.to_bytes(8, "little", signed=True))
        return _pickle_message(obj)
    if t is float:
        return _scalar_message("d", _FLOAT_FORMAT["d"].pack(obj))
    if t is bool:
        return _scalar_message("?", b"\x01" if obj else b"\x00")
    if t is bytearray or t is memoryview:
        return _one(TAG_BYTES, b"", obj)
    if t is Scalar:
        return _scalar_message(obj.typecode, obj._packed)
    if isinstance(obj, ctypes.Structure):
        # A shared structure (RawValue) travels by name, as every sharedbridge object
        # pickles: the reader gets the same shared memory, not a copy of its value.
        desc = _record_description(t) if _raw_segment(obj) is None else None
        if desc is not None:
            return _one(TAG_RECORD, desc, obj)
        return _pickle_message(obj)
    np = sys.modules.get("numpy")       # a numpy object means numpy is imported
    if np is not None:
        if t is np.ndarray:
            return _array_message(np, obj) or _pickle_message(obj)
        if isinstance(obj, np.generic):
            code = _typecode_of_dtype(obj.dtype)
            if code is not None and code not in "cu":
                return _scalar_message(code, obj.tobytes())
    return _pickle_message(obj)


# --- decode ---------------------------------------------------------------------------

def _corrupt(name, what):
    return CorruptDataError(
        f"corrupt message in queue {name!r}: {what}; it was written by a non-conforming "
        "program or damaged (docs/format.md section 11.4)", name)


def decode(tag, descriptor, data, *, name):
    """The object of a message: *tag*, *descriptor* (bytes-like) and *data* (a
    bytes-like object private to the caller: an n-d array, and the out-of-band buffers
    of a pickle, are views of it, no copy). Raises CorruptDataError naming the queue
    *name* for a descriptor or data a conforming writer cannot produce.

    A pickled message (tag 6) is unpickled like multiprocessing.Queue does, trusting its
    producers (pickle can run code): any error from unpickling is raised as a
    CorruptDataError whose __cause__ is the original error (a class that the receiving
    process cannot import, for example)."""
    desc = bytes(descriptor)
    if tag == TAG_BYTES or tag == TAG_STR:
        if desc:
            raise _corrupt(name, f"a tag-{tag} message with a {len(desc)}-byte descriptor "
                                 "(it has none)")
        if tag == TAG_BYTES:
            return bytes(data)
        try:
            return str(data, "utf-8")
        except UnicodeDecodeError as e:
            raise _corrupt(name, f"a string message that is not UTF-8 ({e.reason} at byte "
                                 f"{e.start})") from None
    if tag == TAG_SCALAR:
        return _decode_scalar(desc, data, name)
    if tag == TAG_RECORD:
        fields, size, type_name, end = _decode_struct_description(desc, 0, name)
        _check_end(desc, end, name)
        if len(data) != size:
            raise _corrupt(name, f"a record of {size} bytes with {len(data)} bytes of data")
        cls = _record_class(fields, size, type_name, name)
        _check_u_fields(fields, data, name)
        return cls.from_buffer_copy(data)
    if tag == TAG_ARRAY:
        return _decode_array(desc, data, name)
    if tag == TAG_PICKLE:
        return _decode_pickle(desc, data, name)
    raise _corrupt(name, f"unknown message type (tag) {tag}")


def _check_end(desc, end, name):
    if len(desc) != end:
        raise _corrupt(name, f"a descriptor of {len(desc)} bytes where its fields make "
                             f"{end}")


def _typecode(byte, name, allow_struct):
    code = chr(byte)
    if code in TYPECODE_SIZE or (allow_struct and code == STRUCT):
        return code
    raise _corrupt(name, f"typecode {byte:#04x}")


def _decode_scalar(desc, data, name):
    if len(desc) != _SCALAR_DESC.size:
        raise _corrupt(name, f"a scalar descriptor of {len(desc)} bytes (it has 8)")
    if any(desc[1:]):
        raise _corrupt(name, "a scalar descriptor whose reserved bytes are not 0")
    code = _typecode(desc[0], name, allow_struct=False)
    if len(data) != TYPECODE_SIZE[code]:
        raise _corrupt(name, f"a scalar of typecode {code!r} with {len(data)} bytes of "
                             f"data (it has {TYPECODE_SIZE[code]})")
    value = _unpack_scalar(code, bytes(data))
    if value is None:
        raise _corrupt(name, f"a 'u' scalar {int.from_bytes(data, 'little'):#x} that is "
                             "not a Unicode scalar value")
    return value


def _decode_struct_description(desc, offset, name):
    """(fields, element_size, type_name, end) of the struct description at *offset*."""
    def corrupt(what):
        return _corrupt(name, f"struct description: {what}")
    if len(desc) < offset + _STRUCT_HEAD.size:
        raise corrupt(f"it does not fit the {len(desc)}-byte descriptor")
    count, size, raw_name = _STRUCT_HEAD.unpack_from(desc, offset)
    if not 1 <= count <= MAX_FIELDS:
        raise corrupt(f"field_count {count} (1 to {MAX_FIELDS})")
    if not 1 <= size <= MAX_ELEMENT_SIZE:
        raise corrupt(f"element_size {size} (1 to {MAX_ELEMENT_SIZE})")
    start = offset + _STRUCT_HEAD.size
    end = start + count * H.FIELD_ENTRY_SIZE
    if len(desc) < end:
        raise corrupt(f"{count} fields do not fit the {len(desc)}-byte descriptor")
    type_name = H.decode_type_name(raw_name, corrupt=corrupt)
    fields = H.decode_field_table(desc, start, H.FIELD_ENTRY_SIZE, count, size,
                                  corrupt=corrupt)
    return fields, size, type_name, end


def _record_class(fields, size, type_name, name):
    try:
        return rebuilt_struct(fields, size, type_name)
    except (SharedBridgeError, TypeError, ValueError) as e:
        raise _corrupt(name, f"struct description: {e}") from None


def _check_u_fields(fields, data, name):
    """Every 'u' item of a record must be a Unicode scalar value (section 3.4): checked
    when the message is decoded, so the error names the queue."""
    if not any(f.typecode == "u" for f in fields):
        return
    children = {}
    for index, f in enumerate(fields):
        children.setdefault(f.parent, []).append(index)

    def walk(parent, base, path):
        for index in children.get(parent, ()):
            f = fields[index]
            if f.typecode == STRUCT:
                for k in range(f.count):
                    walk(index, base + f.offset + k * f.item_size,
                         f"{path}{f.name}{f'[{k}]' if f.count > 1 else ''}.")
            elif f.typecode == "u":
                start = base + f.offset
                raw = bytes(data[start:start + 4 * f.count])
                for k, (code,) in enumerate(struct.iter_unpack("<I", raw)):
                    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                        raise _corrupt(name, f"field {path}{f.name} item {k} of a record "
                                             f"holds {code:#x}, not a Unicode scalar value")
    walk(-1, 0, "")


def _decode_array(desc, data, name):
    if len(desc) < _ARRAY_HEAD.size:
        raise _corrupt(name, f"an array descriptor of {len(desc)} bytes")
    code_byte, ndim, r16, r32 = _ARRAY_HEAD.unpack_from(desc, 0)
    if r16 or r32:
        raise _corrupt(name, "an array descriptor whose reserved bytes are not 0")
    code = _typecode(code_byte, name, allow_struct=True)
    if ndim > MAX_NDIM:
        raise _corrupt(name, f"an array of {ndim} dimensions (at most {MAX_NDIM})")
    end = _ARRAY_HEAD.size + 8 * ndim
    if len(desc) < end:
        raise _corrupt(name, f"an array descriptor of {len(desc)} bytes for {ndim} "
                             "dimensions")
    shape = struct.unpack_from(f"<{ndim}Q", desc, _ARRAY_HEAD.size)
    fields = None
    if code == STRUCT:
        fields, size, type_name, end = _decode_struct_description(desc, end, name)
    else:
        size = TYPECODE_SIZE[code]
    _check_end(desc, end, name)
    # prod(shape) * size == len(data), with every product bounded before it grows
    # (numpy and memoryview address at most 2^63 - 1 bytes, even with a 0 in the shape).
    total, empty = size, False
    for n in shape:
        if n == 0:
            empty = True
            continue
        total *= n
        if total > _MAX_BYTES:
            raise _corrupt(name, f"an array of shape {shape} and {size}-byte elements: "
                                 "more bytes than a process can address")
    if (0 if empty else total) != len(data):
        raise _corrupt(name, f"an array of shape {shape} and {size}-byte elements with "
                             f"{len(data)} bytes of data")
    np = _numpy()
    if np is None:
        return _array_memoryview(code, shape, size, data)
    dtype = _array_dtype(np, code, fields, size, name)
    if not len(data):
        return np.zeros(shape, dtype=dtype)        # no elements: nothing to share
    return np.frombuffer(data, dtype=dtype).reshape(shape)


_NO_NUMPY = []


def _numpy():
    """numpy, imported at the first n-d array message; None if it is not installed
    (looked for once)."""
    np = sys.modules.get("numpy")
    if np is not None or _NO_NUMPY:
        return np
    try:
        import numpy as np
    except ImportError:
        _NO_NUMPY.append(True)
        return None
    return np


def _array_memoryview(code, shape, size, data):
    """Without numpy: the data cast to the shape (the typecode as the format; 'u' as 'I',
    code points; 'T' as bytes with one more dimension, the element's bytes). A
    memoryview cannot have a 0 in its shape: an empty array is a one-dimensional
    empty view."""
    view = memoryview(data).cast("B")
    if code == STRUCT:
        fmt, shape = "B", tuple(shape) + (size,)
    else:
        fmt = "I" if code == "u" else code
    if 0 in shape:
        return view.cast(fmt)
    return view.cast(fmt, shape)


_dtypes = {}


def _array_dtype(np, code, fields, size, name):
    if code != STRUCT:
        dt = _dtypes.get(code)
        if dt is None:
            dt = _dtypes[code] = np.dtype(TYPECODE_DTYPE[code])
        return dt
    key = (fields, size)
    dt = _dtypes.get(key)
    if dt is None:
        try:
            dt = _dtypes[key] = _dtype_of_fields(np, fields, size)
        except (TypeError, ValueError) as e:
            raise _corrupt(name, f"struct description: numpy cannot represent it ({e})") \
                from None
    return dt


def _dtype_of_fields(np, fields, size):
    children = {}
    for index, f in enumerate(fields):
        children.setdefault(f.parent, []).append(index)

    def build(parent, itemsize):
        names, formats, offsets = [], [], []
        for index in children[parent]:
            f = fields[index]
            if f.typecode == STRUCT:
                fmt = build(index, f.item_size)
            elif f.typecode == "c":
                fmt = f"S{f.count}"
            elif f.typecode == "u":
                fmt = f"<U{f.count}"
            else:
                fmt = TYPECODE_DTYPE[f.typecode]
            if f.count > 1 and f.typecode not in "cu":
                fmt = (fmt, (f.count,))
            names.append(f.name)
            formats.append(fmt)
            offsets.append(f.offset)
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": itemsize})
    return build(-1, size)


def _decode_pickle(desc, data, name):
    if len(desc) < _PICKLE_HEAD.size:
        raise _corrupt(name, f"a pickle descriptor of {len(desc)} bytes")
    count, reserved, stream_length = _PICKLE_HEAD.unpack_from(desc, 0)
    if reserved:
        raise _corrupt(name, "a pickle descriptor whose reserved word is not 0")
    if len(desc) != _PICKLE_HEAD.size + 8 * count:
        raise _corrupt(name, f"a pickle descriptor of {len(desc)} bytes for {count} "
                             "buffers")
    length = len(data)
    if not 0 < stream_length <= length:
        raise _corrupt(name, f"a pickle of {stream_length} bytes in {length} bytes of data")
    view = memoryview(data).cast("B")
    buffers, end = [], stream_length
    for (n,) in _U64.iter_unpack(desc[_PICKLE_HEAD.size:]):
        start = align8(end)
        end = start + n
        if end > length:
            raise _corrupt(name, f"out-of-band buffers past the {length} bytes of data")
        buffers.append(view[start:end])
    if end != length:
        raise _corrupt(name, f"a pickle and buffers of {end} bytes in {length} bytes of "
                             "data")
    try:
        return pickle.loads(view[:stream_length], buffers=buffers)
    except Exception as e:
        raise CorruptDataError(
            f"message in queue {name!r} cannot be unpickled: {type(e).__name__}: {e} (a "
            "class or function the pickle names must be importable in the receiving "
            "process: not defined in an interactive session or only in the sender's "
            "__main__)", name) from e
