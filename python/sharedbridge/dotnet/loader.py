"""Load the .NET runtime through pythonnet and the SharedBridge assembly, once per process.

The only module of sharedbridge that imports pythonnet, and only when load() runs
(pythonnet.load must run before `import clr`, once per process).
"""

import os
import sys
import threading

from . import cleanup

ENV_ASSEMBLY = "SHAREDBRIDGE_DOTNET_ASSEMBLY"
ASSEMBLY_FILE = "SharedBridge.dll"
# The copy a wheel ships: sharedbridge/_dotnet/SharedBridge.dll, beside this subpackage.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DotnetUnavailableError(ImportError):
    """pythonnet, the .NET runtime or the SharedBridge assembly cannot be found or loaded;
    the message says which and how to get it."""


_gate = threading.RLock()
_sb = None              # the SharedBridge .NET namespace once loaded
_assembly_path = None


def loaded():
    """True once load() has succeeded in this process."""
    return _sb is not None


def load(path=None):
    """Load the .NET runtime (pythonnet, "coreclr" unless PYTHONNET_RUNTIME says otherwise or
    a runtime is already loaded) and the SharedBridge assembly; return the ``SharedBridge``
    .NET namespace (``sb.SharedArray[Double]``, ``sb.SegmentOptions``, ...). Idempotent.

    *path*: a SharedBridge.dll or its folder; else SHAREDBRIDGE_DOTNET_ASSEMBLY, else the
    copy shipped in the package. Raises DotnetUnavailableError saying what is missing.
    """
    global _sb, _assembly_path
    with _gate:
        if _sb is not None:
            if path is not None and _resolve(path) != _assembly_path:
                raise DotnetUnavailableError(
                    f"SharedBridge is already loaded from {_assembly_path}; a process holds one "
                    f"copy (asked for {path})")
            return _sb
        dll = find_assembly(path)
        clr = _load_runtime()
        try:
            clr.AddReference(dll)
            import SharedBridge as sb          # the .NET namespace, through pythonnet
        except Exception as e:
            raise DotnetUnavailableError(
                f"cannot load the SharedBridge assembly {dll}: {e} (it needs .NET 10; build it "
                f"with `dotnet build src/Dotnet/SharedBridge -c Release`)") from e
        cleanup.take_over(sb)
        _assembly_path = dll
        _sb = sb
        return sb


def sb_or_load():
    """The SharedBridge .NET namespace, loading it first if needed."""
    return _sb if _sb is not None else load()


def _resolve(path):
    path = os.path.abspath(os.fspath(path))
    return os.path.join(path, ASSEMBLY_FILE) if os.path.isdir(path) else path


def find_assembly(path):
    """The SharedBridge.dll to load: *path* (a file or its folder), else the one
    SHAREDBRIDGE_DOTNET_ASSEMBLY names, else the package's; DotnetUnavailableError naming
    what was tried."""
    tried = []
    candidates = []
    if path is not None:
        candidates.append(("the path given to load()", _resolve(path)))
    elif os.environ.get(ENV_ASSEMBLY):
        candidates.append((ENV_ASSEMBLY, _resolve(os.environ[ENV_ASSEMBLY])))
    else:
        candidates.append(("the installed package",
                           os.path.join(_PACKAGE_DIR, "_dotnet", ASSEMBLY_FILE)))
    for source, candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
        tried.append(f"{candidate} ({source})")
    raise DotnetUnavailableError(
        "the SharedBridge .NET assembly was not found: tried " + ", ".join(tried) + ". Build "
        "it (`dotnet build src/Dotnet/SharedBridge -c Release`) and pass its path to "
        f"sharedbridge.dotnet.load(path) or set {ENV_ASSEMBLY} to it")


def _load_runtime():
    try:
        import pythonnet
    except ImportError as e:
        raise DotnetUnavailableError(
            "sharedbridge.dotnet needs pythonnet (Python.NET 3): pip install pythonnet "
            "(it needs cffi: apt-get install python3-cffi for Debian's python3)") from e
    if "clr" not in sys.modules and pythonnet.get_runtime_info() is None:
        runtime = os.environ.get("PYTHONNET_RUNTIME") or "coreclr"
        try:
            pythonnet.load(runtime)
        except Exception as e:
            raise DotnetUnavailableError(
                f"pythonnet could not start the .NET runtime ({runtime!r}): {e}. Install the "
                ".NET 10 runtime (https://dotnet.microsoft.com/download) or set DOTNET_ROOT") from e
    try:
        import clr
    except Exception as e:
        raise DotnetUnavailableError(f"pythonnet is installed but `import clr` failed: {e}") from e
    return clr
