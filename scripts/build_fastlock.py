"""Build the optional compiled lock accelerator in the source tree, for this interpreter.

Usage: PYTHON scripts/build_fastlock.py [--quiet] [--out FILE] [--limited-api]

Compiles python/sharedbridge/_platform/_fastlock.c into _fastlock<EXT_SUFFIX> next to it
(e.g. _fastlock.cpython-313-x86_64-linux-gnu.so), with the compiler and the headers this
interpreter was built with (sysconfig), so the interpreters of scripts/test-python.sh can
share one source tree. Up to date (newer than the .c): nothing is done. Written to a
temporary file and renamed: a process that has the old one loaded is not disturbed.

Prints one line. Exit status: 0 when the module is there ("built" / "up to date"), 3 when
it cannot be built here (no compiler, no Python.h: install python3-dev; the package then
uses its ctypes path), 1 when the compiler ran and failed (a bug to fix). pip installs
build the same file through setup.py.

--out FILE builds into FILE instead, always (scripts/binary_wheel.py: the module of a binary
wheel). --limited-api compiles against the stable ABI of CPython 3.12 (Py_LIMITED_API,
an abi3 module; docs/api.md, "Wheels"): the module then has the suffix .abi3.so.
"""

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_BUILDABLE = 3
SRC = os.path.join(ROOT, "python", "sharedbridge", "_platform", "_fastlock.c")


def _librt():
    """timer_create/timer_settime (the signal re-send) are in librt before glibc 2.34."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return []
    name, _, version = libc.partition(" ")
    try:
        if name == "glibc" and tuple(int(x) for x in version.split(".")[:2]) < (2, 34):
            return ["-lrt"]
    except ValueError:
        pass
    return []


def main():
    args = sys.argv[1:]
    quiet = "--quiet" in args
    limited = "--limited-api" in args
    suffix = ".abi3.so" if limited else sysconfig.get_config_var("EXT_SUFFIX")
    out = os.path.join(os.path.dirname(SRC), "_fastlock" + suffix)
    forced = "--out" in args
    if forced:
        out = os.path.abspath(args[args.index("--out") + 1])
    label = f"_fastlock for Python {sys.version.split()[0]}" + (" (abi3)" if limited else "")
    if not forced and os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(SRC):
        if not quiet:
            print(f"{label}: up to date ({os.path.relpath(out, ROOT)})")
        return 0
    include = sysconfig.get_paths()["include"]
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    if not os.path.exists(os.path.join(include, "Python.h")):
        print(f"{label}: not built, no {include}/Python.h (Debian: apt-get install python3-dev); "
              "the ctypes lock path is used")
        return NOT_BUILDABLE
    if not shutil.which(cc[0]):
        print(f"{label}: not built, no C compiler ({cc[0]}); the ctypes lock path is used")
        return NOT_BUILDABLE
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(out))
    os.close(fd)
    cmd = cc + ["-shared", "-fPIC", "-O2", "-Wall", "-Werror=implicit-function-declaration",
                "-I", include, SRC, "-o", tmp, "-lpthread"] + _librt()
    if limited:
        cmd[len(cc):len(cc)] = ["-DPy_LIMITED_API=0x030C0000"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(f"{label}: the compiler failed:\n{shlex.join(cmd)}\n{done.stdout}{done.stderr}")
            return 1
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"{label}: built {os.path.relpath(out, ROOT) if out.startswith(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
