#!/usr/bin/env bash
# Source this file: it defines python_interpreters (every CPython >= 3.10 to test on)
# and pytest_path_for PYTHON (a PYTHONPATH entry that gives PYTHON a pytest).
#
# Only Debian's /usr/bin/python3 has pytest from apt; the pyenv interpreters get the
# same pure-Python pytest through a directory of symlinks to exactly pytest and its
# pure-Python dependencies (never numpy: Debian builds it for its own 3.11 only).
# build/venv (made by scripts/ensure-deps.sh where PyPI is reachable) has its own.

SB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SB_PYTEST_SHIM="$SB_ROOT/build/pytest-shim"
SB_DIST="${SB_DIST:-/usr/lib/python3/dist-packages}"
SB_PYTEST_PARTS="pytest _pytest pluggy iniconfig packaging py py.py attr attrs exceptiongroup tomli"

# Bytecode in build/pycache, kept between processes (the Makefile says why).
export PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-$SB_ROOT/build/pycache}"
unset PYTHONDONTWRITEBYTECODE

python_interpreters() {
    local candidates=() p
    if command -v pyenv >/dev/null 2>&1; then
        for p in "$(pyenv root)"/versions/*/bin/python; do candidates+=("$p"); done
    elif [ -d "$HOME/.pyenv/versions" ]; then
        for p in "$HOME"/.pyenv/versions/*/bin/python; do candidates+=("$p"); done
    fi
    [ -x /usr/bin/python3 ] && candidates+=(/usr/bin/python3)
    [ -x "$SB_ROOT/build/venv/bin/python" ] && candidates+=("$SB_ROOT/build/venv/bin/python")
    for p in "${candidates[@]}"; do
        [ -x "$p" ] && "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
            2>/dev/null && echo "$p"
    done
}

make_pytest_shim() {
    mkdir -p "$SB_PYTEST_SHIM"
    local part
    for part in $SB_PYTEST_PARTS; do
        [ -e "$SB_DIST/$part" ] && ln -sfn "$SB_DIST/$part" "$SB_PYTEST_SHIM/$part"
    done
}

# Prints the extra PYTHONPATH entry PYTHON needs to import pytest (empty if none).
pytest_path_for() {
    local py="$1"
    if "$py" -c 'import pytest' >/dev/null 2>&1; then return 0; fi
    [ -d "$SB_DIST/pytest" ] || return 1
    make_pytest_shim
    echo "$SB_PYTEST_SHIM"
}
