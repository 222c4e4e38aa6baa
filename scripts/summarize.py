#!/usr/bin/env python3
"""Print one line per test suite and, last, the total line `N passed, N failed, N skipped`.

Reads every result file a suite script left in the results directory:
  <suite>.trx          VSTest TRX (dotnet test --logger trx)
  <suite>.junit.xml    JUnit XML (pytest --junitxml)
  <suite>.progress     each pytest test's start and outcome as it happened (conftest.py at
                       the repository root); read when the JUnit file is missing or cut short:
                       the run was killed (the suite scripts' `timeout`), and the test that was
                       running is a failure named here
  <suite>-blame/       `dotnet test --blame-hang` output: Sequence_*.xml lists the tests the
                       test host ran, a test not Completed is the one that hung (a failure
                       named here), *_hangdump.dmp its dump; the run stopped there
  <suite>.status       the suite script's exit status (one integer)
Every failed test is listed by name under its suite's line (a test that hit its time limit
says so in its message). A suite whose script failed without recording any failed test (a
build error, a crash) counts as one failure, so a broken suite can never look green.
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


MAX_NAMED = 20          # failed tests listed per suite


def _first_line(text):
    text = (text or "").strip()
    return text.splitlines()[0][:160] if text else ""


def count_trx(path, skips):
    passed = failed = skipped = 0
    names = []
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
            message = result.find(f"{TRX_NS}Output/{TRX_NS}ErrorInfo/{TRX_NS}Message")
            names.append((result.get("testName", "?"),
                          _first_line(message.text if message is not None else outcome)))
    return passed, failed, skipped, names


def count_junit(path, skips):
    passed = failed = skipped = 0
    names = []
    for case in ET.parse(path).getroot().iter("testcase"):
        bad = [child for child in case if child.tag in ("failure", "error")]
        if bad:
            failed += 1
            names.append((f"{case.get('classname', '')}::{case.get('name', '?')}",
                          _first_line(bad[0].get("message") or bad[0].text)))
        elif any(child.tag == "skipped" for child in case):
            skipped += 1
            skips.append(case.find("skipped").get("message", ""))
        else:
            passed += 1
    return passed, failed, skipped, names


def trx_run_errors(path):
    """The run-level errors of a TRX file (an aborted run: its test host crashed or was ended)."""
    return [_first_line(text.text) for info in ET.parse(path).getroot().iter(TRX_NS + "RunInfo")
            if info.get("outcome") == "Error" for text in info.iter(TRX_NS + "Text")]


def count_blame(directory):
    """The tests `--blame-hang` found still running when it ended the test host, with the
    dumps it wrote."""
    hung = {}
    for seq in sorted(directory.rglob("Sequence_*.xml")):
        try:
            tests = ET.parse(seq).getroot().iter("Test")
        except ET.ParseError:
            continue
        for test in tests:
            if test.get("Completed") == "False":
                hung.setdefault(test.get("Name", "?"), seq.parent)
    names = []
    for name, folder in hung.items():
        dumps = sorted(str(d) for d in folder.glob("*.dmp"))
        names.append((name, "hung: --blame-hang ended the run"
                      + (f"; dump of its stacks: {dumps[0]}" if dumps else "")))
    return names


def count_progress(path):
    """A killed pytest run: the outcomes it recorded, and the test that was running
    (started, never finished) as a failure."""
    passed = failed = skipped = 0
    names, running, timed_out = [], None, set()
    for line in path.read_text().splitlines():
        word, _, nodeid = line.partition(" ")
        if word == "start":
            running = nodeid
        elif word == "timeout":
            timed_out.add(nodeid)
        elif word in ("passed", "failed", "skipped"):
            running = None
            if word == "passed":
                passed += 1
            elif word == "skipped":
                skipped += 1
            else:
                failed += 1
                names.append((nodeid, "hit the per-test time limit" if nodeid in timed_out
                              else "failed (details were in the JUnit file the killed run never wrote)"))
    if running is not None:
        failed += 1
        names.append((running, "was running when the suite was killed (hung): its stacks are in "
                      "the log above, from faulthandler"))
    return passed, failed, skipped, names


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
    suites, named, notes, skips = {}, {}, {}, {}
    paths = sorted(root.iterdir()) if root.is_dir() else []
    for path in paths:
        if path.name.endswith(".trx"):
            suite, counter = path.name[: -len(".trx")], count_trx
        elif path.name.endswith(".junit.xml"):
            suite, counter = path.name[: -len(".junit.xml")], count_junit
        else:
            continue
        try:
            counts = counter(path, skips.setdefault(suite, []))
        except ET.ParseError as e:         # cut short: the run was killed while writing it
            notes.setdefault(suite, []).append(f"{path.name} is unreadable ({e})")
            continue
        totals = suites.setdefault(suite, [0, 0, 0])
        for i, n in enumerate(counts[:3]):
            totals[i] += n
        named.setdefault(suite, []).extend(counts[3])
        if counter is count_trx:
            notes.setdefault(suite, []).extend(trx_run_errors(path))
    for path in paths:
        if path.is_dir() and path.name.endswith("-blame"):
            suite = path.name[: -len("-blame")]
            hung = count_blame(path)
            suites.setdefault(suite, [0, 0, 0])[1] += len(hung)
            named.setdefault(suite, []).extend(hung)
    for path in paths:
        if not path.name.endswith(".progress"):
            continue
        suite = path.name[: -len(".progress")]
        if suite in suites:              # the JUnit file was written: it has everything
            continue
        p, f, s, names = count_progress(path)
        notes.setdefault(suite, []).append(
            f"no JUnit file (the run was killed): {p + f + s} results from {path.name}")
        suites[suite] = [p, f, s]
        named.setdefault(suite, []).extend(names)
    for path in sorted(root.glob("*.status")) if root.is_dir() else []:
        suite = path.name[: -len(".status")]
        status = path.read_text().strip()
        totals = suites.setdefault(suite, [0, 0, 0])
        if status in ("124", "137"):
            notes.setdefault(suite, []).append(f"the suite hit its time limit (status {status})")
        if status != "0" and totals[1] == 0:
            print(f"{suite}: the suite exited with status {status} without a failed test: counted as 1 failure")
            totals[1] += 1
    grand = [0, 0, 0]
    for suite, (p, f, s) in sorted(suites.items()):
        print(f"{suite}: {p} passed, {f} failed, {s} skipped")
        for note in notes.get(suite, []):
            print(f"    ({note})")
        names = named.get(suite, [])
        for name, why in names[:MAX_NAMED]:
            print(f"    FAILED {name}" + (f": {why}" if why else ""))
        if len(names) > MAX_NAMED:
            print(f"    ... and {len(names) - MAX_NAMED} more failed")
        grand = [grand[0] + p, grand[1] + f, grand[2] + s]
    print_optional_skips(skips)
    print(f"{grand[0]} passed, {grand[1]} failed, {grand[2]} skipped")
    return 0 if grand[1] == 0 and grand[0] > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/test-results"))
