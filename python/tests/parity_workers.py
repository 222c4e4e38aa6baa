"""Cases of test_parity.py run in worker processes (importable by spawn and forkserver
children): each case makes one object with multiprocessing.sharedctypes and one with
sharedbridge in the parent, hands both to a Pool's workers through initargs (the one
way multiprocessing's own objects may travel), observes them in a worker, and observes
them again in the parent afterwards (what the worker wrote)."""

import copy
import ctypes
import functools
import multiprocessing
import multiprocessing.sharedctypes as mpsc
import pickle
import re

import sharedbridge as sb
from mp_workers import Point


class MyInt(ctypes.c_int):
    pass


class PackedNatural(ctypes.Structure):
    _pack_ = 4
    _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_short), ("c", ctypes.c_short)]


class Packed1(ctypes.Structure):        # b at offset 1: recorded as it is (format.md section 4)
    _pack_ = 1
    _fields_ = [("a", ctypes.c_char), ("b", ctypes.c_int), ("p", Point)]


MODULES = {"mp": mpsc, "sb": sb}
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def norm_repr(obj):
    return _ADDRESS.sub("", repr(obj))


def outcome(fn, *args):
    """('ok', result) or ('raises', the builtin exception class's name)."""
    try:
        return ("ok", fn(*args))
    except Exception as e:      # the builtin base is what parity compares
        base = next(k for k in type(e).__mro__ if k.__module__ == "builtins")
        return ("raises", base.__name__)


def raw(obj):
    return obj.get_obj() if hasattr(obj, "get_obj") else obj


def names(obj):
    return type(obj).__name__, type(raw(obj)).__name__


def _set_under_lock(obj, fn):
    with obj.get_lock():
        fn()


# name -> (make(m) in the parent, observe(obj, m) in a worker, after(obj) in the parent)
CASES = {}


def case(name, make, observe, after=lambda o: None):
    CASES[name] = (make, observe, after)


SAMPLES = {"i": [1, -2, 3], "d": [0.5, -1.5, 1e300], "c": [b"a", b"b", b"c"],
           "u": ["x", "y", "z"], ctypes.c_bool: [True, False, True], "Q": [2**64 - 1, 2, 3]}

for _t, _s in SAMPLES.items():
    _id = _t if isinstance(_t, str) else _t.__name__
    case(f"value_{_id}", lambda m, s=_s, t=_t: m.Value(t, s[0]),
         lambda v, m, s=_s: (v.value, names(v), norm_repr(raw(v)),
                             _set_under_lock(v, lambda: setattr(v, "value", s[1]))),
         lambda v: v.value)
    case(f"array_{_id}", lambda m, s=_s, t=_t: m.Array(t, s),
         lambda a, m, s=_s: (a[:], len(a), a[-1], names(a),
                             _set_under_lock(a, lambda: a.__setitem__(0, s[2]))),
         lambda a: a[:])
    case(f"raw_array_{_id}", lambda m, s=_s, t=_t: m.RawArray(t, s),
         lambda a, m, s=_s: (a[::-1], names(a), a.__setitem__(slice(1, 3), s[:2])),
         lambda a: a[:])

case("string", lambda m: m.Array("c", b"hello"),
     lambda a, m: (a.value, a.raw, names(a), setattr(a, "value", b"HI")),
     lambda a: a.raw)
case("struct_value", lambda m: m.Value(Point, 1, 2),
     lambda v, m: ((v.x, v.y), names(v), setattr(v, "x", 5.0)),
     lambda v: (v.x, v.y))
case("struct_array", lambda m: m.RawArray(Point, [(1, 2), (3, 4)]),
     lambda a, m: ([(p.x, p.y) for p in a], names(a), type(a[0]).__name__,
                   setattr(a[1], "y", 40.0)),
     lambda a: [(p.x, p.y) for p in a])

# Multi-dimensional elements (docs/api.md, "Element types multiprocessing accepts"): rows of
# an array type.
case("rows_array", lambda m: m.Array(ctypes.c_int * 2, [(1, 2), (3, 4), (5, 6)]),
     lambda a, m: ([list(r) for r in a], names(a), type(a[0]).__name__,
                   _set_under_lock(a, lambda: a[1].__setitem__(0, 30))),
     lambda a: [list(r) for r in a])
