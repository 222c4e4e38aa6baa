#!/usr/bin/env bash
# The cross-language conformance suite (tests/cross): builds the NUnit project, which builds the
# C# driver through its ProjectReference, runs it, and leaves RESULTS_DIR/cross.trx and
# RESULTS_DIR/cross.status (the exit status) for scripts/summarize.py.
# Usage: scripts/test-cross.sh [RESULTS_DIR]   (default build/test-results)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "${1:-$root/build/test-results}"
results="$(cd "${1:-$root/build/test-results}" && pwd)"
cd "$root"
rm -f "$results/cross.trx" "$results/cross.status"

dotnet test tests/cross/SharedBridge.CrossTests -c Release -nologo \
    --logger "trx;LogFileName=$results/cross.trx" --logger "console;verbosity=minimal"
status=$?
echo "$status" > "$results/cross.status"
exit "$status"
