#!/usr/bin/env bash
# Execute the notebook examples/notebooks/dotnet_and_numpy.ipynb headless and check its outputs
# and that no segment outlives the kernel (scripts/run_notebook.py). Usage: scripts/test-notebook.sh RESULTS_DIR [--update]
# (--update, `make notebook`: the executed notebook with its outputs replaces the checked-in one)
# Runs on Debian's /usr/bin/python3 (nbclient, ipykernel from apt), else build/venv's python;
# writes RESULTS_DIR/notebook.junit.xml (skipped with the reason where a piece is missing).
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:?usage: scripts/test-notebook.sh RESULTS_DIR}"
mkdir -p "$RESULTS"
py=/usr/bin/python3
if ! [ -x "$py" ] || ! "$py" -c 'import nbclient' 2>/dev/null; then
    [ -x build/venv/bin/python ] && py=build/venv/bin/python
fi
[ -x "$py" ] || py=python3
echo "=== notebook ($py)"
timeout 900 "$py" scripts/run_notebook.py "$RESULTS" "${@:2}"
status=$?
echo "$status" > "$RESULTS/notebook.status"
exit $status
