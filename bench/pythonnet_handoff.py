#!/usr/bin/env python3
"""Item 6 of `make bench`: the pythonnet hand-off (sharedbridge.dotnet), by the array's size.

Times, interleaved: sharedbridge.dotnet.as_numpy(net) (a zero-copy numpy view of a .NET
SharedArray<double>), to_python(net) (the Python package's object for the same segment) and
to_dotnet(py) (back), against the baseline numpy.copy of the same data (what a hand-off
by value costs). Prints a JSON list of {"case", "bytes", "value" (us/call)} on stdout.
Exit status 3 (reason on stdout) when pythonnet or the built assembly is not there.
pythonnet is found as python/tests_dotnet/conftest.py finds it (vendored copy included).

Usage: PYTHONPATH=python python3 bench/pythonnet_handoff.py [--smoke]
"""
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))


def _load():
    """sharedbridge.dotnet loaded, or (None, why). pythonnet: importable, else the vendored copy
    (SHAREDBRIDGE_PYTHONNET_PATH or ../shared/vendor/pythonnet; layout as python/tests_dotnet)."""
    try:
        import pythonnet  # noqa: F401
    except ImportError:
        for base in filter(None, [os.environ.get("SHAREDBRIDGE_PYTHONNET_PATH"),
                                  str(ROOT.parent / "shared/vendor/pythonnet")]):
            base = pathlib.Path(base)
            if (base / "site/pythonnet").is_dir():
                cffi = base / f"site-cffi-{sys.version_info[0]}.{sys.version_info[1]}"
                sys.path[:0] = ([str(cffi)] if cffi.is_dir() else []) + [str(base / "site")]
                break
    assembly = ROOT / "src/Dotnet/SharedBridge/bin/Release/net10.0"
    os.environ.setdefault("SHAREDBRIDGE_DOTNET_ASSEMBLY", str(assembly))
    import sharedbridge.dotnet as sbn
    try:
        sbn.load()
    except (sbn.DotnetUnavailableError, ImportError) as e:
        return None, str(e)
    return sbn, None


def main():
    smoke = "--smoke" in sys.argv
    sbn, why = _load()
    if sbn is None:
        print(f"skipped: {why}")
        return 3
    sys.path.insert(0, str(ROOT / "bench"))
    from run import interleaved
    import numpy as np
    import sharedbridge as sb
    rows = []
    sizes = [8 * 1024, 8 * 1024 * 1024] if smoke else [8 * 1024, 1024 * 1024, 16 * 1024 * 1024, 128 * 1024 * 1024]
    for n in sizes:
        net = sbn.create_array("d", n // 8)
        py = sbn.to_python(net)
        view = sbn.as_numpy(net)
        cases = {"sharedbridge.dotnet.as_numpy(net)": lambda: sbn.as_numpy(net),
                 "sharedbridge.dotnet.to_python(net)": lambda: sb.close(sbn.to_python(net)),
                 "sharedbridge.dotnet.to_dotnet(py)": lambda: sbn.to_dotnet(py).Dispose(),
                 "baseline: numpy.copy of the data": lambda: np.copy(view)}
        res = interleaved(cases, 2 if smoke else 5, 5 if smoke else 50, lambda s: s * 1e6)
        rows += [{"case": k, "bytes": n, "value": v} for k, v in res.items()]
        del view
        sb.close(py)
        net.Dispose()
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
