#!/usr/bin/env bash
# The cross-language conformance suite (tests/cross): builds the NUnit project, which builds the
# C# driver through its ProjectReference, runs it, and leaves RESULTS_DIR/cross.trx and
# RESULTS_DIR/cross.status (the exit status) for scripts/summarize.py.
# Usage: scripts/test-cross.sh [RESULTS_DIR]   (default build/test-results)
# A test running longer than SB_TEST_TIMEOUT seconds (default 300 here; 0: no limit) is a hang:
# `--blame-hang` writes a mini dump of the test host and its children (the stacks:
# `dotnet-dump analyze FILE`, then `clrstack -all`) and the blame sequence naming the test
# into RESULTS_DIR/cross-blame/, then ends the run, which fails with that name (console and
# scripts/summarize.py). NUnit cannot stop a synchronous test on .NET and go on ([Timeout]
# fails at once with "TargetFramework doesn't support timeout on tests", DefaultTimeout is
# ignored; [CancelAfter] only cancels a token the test observes), so the rest of this suite
# does not run; the other suites do.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "${1:-$root/build/test-results}"
results="$(cd "${1:-$root/build/test-results}" && pwd)"
cd "$root"
rm -rf "$results/cross.trx" "$results/cross.status" "$results/cross-blame"

hang="${SB_TEST_TIMEOUT:-300}"
blame=()
[ "$hang" = 0 ] || blame=(--blame-hang --blame-hang-timeout "${hang}s" --blame-hang-dump-type mini
                         --results-directory "$results/cross-blame")
# The suite's own bound (it takes about 3 minutes): a hang blame-hang cannot see ends here.
timeout -k 30 2400 dotnet test tests/cross/SharedBridge.CrossTests -c Release -nologo "${blame[@]}" \
    --logger "trx;LogFileName=$results/cross.trx" --logger "console;verbosity=minimal"
status=$?
echo "$status" > "$results/cross.status"
exit "$status"
