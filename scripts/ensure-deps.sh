#!/usr/bin/env bash
# Make sure the test tools exist. On a fresh Debian machine as root (no PyPI) this installs
# Debian's python3-pytest and python3-numpy; elsewhere (no root, PyPI reachable) it creates
# build/venv and pip-installs pytest and numpy there. scripts/python-env.sh picks up either.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v dotnet >/dev/null || { echo "dotnet (SDK 10) is required: https://dotnet.microsoft.com/download" >&2; exit 1; }

# exceptiongroup and tomli are not needed by Debian's own 3.11, but the pyenv 3.10 run of
# scripts/test-python.sh borrows Debian's pure-Python pytest and needs them there.
# cffi (for pythonnet: python/tests_dotnet) and nbclient, ipykernel, matplotlib (the executed
# notebook, scripts/test-notebook.sh) are optional: without them those runs are skipped.
# venv and build (python3-venv, python3-build) make the packages and the install test's venv
# (scripts/dist.sh, scripts/test-install.sh).
have_debian_pytest() {
    [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import pytest, numpy, exceptiongroup, tomli' 2>/dev/null
}
# python3-dev: the headers scripts/build_fastlock.py compiles the optional lock accelerator with.
# python3-torch (optional, without its recommends: about 25 s, 140 MB): the DLPack hand-off of
# n-dimensional arrays is tested against PyTorch's own from_dlpack, not only numpy's.
have_debian_extras() {
    /usr/bin/python3 -c 'import cffi, nbclient, nbformat, ipykernel, matplotlib, ensurepip, build, torch' 2>/dev/null &&
        /usr/bin/python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}

if have_debian_pytest && { have_debian_extras || [ "$(id -u)" != 0 ]; }; then exit 0; fi
if [ -x build/venv/bin/python ] && build/venv/bin/python -c 'import pytest' 2>/dev/null; then exit 0; fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing python3-pytest python3-numpy from Debian..."
    export DEBIAN_FRONTEND=noninteractive
    pkgs="python3-pytest python3-numpy python3-exceptiongroup python3-tomli python3-cffi"
    pkgs="$pkgs jupyter-nbconvert python3-nbclient python3-ipykernel python3-matplotlib python3-dev"
    pkgs="$pkgs python3-venv python3-build"      # make dist and the install test (scripts/test-install.sh)
    apt-get install -y -q $pkgs >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q $pkgs >/dev/null; }
    apt-get install -y -q --no-install-recommends python3-torch >/dev/null 2>&1 \
        || echo "python3-torch not installed: the PyTorch DLPack tests are skipped" >&2
    have_debian_pytest && exit 0
fi

echo "creating build/venv with pytest and numpy from PyPI..."
python3 -m venv build/venv
build/venv/bin/python -m pip install -q pytest numpy build setuptools wheel
build/venv/bin/python -m pip install -q pythonnet nbclient ipykernel matplotlib \
    || echo "pythonnet / nbclient not installed: the pythonnet suite and the notebook are skipped" >&2
