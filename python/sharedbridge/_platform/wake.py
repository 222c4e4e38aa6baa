"""Spin, then sleep: the bounded adaptive spin on ``seq`` before FUTEX_WAIT
(docs/format.md section 10.3 "Spinning"; docs/wakeups-design.md).

The budget is process-wide: ``SHAREDBRIDGE_SPIN_US`` read once at import (unset: 200 us;
an integer clamped to 0..1000; 0: never spin; anything else warns and uses 50), then
``set_spin_budget(us)``. Nobody spins when this process may use only one CPU (affinity and
the cgroup v2 ``cpu.max`` quota): the spinner would keep the CPU its notifier needs.
Each object adapts its own budget (``Spinner``; the compiled WaitCore of _fastlock.c has
the same rule and constants in C). A spin holds no lock and writes nothing.
The compiled spin (_fastlock.spin) releases the GIL; the ctypes fallback reads the word
from Python with the GIL held, so it spins only a quarter of the budget.
"""

import math
import os
import time
import warnings

from .lock_core import accel

# The default covers a wake-up of an idle CPU of a virtual machine (67 us median, 203 us p99
# measured on a Firecracker VM, docs/wakeups-design.md section 9): a shorter budget never gets
# both sides of a ping-pong spinning.
DEFAULT_US, MAX_US = 200, 1000
FAILS_OFF = 4                   # spins in a row ending in a sleep that turn spinning off
RETRY_FIRST, RETRY_MAX = 16, 1024   # waits without spinning before trying the budget again

_now = time.monotonic_ns


def _budget_from_env(value):
    if value is None:
        return DEFAULT_US
    try:
        us = int(value.strip())
    except ValueError:
        warnings.warn(f"SHAREDBRIDGE_SPIN_US={value!r} is not a whole number of microseconds: "
                      f"the default spin budget of {DEFAULT_US} us is used (set 0 to turn "
                      "spinning off)", RuntimeWarning, stacklevel=2)
        return DEFAULT_US
    return min(max(us, 0), MAX_US)


def _cgroup_cpus():
    """The cgroup v2 ``cpu.max`` quota of this process in CPUs rounded up, or None."""
    try:
        with open("/proc/self/cgroup") as f:
            path = next(line[3:].strip() for line in f if line.startswith("0::"))
        with open(f"/sys/fs/cgroup{path}/cpu.max") as f:
            quota, period = f.read().split()[:2]
    except (OSError, StopIteration, ValueError):
        return None
    if quota == "max":
        return None
    return math.ceil(int(quota) / int(period))


def usable_cpus():
    """How many CPUs this process may run on at the same time."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return min(cpus, quota) if quota else cpus


def _publish():
    # The compiled waits (_fastlock.WaitCore) spin with the same process-wide budget.
    if accel is not None:
        accel.set_spin_ns(_budget_ns)


_budget_us = _budget_from_env(os.environ.get("SHAREDBRIDGE_SPIN_US"))
_budget_ns = _budget_us * 1000 if usable_cpus() > 1 else 0
_publish()


def set_spin_budget(us):
    """Set how long a waiter may spin before it sleeps, in microseconds (0..1000, 0:
    never spin), for this process; ``SHAREDBRIDGE_SPIN_US`` sets it at startup. Ignored
    (no spin) when this process may use only one CPU."""
    global _budget_us, _budget_ns
    if isinstance(us, bool) or not isinstance(us, int):
        raise TypeError(f"set_spin_budget(us): us must be an int number of microseconds, "
                        f"not {type(us).__name__}")
    if not 0 <= us <= MAX_US:
        raise ValueError(f"set_spin_budget({us}): the spin budget must be 0 to {MAX_US} "
                         "microseconds (0 turns spinning off)")
    _budget_us = us
    _budget_ns = us * 1000 if usable_cpus() > 1 else 0
    _publish()


def get_spin_budget():
    """The spin budget set for this process, in microseconds (0: spinning is off)."""
    return _budget_us


def _py_spin(words, index, value, budget_ns):
    """The ctypes-path spin: a quarter of the budget (the GIL is held), the clock every
    64 reads; the nanoseconds spent when the word changed, -1 when the budget ran out."""
    start = _now()
    end = start + budget_ns // 4
    while True:
        for _ in range(64):
            if words[index] != value:
                return _now() - start
        if _now() >= end:
            return -1


class Spinner:
    """The adaptive spin of one object (docs/format.md section 10.3, "Spinning"): every
    wait spins for the whole process budget, until FAILS_OFF spins in a row ended in a
    sleep (nobody answers within the budget: a waiter that is never woken soon, or a
    notifier that shares this CPU); the object then sleeps at once for the next 16 waits,
    then tries the budget again; each failed retry doubles that interval (up to 1024), and
    one spin that succeeds resets it. A budget scaled to the last successful spin was
    tried first and measured worse: in a ping-pong the answer time jitters around the
    scaled budget, each miss halved it, and it collapsed to no spin at all."""

    __slots__ = ("_fails", "_skip", "_interval")

    def __init__(self):
        self._fails = 0         # spins in a row that ended in a sleep
        self._skip = 0          # waits left that sleep at once
        self._interval = RETRY_FIRST

    def budget(self):
        """The nanoseconds the next wait may spin, 0: none (it sleeps at once). Decided
        before the waiter releases the lock: one that will not spin registers then."""
        if not _budget_ns:
            return 0
        if self._skip:
            self._skip -= 1
            return 0
        return _budget_ns

    def spin(self, words, index, address, value, ns):
        """Spin at most *ns* (from budget()) while ``words[index]`` (at *address*) equals
        *value*: True when it changed, False when the caller must sleep."""
        if accel is not None:
            spent = accel.spin(address, value, ns)
        else:
            spent = _py_spin(words, index, value, ns)
        if spent >= 0:
            self._fails = 0
            self._interval = RETRY_FIRST
            return True
        self._fails += 1
        if self._fails >= FAILS_OFF:
            self._skip = self._interval
            self._interval = min(2 * self._interval, RETRY_MAX)
            self._fails = FAILS_OFF - 1     # a failed retry turns it off again at once
        return False
