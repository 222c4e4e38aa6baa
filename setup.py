"""The optional compiled lock fast path; everything else is in pyproject.toml.

optional=True: without a C compiler or the Python headers the build still succeeds and
the package uses its ctypes path (sharedbridge.lock_backend() says which one runs).
The source tree builds the same module with scripts/build_fastlock.py.
"""

import os

from setuptools import Extension, setup


def _libraries():
    # timer_create/timer_settime (the signal re-send of _fastlock.c) are in librt before
    # glibc 2.34; from 2.34 on they are in libc.
    try:
        name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
        if name == "glibc" and tuple(int(x) for x in version.split(".")[:2]) < (2, 34):
            return ["rt"]
    except (ValueError, OSError, AttributeError):
        pass
    return []


setup(ext_modules=[Extension("sharedbridge._platform._fastlock",
                             sources=["python/sharedbridge/_platform/_fastlock.c"],
                             libraries=_libraries(), optional=True)])
