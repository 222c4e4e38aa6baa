#!/usr/bin/env bash
# The packages a user installs: builds them (scripts/dist.sh, as `make dist`), then
# tests/install/test_install.py installs the wheel into a fresh venv and the NuGet packages into a
# fresh console project and a tool folder, all outside the repository, and runs C# <-> Python
# round trips through those installed copies. Usage: scripts/test-install.sh RESULTS_DIR
# Runs on Debian's /usr/bin/python3 (pytest, venv from apt), else build/venv's python; writes
# RESULTS_DIR/install.junit.xml and RESULTS_DIR/install.status.
set -uo pipefail
# Hangs: a test fails alone after its limit (-o test_timeout, conftest.py at the repository root)
# and the suite goes on; `timeout -s ABRT` ends a run that still overruns, with every thread's
# stack (faulthandler) and the running test named in RESULTS_DIR/<suite>.progress.
ulimit -c 0
cd "$(dirname "$0")/.."
RESULTS="${1:?usage: scripts/test-install.sh RESULTS_DIR}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
py=/usr/bin/python3
if ! [ -x "$py" ] || ! "$py" -c 'import pytest, venv, ensurepip' 2>/dev/null; then
    [ -x build/venv/bin/python ] && py=build/venv/bin/python
fi
# The wheel is also installed into a venv of the newest CPython >= 3.10 of another minor version
# (pyenv's), so the installed copies are used from two interpreters.
. scripts/python-env.sh
other="$(python_interpreters | while read -r p; do
    echo "$("$p" -c 'import sys; print("%d.%03d" % sys.version_info[:2])') $p"
done | grep -v "^$("$py" -c 'import sys; print("%d.%03d" % sys.version_info[:2])') " | sort -n | tail -1 | cut -d' ' -f2)"
echo "=== install ($py${other:+, the wheel also into a venv of $other})"
export SB_INSTALL_PYTHONS="$other"
# Every interpreter found gets a binary wheel (scripts/dist.sh) and a venv with it (tests/install).
SB_WHEEL_PYTHONS="$(python_interpreters | paste -sd:)"
export SB_WHEEL_PYTHONS
status=0
bash scripts/dist.sh || status=$?
if [ "$status" = 0 ]; then
    timeout -s ABRT -k 30 600 "$py" -m pytest tests/install -q -rs -p no:cacheprovider -o test_timeout=400 \
        -p no:hypothesispytest -o junit_suite_name=install --junitxml="$RESULTS/install.junit.xml"
    status=$?
fi
echo "$status" > "$RESULTS/install.status"
exit "$status"
