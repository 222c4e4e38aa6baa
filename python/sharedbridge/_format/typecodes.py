"""The element-type table of docs/format.md section 3.4, and ctypes type <-> typecode."""

import ctypes

from ..errors import UnsupportedTypeError

STRUCT = "T"

# typecode -> ctypes type, as multiprocessing.sharedctypes.typecode_to_type, plus '?'.
TYPECODE_TO_TYPE = {
    "c": ctypes.c_char, "u": ctypes.c_wchar,
    "b": ctypes.c_byte, "B": ctypes.c_ubyte,
    "h": ctypes.c_short, "H": ctypes.c_ushort,
    "i": ctypes.c_int, "I": ctypes.c_uint,
    "l": ctypes.c_long, "L": ctypes.c_ulong,
    "q": ctypes.c_longlong, "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float, "d": ctypes.c_double,
    "?": ctypes.c_bool,
}

# Sizes fixed by the format (LP64 Linux), not by this interpreter's ctypes.
TYPECODE_SIZE = {
    "c": 1, "u": 4, "b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4,
    "l": 8, "L": 8, "q": 8, "Q": 8, "f": 4, "d": 8, "?": 1,
}

# typecode -> numpy dtype string of one element: little-endian, the sizes above
# (docs/format.md sections 2 and 3.4). For as_numpy of Python objects and of .NET ones.
TYPECODE_DTYPE = {
    "c": "S1", "u": "<U1", "?": "?", "b": "i1", "B": "u1", "h": "<i2", "H": "<u2",
    "i": "<i4", "I": "<u4", "l": "<i8", "L": "<u8", "q": "<i8", "Q": "<u8",
    "f": "<f4", "d": "<f8",
}

# ctypes cannot tell c_long from c_longlong on LP64: 'l' and 'q' (and 'L' and 'Q') are
# compared as one typecode.
_CANONICAL = {"l": "q", "L": "Q"}


def same_typecode(a, b):
    """True if typecodes *a* and *b* name the same element type ('l' is 'q', 'L' is 'Q')."""
    return _CANONICAL.get(a, a) == _CANONICAL.get(b, b)


# ctypes' own format letter (_type_) of a simple type -> the typecode it is written as.
# On LP64 ctypes.c_longlong *is* c_long, so a type cannot say whether the user meant 'l'
# or 'q': types are written as 'q'/'Q' (docs/format.md section 4, "8-byte integers").
_SIMPLE_LETTER_TO_TYPECODE = {
    "c": "c", "u": "u", "b": "b", "B": "B", "h": "h", "H": "H", "i": "i", "I": "I",
    "l": "q", "L": "Q", "q": "q", "Q": "Q", "f": "f", "d": "d", "?": "?",
}

# Letters of simple types that are pointers or otherwise meaningless in another process.
_REFUSED_LETTERS = {
    "z": "c_char_p is a pointer",
    "Z": "c_wchar_p is a pointer",
    "P": "c_void_p is a pointer",
    "O": "py_object is a pointer to a Python object",
    "X": "BSTR is a pointer",
    "v": "VARIANT_BOOL has no SharedBridge typecode",
}

# Letters of simple types that are values but have no typecode: why, and what to use.
_NO_TYPECODE = {
    "g": ("c_longdouble is x87 80-bit extended precision in 16 bytes on x86_64 and IEEE "
          "binary128 on aarch64, which .NET has no type for and the two machines do not "
          "share; use c_double ('d'), or keep the 16 bytes: RawArray('B', 16 * n) and "
          "(c_longdouble * n).from_buffer(arr) in each Python process"),
}

_ADVICE = ("; an address means nothing in another process: store indexes or offsets "
           "instead, or use a typecode of 'cubBhHiIlLqQfd?'")


def typecode_of_simple(ctype):
    """The typecode of a simple ctypes type (a _SimpleCData subclass)."""
    letter = getattr(ctype, "_type_", None)
    if not isinstance(letter, str):
        raise UnsupportedTypeError(f"{ctype!r} is not a supported ctypes type")
    if letter in _NO_TYPECODE:
        raise UnsupportedTypeError(
            f"cannot place {ctype.__name__} in shared memory: {_NO_TYPECODE[letter]}")
    if letter in _REFUSED_LETTERS:
        raise UnsupportedTypeError(
            f"cannot place {ctype.__name__} in shared memory: "
            f"{_REFUSED_LETTERS[letter]}{_ADVICE}")
    code = _SIMPLE_LETTER_TO_TYPECODE.get(letter)
    if code is None or ctypes.sizeof(ctype) != TYPECODE_SIZE[code]:
        raise UnsupportedTypeError(
            f"{ctype.__name__} (ctypes letter {letter!r}) has no SharedBridge typecode")
    if ctype.__dict__.get("__ctype_be__") is ctype and ctype.__dict__.get("__ctype_le__") is not ctype:
        raise UnsupportedTypeError(
            f"cannot place {ctype.__name__} in shared memory: it is big-endian, and a segment "
            "holds native (little-endian) values only, which .NET reads as they are; use "
            "the native type and convert")
    return code


def refuse_pointer(ctype):
    """Raise UnsupportedTypeError if *ctype* is a pointer or function-pointer type."""
    if issubclass(ctype, ctypes._Pointer):
        raise UnsupportedTypeError(
            f"cannot place {ctype.__name__} in shared memory: POINTER(...) types are "
            f"pointers{_ADVICE}")
    if issubclass(ctype, ctypes._CFuncPtr):
        raise UnsupportedTypeError(
            f"cannot place {ctype.__name__} in shared memory: function pointers{_ADVICE}")
