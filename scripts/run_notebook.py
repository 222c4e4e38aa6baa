#!/usr/bin/env python3
"""Execute examples/notebooks/dotnet_and_numpy.ipynb headless and check it.

Usage: scripts/run_notebook.py RESULTS_DIR [--notebook-dir DIR --kernel-python PYTHON | --update]
Runs the notebook in a fresh ipykernel of this interpreter (nbclient), with the package from
the source tree and pythonnet from the interpreter, SHAREDBRIDGE_PYTHONNET_PATH or
../shared/vendor/pythonnet next to the repository. With --notebook-dir and --kernel-python
(tests/install): the copy of the notebook in DIR runs in a kernel of PYTHON (a venv with the
installed wheel and pythonnet), with nothing of the source tree on its path or in its environment. The kernel is shut down the way Jupyter does
(a shutdown request, SIGTERM after 2.5 s). Checks: no error output, the cells' OK lines, and no
pyn_nb_ segment left in /dev/shm after the shutdown; and that the checked-in notebook carries its
outputs (a reader on a repository browser sees the results). The notebook always runs fresh: every
output is cleared before it executes. With --update (`make notebook`), the executed notebook, its
outputs and figures, replaces the checked-in one once every check passes (the clone's path in
its outputs replaced by <clone>). Writes RESULTS_DIR/notebook.junit.xml
(every check skipped, with the reason, when nbclient, ipykernel or pythonnet is missing) and
the executed copy RESULTS_DIR/dotnet_and_numpy.executed.ipynb.
"""
import json
import os
import pathlib
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples/notebooks/dotnet_and_numpy.ipynb"
CHECKS = ["the notebook runs without an error output", "the C# writer is plotted live",
          "the in-process hand-off", "the Point structured array", "the timing table",
          "the C# tensor read in place by numpy and PyTorch",
          "no segment is left after the kernel shuts down",
          "the checked-in notebook has its outputs and figures"]
EXPECTED = {1: "C# writer: OK", 2: "hand-off: OK", 3: "points: OK", 4: "view in microseconds: OK",
            5: "tensor: OK"}


def write_junit(results, outcomes):
    suite = ET.Element("testsuite", name="notebook")
    for name, (status, message) in outcomes.items():
        case = ET.SubElement(suite, "testcase", classname="notebook", name=name)
        if status == "skip":
            ET.SubElement(case, "skipped", message=message)
        elif status == "fail":
            ET.SubElement(case, "failure", message=message[:2000])
    ET.ElementTree(suite).write(results / "notebook.junit.xml")


def pythonnet_path():
    try:
        import pythonnet  # noqa: F401
        return []
    except ImportError:
        pass
    for base in filter(None, [os.environ.get("SHAREDBRIDGE_PYTHONNET_PATH"),
                              str(ROOT.parent / "shared/vendor/pythonnet")]):
        site = pathlib.Path(base) / "site"
        if (site / "pythonnet").is_dir():
            cffi = pathlib.Path(base) / f"site-cffi-{sys.version_info[0]}.{sys.version_info[1]}"
            return ([str(cffi)] if cffi.is_dir() else []) + [str(site)]
    return None


def why_skip():
    try:
        import nbclient, nbformat, ipykernel, matplotlib, numpy  # noqa: F401,E401
    except ImportError as e:
        return None, f"{e.name} is not installed (Debian: apt-get install jupyter-nbconvert python3-nbclient python3-ipykernel python3-matplotlib)"
    path = pythonnet_path()
    if path is None:
        return None, "pythonnet is not installed and no vendored copy was found (SHAREDBRIDGE_PYTHONNET_PATH or ../shared/vendor/pythonnet)"
    sys.path[:0] = path
    try:
        import cffi  # noqa: F401
    except ImportError:
        return None, "cffi (needed by pythonnet) is missing for this interpreter (Debian: apt-get install python3-cffi)"
    for need in ["src/Dotnet/SharedBridge/bin/Release/net10.0/SharedBridge.dll",
                 "examples/notebooks/NotebookDemo/bin/Release/net10.0/NotebookDemo.dll"]:
        if not (ROOT / need).is_file():
            return None, f"{need} is not built (dotnet build SharedBridge.sln -c Release)"
    return path, None


