#!/usr/bin/env python3
"""Check the layering of the Python package: no import cycle, and no import that points up.

Layers of python/sharedbridge, lowest first; a module may import modules of its own
layer and of lower layers, never of a higher one:

  errors      the public exceptions
  _format     the binary contract of docs/format.md (header, field table, typecodes, names)
  _platform   the operating system (segments, the robust mutex, /proc, exit cleanup)
  _objects    the objects users get (raw objects, locks, wrappers, attach, factories)
  __init__    the public surface (the package itself)
  dotnet      the .NET library in-process through pythonnet, a subpackage (optional:
              imported by nobody in the package, it may use everything below; its
              modules import each other, never their own __init__)
  cli         the `sharedbridge` command line (public API only; same level as dotnet)
  demo        the Python side of the .NET tool's demo (public API only; same level as dotnet)
  __main__    `python -m sharedbridge` (runs cli)

Every import of a package module counts, wherever it is written (module level, inside a
function, under an `if`), and so does importlib.import_module/__import__ of a literal
name: an import moved into a function to dodge a cycle is still an edge here. Importing
a submodule does not count as importing its parent packages.

Usage: scripts/check_python_layers.py [RESULTS_DIR] [--package DIR]
Prints what fails. With RESULTS_DIR, also writes RESULTS_DIR/layers.junit.xml (one
testcase per check) and RESULTS_DIR/layers.status for scripts/summarize.py. The exit
status is 0 only if every check passes. Standard library only.
"""

import argparse
import ast
import pathlib
import sys
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_PACKAGE = ROOT / "python" / "sharedbridge"

# First name below the package -> layer (higher number = higher layer); "" is the
# package's own __init__.py. A module outside this table fails the check: a new
# subpackage or top-level module gets its place here on purpose.
LAYERS = {"errors": 0, "_format": 1, "_platform": 2, "_objects": 3, "": 4, "dotnet": 5, "cli": 5, "demo": 5,
          "__main__": 6}

CHECKS = ("every module is in the layer table", "no import cycle", "layers point down")


def find_modules(package_dir):
    """{dotted module name: (path, is_package)} of every .py file under *package_dir*."""
    package_dir = pathlib.Path(package_dir)
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = (package_dir.name,) + path.relative_to(package_dir).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def _literal_import_call(node):
    """The module name of importlib.import_module("x") / __import__("x"), else None."""
    if not (isinstance(node, ast.Call) and node.args
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return node.args[0].value if name in ("import_module", "__import__") else None


def imports_of(name, path, is_package, modules):
    """[(imported package module, line)] for every import statement in the module, and
    the problems found resolving them (a relative import above the package)."""
    root = name.split(".")[0]
    edges, problems = [], []

    def add(target, line):
        # The module itself if it is one of ours, else its longest prefix that is (the
        # attribute of a package: `from . import errors` vs `from .errors import X`).
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and (target == root or target.startswith(root + ".")):
            edges.append((target, line))

    tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                if node.level - 1 >= len(package):
                    problems.append(f"{name} line {node.lineno}: relative import above the package")
                    continue
                base = package[:len(package) - (node.level - 1)]
                base = ".".join(base + (node.module.split(".") if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                add(base if alias.name == "*" else f"{base}.{alias.name}", node.lineno)
        else:
            literal = _literal_import_call(node)
            if literal is not None:
                add(literal, node.lineno)
    return edges, problems


def layer_of(name, layers=LAYERS):
    """The layer key of a module ("" for the package itself), or None if not in the table."""
    below = name.split(".")[1:]
    key = below[0] if below else ""
    return key if key in layers else None


def import_graph(package_dir):
    """({module: {imported module: first line}}, problems)."""
    modules = find_modules(package_dir)
    graph, problems = {}, []
    for name, (path, is_package) in modules.items():
        try:
            edges, found = imports_of(name, path, is_package, modules)
        except SyntaxError as e:
            problems.append(f"{name}: cannot parse ({e})")
            edges, found = [], []
        problems.extend(found)
        targets = graph.setdefault(name, {})
        for target, line in edges:
            targets.setdefault(target, line)
    return graph, problems


def find_cycles(graph):
    """One shortest cycle through each module that is on a cycle, without repeats:
    a list of [m1, m2, ..., m1]."""
    cycles, seen = [], set()
    for start in sorted(graph):
        # Breadth-first from start's imports back to start: the shortest way round.
        parent = {}
        frontier = [start]
        found = False
        while frontier and not found:
            following = []
            for node in frontier:
                for nxt in sorted(graph.get(node, ())):
                    if nxt == start:
                        parent[start] = node
                        found = True
                        break
                    if nxt not in parent:
                        parent[nxt] = node
                        following.append(nxt)
                if found:
                    break
            frontier = following
        if not found:
            continue
        path = [start]
        node = parent[start]
        while node != start:
            path.append(node)
            node = parent[node]
        path.append(start)
        path.reverse()
        # The same cycle found from another of its modules: compare as a set of edges.
        key = frozenset(zip(path, path[1:]))
        if key not in seen:
            seen.add(key)
            cycles.append(path)
    return cycles


def check(package_dir=DEFAULT_PACKAGE, layers=LAYERS):
    """{check name: [failure lines]} (an empty list: the check passes)."""
    graph, problems = import_graph(package_dir)
    results = {c: [] for c in CHECKS}
    results[CHECKS[0]] = problems + [
        f"{name}: not in the layer table of scripts/check_python_layers.py (LAYERS)"
        for name in sorted(graph) if layer_of(name, layers) is None]
    for cycle in find_cycles(graph):
        steps = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:]))
        results[CHECKS[1]].append(f"import cycle: {steps} -> {cycle[-1]}")
    for name in sorted(graph):
        here = layer_of(name, layers)
        for target, line in sorted(graph[name].items()):
            there = layer_of(target, layers)
            if here is not None and there is not None and layers[there] > layers[here]:
                results[CHECKS[2]].append(
                    f"{name} (layer {here or '__init__'}) imports {target} (layer "
                    f"{there or '__init__'}, higher) at line {line}")
    return results


def write_results(results, results_dir):
    results_dir = pathlib.Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    failures = sum(1 for lines in results.values() if lines)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name="layers", tests=str(len(results)),
                          failures=str(failures), errors="0", skipped="0")
    for name, lines in results.items():
        case = ET.SubElement(suite, "testcase", classname="layers", name=name, time="0")
        if lines:
            failure = ET.SubElement(case, "failure", message=lines[0])
            failure.text = "\n".join(lines)
    ET.ElementTree(suites).write(results_dir / "layers.junit.xml", encoding="utf-8",
                                 xml_declaration=True)
    status = 1 if failures else 0
    (results_dir / "layers.status").write_text(f"{status}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", nargs="?", help="where to write layers.junit.xml and layers.status")
    parser.add_argument("--package", default=str(DEFAULT_PACKAGE), help="the package directory to check")
    args = parser.parse_args(argv)
    results = check(args.package)
    for name, lines in results.items():
        print(f"{'FAIL' if lines else 'ok  '} {name}")
        for line in lines:
            print(f"       {line}")
    if args.results_dir:
        write_results(results, args.results_dir)
    return 1 if any(results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
