"""The error classes of the two languages agree: every exception of the .NET library
(src/Dotnet/SharedBridge/Exceptions.cs) has its row in docs/api.md's table "Errors in both
languages", and sharedbridge.dotnet translates it to the Python class that row names (which
is also the builtin the row names). Where the names differ, the .NET name with an Error
suffix is the same Python class."""

import builtins
import pathlib
import re
import threading

import pytest

import sharedbridge
import sharedbridge.errors
from sharedbridge.dotnet import error_map

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXCEPTIONS_CS = ROOT / "src/Dotnet/SharedBridge/Exceptions.cs"
API_MD = ROOT / "docs/api.md"
ROW = re.compile(r"^\| `(\w+Exception)` \| `([\w.]+)` \| (?:`(\w+)`)? *\| `(\w+)` \| `(\w+)` \|$")


def dotnet_exceptions():
    return re.findall(r"public (?:sealed )?class (\w+Exception)\b", EXCEPTIONS_CS.read_text())


def dotnet_bases():
    """.NET exception -> the base class Exceptions.cs declares for it."""
    return dict(re.findall(r"public (?:sealed )?class (\w+Exception) : (\w+)", EXCEPTIONS_CS.read_text()))


def table_rows():
    text = API_MD.read_text()
    section = text[text.index("### Errors in both languages"):]
    section = section[:section.index("\n#", 1)]
    return {m.group(1): m.groups()[1:] for m in
            (ROW.match(line) for line in section.splitlines()) if m}


def python_class(name):
    if name == "threading.BrokenBarrierError":
        return threading.BrokenBarrierError
    return getattr(sharedbridge, name)


def test_the_dotnet_library_has_the_exceptions_the_table_expects():
    names = dotnet_exceptions()
    assert "SharedBridgeException" in names and len(names) >= 18


@pytest.mark.parametrize("dotnet_name", dotnet_exceptions())
def test_every_dotnet_exception_has_a_row_and_the_translation_agrees(dotnet_name):
    rows = table_rows()
    assert dotnet_name in rows, f"docs/api.md's error table has no row for {dotnet_name}"
    py_name, alias, builtin, dotnet_base = rows[dotnet_name]
    # The ".NET base" column is the base the .NET library declares (docs/api.md, "Exceptions (.NET)").
    assert dotnet_bases()[dotnet_name] == dotnet_base
    cls = python_class(py_name)
    assert error_map.EXCEPTIONS[dotnet_name] is cls
    assert issubclass(cls, getattr(builtins, builtin))
    if cls is not threading.BrokenBarrierError:
        assert issubclass(cls, sharedbridge.SharedBridgeError)
    stem = dotnet_name[:-len("Exception")]
    if py_name != stem + "Error" and not py_name.endswith("." + stem + "Error"):
        # A name that differs from the .NET one: the .NET name is an alias of the same class.
        assert alias == stem + "Error"
        assert getattr(sharedbridge, alias) is cls
        assert getattr(sharedbridge.errors, alias) is cls
        assert alias in sharedbridge.__all__ and alias in sharedbridge.errors.__all__
    else:
        assert alias is None


def test_the_table_names_no_exception_the_dotnet_library_lacks():
    assert set(table_rows()) == set(dotnet_exceptions()) == set(error_map.EXCEPTIONS)


def test_old_and_dotnet_names_catch_each_other():
    with pytest.raises(sharedbridge.SegmentAccessDeniedError):
        raise sharedbridge.SegmentPermissionError("refused")
    with pytest.raises(sharedbridge.InvalidNameError):
        sharedbridge.RawArray("i", 1, name="bad/name")
    with pytest.raises(sharedbridge.InvalidSegmentNameError):
        sharedbridge.RawArray("i", 1, name="bad/name")


def test_every_public_error_is_exported_from_errors_and_the_package():
    public = [n for n, v in vars(sharedbridge.errors).items()
              if isinstance(v, type) and issubclass(v, (sharedbridge.SharedBridgeError, Warning))
              and v.__module__ == "sharedbridge.errors"]
    for name in public:
        assert name in sharedbridge.errors.__all__ and name in sharedbridge.__all__, name
    assert "SegmentTooLargeError" in sharedbridge.errors.__all__
    assert "LockTimeoutError" in sharedbridge.errors.__all__
    import sharedbridge.dotnet as sbn
    assert sbn.LockTimeoutError is sharedbridge.LockTimeoutError
