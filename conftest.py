"""The hang guard of every pytest suite run from this repository (python/tests,
python/tests_dotnet, tests/install, tests/bench): a hung test names itself, and the run goes on.

- **Per-test limit** (ini ``test_timeout``, seconds, default 150 in pyproject.toml; the
  environment variable ``SB_TEST_TIMEOUT`` overrides it; 0 turns it off). It covers setup,
  call and teardown together. When it is exceeded, a SIGALRM handler (no thread: a thread
  in the pytest process would make every fork in a test a fork of a multi-threaded
  process) writes the test's name and the stacks of every thread to the terminal, ends the
  processes the test started (SIGABRT first, so that Python children with
  PYTHONFAULTHANDLER=1 print their stacks, then SIGKILL), and raises ``Failed`` in the
  test: that test fails with its name, the limit and the stacks in its report and in the
  JUnit XML, and the next test runs. The timer repeats every 5 s after the limit, because
  a Python signal handler runs only between bytecodes of the main thread: a signal that
  lands just before a blocking call (``sem_wait``, ``read``) leaves that call blocked, and
  the next one interrupts it. A test that sets its own ITIMER_REAL or SIGALRM handler
  replaces the guard for the rest of its phase; it is armed again at the next phase.
- **Progress file**: with ``--junitxml=DIR/SUITE.junit.xml``, each test's start and outcome
  are appended to ``DIR/SUITE.progress`` as they happen. pytest writes the JUnit file only
  at the end, so when a run is killed (the suite scripts' ``timeout``) the progress file
  still holds what passed and which test was running: scripts/summarize.py reports that
  test as failed by name. It is removed when the JUnit file is written.
- A stale JUnit file of an earlier run is removed at the start, so a killed run never
  reports the previous run's results.

When the main thread is stuck in C code the handler cannot run at all; the suite scripts
then end the run with ``timeout -s ABRT``, and pytest's faulthandler prints every thread's
stack on SIGABRT.
"""

import faulthandler
import os
import signal
import sys
import tempfile
import time

import pytest

_REPEAT = 5.0          # seconds between alarms once the limit is exceeded
_GIVE_UP = 60.0        # then the process ends: the test swallows every Failed raised in it
_ABRT_GRACE = 1.0      # seconds a child gets to print its stacks before SIGKILL
_TEARDOWN_AFTER_TIMEOUT = 30.0   # seconds the teardown of a test failed for its limit gets


def pytest_addoption(parser):
    parser.addini("test_timeout", "seconds a test (setup, call and teardown together) may run "
                  "before it fails with its stacks printed and its child processes ended; "
                  "0: no limit (conftest.py at the repository root)", default="150")


def _children_map():
    """pid -> parent pid of every process (Linux /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1:
            parents[int(entry)] = int(fields[1])
    return parents


def descendants(pid):
    """Every living descendant of *pid* (children first found, then theirs)."""
    parents = _children_map()
    found, frontier = [], {pid}
    while frontier:
        level = [p for p, pp in parents.items() if pp in frontier and p not in found]
        found += level
        frontier = set(level)
    return found


def end_processes(pids):
    """SIGABRT one process at a time (Python children with PYTHONFAULTHANDLER=1 print their
    stacks, which must not interleave), a short grace each, then SIGKILL for any left."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGABRT)
        except OSError:
            continue
        deadline = time.monotonic() + _ABRT_GRACE
        while not _zombie(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


_NOISE = ("/_pytest/", "/pluggy/", "/pytest/__main__.py", "<frozen runpy>", __file__)


def _without_pytest_frames(stacks):
    """faulthandler's dump without the frames of pytest's own machinery and of this file."""
    return "".join(line for line in stacks.splitlines(True)
                   if not (line.startswith("  File ") and any(n in line for n in _NOISE)))


def _stacks():
    with tempfile.TemporaryFile("w+") as f:
        faulthandler.dump_traceback(f, all_threads=True)
        f.seek(0)
        return _without_pytest_frames(f.read())


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2:][:1] in (b"Z", b"X")


