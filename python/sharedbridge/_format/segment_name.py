"""Segment names: validation (docs/format.md section 1.1), generation with the
configurable prefix, and the directory a name lives in (section 1.3).

Below the public API a segment is named by its *key*: the bare name of a POSIX
shared-memory object (shm_open, /dev/shm on Linux), or the absolute path
``<dir>/<name>`` of a segment of the directory backend. Keys never come from users: the
public API takes a name and a directory option, and qualify() makes the key.
"""

import os
import re
import warnings

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


DEFAULT_PREFIX = "sb_"
PREFIX_ENV = "SHAREDBRIDGE_NAME_PREFIX"
DIR_ENV = "SHAREDBRIDGE_DIR"
SHM_DIR = "/dev/shm"
# A generated name is the prefix and 16 hex digits, and stays a valid name (section 1.1).
_MAX_PREFIX = 255 - 16


def _prefix_problem(prefix):
    if not isinstance(prefix, str):
        return f"it must be a str, not {type(prefix).__name__}"
    if len(prefix) > _MAX_PREFIX:
        return f"it is {len(prefix)} characters long (at most {_MAX_PREFIX})"
    try:
        validate_name(prefix + "0")
    except Exception:
        return ("use ASCII letters, digits, '_', '-' or '.', not starting with '.' or "
                "'sem.'")
    return None


def _prefix_from_env(value):
    if value is None:
        return DEFAULT_PREFIX
    problem = _prefix_problem(value)
    if problem is not None:
        warnings.warn(f"{PREFIX_ENV}={value!r} is not a valid name prefix ({problem}): "
                      f"generated names use the default prefix {DEFAULT_PREFIX!r}",
                      RuntimeWarning, stacklevel=2)
        return DEFAULT_PREFIX
    return value


_prefix = _prefix_from_env(os.environ.get(PREFIX_ENV))


def set_name_prefix(prefix):
    """Set the prefix of the names generated for objects created without a name, for
    this process (docs/format.md section 1.1); ``SHAREDBRIDGE_NAME_PREFIX`` sets it at
    startup (default ``'sb_'``). ``sharedbridge ls --prefix P`` and ``reap(prefix=P)``
    then see only these objects. Raises InvalidNameError for a prefix that would not
    make valid names."""
    global _prefix
    problem = _prefix_problem(prefix)
    if problem is not None:
        raise InvalidNameError(f"invalid name prefix {prefix!r}: {problem}; for example "
                               "'myteam_'")
    _prefix = prefix


def get_name_prefix():
    """The prefix of generated names (set_name_prefix, SHAREDBRIDGE_NAME_PREFIX, 'sb_')."""
    return _prefix


def generate_name():
    """A fresh random name: the prefix ('sb_' unless configured) and 16 lowercase hex
    digits from a CSPRNG."""
    return _prefix + os.urandom(8).hex()


def os_name(name):
    """The name given to shm_open: a leading slash."""
    return "/" + name


# ---------------------------------------------------------------- directories (1.3)

def _environ_get(name):
    """os.environ.get(name), read without the KeyError that os.environ.get raises and
    catches inside for a variable that is not set (the common case: that exception was
    about 3 us of every attach). CPython's os.environ keeps the values it holds in its
    _data dict under encodekey(name), which is what its get reads; an os.environ that is
    not that object (replaced by a test, another implementation) is asked with get()."""
    env = os.environ
    try:
        data, encodekey, decodevalue = env._data, env.encodekey, env.decodevalue
    except AttributeError:
        return env.get(name)
    key = _environ_keys.get((encodekey, name))
    if key is None:
        key = _environ_keys[encodekey, name] = encodekey(name)
    raw = data.get(key)
    return None if raw is None else decodevalue(raw)


# (os.environ.encodekey, name) -> encodekey(name), for _environ_get (a pure function; the
# few names this package reads).
_environ_keys = {}


def resolve_dir(directory=None):
    """The directory of the directory backend that *directory* (the per-object option)
    or else SHAREDBRIDGE_DIR names, normalized to an absolute path; None for the POSIX
    shared-memory objects (no option, no variable, or /dev/shm itself). Raises
    NotADirectoryError (or FileNotFoundError) when it names no directory."""
    if directory is None:
        directory = _environ_get(DIR_ENV) or None
        source = DIR_ENV
    else:
        source = "dir"
    if directory is None:
        return None
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"dir must be a str or path, not {type(directory).__name__}")
    path = os.path.abspath(os.fspath(directory))
    if path == SHM_DIR:
        return None
    if not os.path.isdir(path):
        cls = NotADirectoryError if os.path.lexists(path) else FileNotFoundError
        raise cls(f"the segment directory {path!r} ({source}) is not a directory: create "
                  f"it (for containers, mount one tmpfs volume there in every container "
                  f"that shares the segments), or unset {DIR_ENV} to use /dev/shm")
    return path


def qualify(name, directory=None):
    """The key of the segment the user calls *name* with the directory option
    *directory*: validates the name (section 1.1), then the bare name for /dev/shm or
    ``<dir>/<name>``. With name None: None (generate in /dev/shm) or ``<dir>/``
    (generate in that directory; generated_key makes the name)."""
    d = resolve_dir(directory)
    if name is not None:
        validate_name(name)
        return name if d is None else f"{d}/{name}"
    return None if d is None else d + "/"


def generated_key(template):
    """A fresh key for qualify(None, ...)'s result: a generated name, in its directory."""
    return generate_name() if template is None else template + generate_name()


def is_template(key):
    """True for qualify(None, ...)'s results: a name still to generate."""
    return key is None or key.endswith("/")


def validate_key(key):
    """Return *key* if it is a bare valid name or an absolute ``<dir>/<name>`` with a
    valid name; else InvalidNameError."""
    if type(key) is str and key in _valid_names:       # a bare name validated before
        return key
    if type(key) is str and key.startswith("/"):
        directory, _, name = key.rpartition("/")
        validate_name(name)
        if not directory:
            raise InvalidNameError(f"invalid segment name {key!r}: no leading '/'")
        return key
    return validate_name(key)


def base_name(key):
    """The name part of a key (what objects show as .name)."""
    return key.rpartition("/")[2]


def dir_of(key):
    """The directory of a key: None for /dev/shm."""
    directory, sep, _ = key.rpartition("/")
    return directory if sep else None


def in_same_dir(key, name):
    """The key of segment *name* in the directory of *key* (a queue's data segments, an
    external lock: docs/format.md section 1.3)."""
    directory = dir_of(key)
    return name if directory is None else f"{directory}/{name}"


def path_of(key):
    """The file system path of a key (/dev/shm/NAME for a shared-memory object)."""
    return key if key.startswith("/") else f"{SHM_DIR}/{key}"


def external_lock_name(lock_key, key):
    """The lock_name an object *key* (or qualify(None, ...) template) records for the
    external lock segment *lock_key*: its name, which readers look up in the object's own
    directory (docs/format.md section 1.3), so both must be in one directory."""
    owner_dir = None if key is None else (key[:-1] if key.endswith("/") else dir_of(key))
    lock_dir = dir_of(lock_key)
    if owner_dir != lock_dir:
        raise ValueError(
            f"the shared lock {base_name(lock_key)!r} is in {lock_dir or '/dev/shm'} but the "
            f"object would be in {owner_dir or '/dev/shm'}: an object and its external lock "
            "must be in one directory; pass the lock's directory as dir=")
    return base_name(lock_key)
