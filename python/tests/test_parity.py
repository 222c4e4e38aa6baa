"""Parity: the same operations on multiprocessing.sharedctypes and on sharedbridge give
the same values, element types, reprs (addresses and modules aside) and exception types."""

import ctypes
import multiprocessing.sharedctypes as mpsc
import re

import pytest

import sharedbridge as sb


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


SAMPLES = {
    "c": [b"a", b"b", b"c"], "u": ["x", "y", "z"],
    "b": [1, -2, 3], "B": [1, 2, 255], "h": [1, -300, 3], "H": [1, 60000, 3],
    "i": [1, -2, 2**31 - 1], "I": [1, 2**32 - 1, 3], "l": [1, -2**62, 3], "L": [1, 2**63, 3],
    "q": [1, -2**63, 3], "Q": [2**64 - 1, 2, 3], "f": [1.5, -2.25, 3.0], "d": [0.1, -2.5, 1e300],
    ctypes.c_bool: [True, False, True], ctypes.c_int: [7, 8, 9], ctypes.c_double: [0.5, 1.5, 2.5],
    ctypes.c_ubyte: [0, 1, 2],
}
TYPES = list(SAMPLES)
IDS = [t if isinstance(t, str) else t.__name__ for t in TYPES]

_ADDRESS = re.compile(r"<[\w.]*?(\w+) object at 0x[0-9a-f]+>")


def norm_repr(obj):
    return _ADDRESS.sub(r"<\1>", repr(obj))


def outcome(fn, *args):
    """('ok', value, type name) or ('raises', exception type)."""
    try:
        value = fn(*args)
    except Exception as e:     # the exception *type* is what parity compares
        return ("raises", _builtin_base(type(e)))
    return ("ok", value, type(value).__name__)


def _builtin_base(cls):
    # sharedbridge exceptions also derive from the builtin one multiprocessing raises
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            return klass
    return cls


def same(fn, theirs, ours):
    expected, got = outcome(fn, theirs), outcome(fn, ours)
    if got[0] == "raises" and expected[0] == "raises":
        assert issubclass(got[1], expected[1]), (expected, got)
    else:
        assert got == expected


def same_for_every_op(ops, samples, make_pairs):
    """Run every operation of *ops* on fresh (multiprocessing, sharedbridge) pairs from
    *make_pairs*; one test per type (not per operation) keeps the per-test leak guard's
    cost out of the run time. Reports every differing operation, not only the first."""
    differences = []
    for op, fn in ops.items():
        for theirs, ours in make_pairs():
            try:
                same(lambda a: fn(a, samples), theirs, ours)
            except AssertionError as e:
                differences.append(f"{op} on {type(ours).__name__}: {e}")
    assert not differences, "\n".join(differences)


ARRAY_OPS = {
    "len": lambda a, s: len(a),
    "item": lambda a, s: a[0],
    "negative": lambda a, s: a[-1],
    "slice": lambda a, s: a[:],
    "slice_bounds": lambda a, s: a[1:10],
    "step": lambda a, s: a[::2],
    "reverse": lambda a, s: a[::-1],
    "list": lambda a, s: list(a),
    "iterate": lambda a, s: [x for x in a],
    "contains": lambda a, s: s[1] in a,
    "element_type": lambda a, s: type(a[0]).__name__,
    "index_out_of_range": lambda a, s: a[3],
    "negative_out_of_range": lambda a, s: a[-4],
    "bad_index_type": lambda a, s: a["0"],
    "set": lambda a, s: (a.__setitem__(1, s[2]), a[:])[1],
    "set_negative": lambda a, s: (a.__setitem__(-1, s[0]), a[:])[1],
    "set_slice": lambda a, s: (a.__setitem__(slice(0, 2), s[1:3]), a[:])[1],
    "set_step": lambda a, s: (a.__setitem__(slice(None, None, 2), s[1:3]), a[:])[1],
    "set_slice_wrong_length": lambda a, s: a.__setitem__(slice(0, 2), s[:1]),
    "set_out_of_range": lambda a, s: a.__setitem__(3, s[0]),
    "set_bad_type": lambda a, s: a.__setitem__(0, object()),
    "set_none": lambda a, s: a.__setitem__(0, None),
    "del_item": lambda a, s: a.__delitem__(0),
}


@pytest.mark.parametrize("t", TYPES, ids=IDS)
def test_array_operations(t):
    s = SAMPLES[t]
    same_for_every_op(ARRAY_OPS, s, lambda: (
        (mpsc.RawArray(t, s), sb.RawArray(t, s)),
        (mpsc.Array(t, s), sb.Array(t, s)),
        (mpsc.Array(t, s, lock=False), sb.Array(t, s, lock=False)),
    ))


