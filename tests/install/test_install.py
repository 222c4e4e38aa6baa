"""The packages a user installs (`make dist`, build/dist/), installed the way a user would, outside
the repository, then used across languages through those installed copies only.

- the wheel goes into a fresh venv of this interpreter with `pip install --no-index --find-links
  build/dist sharedbridge==V`, as a user would install it: pip picks the binary wheel of the
  interpreter (the compiled lock path) over the pure one (no source tree on its path: the helper
  runs in isolated mode from a temporary folder);
- the binary wheel of every interpreter found (SB_WHEEL_PYTHONS) goes into a venv of that interpreter
  and must give the compiled lock path; the pure wheel goes into one more and must give the ctypes one
  (venvs are made --without-pip and filled by the base interpreter's `pip --python`: seconds each);
- the SharedBridge NuGet package goes into a fresh `dotnet new console` project in a temporary
  folder, restored from a nuget.config whose feeds are build/dist (for SharedBridge*, by package
  source mapping) and nuget.org (everything else), into a private NuGet packages folder so no
  cached copy of the same version can stand in for the one just built;
- the SharedBridge.Tool package is installed with `dotnet tool install --tool-path`, and its `demo`
  runs with a venv's interpreter alone (the installed wheel's sharedbridge.demo);
- the SharedBridge.Tensors package goes into another fresh console project, which references it alone
  (SharedBridge comes in as its dependency) and views a shared tensor through `AsTensorSpan()`.

Run by scripts/test-install.sh, which runs scripts/dist.sh first.
Segment names start with sbdist_ (sbw22_ for the wheel-kind tests) and every test checks that none
is left behind.
"""
import base64
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
DIST = ROOT / "build" / "dist"
VERSION = (ROOT / "python" / "sharedbridge" / "VERSION").read_text(encoding="ascii").strip()
INITIAL = [1.5, -2.25, 1e100, 0.0]
NUSPEC_NS = "{http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd}"


