#!/usr/bin/env bash
# `make demo`: a mixed C#/Python pipeline over SharedBridge shared memory, compared with the same
# work done by Python's own multiprocessing. Builds the CLI if needed, picks /usr/bin/python3 (else
# python3 on PATH) and runs `sharedbridge demo` (the .NET CLI, apphost sharedbridge-cli), whose exit status is 0 only if every run
# matched the reference and no segment was left behind. Extra arguments go to the demo
# (for example --count 8000000 --python-workers 3).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ -x /usr/bin/python3 ]; then
    python=/usr/bin/python3
elif command -v python3 >/dev/null; then
    python="$(command -v python3)"
else
    echo "demo: no Python 3 found (tried /usr/bin/python3 and python3 on PATH)" >&2
    exit 1
fi

cli=src/Dotnet/SharedBridge.Cli/bin/Release/net10.0/sharedbridge-cli
if [ ! -x "$cli" ]; then
    dotnet build src/Dotnet/SharedBridge.Cli/SharedBridge.Cli.csproj -c Release -nologo -v quiet
fi
exec "$cli" demo --python "$python" --repo "$root" "$@"
