"""What the runs of CPython's own multiprocessing tests with sharedbridge substituted
share (cpython_sharedctypes.py, cpython_queues.py, cpython_pipes.py and their
test_cpython_*.py): the counted factories that prove the substitution, the installation of
the test classes, the runner that prints one JSON line, and the pytest side that runs a
script and checks that line."""

import importlib.util
import inspect
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    HAVE_CPYTHON_TESTS = importlib.util.find_spec("test._test_multiprocessing") is not None
except ImportError:
    HAVE_CPYTHON_TESTS = False

SKIP_REASON = (f"Python {sys.version.split()[0]} ({sys.executable}) does not ship CPython's "
               "test package (Debian moves it to libpython3.X-testsuite); pyenv's "
               "interpreters run this")


def counted(ours, name, calls, shared, is_shared):
    """A factory calling *ours*, counting the calls in calls[name] and, in shared[name],
    those whose result *is_shared* (lives in a sharedbridge segment)."""
    def factory(*args, **kwargs):
        obj = ours(*args, **kwargs)
        calls[name] += 1
        if is_shared(obj):
            shared[name] += 1
        return obj
    factory.__name__ = factory.__qualname__ = name
    return factory


def install(globs, start_method):
    """The "processes" flavour of every test class of test._test_multiprocessing, in the
    module namespace *globs*, at module level as CPython's test_multiprocessing_<method>
    modules do: children find the test classes (targets are their class methods) in
    __mp_main__."""
    from test import _test_multiprocessing as tm
    if "only_type" in inspect.signature(tm.install_tests_in_module_dict).parameters:
        tm.install_tests_in_module_dict(globs, start_method or "fork", only_type="processes")
    else:                               # 3.10: every flavour; only "processes" is run
        tm.install_tests_in_module_dict(globs, start_method or "fork")


def run_and_report(suite, start_method, **facts):
    """Run *suite*; print one JSON line (the result and *facts*); the exit status."""
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    print(json.dumps(dict({
        "start_method": start_method,
        "python": sys.version.split()[0],
        "tests_run": result.testsRun,
        "failures": [(str(t), tb) for t, tb in result.failures + result.errors],
        "skipped": [(str(t), why) for t, why in result.skipped],
    }, **facts)))
    return 0 if result.wasSuccessful() else 1


def run_all_but(globs, cases, excluded, start_method, **facts):
    """Run every test method of the classes named *cases* (in *globs*) except those named
    in *excluded*; the JSON line also says what ran and what was left out."""
    loader = unittest.defaultTestLoader
    run, left_out = [], []
    for cls_name in cases:
        cls = globs[cls_name]
        for method in loader.getTestCaseNames(cls):
            (left_out if method in excluded else run).append((cls, method))
    return run_and_report(unittest.TestSuite(cls(m) for cls, m in run), start_method,
                          ran=[f"{cls.__name__}.{m}" for cls, m in run],
                          excluded=[m for _, m in left_out], **facts)


def run_checked(script, method, min_tests, substituted, timeout=180, excluded=None):
    """Run *script* with *method*; check it passed, ran at least *min_tests* tests, skipped
    none, and that every name of *substituted* was called and gave sharedbridge objects.
    With *excluded* (a run_all_but script's left-out names): exactly those were left out
    and exactly *min_tests* ran, so that an exclusion cannot grow silently.
    Returns the JSON result."""
    from conftest import run_script
    proc = run_script(os.path.join(HERE, script), method, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no result line (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert not result["failures"], "\n".join(f"{t}:\n{tb}" for t, tb in result["failures"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["tests_run"] >= min_tests and not result["skipped"], result
    if excluded is not None:
        assert sorted(result["excluded"]) == sorted(excluded), result["excluded"]
        assert result["tests_run"] == min_tests, result["ran"]
    for name in substituted:
        assert result["calls"][name] > 0, (name, result)
        assert result["shared"][name] == result["calls"][name], (name, result)
    return result


def runs_on(expected_run, what):
    """The pytest marks of a test running a script whose exact count of tests per Python
    version is *expected_run*: skipped, with the reason, where the interpreter has no test
    package or a version not reviewed there."""
    import pytest
    version = sys.version.split()[0]

    def marks(test):
        test = pytest.mark.skipif(
            sys.version_info[:2] not in expected_run,
            reason=f"the {what} tests of Python {version} were not reviewed for "
            "substitution (3.10 to 3.13 are)")(test)
        return pytest.mark.skipif(not HAVE_CPYTHON_TESTS, reason=SKIP_REASON)(test)
    return marks
