"""The optional compiled lock fast path; everything else is in pyproject.toml.

optional=True: without a C compiler or the Python headers the build still succeeds and
the package uses its ctypes path (sharedbridge.lock_backend() says which one runs).
The source tree builds the same module with scripts/build_fastlock.py.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sharedbridge._platform._fastlock",
                             sources=["python/sharedbridge/_platform/_fastlock.c"],
                             optional=True)])
