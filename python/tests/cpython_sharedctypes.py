"""CPython's own shared-ctypes tests with sharedbridge substituted: the drop-in claim of
docs/api.md checked by the interpreter's own tests.

Run as a script by test_cpython_sharedctypes.py, once per start method:

    python cpython_sharedctypes.py fork|spawn|forkserver

Runs _TestValue, _TestArray, _TestSharedCTypes and the Condition tests that use Value
from the interpreter's test._test_multiprocessing (pyenv's CPython ships it, Debian's
python3 does not), in their "processes" flavour. Before that module is imported,
multiprocessing.sharedctypes' Value, Array, RawValue, RawArray, copy and synchronized
(which multiprocessing.Value... and every context's Value... call) and multiprocessing's
own names are replaced by sharedbridge's, counting each call. The substitution is done
at import, so spawn and forkserver children (which import this file as __mp_main__) run
with it too. Prints one JSON line: the unittest result and the calls counted in this
process, with the number of them that returned sharedbridge objects.
"""

import multiprocessing
import multiprocessing.sharedctypes as mpsc
import sys
import unittest

import sharedbridge as sb
from cpython_harness import counted, install, run_and_report

SUBSTITUTED = ("Value", "Array", "RawValue", "RawArray", "copy", "synchronized")
CALLS = {name: 0 for name in SUBSTITUTED}
SHARED = {name: 0 for name in SUBSTITUTED}


def _is_shared(obj):
    raw = obj.get_obj() if isinstance(obj, sb.SynchronizedBase) else obj
    return sb.segment_of(raw) is not None     # the object lives in a sharedbridge segment


for _name in SUBSTITUTED:
    setattr(mpsc, _name, counted(getattr(sb, _name), _name, CALLS, SHARED, _is_shared))
    if hasattr(multiprocessing, _name) and _name != "copy":
        setattr(multiprocessing, _name, getattr(mpsc, _name))

from test import _test_multiprocessing as tm  # noqa: E402  (after the substitution)

START_METHOD = sys.argv[1] if __name__ == "__main__" else None
install(globals(), START_METHOD)

CASES = {
    "WithProcessesTestValue": None,
    "WithProcessesTestArray": None,
    "WithProcessesTestSharedCTypes": None,
    "WithProcessesTestCondition": ("test_waitfor", "test_waitfor_timeout"),
}


def main():
    suite = unittest.TestSuite()
    loader = unittest.defaultTestLoader
    for cls_name, methods in CASES.items():
        cls = globals()[cls_name]
        if methods is None:
            suite.addTests(loader.loadTestsFromTestCase(cls))
        else:
            suite.addTests(cls(m) for m in methods)
    return run_and_report(
        suite, START_METHOD, calls=CALLS, shared=SHARED,
        mixin_value_is_ours=tm.ProcessesMixin.Value is mpsc.Value,
        module_value_is_ours=tm.Value is mpsc.Value and tm.copy is mpsc.copy)


if __name__ == "__main__":
    sys.exit(main())
