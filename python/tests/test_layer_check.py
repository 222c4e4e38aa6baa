"""scripts/check_python_layers.py: it passes on the package and can fail.

The failing cases run the checker on small synthetic packages with the same layer
names, written to a temporary directory.
"""

import importlib.util
import pathlib
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "check_python_layers.py"
CYCLE, LAYER_TABLE, DOWN = "no import cycle", "every module is in the layer table", "layers point down"


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("check_python_layers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_package(root, files):
    """A package 'pkg' under *root*: {relative path: source}, plus a good skeleton."""
    skeleton = {
        "__init__.py": "from ._objects.top import thing\n",
        "errors.py": "class Error(Exception):\n    pass\n",
        "_format/__init__.py": "",
        "_format/header.py": "from ..errors import Error\n",
        "_platform/__init__.py": "",
        "_platform/segment.py": "from .._format import header\n",
        "_objects/__init__.py": "",
        "_objects/low.py": "from .._platform.segment import *\n",
        "_objects/top.py": "from . import low\nthing = 1\n",
    }
    skeleton.update(files)
    for rel, source in skeleton.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root / "pkg"


def failures(checker, package):
    return {name: lines for name, lines in checker.check(package).items() if lines}


def test_the_package_passes(checker):
    assert failures(checker, checker.DEFAULT_PACKAGE) == {}


def test_the_skeleton_passes(checker, tmp_path):
    assert failures(checker, make_package(tmp_path, {})) == {}


def test_a_cycle_fails_even_inside_a_function(checker, tmp_path):
    package = make_package(tmp_path, {
        "_objects/low.py": """
            def rebuild():
                from .top import thing      # hidden in a function: still an edge
                return thing
        """,
    })
    found = failures(checker, package)
    assert list(found) == [CYCLE]
    assert found[CYCLE] == ["import cycle: pkg._objects.low (line 3) -> pkg._objects.top "
                            "(line 1) -> pkg._objects.low"]


def test_an_absolute_import_and_import_module_count(checker, tmp_path):
    package = make_package(tmp_path, {
        "_format/header.py": "import pkg._format.names\n",
        "_format/names.py": "import importlib\nimportlib.import_module('pkg._format.header')\n",
    })
    assert failures(checker, package)[CYCLE] == [
        "import cycle: pkg._format.header (line 1) -> pkg._format.names (line 2) -> "
        "pkg._format.header"]


def test_an_upward_import_fails(checker, tmp_path):
    # Modules nothing imports: the wrong-way imports make no cycle.
    package = make_package(tmp_path, {
        "_format/typecodes.py": "from ..errors import Error\nfrom .._objects import leaf\n",
        "_objects/leaf.py": "",
        "_platform/clock.py": "import pkg\n",
    })
    found = failures(checker, package)
    assert list(found) == [DOWN]
    assert found[DOWN] == [
        "pkg._format.typecodes (layer _format) imports pkg._objects.leaf (layer _objects, "
        "higher) at line 2",
        "pkg._platform.clock (layer _platform) imports pkg (layer __init__, higher) at line 1",
    ]


def test_a_module_outside_the_table_fails(checker, tmp_path):
    package = make_package(tmp_path, {"_helpers.py": "", "_format/bad.py": "from ... import x\n"})
    assert failures(checker, package) == {LAYER_TABLE: [
        "pkg._format.bad line 1: relative import above the package",
        "pkg._helpers: not in the layer table of scripts/check_python_layers.py (LAYERS)"]}



def test_the_dotnet_subpackage_sits_above_the_package(checker, tmp_path):
    # Its modules may use the package and each other; a lower layer importing it fails.
    files = {
        "dotnet/__init__.py": "from .factories import make\n",
        "dotnet/loader.py": "from .._platform import segment\n",
        "dotnet/factories.py": "from .. import thing\nfrom .loader import segment\nmake = 1\n",
    }
    assert failures(checker, make_package(tmp_path / "ok", files)) == {}
    files["_objects/low.py"] = "from ..dotnet import loader\n"
    assert failures(checker, make_package(tmp_path / "bad", files)) == {DOWN: [
        "pkg._objects.low (layer _objects) imports pkg.dotnet.loader (layer dotnet, higher) "
        "at line 1"]}

def test_the_script_writes_a_failing_suite(tmp_path):
    package = make_package(tmp_path, {"_objects/low.py": "from . import top\n"})
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, str(SCRIPT), str(results), "--package", str(package)],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "FAIL no import cycle" in run.stdout
    assert (results / "layers.status").read_text().strip() == "1"
    cases = {case.get("name"): [child.tag for child in case]
             for case in ET.parse(results / "layers.junit.xml").getroot().iter("testcase")}
    assert cases == {LAYER_TABLE: [], CYCLE: ["failure"], DOWN: []}