def figures(cell):
    """How many images a code cell shows (live displays and figures)."""
    return sum(1 for out in cell.get("outputs", []) if "image/png" in out.get("data", {}))


def checked_in_outputs(notebook):
    """Why the checked-in notebook lacks the outputs a reader should see, or None."""
    import nbformat
    code = [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    bare = [i for i, c in enumerate(code) if not c.get("outputs")]
    if bare:
        return (f"code cells {bare} of {notebook.name} have no outputs: regenerate it with "
                "`make notebook` and commit it")
    if figures(code[1]) < 2:
        return f"code cell 1 of {notebook.name} lacks the live and the over-time figures: `make notebook`"
    return None


def scrubbed(nb, original_metadata):
    """The executed notebook as it is checked in: the clone's path hidden, no run timings, the
    notebook's own kernelspec."""
    root = str(ROOT)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = out["text"].replace(root, "<clone>")
            for key, value in out.get("data", {}).items():
                if isinstance(value, str) and key.startswith("text/"):
                    out["data"][key] = value.replace(root, "<clone>")
    nb.metadata["kernelspec"] = original_metadata.get("kernelspec", nb.metadata.get("kernelspec"))
    return nb


def left_segments():
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith("pyn_nb_"))


def why_skip_installed():
    try:
        import nbclient, nbformat, ipykernel  # noqa: F401,E401
    except ImportError as e:
        return [], f"{e.name} is not installed (Debian: apt-get install python3-nbclient python3-ipykernel)"
    return [], None


