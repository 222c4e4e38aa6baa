#!/usr/bin/env python3
"""Print one line per test suite and, last, the total line `N passed, N failed, N skipped`.

Reads every result file a suite script left in the results directory:
  <suite>.trx          VSTest TRX (dotnet test --logger trx)
  <suite>.junit.xml    JUnit XML (pytest --junitxml)
  <suite>.status       the suite script's exit status (one integer)
A suite whose script failed without recording any failed test (a build error,
a crash) counts as one failure, so a broken suite can never look green.
Before the total line, once: the optional pieces that were missing (pythonnet, cffi, the notebook
tools, ...), which suites and how many tests they skipped, and the one line that enables each.
Exit status: 0 only if nothing failed and at least one test ran.
"""
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

TRX_NS = "{http://microsoft.com/schemas/VisualStudio/TeamTest/2010}"


# The optional pieces a skip reason can name (first match wins): what is missing, and the one line
# that enables the tests it skipped.
OPTIONAL = [
    (r"no module named '?_?cffi|cffi \(needed|cffi\)|python3-cffi", "cffi for that interpreter (pythonnet needs it)",
     "apt-get install python3-cffi (Debian's python3), or pip install cffi into that interpreter"),
    (r"pythonnet", "pythonnet not found",
     "SHAREDBRIDGE_PYTHONNET_PATH=/path/to/pythonnet make test   (a folder with site/pythonnet; or pip install pythonnet)"),
    (r"nbclient|nbformat|ipykernel|matplotlib", "the notebook tools",
     "apt-get install python3-nbclient python3-ipykernel python3-matplotlib"),
    (r"setuptools and wheel", "setuptools and wheel (sdist build)", "apt-get install python3-setuptools python3-wheel"),
    (r"not built", "a build output", "make build"),
    (r"needs root", "root", "run make test as root"),
]


def optional_piece(reason):
    for pattern, what, enable in OPTIONAL:
        if re.search(pattern, reason or "", re.IGNORECASE):
            return what, enable
    return None


def count_trx(path, skips):
    passed = failed = skipped = 0
    for result in ET.parse(path).getroot().iter(TRX_NS + "UnitTestResult"):
        outcome = result.get("outcome", "")
        if outcome == "Passed":
            passed += 1
        elif outcome in ("NotExecuted", "Inconclusive"):
            skipped += 1
            message = result.find(f"{TRX_NS}Output/{TRX_NS}ErrorInfo/{TRX_NS}Message")
            skips.append(message.text if message is not None else "")
        else:
            failed += 1
    return passed, failed, skipped


def count_junit(path, skips):
    passed = failed = skipped = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1
        elif "skipped" in tags:
            skipped += 1
            skips.append(case.find("skipped").get("message", ""))
        else:
            passed += 1
    return passed, failed, skipped


def print_optional_skips(skips_by_suite):
    """One block: per missing optional piece, the suites and tests it skipped and how to enable them."""
    pieces = {}
    for suite, reasons in sorted(skips_by_suite.items()):
        for reason in reasons:
            piece = optional_piece(reason)
            if piece is None:
                continue
            entry = pieces.setdefault(piece, {"suites": {}, "reason": reason})
            entry["suites"][suite] = entry["suites"].get(suite, 0) + 1
    if not pieces:
        return
    print("skipped for want of an optional piece (each enabled by the line after it):")
    for (what, enable), entry in pieces.items():
        suites = ", ".join(f"{suite} ({n})" for suite, n in entry["suites"].items())
        reason = " ".join(entry["reason"].split())
        print(f"  {what}: {suites} skipped; e.g. {reason[:160]}")
        print(f"    enable: {enable}")


def main(results_dir):
    root = pathlib.Path(results_dir)
    suites = {}
    skips = {}
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.endswith(".trx"):
            suite, counter = path.name[: -len(".trx")], count_trx
        elif path.name.endswith(".junit.xml"):
            suite, counter = path.name[: -len(".junit.xml")], count_junit
        else:
            continue
        totals = suites.setdefault(suite, [0, 0, 0])
        for i, n in enumerate(counter(path, skips.setdefault(suite, []))):
            totals[i] += n
    for path in sorted(root.glob("*.status")) if root.is_dir() else []:
        suite = path.name[: -len(".status")]
        status = path.read_text().strip()
        totals = suites.setdefault(suite, [0, 0, 0])
        if status != "0" and totals[1] == 0:
            print(f"{suite}: the suite exited with status {status} without a failed test: counted as 1 failure")
            totals[1] += 1
    grand = [0, 0, 0]
    for suite, (p, f, s) in sorted(suites.items()):
        print(f"{suite}: {p} passed, {f} failed, {s} skipped")
        grand = [grand[0] + p, grand[1] + f, grand[2] + s]
    print_optional_skips(skips)
    print(f"{grand[0]} passed, {grand[1]} failed, {grand[2]} skipped")
    return 0 if grand[1] == 0 and grand[0] > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/test-results"))
