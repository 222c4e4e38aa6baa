"""'u' (wchar) and '?' (bool) elements (docs/format.md section 3.4, element types): a 'u'
element that is not a Unicode scalar value reads as CorruptDataError on every read path,
writers refuse lone surrogates, every nonzero '?' byte reads as True and writers write 0 or
1; the other typecodes keep ctypes' own accessors."""

import ctypes

import pytest

import sharedbridge as sb
from conftest import shm_exists


# --- 'u' elements ------------------------------------------------------------------------

def poke_u32(obj, index, value):
    raw = obj.get_obj() if hasattr(obj, "get_obj") else obj
    (ctypes.c_uint32 * 1).from_address(ctypes.addressof(raw) + 4 * index)[0] = value


@pytest.mark.parametrize("bad", [0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0x110000, 0xFFFFFFFF])
@pytest.mark.parametrize("maker", ["RawArray", "Array", "attached"])
def test_u_array_reads_of_non_scalar_values_are_corrupt_data(maker, bad):
    made = (sb.RawArray if maker == "RawArray" else sb.Array)("u", "abcd")
    a = sb.attach(made.name) if maker == "attached" else made
    poke_u32(a, 2, bad)
    assert a[0] == "a" and a[1] == "b" and a[3] == "d" and a[0:2] == "ab" and a[-1] == "d"
    reads = [lambda: a[2], lambda: a[-2], lambda: a[:], lambda: a[1:4], lambda: a[::2],
             lambda: list(a), lambda: [c for c in a]]
    raw = a.get_obj() if isinstance(a, sb.SynchronizedBase) else a
    reads.append(lambda: raw.value)
    for read in reads:
        with pytest.raises(sb.CorruptDataError) as e:
            read()
        assert e.value.index == 2 and e.value.segment == a.name
        assert a.name in str(e.value) and "element 2" in str(e.value)
        assert isinstance(e.value, ValueError)
    with pytest.raises(IndexError):
        a[4]
    poke_u32(a, 2, 0x10FFFF)                        # the largest scalar value is fine
    assert a[2] == "\U0010ffff"


def test_u_value_reads(pyh_name):
    for v in (sb.RawValue("u", "x"), sb.Value("u", "x")):
        other = sb.attach(v.name)
        for bad in (0xD800, 0x110000):
            poke_u32(v, 0, bad)
            for obj in (v, other):
                with pytest.raises(sb.CorruptDataError, match="the value") as e:
                    obj.value
                assert e.value.index is None and v.name in str(e.value)
        poke_u32(v, 0, 0x1F600)
        assert v.value == other.value == "\U0001F600"
    raw = sb.RawValue("u", "x")
    poke_u32(raw, 0, 0xD800)
    assert "corrupt 0xd800" in repr(raw)


def test_u_writers_refuse_lone_surrogates(pyh_name):
    a = sb.Array("u", "abcd")
    raw = sb.RawArray("u", 4)
    v = sb.Value("u", "x")
    for target in (a, raw):
        with pytest.raises(UnicodeEncodeError):
            target[0] = "\ud800"
        with pytest.raises(ValueError):
            target[0:2] = "x\udfff"
        with pytest.raises(ValueError):
            target[0:2] = ["x", "\udc00"]
    with pytest.raises(ValueError):
        raw.value = "ok\ud800"
    with pytest.raises(ValueError):
        v.value = "\ud800"
    assert a[:] == "abcd" and raw[:] == "\0" * 4 and v.value == "x"
    a[0:2] = "\U0001F600z"
    assert a[:2] == "\U0001F600z"
    names = [pyh_name() for _ in range(4)]
    for make in (lambda n: sb.Array("u", "a\ud800", name=n),
                 lambda n: sb.RawValue("u", "\udc00", name=n),
                 lambda n: sb.copy((ctypes.c_wchar * 2)("a", "\ud800"), name=n),
                 lambda n: sb.RawArray(ctypes.c_wchar, ["\ud800"], name=n)):
        name = names.pop()
        with pytest.raises(ValueError):
            make(name)
        assert not shm_exists(name)


def test_u_fields_of_rebuilt_structures_are_checked(pyh_name):
    class Inner(ctypes.Structure):
        _fields_ = [("w", ctypes.c_wchar * 3), ("c", ctypes.c_wchar)]

    class Outer(ctypes.Structure):
        _fields_ = [("i", Inner), ("z", ctypes.c_wchar), ("n", ctypes.c_int)]

    name = pyh_name()
    made = sb.RawValue(Outer, ("ab", "c"), "z", 5, name=name)
    got = sb.attach(name)                   # the class is rebuilt from the field table
    assert (got.i.w, got.i.c, got.z, got.n) == ("ab", "c", "z", 5)
    raw = (ctypes.c_uint32 * 5).from_address(ctypes.addressof(made))
    raw[1] = 0x110000
    with pytest.raises(sb.CorruptDataError, match="element 1 of field 'w'") as e:
        got.i.w
    assert name in str(e.value)
    raw[1] = 0
    raw[2] = 0xD800                         # past the NUL: not part of the string read
    assert got.i.w == "a"
    raw[3] = 0xDFFF
    with pytest.raises(sb.CorruptDataError, match="field 'c'"):
        got.i.c
    with pytest.raises(UnicodeEncodeError):
        got.z = "\udc00"
    got.z = "\U0001F600"
    assert got.z == "\U0001F600"
    assert sb.header_of(got).fields[1].typecode == "u"


# --- '?' elements and the other typecodes ------------------------------------------------

def test_bool_reads_every_nonzero_byte_as_true():
    a = sb.RawArray("?", 4)
    s = sb.Array("?", 4)
    v = sb.RawValue("?")
    for obj in (a, s.get_obj(), v):
        raw = (ctypes.c_uint8 * 4).from_address(ctypes.addressof(obj))
        raw[0] = 2
        if obj is not v:
            raw[1], raw[2] = 0xFF, 0
    for obj in (a, s, sb.attach(a.name)):
        assert obj[:] == [True, True, False, False]
        assert obj[0] is True and obj[1] is True and obj[2] is False
    assert v.value is True
    w = sb.Array("?", [5, 0, -1, "x"])              # writers write 0 or 1
    assert bytes(w.get_obj()) == b"\x01\x00\x01\x01"


def test_other_typecodes_keep_ctypes_accessors():
    for typecode in "cbBhHiIlLqQfd?":
        cls = type(sb.RawArray(typecode, 1))
        assert "__getitem__" not in cls.__dict__ and "__setitem__" not in cls.__dict__
