#!/usr/bin/env python3
"""Print one line per test suite and, last, the total line `N passed, N failed, N skipped`.

Reads every result file a suite script left in the results directory:
  <suite>.trx          VSTest TRX (dotnet test --logger trx)
  <suite>.junit.xml    JUnit XML (pytest --junitxml)
  <suite>.status       the suite script's exit status (one integer)
A suite whose script failed without recording any failed test (a build error,
a crash) counts as one failure, so a broken suite can never look green.
Exit status: 0 only if nothing failed and at least one test ran.
"""
import pathlib
import sys
import xml.etree.ElementTree as ET

TRX_NS = "{http://microsoft.com/schemas/VisualStudio/TeamTest/2010}"


def count_trx(path):
    passed = failed = skipped = 0
    for result in ET.parse(path).getroot().iter(TRX_NS + "UnitTestResult"):
        outcome = result.get("outcome", "")
        if outcome == "Passed":
            passed += 1
        elif outcome in ("NotExecuted", "Inconclusive"):
            skipped += 1
        else:
            failed += 1
    return passed, failed, skipped


def count_junit(path):
    passed = failed = skipped = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1
        elif "skipped" in tags:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def main(results_dir):
    root = pathlib.Path(results_dir)
    suites = {}
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.endswith(".trx"):
            suite, counter = path.name[: -len(".trx")], count_trx
        elif path.name.endswith(".junit.xml"):
            suite, counter = path.name[: -len(".junit.xml")], count_junit
        else:
            continue
        totals = suites.setdefault(suite, [0, 0, 0])
        for i, n in enumerate(counter(path)):
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
    print(f"{grand[0]} passed, {grand[1]} failed, {grand[2]} skipped")
    return 0 if grand[1] == 0 and grand[0] > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/test-results"))