case("rows_raw_array", lambda m: m.RawArray(ctypes.c_double * 3, 2),
     lambda a, m: ([list(r) for r in a], names(a), a[1].__setitem__(2, 7.5)),
     lambda a: [list(r) for r in a])
case("rows_value", lambda m: m.RawValue((ctypes.c_short * 2) * 3),
     lambda a, m: (len(a), len(a[0]), names(a), a[2].__setitem__(1, -3)),
     lambda a: [list(r) for r in a])
case("rows_of_structures", lambda m: m.RawArray(Point * 2, 2),
     lambda a, m: (names(a), type(a[0][1]).__name__, setattr(a[1][0], "x", 2.5)),
     lambda a: [[(p.x, p.y) for p in r] for r in a])

# Subclasses of simple types, a _pack_ that moves fields and one that changes nothing.
case("subclass_raw_value", lambda m: m.RawValue(MyInt, 3),
     lambda v, m: (isinstance(v, MyInt), v.value, norm_repr(v), setattr(v, "value", 4)),
     lambda v: (v.value, isinstance(v, MyInt)))
case("subclass_raw_array", lambda m: m.RawArray(MyInt, [1, 2]),
     lambda a, m: (type(a[0]).__name__, a[0].value, names(a), a.__setitem__(1, 20)),
     lambda a: [x.value for x in a])
case("subclass_value", lambda m: m.Value(MyInt, 5),
     lambda v, m: (isinstance(raw(v), MyInt), v.value, names(v)),
     lambda v: v.value)
case("packed_array", lambda m: m.Array(Packed1, [(b"a", 1, (0.5, 1.5)), (b"b", -2, (2.5, 3.5))]),
     lambda a, m: ([(p.a, p.b, p.p.y) for p in a[1:]], ctypes.sizeof(raw(a)), names(a),
                   type(a[0]).__name__, _set_under_lock(a, lambda: setattr(a[0], "b", 99))),
     lambda a: [(p.a, p.b, p.p.x) for p in a])
case("packed_natural", lambda m: m.RawValue(PackedNatural, 1, 2, 3),
     lambda v, m: ((v.a, v.b, v.c), ctypes.sizeof(v), setattr(v, "c", -1)),
     lambda v: (v.a, v.b, v.c))

# copy and deepcopy (docs/api.md, "Drop-in details", copy).
case("copy_raw", lambda m: m.RawValue("i", 5),
     lambda v, m: (outcome(lambda: (lambda c: (type(c).__name__, setattr(c, "value", 99),
                                              c.value))(copy.copy(v))),
                   v.value, outcome(copy.deepcopy, v)),
     lambda v: v.value)
case("copy_raw_array", lambda m: m.RawArray("d", [1.0, 2.0]),
     lambda a, m: (outcome(lambda: (lambda c: (c.__setitem__(0, 9.0), c[:]))(copy.copy(a))),
                   a[:], outcome(copy.deepcopy, a)),
     lambda a: a[:])
case("copy_wrapper", lambda m: m.Value("i", 1),
     lambda v, m: (outcome(copy.copy, v), outcome(copy.deepcopy, v)))

# isinstance and exact types (docs/api.md, "Drop-in details", Types).
case("isinstance_value", lambda m: m.Value("i", 1),
     lambda v, m: [isinstance(v, c) for c in (mpsc.Synchronized, mpsc.SynchronizedBase,
                                              mpsc.SynchronizedArray)]
     + [isinstance(raw(v), ctypes.c_int)])
case("isinstance_array", lambda m: m.Array("d", 2),
     lambda a, m: [isinstance(a, c) for c in (mpsc.SynchronizedArray, mpsc.SynchronizedBase,
                                              mpsc.SynchronizedString)])
case("isinstance_string", lambda m: m.Array("c", 2),
     lambda a, m: [isinstance(a, c) for c in (mpsc.SynchronizedString,
                                              mpsc.SynchronizedArray)])
case("exact_type", lambda m: m.RawValue("i", 1),
     lambda v, m: (type(v) is ctypes.c_int, type(v).__name__))
