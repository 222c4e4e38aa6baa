"""What unpickling gives when the segment cannot be attached (rule of docs/api.md,
"Pickling and ownership").

Unpickling a sharedbridge object never raises: multiprocessing.Pool's result handler
thread takes an OSError from unpickling for a closed pipe and any other exception kills
it, and either way ``pool.apply()`` then waits forever. Instead the receiver gets an
UnavailableObject that carries the error and raises it on any use (attribute access,
indexing, len, iteration, the context manager, bool).
"""

from .._format import header as H
from .._platform.segment import open_segment
from ..errors import TypeMismatchError


class UnavailableObject:
    """Stands for a shared object whose segment could not be attached when it was
    unpickled; every use raises the original error (``.error``)."""

    __slots__ = ("_sb_error", "_sb_name")

    def __init__(self, name, error):
        object.__setattr__(self, "_sb_name", name)
        object.__setattr__(self, "_sb_error", error)

    @property
    def error(self):
        return self._sb_error

    def _fail(self, *args, **kwargs):
        raise self._sb_error.with_traceback(None)

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        self._fail()

    __setattr__ = __getitem__ = __setitem__ = __delitem__ = __len__ = __iter__ = _fail
    __enter__ = __bool__ = __int__ = __float__ = __index__ = _fail

    def __exit__(self, *args):
        return False

    def __reduce__(self):
        return UnavailableObject, (self._sb_name, self._sb_error)

    def __repr__(self):
        return (f"<sharedbridge.UnavailableObject {self._sb_name!r}: "
                f"{type(self._sb_error).__name__}: {self._sb_error}>")


def unavailable(name, error):
    """An UnavailableObject whose error says what happened and what to do."""
    if isinstance(error, TypeMismatchError):    # the segment is there: its creator did not end
        return UnavailableObject(name, error)
    try:
        error.add_note(
            f"(while unpickling a sharedbridge object of segment {name!r}: its creator "
            "probably ended before this process attached; keep the object alive in the "
            "creator, or create it with keep=True, or create it in the receiving process)")
    except AttributeError:              # Python < 3.11
        pass
    return UnavailableObject(name, error)


def signature(header):
    """What a pickle records of the segment it names (kind, element type, length, shape),
    to check when it is unpickled: the name may have been given to another object since."""
    return (header.kind, header.typecode, header.element_count, header.shape)


def _describe(sig):
    kind, typecode, count, shape = sig
    name = H.KIND_NAMES.get(kind)
    what = f"{'an' if name[0] in 'aeiou' else 'a'} {name}" if name else f"kind {kind}"
    if kind == H.KIND_NDARRAY:
        return f"{what} of {typecode!r} with shape {tuple(shape)}"
    if kind == H.KIND_ARRAY:
        return f"{what} of {count} {typecode!r}"
    if kind == H.KIND_VALUE:
        return f"{what} of type {typecode!r}"
    return what


def attach_or_unavailable(name, from_segment, allow_other_owner=False, expect=None):
    """Unpickling by name: open segment *name* and build its object with
    *from_segment(segment)*; never raises (above): any error gives an UnavailableObject.
    *expect*: the signature() the pickled object's segment had; another one means the
    name was given to another object since (TypeMismatchError)."""
    try:
        seg = open_segment(name, allow_other_owner=allow_other_owner)
        if expect is not None and tuple(expect) != signature(seg.header):
            now = signature(seg.header)
            seg.close()
            raise TypeMismatchError(
                f"type mismatch: segment {name!r} now holds {_describe(now)}, but "
                f"{_describe(expect)} was pickled: its name was given to another object "
                "after the pickling; sharedbridge.attach(name) opens what it holds now")
        return from_segment(seg)
    except Exception as e:
        return unavailable(name, e)
