"""Segment names: validation (docs/format.md section 1.1) and generation."""

import os
import re

from ..errors import InvalidNameError

# Letters, digits, '_', '-', '.'; 1 to 255 bytes; never a leading '.'.
_VALID_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,254}\Z")


# Names that passed validate_name (a pure function of the str): looked up before the
# checks. Bounded: cleared when full.
_valid_names = set()
_VALID_NAMES_MAX = 1024


def validate_name(name):
    """Return *name* if it is a valid segment name, else raise InvalidNameError."""
    if type(name) is str and name in _valid_names:
        return name
    if not isinstance(name, str):
        raise InvalidNameError(
            f"segment name must be a str, not {type(name).__name__}")
    if not name.isascii() or not _VALID_NAME.match(name) or name.startswith("sem."):
        raise InvalidNameError(
            f"invalid segment name {name!r}: use 1-255 ASCII letters, digits, '_', '-' "
            "or '.', not starting with '.' or 'sem.' and without a leading '/' "
            "(at most 30 characters to stay portable to macOS)")
    if type(name) is str:          # not a subclass, whose == and hash could be anything
        if len(_valid_names) >= _VALID_NAMES_MAX:
            _valid_names.clear()
        _valid_names.add(name)
    return name


def generate_name():
    """A fresh random name: 'sb_' and 16 lowercase hex digits from a CSPRNG."""
    return "sb_" + os.urandom(8).hex()


def os_name(name):
    """The name given to shm_open: a leading slash."""
    return "/" + name