case("pointer", lambda m: m.RawValue("i", 7),
     lambda v, m: (ctypes.pointer(v)[0], type(ctypes.pointer(v)).__name__,
                   type(ctypes.pointer(v).contents).__name__,
                   ctypes.POINTER(type(v)) is ctypes.POINTER(ctypes.c_int),
                   ctypes.memmove(ctypes.byref(v), ctypes.byref(ctypes.c_int(42)), 4) and None,
                   outcome(ctypes.cast, v, ctypes.POINTER(ctypes.c_int))[0]),
     lambda v: v.value)
case("pointer_array", lambda m: m.RawArray("h", [1, 2, 3]),
     lambda a, m: (ctypes.cast(a, ctypes.POINTER(ctypes.c_short))[2],
                   ctypes.pointer(a)[0][1], type(ctypes.pointer(a)).__name__,
                   ctypes.cast(a, ctypes.POINTER(ctypes.c_short)).__setitem__(0, -1)),
     lambda a: a[:])

# Pickling in a worker (documented difference: sharedbridge pickles by name).
case("pickle_raw", lambda m: m.RawArray("i", [1, 2]),
     lambda a, m: outcome(lambda: pickle.loads(pickle.dumps(a))[:])[0])
case("pickle_wrapper", lambda m: m.Value("i", 3),
     lambda v, m: outcome(lambda: pickle.loads(pickle.dumps(v)).value)[0])

# Exceptions for the same mistakes, in a worker.
case("errors_array", lambda m: m.Array("i", 3),
     lambda a, m: [outcome(f) for f in (lambda: a[3], lambda: a.__setitem__(0, "x"),
                                        lambda: a.__setitem__(slice(0, 2), [1]),
                                        lambda: a["0"], lambda: a.__delitem__(0))])
case("errors_value", lambda m: m.Value("d", 1.0),
     lambda v, m: [outcome(f) for f in (lambda: setattr(v, "value", "x"),
                                        lambda: setattr(v, "value", None),
                                        lambda: v.nope)])
case("errors_struct", lambda m: m.RawValue(Point, 1, 2),
     lambda v, m: [outcome(f) for f in (lambda: v.z, lambda: setattr(v, "x", "s"))])

# Deliberate differences, documented in docs/api.md "Drop-in details":
# {case: (multiprocessing's worker result, sharedbridge's worker result)}.
DIFFERENCES = {
    # raw objects are a subclass of the ctypes type: it pickles by name and checks 'u'.
    "exact_type": (("ok", (True, "c_int")), ("ok", (False, "c_int"))),
    # multiprocessing pickles shared objects only while spawning a process.
    "pickle_raw": (("ok", "raises"), ("ok", "ok")),
    "pickle_wrapper": (("ok", "raises"), ("ok", "ok")),
}

# Cases multiprocessing cannot send to spawn or forkserver children: it pickles the
# element type of an array by reference, and c_int_Array_2 (a row) is not importable.
# Under those methods the worker's result is compared with multiprocessing's result in
# the parent (test_parity.py checks that multiprocessing fails to send them).
ROWS = ("rows_array", "rows_raw_array", "rows_value", "rows_of_structures")

OBJECTS = {}


def init(objects):
    """Pool initializer: the objects of every case, inherited or unpickled once."""
    OBJECTS.update(objects)


def observe(name, which):
    obj = OBJECTS[name][which]
    return outcome(CASES[name][1], obj, MODULES[which])


class _MultiprocessingIn:
    """multiprocessing.sharedctypes whose locks belong to one start method's context
    (a lock of the default context cannot go to a spawn child)."""

    def __init__(self, ctx):
        self.RawArray, self.RawValue = mpsc.RawArray, mpsc.RawValue
        self.Array = functools.partial(mpsc.Array, ctx=ctx)
        self.Value = functools.partial(mpsc.Value, ctx=ctx)


def make_all(method):
    """{case: {"mp": object, "sb": object}}; rows cases have no "mp" object outside fork."""
    mp = _MultiprocessingIn(multiprocessing.get_context(method))
    return {name: {"mp": make(mp), "sb": make(sb)} if name not in ROWS or method == "fork"
            else {"sb": make(sb)}
            for name, (make, _, _) in CASES.items()}


def observe_here(name):
    """multiprocessing's result for a case, observed in this process: (the worker
    result, the after result)."""
    make, look, after = CASES[name]
    obj = make(mpsc)
    return outcome(look, obj, mpsc), after(obj)
