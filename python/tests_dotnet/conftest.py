"""Find pythonnet and the built assemblies for the sharedbridge.dotnet suite.

pythonnet is used where it is importable; otherwise from a vendored copy: the folder named by
SHAREDBRIDGE_PYTHONNET_PATH, else ../shared/vendor/pythonnet next to the repository (machines
without PyPI; its site-cffi-3.X folders supply cffi for pyenv's 3.12 and 3.13). When pythonnet
or the .NET runtime is nowhere, every test is skipped with the reason (never passed).
"""
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ASSEMBLY_DIR = ROOT / "src/Dotnet/SharedBridge/bin/Release/net10.0"
DEMO_DIR = ROOT / "examples/notebooks/NotebookDemo/bin/Release/net10.0"


def pythonnet_paths():
    """The sys.path entries that make pythonnet importable here, or None."""
    candidates = [os.environ.get("SHAREDBRIDGE_PYTHONNET_PATH"),
                  str(ROOT.parent / "shared/vendor/pythonnet")]
    for base in filter(None, candidates):
        site = pathlib.Path(base) / "site"
        if not (site / "pythonnet").is_dir():
            continue
        paths = [str(site)]
        cffi = pathlib.Path(base) / f"site-cffi-{sys.version_info[0]}.{sys.version_info[1]}"
        if cffi.is_dir():
            paths.insert(0, str(cffi))
        return paths
    return None


def _why_unavailable():
    try:
        import pythonnet  # noqa: F401
    except ImportError:
        paths = pythonnet_paths()
        if paths is None:
            return ("pythonnet is not installed (pip install pythonnet) and no vendored copy "
                    "was found (SHAREDBRIDGE_PYTHONNET_PATH or ../shared/vendor/pythonnet)")
        sys.path[:0] = paths
    try:
        import cffi  # noqa: F401
        import pythonnet  # noqa: F401,F811
    except ImportError as e:
        return f"pythonnet cannot be imported by this interpreter ({e}; Debian: apt-get install python3-cffi)"
    if not (ASSEMBLY_DIR / "SharedBridge.dll").is_file():
        return f"the SharedBridge assembly is not built ({ASSEMBLY_DIR}): dotnet build SharedBridge.sln -c Release"
    return None


UNAVAILABLE = _why_unavailable()
if UNAVAILABLE is None:
    os.environ.setdefault("SHAREDBRIDGE_DOTNET_ASSEMBLY", str(ASSEMBLY_DIR))


def pytest_collection_modifyitems(config, items):
    if UNAVAILABLE is None:
        return
    for item in items:
        item.add_marker(pytest.mark.skip(reason=UNAVAILABLE))


@pytest.fixture(scope="session")
def sb():
    import sharedbridge.dotnet as sbn
    try:
        return sbn.load()
    except sbn.DotnetUnavailableError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def Point(sb):
    """The docs' Point struct (NotebookDemo.dll), or skip when the demo project is not built."""
    if not (DEMO_DIR / "NotebookDemo.dll").is_file():
        pytest.skip(f"{DEMO_DIR / 'NotebookDemo.dll'} is not built")
    import clr
    clr.AddReference(str(DEMO_DIR / "NotebookDemo.dll"))
    from SharedBridgeDemo import Point   # the C# namespace of NotebookDemo.dll
    return Point


@pytest.fixture
def names():
    """Unique pyn_ names; whatever is left in /dev/shm afterwards is removed (and reported)."""
    made = []
    prefix = f"pyn_{os.getpid()}_{len(made)}"

    def make(tag="t"):
        made.append(f"pyn_{os.getpid()}_{tag}_{len(made)}")
        return made[-1]

    yield make
    left = [n for n in made if os.path.exists("/dev/shm/" + n)]
    for n in left:
        os.unlink("/dev/shm/" + n)
    del prefix