class HangGuard:
    def __init__(self, config):
        raw = os.environ.get("SB_TEST_TIMEOUT") or config.getini("test_timeout") or "0"
        self.limit = float(raw)
        self.config = config
        self.junit = getattr(config.option, "xmlpath", None)
        self.progress = None
        if self.junit:
            base = self.junit[:-len(".junit.xml")] if self.junit.endswith(".junit.xml") else self.junit
            self.progress = base + ".progress"
        self.item = None
        self.deadline = None
        self.fired = 0
        self.before = set()
        self.outcome = None
        self.stacks = ""

    # -- the progress file -----------------------------------------------------------------

    def _record(self, word, nodeid):
        if not self.progress:
            return
        with open(self.progress, "a") as f:
            f.write(f"{word} {nodeid}\n")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session):
        if self.junit and os.path.exists(self.junit):
            os.unlink(self.junit)
        if self.progress:
            os.makedirs(os.path.dirname(os.path.abspath(self.progress)), exist_ok=True)
            open(self.progress, "w").close()

    def pytest_runtest_logstart(self, nodeid, location):
        self.outcome = "passed"
        self._record("start", nodeid)

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.outcome = "failed"
        elif report.skipped and self.outcome == "passed":
            self.outcome = "skipped"

    def pytest_runtest_logfinish(self, nodeid, location):
        self._record(self.outcome or "passed", nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config):
        if self.progress and self.junit and os.path.exists(self.junit) \
                and os.path.exists(self.progress):
            os.unlink(self.progress)

    # -- the per-test limit ----------------------------------------------------------------

    def _arm(self):
        if self.deadline is None:
            return
        signal.signal(signal.SIGALRM, self._on_alarm)
        left = self.deadline - time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, max(left, 0.01), _REPEAT)

    def _disarm(self):
        if self.limit > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        if self.limit <= 0:
            yield
            return
        self.item, self.fired = item, 0
        self.before = set(descendants(os.getpid()))
        self.deadline = time.monotonic() + self.limit
        old = signal.getsignal(signal.SIGALRM)
        try:
            yield
        finally:
            self._disarm()
            self.deadline = self.item = None
            signal.signal(signal.SIGALRM, old if old is not None else signal.SIG_DFL)

    # Armed only while a phase runs, never in pytest's own code between phases (a Failed
    # raised there would be an internal error).
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        self._arm()
        try:
            yield
        finally:
            self._disarm()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        self._arm()
        try:
            yield
        finally:
            self._disarm()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item, nextitem):
        if self.fired and self.deadline is not None:
            # The test was failed for its limit: its fixtures still get their cleanup
            # (segments, processes), with an allowance of their own.
            self.fired, self.deadline = 0, time.monotonic() + _TEARDOWN_AFTER_TIMEOUT
        self._arm()
        try:
            yield
        finally:
            self._disarm()

    def _terminal(self, text):
        capman = self.config.pluginmanager.getplugin("capturemanager")
        if capman is not None:
            with capman.global_and_fixture_disabled():
                sys.stderr.write(text)
                sys.stderr.flush()
        else:
            sys.stderr.write(text)
            sys.stderr.flush()

    def _on_alarm(self, signum, frame):
        item = self.item
        if item is None or self.deadline is None or time.monotonic() < self.deadline:
            return
        self.fired += 1
        started = [p for p in descendants(os.getpid()) if p not in self.before]
        if self.fired == 1:
            self.stacks = _stacks()
            text = (f"\n+++ {item.nodeid}: still running after the per-test limit of "
                    f"{self.limit:g} s (test_timeout). Stacks of every thread:\n{self.stacks}"
                    f"+++ failing it (and ending the processes it started: {started or 'none'}); "
                    "the run goes on\n")
            self._terminal(text)
            self._record("timeout", item.nodeid)
        end_processes(started)
        if time.monotonic() > self.deadline + _GIVE_UP:
            self._record("killed", item.nodeid)
            self._terminal(f"\n+++ {item.nodeid}: still running {_GIVE_UP:g} s after its limit, "
                           f"catching every Failed raised in it: the run ends here. Stacks:\n"
                           f"{_stacks()}")
            os._exit(3)
        __tracebackhide__ = True
        ended = f"; the {len(started)} process(es) it started were ended" if started else ""
        pytest.fail(f"Timeout: the test ran longer than the per-test limit of "
                    f"{self.limit:g} s (test_timeout){ended}. Stacks of every thread at the "
                    f"limit:\n{self.stacks}", pytrace=True)


def pytest_configure(config):
    if hasattr(signal, "SIGALRM") and os.path.isdir("/proc"):
        config.pluginmanager.register(HangGuard(config), "sb_hangguard")
