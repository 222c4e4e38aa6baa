#!/usr/bin/env bash
# The `make bench` smoke run as a test suite (tests/bench/test_bench_smoke.py): bench/run.py --smoke
# and bench/render.py into a temporary directory, results.json's schema and figures checked.
# Usage: scripts/test-bench.sh RESULTS_DIR; writes RESULTS_DIR/bench-smoke.junit.xml and .status.
# Needs the Release build (SharedBridge.Benchmarks) and Debian's python3 (numpy, matplotlib, pytest).
set -uo pipefail
# Hangs: a test fails alone after its limit (-o test_timeout, conftest.py at the repository root)
# and the suite goes on; `timeout -s ABRT` ends a run that still overruns, with every thread's
# stack (faulthandler) and the running test named in RESULTS_DIR/<suite>.progress.
ulimit -c 0
cd "$(dirname "$0")/.."
RESULTS="${1:?usage: scripts/test-bench.sh RESULTS_DIR}"
mkdir -p "$RESULTS"
echo "=== bench-smoke (/usr/bin/python3)"
timeout -s ABRT -k 30 300 /usr/bin/python3 -m pytest tests/bench/test_bench_smoke.py -q -p no:cacheprovider -o test_timeout=240 \
    --junitxml="$RESULTS/bench-smoke.junit.xml"
status=$?
echo "$status" > "$RESULTS/bench-smoke.status"
exit $status
