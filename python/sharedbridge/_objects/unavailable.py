"""What unpickling gives when the segment cannot be attached (rule of docs/api.md,
"Pickling and ownership").

Unpickling a sharedbridge object never raises: multiprocessing.Pool's result handler
thread takes an OSError from unpickling for a closed pipe and any other exception kills
it, and either way ``pool.apply()`` then waits forever. Instead the receiver gets an
UnavailableObject that carries the error and raises it on any use (attribute access,
indexing, len, iteration, the context manager, bool).
"""

from .._platform.segment import open_segment


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
    try:
        error.add_note(
            f"(while unpickling a sharedbridge object of segment {name!r}: its creator "
            "probably ended before this process attached; keep the object alive in the "
            "creator, or create it with keep=True, or create it in the receiving process)")
    except AttributeError:              # Python < 3.11
        pass
    return UnavailableObject(name, error)


def attach_or_unavailable(name, from_segment, allow_other_owner=False):
    """Unpickling by name: open segment *name* and build its object with
    *from_segment(segment)*; never raises (above): any error gives an UnavailableObject."""
    try:
        return from_segment(open_segment(name, allow_other_owner=allow_other_owner))
    except Exception as e:
        return unavailable(name, e)
