"""Load the .NET runtime through pythonnet and the SharedBridge assembly, once per process.

The only module of sharedbridge that imports pythonnet, and only when load() runs
(pythonnet.load must run before `import clr`, once per process).
"""

import atexit
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

    A SharedBridge assembly this process already loaded (``clr.AddReference(path)`` before any
    call of this subpackage) is the one used, wherever it came from; otherwise *path*: a
    SharedBridge.dll or its folder; else SHAREDBRIDGE_DOTNET_ASSEMBLY, else the copy shipped in
    the package. Raises DotnetUnavailableError saying what is missing.
    """
    global _sb, _assembly_path
    with _gate:
        if _sb is not None:
            if path is not None and _resolve(path) != _assembly_path:
                raise DotnetUnavailableError(
                    f"SharedBridge is already loaded from {_assembly_path}; a process holds one "
                    f"copy (asked for {path})")
            return _sb
        dll = loaded_assembly_path()
        if dll is not None:
            # The application loaded it itself (clr.AddReference): a process holds one copy.
            if path is not None and _resolve(path) != dll:
                raise DotnetUnavailableError(
                    f"SharedBridge is already loaded from {dll} (by clr.AddReference); a process "
                    f"holds one copy (asked for {path}): call load() without a path")
            import SharedBridge as sb          # the .NET namespace, through pythonnet
        else:
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


def loaded_assembly_path():
    """The location of the SharedBridge assembly already loaded into this process's .NET
    runtime (by load() or by the application's own ``clr.AddReference``), or None when
    pythonnet is not running or has not loaded it. Loads nothing."""
    if "clr" not in sys.modules or not pythonnet_running():
        return None
    try:
        from System import AppDomain
        for assembly in AppDomain.CurrentDomain.GetAssemblies():
            if str(assembly.GetName().Name) == "SharedBridge":
                location = str(assembly.Location or "")
                return os.path.abspath(location) if location else "(loaded from memory)"
    except Exception:
        return None
    return None


def pythonnet_running():
    """True while pythonnet's runtime is loaded and not yet unloaded (its atexit unload)."""
    pythonnet = sys.modules.get("pythonnet")
    return (pythonnet is not None and bool(getattr(pythonnet, "_LOADED", False))
            and getattr(pythonnet, "_LOADER_ASSEMBLY", None) is not None)


def install_exit_hook():
    """Called when sharedbridge.dotnet is imported: .NET-created segments are released at exit
    however the assembly was loaded. If it is loaded already (the application's own
    ``clr.AddReference``), load() takes its cleanup over at once; otherwise _at_exit_unloaded
    looks again at exit. It runs before pythonnet's unload when pythonnet was loaded first;
    load() (which every function of this subpackage calls) registers cleanup.at_exit after
    pythonnet's unload in any case, so that it runs first."""
    if loaded_assembly_path() is not None:
        try:
            load()
            return
        except Exception:
            pass
    atexit.register(_at_exit_unloaded)


def _at_exit_unloaded():
    # The application loaded SharedBridge itself and never called this subpackage: take the
    # cleanup over now, while pythonnet still runs, and release.
    if cleanup.taken_over() or loaded_assembly_path() is None:
        return
    try:
        import SharedBridge as sb          # the .NET namespace, through pythonnet
        cleanup.take_over(sb, at_exit_hook=False)
    except Exception:
        return
    cleanup.at_exit()


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
