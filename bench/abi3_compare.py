"""The compiled lock path built for one interpreter (cpython-3XY) and for the stable ABI (abi3),
side by side in one run: the measurement behind the wheels' "no abi3" (docs/api.md, "Wheels").

Usage: PYTHON bench/abi3_compare.py [--ops N] [--rounds R] [--batch B] [--json-only]
PYTHON: a CPython >= 3.12 with its headers (the limited API _fastlock.c needs is 3.12's).

Copies python/ and scripts/build_fastlock.py of this tree twice into a temporary folder: in the
first, build_fastlock.py builds _fastlock.cpython-3XY-*.so as the wheels do; in the second it
builds _fastlock.abi3.so (--limited-api, Py_LIMITED_API=0x030C0000). Then
bench/lock_path_compare.py times both (--before: per-interpreter, --after: abi3), its children
checked to import their own copy, in interleaved rounds. Its "c" rows are the comparison; its
"ctypes" rows run the same Python code in both copies, so their ratio shows the run's noise.
Prints what lock_path_compare.py prints (the table to stderr, its JSON to stdout).
"""

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# In the abi3 copy, scripts/build_fastlock.py (what lock_path_compare.py runs) builds the abi3 module.
ABI3_BUILDER = '''import os, subprocess, sys
real = os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_fastlock_real.py")
sys.exit(subprocess.run([sys.executable, real, "--limited-api"] + sys.argv[1:]).returncode)
'''


def _tree(base, name, abi3):
    tree = os.path.join(base, name)
    shutil.copytree(os.path.join(ROOT, "python", "sharedbridge"), os.path.join(tree, "python", "sharedbridge"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    os.makedirs(os.path.join(tree, "scripts"))
    real = os.path.join(ROOT, "scripts", "build_fastlock.py")
    if abi3:
        shutil.copy(real, os.path.join(tree, "scripts", "build_fastlock_real.py"))
        with open(os.path.join(tree, "scripts", "build_fastlock.py"), "w") as f:
            f.write(ABI3_BUILDER)
    else:
        shutil.copy(real, os.path.join(tree, "scripts", "build_fastlock.py"))
    return tree


def main(argv):
    if sys.version_info < (3, 12):
        sys.exit("abi3_compare: the abi3 build needs CPython 3.12 or later")
    with tempfile.TemporaryDirectory(prefix="sb-abi3-") as base:
        per_interp, abi3 = _tree(base, "per-interpreter", False), _tree(base, "abi3", True)
        for tree in (per_interp, abi3):
            done = subprocess.run([sys.executable, os.path.join(tree, "scripts", "build_fastlock.py")],
                                  capture_output=True, text=True)
            print(done.stdout.strip(), file=sys.stderr)
            if done.returncode:
                sys.exit(f"abi3_compare: the build failed:\n{done.stdout}{done.stderr}")
        built = sorted(os.listdir(os.path.join(abi3, "python", "sharedbridge", "_platform")))
        if "_fastlock.abi3.so" not in built or any(n.startswith("_fastlock.cpython") for n in built):
            sys.exit(f"abi3_compare: the abi3 copy holds {built}")
        return subprocess.run([sys.executable, os.path.join(HERE, "lock_path_compare.py"),
                               "--before", per_interp, "--after", abi3] + argv).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
