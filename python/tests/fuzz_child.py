"""Child process of the header fuzzer (test_fuzz.py): opens the segments it is told to
and reports how each attempt ended.

Protocol: one segment name per line on stdin; for each, one line on stdout:
``<outcome>\t<detail>`` where outcome is ``ok``, the name of a sharedbridge exception
class, or ``foreign:<class>`` for any other exception (detail: its message and
traceback, escaped onto one line). A crash (signal, abort) or a hang is seen by the
parent. The child only reads: it never writes data, never unlinks.
"""

import ctypes
import pickle
import sys
import traceback
import warnings

import sharedbridge as sb

ATTACH_TIMEOUT = 0.05     # state 0 / size 0 cases end as SegmentNotReadyError quickly


def read_everything(raw):
    """Read every element the way a user would (the reads docs/format.md section 3.4 makes checked)."""
    if isinstance(raw, ctypes.Array):
        raw[:]
        if len(raw):
            raw[0], raw[-1]
        for item in raw:
            if isinstance(item, ctypes.Structure):
                read_struct(item)
        if raw._type_ in (ctypes.c_char, ctypes.c_wchar):
            raw.value
    elif isinstance(raw, ctypes.Structure):
        read_struct(raw)
    else:
        raw.value
    bytes(memoryview(raw).cast("B"))


def read_struct(s):
    for klass in reversed(type(s).__mro__):
        for spec in klass.__dict__.get("_fields_", ()):
            value = getattr(s, spec[0])
            if isinstance(value, (ctypes.Structure, ctypes.Array)):
                read_everything(value)


def exercise(obj):
    if isinstance(obj, (sb.Lock, sb.RLock)):
        if obj.acquire(timeout=1):
            obj.release()
        obj.recoveries
    elif isinstance(obj, sb.SharedNDArray):
        obj.memoryview().tolist()
        obj.shape, obj.size, obj.nbytes
        if obj.typecode != "T":
            obj.__dlpack__()
    elif isinstance(obj, sb.SynchronizedBase):
        if obj.acquire(timeout=1):
            try:
                read_everything(obj.get_obj())
            finally:
                obj.release()
        if isinstance(obj, sb.SynchronizedArray) and len(obj):
            obj[0]
        elif isinstance(obj, sb.Synchronized):
            obj.value
    else:
        read_everything(obj)
    sb.header_of(obj)
    pickle.loads(pickle.dumps(obj))


def one(name):
    try:
        obj = sb.attach(name, timeout=ATTACH_TIMEOUT)
        exercise(obj)
        del obj
        return "ok", ""
    except sb.SharedBridgeError as e:
        return type(e).__name__, str(e)
    except Exception as e:
        return f"foreign:{type(e).__name__}", traceback.format_exc()


def main():
    warnings.simplefilter("ignore")          # LockRecoveredWarning after a killed child
    for line in sys.stdin:
        outcome, detail = one(line.strip())
        detail = detail.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", " ")
        sys.stdout.write(f"{outcome}\t{detail}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
