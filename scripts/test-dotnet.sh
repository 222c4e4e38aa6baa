#!/usr/bin/env bash
# Runs the .NET xunit suite. Usage: scripts/test-dotnet.sh RESULTS_DIR
# Writes RESULTS_DIR/dotnet.trx (test results) and RESULTS_DIR/dotnet.status (exit status).
# The suite's cross-process tests launch `dotnet exec SharedBridge.TestChild.dll COMMAND ...`, which
# the test project builds as a dependency.
set -uo pipefail
cd "$(dirname "$0")/.."
results="${1:?usage: $0 RESULTS_DIR}"
mkdir -p "$results"
results="$(cd "$results" && pwd)"

tests=src/Dotnet/SharedBridge.Tests
# `make build` builds everything first; build here only if the test assembly is missing.
if [ ! -f "$tests/bin/Release/net10.0/SharedBridge.Tests.dll" ] \
   || [ ! -f src/Dotnet/SharedBridge.TestChild/bin/Release/net10.0/SharedBridge.TestChild.dll ]; then
    dotnet build "$tests" -c Release -nologo -v quiet || { echo 1 > "$results/dotnet.status"; exit 1; }
fi

dotnet test "$tests" -c Release --no-build --nologo \
    --logger "trx;LogFileName=$results/dotnet.trx" --logger "console;verbosity=minimal"
status=$?
echo "$status" > "$results/dotnet.status"
exit "$status"