@pytest.mark.parametrize("t", TYPES, ids=IDS)
def test_zeroed_arrays_types_and_reprs(t):
    theirs, ours = mpsc.Array(t, 4), sb.Array(t, 4)
    assert ours[:] == theirs[:]
    assert type(ours).__name__ == type(theirs).__name__
    assert norm_repr(ours) == norm_repr(theirs)
    assert norm_repr(ours.get_obj()) == norm_repr(theirs.get_obj())
    assert type(ours.get_obj()).__name__ == type(theirs.get_obj()).__name__
    assert isinstance(ours.get_obj(), type(theirs.get_obj()).__mro__[1])
    assert ctypes.sizeof(ours.get_obj()) == ctypes.sizeof(theirs.get_obj())
    raw_t, raw_o = mpsc.RawArray(t, 2), sb.RawArray(t, 2)
    assert norm_repr(raw_o) == norm_repr(raw_t)
    assert memoryview(raw_o).format == memoryview(raw_t).format


VALUE_OPS = {
    "value": lambda v, s: v.value,
    "repr": lambda v, s: norm_repr(v),
    "set": lambda v, s: (setattr(v, "value", s[1]), v.value)[1],
    "set_bad_type": lambda v, s: setattr(v, "value", object()),
    "set_none": lambda v, s: setattr(v, "value", None),
    "value_type": lambda v, s: type(v.value).__name__,
}


@pytest.mark.parametrize("t", TYPES, ids=IDS)
def test_value_operations(t):
    s = SAMPLES[t]
    same_for_every_op(VALUE_OPS, s, lambda: (
        (mpsc.RawValue(t, s[0]), sb.RawValue(t, s[0])),
        (mpsc.Value(t, s[0]), sb.Value(t, s[0])),
        (mpsc.RawValue(t), sb.RawValue(t)),
        (mpsc.Value(t, lock=False), sb.Value(t, lock=False)),
    ))


def test_char_array_value_and_raw():
    theirs, ours = mpsc.Array("c", b"hello world"), sb.Array("c", b"hello world")
    for fn in (lambda a: a.value, lambda a: a.raw, lambda a: type(a).__name__,
               lambda a: (setattr(a, "value", b"HI"), a.raw)[1],
               lambda a: (setattr(a, "raw", b"x" * 11), a.value)[1],
               lambda a: setattr(a, "value", b"x" * 12),
               lambda a: setattr(a, "value", "text"),
               lambda a: setattr(a, "raw", b"x" * 12),
               lambda a: a[0:5], lambda a: a[0]):
        same(fn, theirs, ours)
    same(lambda a: (a.value, a.raw), mpsc.Array("c", 4), sb.Array("c", 4))
    same(lambda a: (a.value, a.raw), mpsc.RawArray("c", b"ab\0c"), sb.RawArray("c", b"ab\0c"))


def test_structures():
    init = [(1.875, -6.25), (-5.75, 2.0), (2.375, 9.5)]
    theirs, ours = mpsc.Array(Point, init), sb.Array(Point, init)
    for fn in (lambda A: [(a.x, a.y) for a in A], lambda A: len(A),
               lambda A: type(A[0]).__name__, lambda A: type(A).__name__,
               lambda A: (setattr(A[0], "x", 4.0), A[0].x)[1],
               lambda A: A.__setitem__(1, Point(7, 8)) or (A[1].x, A[1].y),
               lambda A: A.__setitem__(1, (1, 2)), lambda A: A[5]):
        same(fn, theirs, ours)
    vt, vo = mpsc.Value(Point, 3, 4), sb.Value(Point, 3, 4)
    for fn in (lambda v: (v.x, v.y), lambda v: type(v).__name__,
               lambda v: (setattr(v, "y", 2.5), v.y)[1], lambda v: v.z,
               lambda v: norm_repr(v).split(" wrapper")[0]):
        same(fn, vt, vo)
    same(lambda v: (v.x, v.y), mpsc.RawValue(Point, 1), sb.RawValue(Point, 1))


