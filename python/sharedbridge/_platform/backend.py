"""Where segment objects live (docs/format.md section 1.3): the one place that opens,
creates and removes them by key (segment_name.py). A bare name is a POSIX shared-memory
object (shm_open, shm_unlink); an absolute ``<dir>/<name>`` is a file of the directory
backend, opened with open(2) with the same flags shm_open uses on Linux (O_NOFOLLOW,
O_CLOEXEC), so that every rule after the open (fstat checks, mmap, flock, the robust
mutex, identity checks before unlink) is the same for both.
"""

import os

import _posixshmem

from .._format.segment_name import os_name, path_of

_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


def open_object(key, flags, mode=0):
    """The descriptor of segment object *key* (OSError as the open raises it)."""
    if key.startswith("/"):
        return os.open(key, flags | _FILE_FLAGS, mode)
    return _posixshmem.shm_open(os_name(key), flags, mode)


def unlink_object(key):
    """Remove the name *key* (OSError as the unlink raises it)."""
    if key.startswith("/"):
        os.unlink(key)
    else:
        _posixshmem.shm_unlink(os_name(key))


def list_dir(directory=None):
    """The names in *directory* (None: /dev/shm), sorted; empty if it cannot be listed."""
    try:
        return sorted(os.listdir(directory or "/dev/shm"))
    except OSError:
        return []


__all__ = ["open_object", "unlink_object", "list_dir", "path_of"]
