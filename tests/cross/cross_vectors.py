"""Test vectors (tests/cross/vectors/*.json) on the Python side: build the sharedbridge object a
vector describes, and check an attached object against a vector.

Values are compared through a canonical text form (`canon`) that both drivers produce the same
way: integers in decimal, floats as the hex of their IEEE bits (NaN as "nan", so -0.0 and 0.0
differ), bools as true/false, wide characters as U+XXXX, byte strings as hex, structures as
{a,b,...}. Comparing canonical forms makes a mismatch message readable in either language.
"""
import ctypes
import json
import math
import struct
import sys

CTYPES = {
    "c": ctypes.c_char, "u": ctypes.c_wchar, "b": ctypes.c_byte, "B": ctypes.c_ubyte,
    "h": ctypes.c_short, "H": ctypes.c_ushort, "i": ctypes.c_int, "I": ctypes.c_uint,
    "l": ctypes.c_long, "L": ctypes.c_ulong, "q": ctypes.c_longlong, "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float, "d": ctypes.c_double, "?": ctypes.c_bool,
}

SPECIAL_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


# Synchronization segments (docs/format.md section 10): "values" are the data words (16, and
# the holder table of a semaphore or barrier, section 10.2).
SYNC_OBJECTS = {"event": 4, "semaphore": 5, "condition": 6, "barrier": 7}
LIST_OBJECTS = ("array", *SYNC_OBJECTS)


def load(path):
    with open(path, encoding="ascii") as f:
        return json.load(f)


def element_count(vector):
    """The number of elements of an "ndarray" vector: the product of its shape (1 for rank 0)."""
    count = 1
    for n in vector["shape"]:
        count *= n
    return count


def lifetime(vector):
    """The vector's segment lifetime (docs/format.md section 8). Default "persistent": a
    producer of the suite leaves its segments for consumers that start after it ended."""
    return vector.get("lifetime", "persistent")


# ---- types --------------------------------------------------------------------------------

_structs = {}


def struct_type(spec):
    """The ctypes Structure for a vector's struct spec (built once per name)."""
    if spec["name"] not in _structs:
        fields = [(f["name"], field_ctype(f)) for f in spec["fields"]]
        attrs = {"_fields_": fields}
        if "pack" in spec:          # a packed structure (docs/format.md section 4)
            attrs["_pack_"] = spec["pack"]
            if sys.version_info >= (3, 14):
                attrs["_layout_"] = "ms"
        _structs[spec["name"]] = type(spec["name"], (ctypes.Structure,), attrs)
    return _structs[spec["name"]]


def field_ctype(field):
    base = struct_type(field["struct"]) if field["type"] == "T" else CTYPES[field["type"]]
    return base * field["count"] if "count" in field else base


def element_type(vector):
    """What to pass as typecode_or_type: the typecode string for scalars, because ctypes makes
    c_longlong an alias of c_long on LP64, so only the string tells 'l' from 'q'."""
    return struct_type(vector["struct"]) if vector["typecode"] == "T" else vector["typecode"]


# ---- JSON -> Python values ----------------------------------------------------------------

def py_scalar(typecode, value):
    if typecode in "fd":
        return SPECIAL_FLOATS[value] if isinstance(value, str) else float(value)
    if typecode == "c":
        return value.encode("latin-1")
    return value


def _is_item_array(field):
    """A fixed array field other than c_char * N (which reads and writes as one bytes value)."""
    return "count" in field and field["type"] != "c"


def py_struct(spec, values):
    out = []
    for field, value in zip(spec["fields"], values):
        if field["type"] == "T":
            out.append(py_struct(field["struct"], value))
        elif _is_item_array(field):
            out.append(tuple(py_scalar(field["type"], v) for v in value))
        else:
            out.append(py_scalar(field["type"], value))
    return tuple(out)


def py_element(vector, value):
    if vector["typecode"] == "T":
        return py_struct(vector["struct"], value)
    return py_scalar(vector["typecode"], value)


def char_bytes(vector):
    """A char array's full contents: the vector's bytes, NUL-padded to its length."""
    data = vector["values"].encode("latin-1")
    return data + b"\0" * (vector["length"] - len(data))


# ---- canonical text -----------------------------------------------------------------------

def canon_scalar(typecode, value):
    if typecode in "fd":
        if isinstance(value, str):
            value = SPECIAL_FLOATS[value]
        if math.isnan(value):
            return "nan"
        if typecode == "f":
            return "f" + struct.pack(">f", value).hex()
        return "d" + struct.pack(">d", value).hex()
    if typecode == "?":
        return "true" if value else "false"
    if typecode == "u":
        return "U+%04X" % ord(value)
    if typecode == "c":
        raw = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        return "x" + raw.split(b"\0", 1)[0].hex()  # a c_char field reads up to its first NUL
    return str(int(value))


def canon_struct(spec, values):
    parts = []
    for field, value in zip(spec["fields"], values):
        if field["type"] == "T":
            parts.append(canon_struct(field["struct"], value))
        elif _is_item_array(field):
            parts.append("[" + ",".join(canon_scalar(field["type"], v) for v in value) + "]")
        else:
            parts.append(canon_scalar(field["type"], value))
    return "{" + ",".join(parts) + "}"


def canon_shape(shape):
    """An n-dimensional array's shape as the first canonical item: "shape=[2,3,4]" ("shape=[]"
    for rank 0), so a reader that got the shape wrong is told so (docs/format.md section 12)."""
    return "shape=[" + ",".join(str(int(n)) for n in shape) + "]"


def canon_expected(vector):
    """The canonical text of every element a vector describes (an "ndarray": its shape, then
    its elements in C order)."""
    if vector["object"] == "chararray":
        return ["x" + char_bytes(vector).hex()]
    if vector["object"] == "ndarray":
        return [canon_shape(vector["shape"])] + _canon_elements(vector, vector["values"])
    values = vector["values"] if vector["object"] in LIST_OBJECTS else [vector["values"]]
    return _canon_elements(vector, values)


def _canon_elements(vector, values):
    if vector["typecode"] == "T":
        return [canon_struct(vector["struct"], v) for v in values]
    return [canon_scalar(vector["typecode"], v) for v in values]


def ctypes_to_plain(spec, obj):
    """A ctypes Structure instance as nested lists of plain Python values."""
    out = []
    for field in spec["fields"]:
        value = getattr(obj, field["name"])
        if field["type"] == "T":
            value = ctypes_to_plain(field["struct"], value)
        elif _is_item_array(field):
            value = list(value)
        out.append(value)
    return out


def canon_actual(vector, elements):
    """The canonical text of elements read from a segment (ctypes values)."""
    if vector["typecode"] == "T":
        return [canon_struct(vector["struct"], ctypes_to_plain(vector["struct"], e)) for e in elements]
    return [canon_scalar(vector["typecode"], e) for e in elements]


def diff(expected, actual):
    """Readable mismatch lines, empty when equal."""
    if len(expected) != len(actual):
        return [f"length: expected {len(expected)}, found {len(actual)}"]
    return [f"[{i}]: expected {e}, found {a}" for i, (e, a) in enumerate(zip(expected, actual)) if e != a]