CREATION_MISTAKES = {
    "unknown_typecode": lambda m: m.RawArray("x", 3),
    "not_a_type": lambda m: m.RawArray(5, 3),
    "negative_size": lambda m: m.RawArray("i", -1),
    "huge_size": lambda m: m.RawArray("i", 2**70),
    "bad_initializer_item": lambda m: m.RawArray("i", [1.5]),
    "str_for_chars": lambda m: m.RawArray("c", "abc"),
    "none_initializer": lambda m: m.RawArray("i", None),
    "value_extra_args": lambda m: m.RawValue("i", 1, 2),
    "value_bad_arg": lambda m: m.Value("i", "seven"),
    "array_lock_positional": lambda m: m.Array("i", 3, True),
    "array_lock_without_acquire": lambda m: m.Array("i", 3, lock=0),
    "value_lock_without_acquire": lambda m: m.Value("d", 1.0, lock="no"),
    "unknown_keyword": lambda m: m.Array("i", 3, foo=1),
    "struct_too_many_args": lambda m: m.RawValue(Point, 1, 2, 3),
    "struct_bad_initializer": lambda m: m.RawArray(Point, [(1, 2, 3)]),
    "copy_of_non_ctypes": lambda m: m.copy(3),
}


@pytest.mark.parametrize("mistake", list(CREATION_MISTAKES))
def test_same_exception_for_the_same_mistake(mistake):
    fn = CREATION_MISTAKES[mistake]
    expected, got = outcome(fn, mpsc), outcome(fn, sb)
    assert expected[0] == "raises", expected
    assert got[0] == "raises" and issubclass(got[1], expected[1]), (expected, got)


def test_copy_and_synchronized_parity():
    for m in (mpsc, sb):
        c = m.copy((ctypes.c_short * 3)(1, 2, 3))
        assert c[:] == [1, 2, 3] and type(c).__name__ == "c_short_Array_3"
        s = m.synchronized(m.RawValue("i", 4))
        assert type(s).__name__ == "Synchronized" and s.value == 4
        s.value += 1
        assert s.get_obj().value == 5
        p = m.synchronized(m.RawValue(Point, 1, 2))
        assert type(p).__name__ == "SynchronizedPoint" and (p.x, p.y) == (1.0, 2.0)
        with pytest.raises(AssertionError):
            m.synchronized(s)


def test_wrapper_api_parity():
    for t in (mpsc.Array("i", 2), sb.Array("i", 2)):
        assert t.acquire() is True
        t.release()
        with t as entered:
            assert entered is True
        with t.get_lock():
            t[0] += 1
        assert t[0] == 1
        assert callable(t.get_obj) and callable(t.get_lock)


# --- In worker processes, under every start method ------------------------------------

START_METHODS = ("fork", "spawn", "forkserver")


@pytest.fixture(scope="module", params=START_METHODS)
def parity_pool(request):
    """One Pool(1) per start method for every case: the objects of all cases travel
    once, through initargs (multiprocessing's objects may travel no other way)."""
    import multiprocessing
    import parity_workers
    objects = parity_workers.make_all(request.param)
    pool = multiprocessing.get_context(request.param).Pool(
        1, initializer=parity_workers.init, initargs=(objects,))
    pool.apply(len, ((),))              # the worker has attached every object
    # The leak guard releases pickled segments after each test (release_exported); these
    # stay until the fixture drops the objects, as unpickled objects' names would.
    from sharedbridge._platform import exit_cleanup
    for pair in objects.values():
        exit_cleanup.forget_export(sb.segment_of(parity_workers.raw(pair["sb"])))
    yield pool, objects, request.param
    pool.terminate()
    pool.join()


def _in_worker_cases():
    import parity_workers
    return list(parity_workers.CASES)


@pytest.mark.parametrize("case", _in_worker_cases())
def test_same_result_in_a_worker_under_every_start_method(parity_pool, case):
    import parity_workers as pw
    pool, objects, method = parity_pool
    got = {w: pool.apply(pw.observe, (case, w)) for w in objects[case]}
    after = pw.CASES[case][2]
    got_after = {w: after(obj) for w, obj in objects[case].items()}
    if "mp" not in got:         # multiprocessing cannot send it to this start method
        got["mp"], got_after["mp"] = pw.observe_here(case)
    if case in pw.DIFFERENCES:  # deliberate, documented in docs/api.md
        assert (got["mp"], got["sb"]) == pw.DIFFERENCES[case], got
    else:
        assert got["mp"][0] == "ok", got      # a case itself must run
        assert got["sb"] == got["mp"]
    assert got_after["sb"] == got_after["mp"]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_multiprocessing_cannot_send_rows_to_this_start_method_but_sharedbridge_can(method):
    # The documented difference behind parity_workers.ROWS.
    import multiprocessing
    import pickle as _pickle
    ctx = multiprocessing.get_context(method)
    p = ctx.Process(target=len, args=(mpsc.RawArray(ctypes.c_int * 2, 2),))
    with pytest.raises(_pickle.PicklingError):
        p.start()
    ours = sb.RawArray(ctypes.c_int * 2, 2)
    assert type(_pickle.loads(_pickle.dumps(ours))).__name__ == "c_int_Array_2_Array_2"