def main(results, notebook_dir=None, kernel_python=None, update=False):
    results = pathlib.Path(results)
    results.mkdir(parents=True, exist_ok=True)
    installed = notebook_dir is not None
    notebook = pathlib.Path(notebook_dir) / NOTEBOOK.name if installed else NOTEBOOK
    path, reason = why_skip_installed() if installed else why_skip()
    if reason:
        print(f"notebook: skipped: {reason}")
        write_junit(results, {c: ("skip", reason) for c in CHECKS})
        return 0
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    before = set(left_segments())
    with tempfile.TemporaryDirectory() as spec_dir:
        # A kernel of this very interpreter (whatever `python3` on PATH is).
        kernel_dir = pathlib.Path(spec_dir) / "kernels" / "sharedbridge-test"
        kernel_dir.mkdir(parents=True)
        (kernel_dir / "kernel.json").write_text(json.dumps({
            "argv": [kernel_python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "sharedbridge test", "language": "python"}))
        os.environ["JUPYTER_PATH"] = spec_dir + os.pathsep + os.environ.get("JUPYTER_PATH", "")
        if installed:
            # What a user of the installed packages has: nothing points into a source tree.
            for var in ("PYTHONPATH", "SHAREDBRIDGE_DOTNET_ASSEMBLY", "SHAREDBRIDGE_REPO"):
                os.environ.pop(var, None)
        else:
            env_path = os.pathsep.join([str(ROOT / "python")] + path + [os.environ.get("PYTHONPATH", "")])
            os.environ["PYTHONPATH"] = env_path.rstrip(os.pathsep)
            os.environ["SHAREDBRIDGE_DOTNET_ASSEMBLY"] = str(ROOT / "src/Dotnet/SharedBridge/bin/Release/net10.0")
        nb = nbformat.read(notebook, as_version=4)
        original_metadata = dict(nb.metadata)
        for cell in nb.cells:                # fresh: nothing of the checked-in outputs survives
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        km = KernelManager(kernel_name="sharedbridge-test")
        km.shutdown_wait_time = 5.0          # Jupyter's default: SIGTERM 2.5 s (half of it) after the request
        client = NotebookClient(nb, km=km, timeout=600, kernel_name="sharedbridge-test",
                                resources={"metadata": {"path": str(notebook.parent)}},
                                shutdown_kernel="graceful")
        error = None
        started = time.monotonic()
        try:
            client.execute()
        except CellExecutionError as e:
            error = str(e)
        elapsed = time.monotonic() - started
        # The client does not stop a kernel manager it was given: shut the kernel down as
        # Jupyter does (a shutdown request; SIGTERM after half of shutdown_wait_time, SIGKILL
        # at its end), then look at /dev/shm.
        stop = time.monotonic()
        shutdown = 0.0
        if km.has_kernel:
            km.shutdown_kernel(now=False)
        shutdown = time.monotonic() - stop
        nbformat.write(nb, results / "dotnet_and_numpy.executed.ipynb")

    outputs = {}
    errors = []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells):
        text = []
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors.append(f"cell {i}: {out.ename}: {out.evalue}")
            elif out.output_type == "stream":
                if out.name == "stderr" and "Traceback" in out.text:
                    errors.append(f"cell {i} stderr: {out.text[:500]}")
                text.append(out.text)
        outputs[i] = "".join(text)
    o = {}
    o[CHECKS[0]] = ("fail", error or "; ".join(errors)) if (error or errors) else ("pass", "")
    for check, (index, marker) in zip(CHECKS[1:6], EXPECTED.items()):
        o[check] = ("pass", "") if marker in outputs.get(index, "") else (
            "fail", f"{marker!r} not in the output of code cell {index}: {outputs.get(index, '')[-800:]}")
    if o[CHECKS[1]][0] == "pass" and len(code_cells) > 1 and figures(code_cells[1]) < 2:
        o[CHECKS[1]] = ("fail", f"code cell 1 shows {figures(code_cells[1])} images, not the live "
                                "figure and the over-time figure")
    left = sorted(set(left_segments()) - before)
    o[CHECKS[6]] = ("pass", "") if not left else ("fail", f"left in /dev/shm: {left}")
    for name in left:
        os.unlink("/dev/shm/" + name)
    why = checked_in_outputs(notebook)
    o[CHECKS[7]] = ("pass", "") if why is None else ("fail", why)
    if update and all(status == "pass" for check, (status, _) in o.items() if check != CHECKS[7]):
        nbformat.write(scrubbed(nb, original_metadata), NOTEBOOK)
        why = checked_in_outputs(NOTEBOOK)
        o[CHECKS[7]] = ("pass", "") if why is None else ("fail", why)
        print(f"notebook: {NOTEBOOK.relative_to(ROOT)} updated with its outputs")
    elif update:
        print("notebook: not updated: a check failed")
    write_junit(results, o)
    for name, (status, message) in o.items():
        print(f"notebook: {status:4} {name}" + (f": {message}" if message else ""))
    for line in outputs.get(0, "").splitlines() + outputs.get(4, "").splitlines():
        if line.startswith(("timings:", "sharedbridge ", "SharedBridge.dll from")):
            print("notebook: " + line)
    print(f"notebook: executed in {elapsed:.1f} s, kernel shut down in {shutdown:.1f} s")
    return 0 if all(s != "fail" for s, _ in o.values()) else 1


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="build/test-results")
    parser.add_argument("--notebook-dir", help="a copy of examples/notebooks (the installed-package run)")
    parser.add_argument("--kernel-python", help="the kernel's interpreter (with --notebook-dir)")
    parser.add_argument("--update", action="store_true",
                        help="write the executed notebook back to examples/notebooks (make notebook)")
    args = parser.parse_args()
    if args.update and args.notebook_dir is not None:
        parser.error("--update runs the clone's notebook, not --notebook-dir's")
    if (args.notebook_dir is None) != (args.kernel_python is None):
        parser.error("--notebook-dir and --kernel-python go together")
    sys.exit(main(args.results, args.notebook_dir, args.kernel_python, args.update))
