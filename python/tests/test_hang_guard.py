"""The suites' hang guard (conftest.py at the repository root) and scripts/summarize.py: a hung
test fails alone with its name and stacks, its child processes are ended and the run goes on;
a run killed from outside still names the test that was running. Each case runs an inner
pytest with a 1 s limit in a subprocess, so nothing here can hang the suite."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).resolve().parents[2]

HANGING = '''
import os, subprocess, sys, time

def test_hangs(tmp_path_factory):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(os.environ["SBHANG_PID_FILE"], "w") as f:
        f.write(str(child.pid))
    child.wait()                      # never returns by itself

def test_after():
    assert True
'''


def _gone(pid, within=10):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            return True
        if state in (b"Z", b"X"):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def inner(pytester, monkeypatch, tmp_path):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.makepyfile(test_inner=HANGING)
    monkeypatch.setenv("SBHANG_PID_FILE", str(tmp_path / "pid"))
    monkeypatch.delenv("SB_TEST_TIMEOUT", raising=False)
    return tmp_path


def test_a_hung_test_fails_alone_with_its_name_and_stacks_and_its_child_is_ended(pytester, inner):
    results = inner / "results"
    run = pytester.runpytest_subprocess(
        "-o", "test_timeout=1", "-p", "no:cacheprovider",
        f"--junitxml={results / 'inner.junit.xml'}", timeout=60)
    run.assert_outcomes(passed=1, failed=1)
    out = run.stdout.str() + run.stderr.str()
    assert "test_inner.py::test_hangs: still running after the per-test limit of 1 s" in out
    assert "in test_hangs" in out                       # the stack of the hung test
    assert _gone(int((inner / "pid").read_text()))      # its child was ended too
    junit = (results / "inner.junit.xml").read_text()
    assert "Timeout: the test ran longer than the per-test limit of 1 s" in junit
    assert not (results / "inner.progress").exists()    # the JUnit file has it all
    summary = subprocess.run([sys.executable, str(ROOT / "scripts/summarize.py"), str(results)],
                             capture_output=True, text=True, timeout=60)
    assert summary.returncode == 1
    assert "inner: 1 passed, 1 failed, 0 skipped" in summary.stdout
    assert "FAILED test_inner::test_hangs: Failed: Timeout" in summary.stdout


def test_a_run_killed_from_outside_still_names_the_running_test(pytester, inner):
    # No per-test limit: the run hangs until `timeout -s ABRT` ends it, as the suite scripts
    # do; faulthandler prints the stacks, the progress file names the test. SIGALRM makes
    # `timeout` act as if its time were up (GNU coreutils), so the run is ended as soon as
    # the hung test is running instead of after a fixed time.
    results = inner / "results"
    cmd = ["timeout", "-s", "ABRT", "-k", "10", "60", sys.executable, "-m", "pytest",
           "-o", "test_timeout=0", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
           f"--junitxml={results / 'inner.junit.xml'}"]
    with subprocess.Popen(cmd, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}) as timer:
        pid_file = inner / "pid"
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and timer.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        timer.send_signal(signal.SIGALRM)
        out, err = timer.communicate(timeout=60)
    run = subprocess.CompletedProcess(cmd, timer.returncode, out, err)
    assert run.returncode == 124, run.stdout + run.stderr
    assert "Fatal Python error: Aborted" in run.stderr and "in test_hangs" in run.stderr
    assert _gone(int((inner / "pid").read_text()))
    (results / "inner.status").write_text("124\n")
    summary = subprocess.run([sys.executable, str(ROOT / "scripts/summarize.py"), str(results)],
                             capture_output=True, text=True, timeout=60)
    assert summary.returncode == 1
    assert "inner: 0 passed, 1 failed, 0 skipped" in summary.stdout
    assert "FAILED test_inner.py::test_hangs: was running when the suite was killed" \
        in summary.stdout
