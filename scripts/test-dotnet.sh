#!/usr/bin/env bash
# Runs the .NET xunit suite. Usage: scripts/test-dotnet.sh RESULTS_DIR
# Writes RESULTS_DIR/dotnet.trx (test results) and RESULTS_DIR/dotnet.status (exit status).
# A test running longer than SB_TEST_TIMEOUT seconds (default 150; 0: no limit) is a hang:
# `--blame-hang` writes a mini dump of the test host and its children (the stacks:
# `dotnet-dump analyze FILE`, then `clrstack -all`) and the blame sequence naming the test
# into RESULTS_DIR/dotnet-blame/, then ends the run, which fails with that name (console and
# scripts/summarize.py). xunit cannot stop a synchronous test and go on (its Timeout applies
# to async tests only), so the rest of this suite does not run; the other suites do.
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

rm -rf "$results/dotnet.trx" "$results/dotnet-blame"
hang="${SB_TEST_TIMEOUT:-150}"
blame=()
[ "$hang" = 0 ] || blame=(--blame-hang --blame-hang-timeout "${hang}s" --blame-hang-dump-type mini
                         --results-directory "$results/dotnet-blame")
# The suite's own bound (it takes a few minutes): a hang blame-hang cannot see ends here.
timeout -k 30 1800 dotnet test "$tests" -c Release --no-build --nologo "${blame[@]}" \
    --logger "trx;LogFileName=$results/dotnet.trx" --logger "console;verbosity=minimal"
status=$?
echo "$status" > "$results/dotnet.status"

# The header and lock rules once more on the directory backend (docs/format.md section 1.3):
# SHAREDBRIDGE_DIR names a fresh tmpfs directory (tmpfs: a hostile test makes a 2^48-byte sparse file).
dir="$(mktemp -d /dev/shm/sbdir.XXXXXX)"
rm -f "$results/dotnet-dir.trx"
SHAREDBRIDGE_DIR="$dir" timeout -k 30 600 dotnet test "$tests" -c Release --no-build --nologo "${blame[@]}" \
    --filter "FullyQualifiedName~HeaderRuleTests|FullyQualifiedName~CorruptHeaderTests|FullyQualifiedName~HeaderFormatTests|FullyQualifiedName~SharedBridge.Tests.LockTests|FullyQualifiedName~HostileSegmentTests" \
    --logger "trx;LogFileName=$results/dotnet-dir.trx" --logger "console;verbosity=minimal"
dir_status=$?
echo "$dir_status" > "$results/dotnet-dir.status"
rm -rf "$dir"
[ "$status" = 0 ] && status=$dir_status
exit "$status"