def run(cmd, **kwargs):
    """Run *cmd*; fail the test with its output when it fails."""
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited with {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def dist_file(name):
    path = DIST / name
    assert path.is_file(), f"{path} is missing: run `make dist` (scripts/dist.sh)"
    return path


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def nuspec(package):
    with zipfile.ZipFile(package) as z:
        [spec] = [n for n in z.namelist() if n.endswith(".nuspec")]
        root = ET.fromstring(z.read(spec))
    # nuspec files use one of several namespace versions: match tags by local name.
    return {el.tag.split("}")[-1]: el for el in root.iter()}


@pytest.fixture(scope="module")
def work():
    path = pathlib.Path(tempfile.mkdtemp(prefix="sbdist-install-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def dotnet_env(work):
    env = dict(os.environ, DOTNET_NOLOGO="1", DOTNET_CLI_TELEMETRY_OPTOUT="1",
               DOTNET_SKIP_FIRST_TIME_EXPERIENCE="1", NUGET_PACKAGES=str(work / "nuget-packages"))
    env.pop("MSBuildSDKsPath", None)
    config = work / "nuget.config"
    config.write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="{DIST}" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" protocolVersion="3" />
  </packageSources>
  <packageSourceMapping>
    <packageSource key="local"><package pattern="SharedBridge" /><package pattern="SharedBridge.*" /></packageSource>
    <packageSource key="nuget.org"><package pattern="*" /></packageSource>
  </packageSourceMapping>
</configuration>
""")
    return env


def interpreters():
    """This interpreter, and those in SB_INSTALL_PYTHONS (scripts/test-install.sh passes the newest
    other CPython >= 3.10 it finds)."""
    found = [sys.executable] + [p for p in os.environ.get("SB_INSTALL_PYTHONS", "").split(os.pathsep) if p]
    return list(dict.fromkeys(found))


def label(python):
    return subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def wheel_pythons():
    """Every CPython >= 3.10 found (SB_WHEEL_PYTHONS, set by scripts/test-install.sh from
    scripts/python-env.sh), else those of interpreters()."""
    found = [p for p in os.environ.get("SB_WHEEL_PYTHONS", "").split(os.pathsep) if p]
    return list(dict.fromkeys(found or interpreters()))


def python_tag(python):
    return subprocess.run([python, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def pure_wheel():
    return dist_file(f"sharedbridge-{VERSION}-py3-none-any.whl")


def binary_wheel(python):
    """The binary wheel make dist built for *python*'s minor version: exactly one."""
    tag = python_tag(python)
    found = sorted(DIST.glob(f"sharedbridge-{VERSION}-{tag}-{tag}-*.whl"))
    assert len(found) == 1, f"one binary wheel for {tag} expected in {DIST}, found {[f.name for f in found]}"
    return found[0]


@pytest.fixture(scope="module")
def venvs(work):
    """make(python, kind): a fresh venv of *python* (made once per interpreter and kind, then reused)
    with sharedbridge installed from build/dist, and nothing else; returns the venv's python.
    kind "binary": `pip install --no-index --find-links build/dist sharedbridge==V`, as a user
    would, so pip chooses (the binary wheel of that interpreter); kind "pure": the py3-none-any wheel
    named. The venv is made --without-pip and filled by the base interpreter's `pip --python`."""
    made = {}

    def make(python, kind):
        key = (python, kind)
        if key not in made:
            path = work / f"venv-{kind}-{label(python)}-{len(made)}"
            run([python, "-m", "venv", "--without-pip", path])
            spec = ["--find-links", DIST, f"sharedbridge=={VERSION}"] if kind == "binary" else [pure_wheel()]
            run([python, "-m", "pip", "--python", path / "bin" / "python", "install", "-q", "--no-index",
                 "--disable-pip-version-check", *spec])
            made[key] = path / "bin" / "python"
        return made[key]

    return make


@pytest.fixture(scope="module", params=interpreters(), ids=label)
def venv(venvs, request):
    """A fresh venv of each interpreter with only the built wheel installed (pip's choice: the binary
    one); returns its python."""
    return venvs(request.param, "binary")


@pytest.fixture(scope="module")
def python_side(venv, work):
    """The command line that runs tests/install/install_check.py with the venv's interpreter,
    from a folder that holds nothing of the repository."""
    script = work / "install_check.py"
    shutil.copy(HERE / "install_check.py", script)
    return [venv, "-I", script]


def _console_project(work, dotnet_env, project, package):
    """A fresh console project *project* (its code: tests/install/<project>.cs) that references
    *package* from the local feed, built; returns its directory."""
    path = work / project
    run(["dotnet", "new", "console", "--no-restore", "-o", path, "-n", project], cwd=work, env=dotnet_env)
    (path / "Program.cs").unlink()
    shutil.copy(HERE / f"{project}.cs", path / f"{project}.cs")
    run(["dotnet", "add", path / f"{project}.csproj", "package", package, "--version", VERSION,
         "--no-restore"], cwd=work, env=dotnet_env)
    run(["dotnet", "build", path, "-c", "Release", "-nologo", "-v", "quiet"], cwd=work, env=dotnet_env)
    return path


@pytest.fixture(scope="module")
def app(work, dotnet_env):
    """A fresh console project that references the SharedBridge package; returns its directory."""
    return _console_project(work, dotnet_env, "InstallCheck", "SharedBridge")


@pytest.fixture(scope="module")
def tensor_app(work, dotnet_env):
    """A fresh console project that references the SharedBridge.Tensors package only; returns its directory."""
    return _console_project(work, dotnet_env, "TensorCheck", "SharedBridge.Tensors")


@pytest.fixture(scope="module")
def csharp_side(app):
    return [app / "bin" / "Release" / "net10.0" / "InstallCheck"]


def _names(request, prefix):
    made = []

    def new():
        made.append(f"{prefix}_{os.getpid()}_{request.node.name[:20]}_{len(made)}")
        return made[-1]

    yield new
    left = [n for n in made if os.path.exists(f"/dev/shm/{n}")]
    for n in left:
        os.unlink(f"/dev/shm/{n}")
    assert not left, f"segments left in /dev/shm after their creator exited: {left}"


@pytest.fixture
def names(request):
    """Segment names for one test: sbdist_<pid>_<test>_<n>; afterwards none may be left in
    /dev/shm (a leftover is removed and fails the test)."""
    yield from _names(request, "sbdist")


@pytest.fixture
def wheel_names(request):
    """The same with the prefix sbw22_."""
    yield from _names(request, "sbw22")


class Creator:
    """A `serve` process: it has created the segment once started, and reports what the segment
    holds when released."""

    def __init__(self, cmd, name, verb="serve"):
        self.proc = subprocess.Popen([str(c) for c in cmd] + [verb, name] + [repr(x) for x in INITIAL],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "created":
            self.proc.kill()
            raise AssertionError(f"{cmd} {verb} {name}: {line!r} "
                                 f"{self.proc.communicate(timeout=60)[1]}")

    def release(self):
        """The values the segment held when released, and any further output lines."""
        out, err = self.proc.communicate("\n", timeout=60)
        assert self.proc.returncode == 0, err
        values, *rest = out.splitlines()
        return [float(x) for x in values.split()], rest

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(60)


def modified(values):
    return [x * 2 + 0.25 for x in values]


# --- what was built -------------------------------------------------------------------------

def test_every_package_carries_the_one_version():
    """python/sharedbridge/VERSION names every file make dist produced."""
    for name in [f"SharedBridge.{VERSION}.nupkg", f"SharedBridge.{VERSION}.snupkg",
                 f"SharedBridge.Tool.{VERSION}.nupkg", f"SharedBridge.Tensors.{VERSION}.nupkg",
                 f"SharedBridge.Tensors.{VERSION}.snupkg", f"sharedbridge-{VERSION}.tar.gz",
                 f"sharedbridge-{VERSION}-py3-none-any.whl"]:
        dist_file(name)
    for wheel in DIST.glob("sharedbridge-*.whl"):
        assert wheel.name.startswith(f"sharedbridge-{VERSION}-"), wheel.name
    assert nuspec(dist_file(f"SharedBridge.{VERSION}.nupkg"))["version"].text == VERSION
    assert nuspec(dist_file(f"SharedBridge.Tool.{VERSION}.nupkg"))["version"].text == VERSION
    assert nuspec(dist_file(f"SharedBridge.Tensors.{VERSION}.nupkg"))["version"].text == VERSION


def test_tensors_package_depends_on_the_same_sharedbridge_and_the_core_stays_bcl_only():
    """SharedBridge.Tensors carries its assembly and docs and depends on SharedBridge of the same version and on
    System.Numerics.Tensors; the SharedBridge package itself depends on nothing (docs/api.md)."""
    package = dist_file(f"SharedBridge.Tensors.{VERSION}.nupkg")
    with zipfile.ZipFile(package) as z:
        assert {"README.md", "lib/net10.0/SharedBridge.Tensors.dll", "lib/net10.0/SharedBridge.Tensors.xml"} <= set(z.namelist())
    meta = nuspec(package)
    assert meta["license"].text == "MIT" and meta["readme"].text == "README.md"
    with zipfile.ZipFile(package) as z:
        [spec] = [n for n in z.namelist() if n.endswith(".nuspec")]
        root = ET.fromstring(z.read(spec))
    dependencies = {d.get("id"): d.get("version") for d in root.iter() if d.tag.split("}")[-1] == "dependency"}
    assert dependencies.get("SharedBridge") == VERSION, dependencies
    assert dependencies.get("System.Numerics.Tensors", "").startswith("10."), dependencies
    with zipfile.ZipFile(dist_file(f"SharedBridge.{VERSION}.nupkg")) as z:
        [spec] = [n for n in z.namelist() if n.endswith(".nuspec")]
        core = ET.fromstring(z.read(spec))
    assert not [d for d in core.iter() if d.tag.split("}")[-1] == "dependency"]


def test_nuget_package_has_readme_licence_repository_tags_docs_and_symbols():
    package = dist_file(f"SharedBridge.{VERSION}.nupkg")
    meta = nuspec(package)
    assert meta["license"].text == "MIT" and meta["license"].get("type") == "expression"
    assert meta["readme"].text == "README.md"
    assert meta["repository"].get("url", "").startswith("https://")
    assert meta["repository"].get("commit"), "the repository element should name the commit built"
    assert {"shared-memory", "python", "ipc"} <= set(meta["tags"].text.split())
    assert "Python" in meta["description"].text
    with zipfile.ZipFile(package) as z:
        files = set(z.namelist())
        assert {"README.md", "lib/net10.0/SharedBridge.dll", "lib/net10.0/SharedBridge.xml"} <= files
        docs = ET.fromstring(z.read("lib/net10.0/SharedBridge.xml"))
        assert len(docs.findall("./members/member[@name='T:SharedBridge.SharedArray`1']")) == 1
    with zipfile.ZipFile(dist_file(f"SharedBridge.{VERSION}.snupkg")) as z:
        assert "lib/net10.0/SharedBridge.pdb" in z.namelist()


def test_tool_package_is_a_dotnet_tool_named_sharedbridge():
    with zipfile.ZipFile(dist_file(f"SharedBridge.Tool.{VERSION}.nupkg")) as z:
        settings = ET.fromstring(z.read("tools/net10.0/any/DotnetToolSettings.xml"))
    [command] = settings.iter("Command")
    assert command.get("Name") == "sharedbridge"


def test_wheel_has_types_licence_console_script_and_the_package_assembly():
    wheel = dist_file(f"sharedbridge-{VERSION}-py3-none-any.whl")
    info = f"sharedbridge-{VERSION}.dist-info"
    with zipfile.ZipFile(wheel) as z:
        files = set(z.namelist())
        assert {"sharedbridge/py.typed", "sharedbridge/VERSION", f"{info}/LICENSE"} <= files
        assert z.read("sharedbridge/VERSION").decode().strip() == VERSION
        assert "sharedbridge = sharedbridge.cli:main" in z.read(f"{info}/entry_points.txt").decode()
        assert not [f for f in files if "__pycache__" in f or f.startswith(("tests/", "python/"))]
        assert not [f for f in files if f.endswith(".so")], "the py3-none-any wheel is pure"
        wheel_dll = z.read("sharedbridge/_dotnet/SharedBridge.dll")
    with zipfile.ZipFile(dist_file(f"SharedBridge.{VERSION}.nupkg")) as z:
        assert sha256(wheel_dll) == sha256(z.read("lib/net10.0/SharedBridge.dll")), \
            "the wheel's SharedBridge.dll is not the one in the NuGet package"


def _glibc_needed(module):
    """The newest GLIBC_2.N symbol version *module* needs (objdump -T), and its NEEDED libraries."""
    dyn = run(["objdump", "-T", module]).stdout
    versions = [tuple(int(x) for x in m) for m in re.findall(r"\*UND\*.*\bGLIBC_(\d+)\.(\d+)", dyn)]
    libs = set(re.findall(r"NEEDED\s+(\S+)", run(["objdump", "-p", module]).stdout))
    return max(versions), libs


def test_binary_wheels_carry_the_compiled_lock_with_an_honest_platform_tag(work):
    """One binary wheel per interpreter's minor version: the pure wheel's files plus _fastlock built for
    that interpreter, tagged manylinux_2_N_<arch> where 2.N is the newest glibc symbol version the
    module needs, and needing no library outside the manylinux set."""
    if not shutil.which("objdump"):
        pytest.skip("no objdump (binutils) to read the module's symbol versions")
    with zipfile.ZipFile(pure_wheel()) as z:
        pure = set(z.namelist())
    for python in wheel_pythons():
        wheel = binary_wheel(python)
        suffix = run([python, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"]).stdout.strip()
        module = f"sharedbridge/_platform/_fastlock{suffix}"
        info = f"sharedbridge-{VERSION}.dist-info"
        with zipfile.ZipFile(wheel) as z:
            files = set(z.namelist())
            assert files == pure | {module}, files ^ (pure | {module})
            meta = z.read(f"{info}/WHEEL").decode()
            record = z.read(f"{info}/RECORD").decode()
            data = z.read(module)
            out = work / f"{wheel.name}.so"
            out.write_bytes(data)
        (major, minor), libs = _glibc_needed(out)
        platform_tag = f"manylinux_{major}_{minor}_{os.uname().machine}"
        tag = python_tag(python)
        assert wheel.name == f"sharedbridge-{VERSION}-{tag}-{tag}-{platform_tag}.whl"
        assert f"Tag: {tag}-{tag}-{platform_tag}\n" in meta and "Root-Is-Purelib: false\n" in meta, meta
        assert libs <= {"libc.so.6", "libpthread.so.0", "librt.so.1", "libm.so.6", "libdl.so.2"}, libs
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert f"{module},sha256={digest},{len(data)}\n" in record


@pytest.mark.parametrize("python", wheel_pythons(), ids=label)
def test_binary_wheel_gives_the_compiled_lock_on_every_interpreter(python, venvs, work, wheel_names):
    """pip install --find-links build/dist picks the interpreter's binary wheel; the installed copy
    runs the compiled lock path (its own _fastlock), and the seeds' idioms count right."""
    venv_python = venvs(python, "binary")
    script = work / "install_check.py"
    shutil.copy(HERE / "install_check.py", script)
    backend, module, value = run([venv_python, "-I", script, "backend", wheel_names()]).stdout.split("\n")[:3]
    assert backend == "c"
    assert pathlib.Path(module).resolve().is_relative_to(venv_python.parent.parent.resolve()), module
    assert value == "2000"


def test_pure_wheel_gives_the_ctypes_lock(venvs, work, wheel_names):
    """The py3-none-any wheel (every other platform) installs and runs the ctypes lock path."""
    venv_python = venvs(sys.executable, "pure")
    script = work / "install_check.py"
    shutil.copy(HERE / "install_check.py", script)
    backend, module, value = run([venv_python, "-I", script, "backend", wheel_names()]).stdout.split("\n")[:3]
    assert (backend, module, value) == ("ctypes", "none", "2000")


def test_abi3_build_of_the_lock_module_still_builds_and_runs(work, wheel_names):
    """_fastlock.c also compiles against the 3.12 stable ABI (bench/abi3_compare.py measures that build
    against the per-interpreter one; docs/api.md, "Wheels"). Built by the newest interpreter >= 3.12
    found into a copy of the package, it is the module that copy loads, and the seeds' idioms count
    right on it."""
    newest = max(((tuple(int(x) for x in label(p).split(".")[:2]), p) for p in wheel_pythons()), default=None)
    if newest is None or newest[0] < (3, 12):
        pytest.skip("no CPython >= 3.12 found: the abi3 build needs the 3.12 limited API")
    python = newest[1]
    tree = work / "abi3-copy"
    if not tree.exists():
        shutil.copytree(ROOT / "python" / "sharedbridge", tree / "sharedbridge",
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    module = tree / "sharedbridge" / "_platform" / "_fastlock.abi3.so"
    built = subprocess.run([python, ROOT / "scripts" / "build_fastlock.py", "--limited-api", "--out", module],
                           capture_output=True, text=True, timeout=300)
    if built.returncode == 3:
        pytest.skip(built.stdout.strip())
    assert built.returncode == 0, built.stdout + built.stderr
    script = work / "install_check.py"
    shutil.copy(HERE / "install_check.py", script)
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("SHAREDBRIDGE_NO_ACCEL", None)
    backend, loaded, value = run([python, script, "backend", wheel_names()], env=env, cwd=work).stdout.split("\n")[:3]
    assert (backend, pathlib.Path(loaded), value) == ("c", module, "2000")


def test_sdist_is_the_source_and_builds_a_wheel(work):
    sdist = dist_file(f"sharedbridge-{VERSION}.tar.gz")
    top = f"sharedbridge-{VERSION}"
    with tarfile.open(sdist) as t:
        names = set(t.getnames())
    assert {f"{top}/pyproject.toml", f"{top}/LICENSE", f"{top}/README.md", f"{top}/setup.py",
            f"{top}/python/sharedbridge/_platform/_fastlock.c",
            f"{top}/python/sharedbridge/VERSION", f"{top}/python/sharedbridge/py.typed"} <= names
    assert not [n for n in names if n.endswith((".dll", ".so"))], "the sdist is source only"
    # Offline, the build needs an interpreter that has setuptools and wheel itself.
    builders = [p for p in dict.fromkeys([sys.executable, "/usr/bin/python3"]) if os.path.exists(p)
                and subprocess.run([p, "-c", "import setuptools, wheel"], capture_output=True).returncode == 0]
    if not builders:
        pytest.skip("no interpreter with setuptools and wheel to build the sdist without PyPI")
    out = work / "from-sdist"
    run([builders[0], "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", out, sdist], cwd=work)
    # setup.py builds the optional lock accelerator when a compiler and the headers are
    # there (a wheel for this interpreter with the module), else a pure wheel (ctypes path).
    [built] = list(out.iterdir())
    with zipfile.ZipFile(built) as z:
        accel = [n for n in z.namelist() if n.startswith("sharedbridge/_platform/_fastlock")
                 and n.endswith(".so")]
    if built.name == f"sharedbridge-{VERSION}-py3-none-any.whl":
        assert not accel
    else:
        assert built.name.startswith(f"sharedbridge-{VERSION}-cp") and len(accel) == 1, built.name


# --- installed ------------------------------------------------------------------------------

def test_installed_python_package_is_the_venv_copy_and_reports_the_version(python_side, venv):
    version, file = run(python_side + ["where"]).stdout.split("\n")[:2]
    assert version == VERSION
    venv_root = venv.parent.parent
    assert pathlib.Path(file).resolve().is_relative_to(venv_root.resolve()), file
    assert not pathlib.Path(file).resolve().is_relative_to(ROOT), file
    # sharedbridge.dotnet finds the assembly the wheel installed, next to the package.
    assert (pathlib.Path(file).parent / "_dotnet" / "SharedBridge.dll").is_file()


def test_console_project_uses_the_package_and_reports_the_version(app, csharp_side, dotnet_env):
    assets = json.loads((app / "obj" / "project.assets.json").read_text())
    library = assets["libraries"][f"SharedBridge/{VERSION}"]
    assert library["type"] == "package"
    assert not [k for k, v in assets["libraries"].items() if v["type"] == "project"]
    assert pathlib.Path(dotnet_env["NUGET_PACKAGES"], library["path"]).is_dir()
    version, location = run(csharp_side + ["where"]).stdout.split("\n")[:2]
    assert version == VERSION
    with zipfile.ZipFile(dist_file(f"SharedBridge.{VERSION}.nupkg")) as z:
        assert sha256(pathlib.Path(location).read_bytes()) == sha256(z.read("lib/net10.0/SharedBridge.dll")), \
            f"{location} is not the assembly of the SharedBridge package just built"


def test_csharp_creates_installed_python_modifies_csharp_sees_it(csharp_side, python_side, names):
    name = names()
    with Creator(csharp_side, name) as creator:
        assert run(python_side + ["modify", name]).stdout.strip() == "modified"
        assert creator.release()[0] == modified(INITIAL)


def test_installed_python_creates_csharp_modifies_python_sees_it(csharp_side, python_side, names):
    name = names()
    with Creator(python_side, name) as creator:
        assert run(csharp_side + ["modify", name]).stdout.strip() == "modified"
        assert creator.release()[0] == modified(INITIAL)


def test_console_project_views_a_shared_tensor_through_the_installed_tensors_package(tensor_app, dotnet_env, names):
    tensor_side = [tensor_app / "bin" / "Release" / "net10.0" / "TensorCheck"]
    assets = json.loads((tensor_app / "obj" / "project.assets.json").read_text())
    for package in ("SharedBridge.Tensors", "SharedBridge"):
        assert assets["libraries"][f"{package}/{VERSION}"]["type"] == "package"
    assert not [k for k, v in assets["libraries"].items() if v["type"] == "project"]
    lines = run(tensor_side + ["where"]).stdout.split("\n")
    assert lines[0] == lines[2] == VERSION
    for location, package, dll in ((lines[1], "SharedBridge.Tensors", "SharedBridge.Tensors.dll"),
                                   (lines[3], "SharedBridge", "SharedBridge.dll")):
        with zipfile.ZipFile(dist_file(f"{package}.{VERSION}.nupkg")) as z:
            assert sha256(pathlib.Path(location).read_bytes()) == sha256(z.read(f"lib/net10.0/{dll}")), \
                f"{location} is not the assembly of the {package} package just built"
    assert run(tensor_side + ["views", names()]).stdout.strip() == "views ok [2, 3, 4]"


def pythonnet_folder():
    """The vendored pythonnet copy (a folder with site/pythonnet): SHAREDBRIDGE_PYTHONNET_PATH, else
    ../shared/vendor/pythonnet next to the repository."""
    return pathlib.Path(os.environ.get("SHAREDBRIDGE_PYTHONNET_PATH") or ROOT.parent / "shared" / "vendor" / "pythonnet")


def vendored_pythonnet(python):
    """The folders that give *python* pythonnet and cffi from a vendored copy: SHAREDBRIDGE_PYTHONNET_PATH,
    else ../shared/vendor/pythonnet next to the repository (pythonnet is on no registry these
    machines reach), or None."""
    vendor = pythonnet_folder()
    version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    cffi = vendor / f"site-cffi-{version}"
    return [vendor / "site", cffi] if (vendor / "site" / "pythonnet").is_dir() and cffi.is_dir() else None


def test_pythonnet_host_uses_the_assembly_the_wheel_installed(venv, python_side, csharp_side, names):
    """sharedbridge.dotnet.load() with no path loads sharedbridge/_dotnet/SharedBridge.dll from the
    venv; a .NET array made that way is modified by the installed C# console project."""
    paths = vendored_pythonnet(venv)
    if paths is None:
        pytest.skip(f"no pythonnet for {venv}: pip install pythonnet, or a vendored copy with cffi "
                    f"for this version in ../shared/vendor/pythonnet")
    [site] = run([venv, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.split()
    pathlib.Path(site, "vendored-pythonnet.pth").write_text("".join(f"{p}\n" for p in paths))
    name = names()
    with Creator(python_side, name, "serve-pythonnet") as creator:
        assert run(csharp_side + ["modify", name]).stdout.strip() == "modified"
        values, [assembly] = creator.release()
    assert values == modified(INITIAL)
    assert pathlib.Path(assembly) == pathlib.Path(site, "sharedbridge", "_dotnet", "SharedBridge.dll")


def test_console_script_lists_a_segment_made_by_csharp(venv, csharp_side, names):
    """The installed `sharedbridge` command and `python -m sharedbridge` see a segment the installed
    C# project made."""
    if not (ROOT / "python" / "sharedbridge" / "cli.py").exists():
        pytest.skip("python/sharedbridge/cli.py is not in this tree yet (the CLI branch): "
                    "no console script to run")
    name = names()
    with Creator(csharp_side, name) as creator:
        for cmd in [[venv.parent / "sharedbridge"], [venv, "-I", "-m", "sharedbridge"]]:
            listed = json.loads(run(cmd + ["ls", "--json"], cwd=venv.parent).stdout)
            [entry] = [e for e in listed if e["name"] == name]
            assert entry["length"] == len(INITIAL)
        assert creator.release()[0] == INITIAL


@pytest.fixture(scope="module")
def tool(work, dotnet_env):
    """The SharedBridge.Tool package installed into a tool folder; returns its `sharedbridge` command."""
    tools = work / "tools"
    run(["dotnet", "tool", "install", "--tool-path", tools, "--configfile", work / "nuget.config",
         "--version", VERSION, "SharedBridge.Tool"], cwd=work, env=dotnet_env)
    return tools / "sharedbridge"


def test_dotnet_tool_installs_and_runs(tool, work):
    result = subprocess.run([tool, "--help"], capture_output=True, text=True, timeout=60, cwd=work)
    assert result.returncode == 0, result.stderr
    # `demo` is the command every version of the tool has had; the other verbs (docs/cli.md)
    # came later.
    assert "demo" in result.stdout + result.stderr


def test_installed_tool_runs_the_demo_with_the_installed_wheel(tool, venvs, work):
    """`sharedbridge demo` of the installed tool, outside any checkout and without --repo, runs its
    Python workers from the wheel installed in the venv (python -m sharedbridge.demo.worker)."""
    python = venvs(sys.executable, "binary")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([tool, "demo", "--python", python, "--count", "300000", "--chunk", "16384"],
                            capture_output=True, text=True, timeout=120, cwd=work, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    [site] = run([python, "-c", "import sysconfig; print(sysconfig.get_path('platlib'))"]).stdout.split()
    assert (f"  package     sharedbridge {VERSION} installed: {pathlib.Path(site, 'sharedbridge')} (lock path c)\n"
            in result.stdout), result.stdout
    assert "demo OK" in result.stdout and "[ok] no segment left in /dev/shm" in result.stdout, result.stdout


def test_installed_tool_demo_says_what_to_install_when_the_interpreter_lacks_the_package(tool, work):
    """Without --repo, an interpreter without sharedbridge is a usage error that names the fix."""
    bare = work / "venv-bare"
    if not bare.exists():
        run([sys.executable, "-m", "venv", "--without-pip", bare])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([tool, "demo", "--python", bare / "bin" / "python", "--count", "1000"],
                            capture_output=True, text=True, timeout=60, cwd=work, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "has no sharedbridge package" in result.stderr and "pip install the sharedbridge wheel" in result.stderr, \
        result.stderr


def test_notebook_runs_against_the_installed_packages(work, dotnet_env):
    """examples/notebooks/dotnet_and_numpy.ipynb copied out of the repository (with NotebookDemo's
    sources, not its build) and executed by scripts/run_notebook.py in a kernel of a fresh venv with
    the built wheel: sharedbridge and SharedBridge.dll come from the venv, and the notebook builds
    NotebookDemo against the SharedBridge NuGet package just built."""
    missing = [m for m in ("nbclient", "nbformat", "ipykernel", "numpy", "matplotlib", "cffi")
               if subprocess.run([sys.executable, "-c", f"import {m}"], capture_output=True).returncode]
    vendor = pythonnet_folder() / "site"
    has_pythonnet = subprocess.run([sys.executable, "-c", "import pythonnet"], capture_output=True).returncode == 0
    if missing:
        pytest.skip(f"{sys.executable} lacks {', '.join(missing)} for the notebook (Debian: apt-get install "
                    "python3-nbclient python3-ipykernel python3-matplotlib python3-cffi)")
    if not (has_pythonnet or (vendor / "pythonnet").is_dir()):
        pytest.skip(f"no pythonnet for {sys.executable}: pip install pythonnet, or "
                    "SHAREDBRIDGE_PYTHONNET_PATH=/path/to/pythonnet (a folder with site/pythonnet)")
    # A venv that sees this interpreter's packages (ipykernel, numpy, matplotlib) but has its own
    # sharedbridge: the wheel, installed as a user would.
    venv = work / "venv-notebook"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check",
         dist_file(f"sharedbridge-{VERSION}-py3-none-any.whl")])
    [site] = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.split()
    if not has_pythonnet:
        pathlib.Path(site, "vendored-pythonnet.pth").write_text(f"{vendor}\n")
    notebooks = work / "notebooks"
    (notebooks / "NotebookDemo").mkdir(parents=True)
    shutil.copy(ROOT / "examples/notebooks/dotnet_and_numpy.ipynb", notebooks)
    for name in ("NotebookDemo.csproj", "Program.cs"):
        shutil.copy(ROOT / "examples/notebooks/NotebookDemo" / name, notebooks / "NotebookDemo")
    result = subprocess.run([sys.executable, ROOT / "scripts/run_notebook.py", work / "notebook-results",
                             "--notebook-dir", notebooks, "--kernel-python", python],
                            capture_output=True, text=True, timeout=900, env=dotnet_env, cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped" not in result.stdout, result.stdout
    assert f"notebook: sharedbridge {VERSION} from {pathlib.Path(site, 'sharedbridge')}\n" in result.stdout, result.stdout
    dll = pathlib.Path(site, "sharedbridge", "_dotnet", "SharedBridge.dll")
    assert f"notebook: SharedBridge.dll from {dll}\n" in result.stdout, result.stdout
    assets = json.loads((notebooks / "NotebookDemo" / "obj" / "project.assets.json").read_text())
    assert assets["libraries"][f"SharedBridge/{VERSION}"]["type"] == "package"
