#!/usr/bin/env bash
# `make dist`: every package a user installs, into build/dist/ (emptied first):
#   SharedBridge.<v>.nupkg + .snupkg   the .NET library (readme, licence, XML docs, symbols)
#   SharedBridge.Tensors.<v>.nupkg (+ .snupkg)  AsTensorSpan() on SharedTensor<T> (System.Numerics.Tensors)
#   SharedBridge.Tool.<v>.nupkg        the .NET tool: `dotnet tool install SharedBridge.Tool` -> `sharedbridge`
#   sharedbridge-<v>.tar.gz            the Python sdist (pure source)
#   sharedbridge-<v>-py3-none-any.whl  the pure Python wheel (the ctypes lock path), with SharedBridge.dll
#                                      in sharedbridge/_dotnet/ for sharedbridge.dotnet under pythonnet: the
#                                      fallback for every platform without a binary wheel
#   sharedbridge-<v>-cpXY-cpXY-manylinux_2_N_<arch>.whl
#                                      the same plus the compiled lock fast path (_fastlock), one per
#                                      CPython >= 3.10 minor version found here (scripts/python-env.sh);
#                                      2.N is the newest glibc symbol version the module needs
#                                      (scripts/binary_wheel.py says how it is found)
# <v> is python/sharedbridge/VERSION, the one version of all of them. The Python packages are built
# from a staging copy (build/dist-stage) so the assembly never lands in the source tree. Uses
# `python -m build --no-isolation` where the interpreter has it (Debian: python3-build), else
# `pip wheel --no-build-isolation` and setuptools' PEP 517 sdist hook: both work offline.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="$root/build/dist"
stage="$root/build/dist-stage"
rm -rf "$out" "$stage"
mkdir -p "$out" "$stage/python"

for project in src/Dotnet/SharedBridge/SharedBridge.csproj src/Dotnet/SharedBridge.Tensors/SharedBridge.Tensors.csproj \
               src/Dotnet/SharedBridge.Cli/SharedBridge.Cli.csproj; do
    dotnet pack "$project" -c Release -nologo -v quiet -o "$out"
done

# Debian's python3 (python3-build, setuptools, wheel from apt), else build/venv's (made by
# scripts/ensure-deps.sh where PyPI is reachable), else python3 on PATH.
python=/usr/bin/python3
if ! [ -x "$python" ] || ! "$python" -c 'import build, setuptools, wheel' 2>/dev/null; then
    if [ -x build/venv/bin/python ]; then python=build/venv/bin/python; else python="$(command -v python3)"; fi
fi
# The sdist carries setup.py, so `pip install` of it builds the optional lock accelerator
# (_platform/_fastlock.c) where a compiler and the headers are there. The wheel stays pure
# (py3-none-any, the ctypes lock path) so one wheel installs on every CPython: setup.py is
# removed before it is built, and modules built in place in the source tree are never copied.
# The binary wheels are that wheel plus the module compiled for each interpreter.
cp pyproject.toml README.md LICENSE setup.py "$stage/"
cp -r python/sharedbridge "$stage/python/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
find "$stage" -name '*.so' -delete

if "$python" -c 'import build' 2>/dev/null; then
    "$python" -m build --no-isolation --sdist --outdir "$out" "$stage" >/dev/null
else
    (cd "$stage" && "$python" -c 'import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])' "$out" >/dev/null)
fi
rm "$stage/setup.py"
mkdir -p "$stage/python/sharedbridge/_dotnet"
cp src/Dotnet/SharedBridge/bin/Release/net10.0/SharedBridge.dll src/Dotnet/SharedBridge/bin/Release/net10.0/SharedBridge.xml \
    "$stage/python/sharedbridge/_dotnet/"
if "$python" -c 'import build' 2>/dev/null; then
    "$python" -m build --no-isolation --wheel --outdir "$out" "$stage" >/dev/null
else
    "$python" -m pip wheel --no-deps --no-build-isolation -q -w "$out" "$stage"
fi
# One binary wheel per CPython minor version (not abi3: docs/api.md, "Wheels", says why).
. scripts/python-env.sh
mapfile -t pythons < <(python_interpreters)
if [ "${#pythons[@]}" -gt 0 ]; then
    wheel_status=0
    "$python" scripts/binary_wheel.py "$out/sharedbridge-$(cat python/sharedbridge/VERSION)-py3-none-any.whl" "$out" "${pythons[@]}" \
        || wheel_status=$?
    # 3: an interpreter without a compiler or Python.h gets no binary wheel (the pure one serves it).
    [ "$wheel_status" = 0 ] || [ "$wheel_status" = 3 ] || exit "$wheel_status"
fi
# SB_DIST_KEEP_STAGE=1 keeps build/dist-stage (with setup.py and _dotnet/): the project a release
# pipeline gives cibuildwheel ([tool.cibuildwheel] in pyproject.toml).
if [ "${SB_DIST_KEEP_STAGE:-}" = 1 ]; then
    cp setup.py "$stage/"
else
    rm -rf "$stage"
fi
ls -1 "$out"
