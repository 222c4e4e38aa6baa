"""The Python side of the queue scenarios (SharedBridge.CrossTests/QueueTests.cs, docs/format.md
section 11); CSharpDriver/QueueWorkers.cs implements the same workers with the same output.

Messages of every type (queue/messages.json) are compared through a canonical text both drivers
produce the same way (README.md's, plus: a scalar or array element of typecode f or d as the
d-hex of its value as a double, text as "s" + the hex of its UTF-8 bytes, an array as
"shape=[..];" + its elements in C order). The accounting workers exchange 64-byte bytes messages
(u64 producer id, u64 sequence, filler: the C peer bench/c/queue_peer.c's format) and record what
they did in memory-mapped files, so that the record survives a SIGKILL.
"""
import ctypes
import json
import math
import mmap
import os
import pickle
import queue as _queue
import random
import signal
import struct
import sys
import time

import cross_vectors as V
import sharedbridge as sb

HERE = os.path.dirname(os.path.abspath(__file__))
LONG = 20.0
_ID_SEQ = struct.Struct("<QQ")


def _say(obj):
    print(obj if isinstance(obj, str) else json.dumps(obj), flush=True)


def load_messages(path=None):
    with open(path or os.path.join(HERE, "queue", "messages.json"), encoding="ascii") as f:
        return json.load(f)["messages"]


# ---- canonical text ------------------------------------------------------------------------

def canon_item(typecode, value):
    """A scalar or array element: floats widened to double (a Python reader has no float32)."""
    if typecode in "fd":
        if isinstance(value, str):
            value = V.SPECIAL_FLOATS[value]
        value = float(value)
        if typecode == "f" and not math.isnan(value):
            value = struct.unpack("<f", struct.pack("<f", value))[0]
        return "nan" if math.isnan(value) else "d" + struct.pack(">d", value).hex()
    if typecode == "c":
        raw = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        return "x" + raw.hex()
    if typecode == "u" and not isinstance(value, str):
        value = chr(int(value))
    return V.canon_scalar(typecode, value)


def _np_plain(spec, item):
    """A numpy structured element as the nested lists cross_vectors.canon_struct takes."""
    out = []
    for f in spec["fields"]:
        v = item[f["name"]]
        if f["type"] == "T":
            v = _np_plain(f["struct"], v)
        elif "count" in f and f["type"] != "c":
            v = list(v)
        out.append(v)
    return out


def canon_expected(m):
    """The canonical text of a messages.json entry (what every reader must print)."""
    t = m["type"]
    if t == "bytes":
        return "x" + m["hex"]
    if t == "text":
        return "s" + m["value"].encode("utf-8").hex()
    if t == "scalar":
        return canon_item(m["typecode"], m["value"])
    if t == "record":
        return V.canon_struct(m["struct"], m["value"])
    if t == "array":
        if m["typecode"] == "T":
            items = [V.canon_struct(m["struct"], v) for v in m["values"]]
        else:
            items = [canon_item(m["typecode"], v) for v in m["values"]]
        return "shape=%s;%s" % (json.dumps(m["shape"], separators=(",", ":")), ",".join(items))
    if t == "pickle":
        return "py:" + _canon_py(_pickle_object(m))
    raise ValueError(t)


def canon_python(m):
    """What a Python reader prints for the entry: canon_expected, except that a 'u' scalar is
    received as a one-character str (docs/api.md, "Queue messages")."""
    if m["type"] == "scalar" and m["typecode"] == "u":
        return "s" + m["value"].encode("utf-8").hex()
    return canon_expected(m)


def _canon_py(obj):
    import numpy as np

    def plain(o):
        if isinstance(o, np.ndarray):
            return {"ndarray": str(o.dtype), "shape": list(o.shape), "items": [plain(x) for x in o.reshape(-1).tolist()]}
        if isinstance(o, dict):
            return {k: plain(v) for k, v in sorted(o.items())}
        if isinstance(o, (list, tuple)):
            return [plain(x) for x in o]
        if isinstance(o, float):
            return canon_item("d", o)
        return o
    return json.dumps(plain(obj), sort_keys=True, separators=(",", ":"))


def _pickle_object(m):
    import numpy
    return eval(m["python"], {"numpy": numpy})  # the suite's own table, not user input


def message_object(m):
    """The Python object a sender puts for a messages.json entry."""
    import numpy as np
    t = m["type"]
    if t == "bytes":
        return bytes.fromhex(m["hex"])
    if t == "text":
        return m["value"]
    if t == "scalar":
        return sb.scalar(m["typecode"], V.py_scalar(m["typecode"], m["value"]))
    if t == "record":
        return V.struct_type(m["struct"])(*V.py_struct(m["struct"], m["value"]))
    if t == "array":
        if m["typecode"] == "T":
            cls = V.struct_type(m["struct"])
            items = [cls(*V.py_struct(m["struct"], v)) for v in m["values"]]
            arr = np.ctypeslib.as_array((cls * len(items))(*items)) if items else None
            return np.ascontiguousarray(arr).reshape(m["shape"])
        from sharedbridge._format.typecodes import TYPECODE_DTYPE
        values = [V.py_scalar(m["typecode"], v) for v in m["values"]]
        return np.array(values, dtype=TYPECODE_DTYPE[m["typecode"]]).reshape(m["shape"])
    if t == "pickle":
        return _pickle_object(m)
    raise ValueError(t)


def message_data(m):
    """The exact data bytes (section 11.4) of the entry as this library encodes it."""
    from sharedbridge._objects import queue_messages as C
    e = C.encode(message_object(m))
    out = bytearray(e.data_length)
    for part, off in zip(e.parts, e.offsets):
        mv = memoryview(part).cast("B")
        out[off:off + len(mv)] = mv
    return e, bytes(out)


def canon_received(obj):
    """(canonical text, a description of the Python type) of a received object."""
    import numpy as np
    if isinstance(obj, bytes):
        return "x" + obj.hex(), "bytes"
    if isinstance(obj, str):
        return "s" + obj.encode("utf-8").hex(), "str"
    if isinstance(obj, bool):
        return canon_item("?", obj), "bool"
    if isinstance(obj, int):
        return str(obj), "int"
    if isinstance(obj, float):
        return canon_item("d", obj), "float"
    if isinstance(obj, ctypes.Structure):
        spec = _spec_of_ctypes(type(obj))
        return V.canon_struct(spec, V.ctypes_to_plain(spec, obj)), "struct:" + type(obj).__name__
    if isinstance(obj, np.ndarray):
        shape = "shape=%s;" % json.dumps(list(obj.shape), separators=(",", ":"))
        flat = obj.reshape(-1)
        if obj.dtype.names:
            spec = _spec_of_dtype(obj.dtype)
            items = [V.canon_struct(spec, _np_plain(spec, x)) for x in flat]
        else:
            tc = {"b": "?", "i": "q", "u": "Q", "f": "d", "S": "c", "U": "u"}[obj.dtype.kind]
            items = [canon_item(tc, x.item() if hasattr(x, "item") else x) for x in flat]
        return shape + ",".join(items), "ndarray:" + obj.dtype.str
    return "py:" + _canon_py(obj), "object:" + type(obj).__name__


_CT_CODE = {ctypes.c_char: "c", ctypes.c_wchar: "u", ctypes.c_byte: "b", ctypes.c_ubyte: "B",
            ctypes.c_short: "h", ctypes.c_ushort: "H", ctypes.c_int: "i", ctypes.c_uint: "I",
            ctypes.c_longlong: "q", ctypes.c_ulonglong: "Q", ctypes.c_float: "f",
            ctypes.c_double: "d", ctypes.c_bool: "?"}


def _spec_of_ctypes(cls):
    fields = []
    for name, t in cls._fields_:
        f = {"name": name}
        if issubclass(t, ctypes.Array):
            f["count"] = t._length_
            t = t._type_
        if isinstance(t, type) and issubclass(t, ctypes.Structure):
            f["type"], f["struct"] = "T", _spec_of_ctypes(t)
        else:
            f["type"] = _CT_CODE[t]
        fields.append(f)
    return {"name": cls.__name__, "fields": fields}


def _spec_of_dtype(dt):
    fields = []
    for name in dt.names:
        sub = dt.fields[name][0]
        f = {"name": name}
        if sub.subdtype is not None:
            base, shape = sub.subdtype
            f["count"] = int(shape[0])
            sub = base
        if sub.names:
            f["type"], f["struct"] = "T", _spec_of_dtype(sub)
        elif sub.kind == "S":
            f["type"], f["count"] = "c", sub.itemsize
        else:
            f["type"] = {"b": "?", "i": "q", "u": "Q", "f": "f" if sub.itemsize == 4 else "d", "U": "u"}[sub.kind]
        fields.append(f)
    return {"name": "", "fields": fields}


# ---- workers: message types -----------------------------------------------------------------

def q_send_types(name, messages_path, which="all"):
    """Puts every entry of MESSAGES_PATH (queue/messages.json; which = all, or nopickle) in order;
    prints what it sent."""
    q = sb.attach(name)
    sent = []
    for m in load_messages(messages_path):
        if m["type"] == "pickle" and which == "nopickle":
            continue
        _, data = message_data(m)
        q.put(message_object(m), timeout=LONG)
        sent.append({"id": m["id"], "canon": canon_expected(m), "py_canon": canon_python(m),
                     "data": data.hex()})
    _say({"sent": sent})
    return 0


def q_recv_types(name, count):
    """Gets COUNT messages; prints the canonical text and Python type of each."""
    q = sb.attach(name)
    got = []
    for _ in range(int(count)):
        try:
            obj = q.get(timeout=LONG)
        except _queue.Empty:
            got.append({"error": "empty"})
            break
        except sb.SharedBridgeError as e:
            got.append({"error": type(e).__name__ + ": " + str(e)})
            continue
        canon, kind = canon_received(obj)
        got.append({"canon": canon, "kind": kind})
    _say({"received": got})
    return 0


# ---- workers: accounting --------------------------------------------------------------------

class Ledger:
    """A memory-mapped file of one byte per (producer, sequence) (consumers: how many times it was
    received) or of one u64 per producer (producers: how many were committed), so that what a
    process did survives its SIGKILL."""

    def __init__(self, path, size):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)


def q_produce(name, producer_id, count, size, progress_path, batch="256"):
    """Puts COUNT bytes messages of SIZE bytes (id, sequence, filler) with put_many in batches of
    BATCH; after each batch stores the number committed at PROGRESS_PATH (one u64)."""
    q = sb.attach(name)
    pid, count, size, batch = int(producer_id), int(count), int(size), int(batch)
    progress = Ledger(progress_path, 8).map
    filler = bytes(size - 16)
    t0 = time.perf_counter()
    seq = 0
    while seq < count:
        n = min(batch, count - seq)
        q.put_many([_ID_SEQ.pack(pid, s) + filler for s in range(seq, seq + n)], timeout=60)
        seq += n
        progress[0:8] = seq.to_bytes(8, "little")
    _say({"produced": count, "seconds": time.perf_counter() - t0})
    return 0


def q_consume(name, ledger_path, producers, per_producer, batch="256"):
    """Gets until the queue is completed and drained, or until a b"stop" message (get_many of
    BATCH); marks every message in the ledger (one byte per producer x sequence) and checks FIFO
    per producer in its own stream."""
    q = sb.attach(name)
    producers, per, batch = int(producers), int(per_producer), int(batch)
    ledger = Ledger(ledger_path, producers * per).map
    last = [-1] * producers
    got = fifo = foreign = 0
    unpack = _ID_SEQ.unpack_from
    t0 = time.perf_counter()
    while True:
        try:
            msgs = q.get_many(batch, timeout=60)
        except sb.QueueCompleted:
            break
        except _queue.Empty:
            _say({"stuck": got})
            return 1
        stop = False
        for m in msgs:
            if m == b"stop":
                stop = True
                got -= 1
                continue
            if len(m) < 16:
                foreign += 1
                continue
            p, s = unpack(m)
            if p >= producers or s >= per:
                foreign += 1
                continue
            if s <= last[p]:
                fifo += 1
            last[p] = s
            i = p * per + s
            ledger[i] = min(ledger[i] + 1, 255)
        got += len(msgs)
        if stop:
            break
    _say({"consumed": got, "fifo_errors": fifo, "foreign": foreign,
          "seconds": time.perf_counter() - t0})
    return 0


def q_roundtrip(name, ms):
    """The final check of the crash tests: one put and one get, each within MS ms."""
    q = sb.attach(name)
    token = b"roundtrip-%d" % os.getpid()
    try:
        q.put(token, timeout=int(ms) / 1000)
        got = q.get(timeout=int(ms) / 1000)
    except (_queue.Full, _queue.Empty) as e:
        _say({"roundtrip": False, "error": type(e).__name__})
        return 1
    _say({"roundtrip": got == token})
    return 0


def q_complete(name):
    sb.attach(name).complete()
    _say("completed")
    return 0


def _get_one(name, ms):
    """One get (non-blocking when MS is 0) of a fuzzed queue: what it ended with, {"outcome":
    "message", "canon"}, "empty", "completed", "corrupt" (CorruptSegmentError or CorruptDataError,
    with the message) or "other:TYPE" (a bug)."""
    try:
        q = sb.attach(name)
        # Queue.get: a SimpleQueue (flavour 1) has multiprocessing's get() without arguments.
        obj = sb.Queue.get(q, block=int(ms) > 0, timeout=int(ms) / 1000 if int(ms) > 0 else None)
        return {"outcome": "message", "canon": canon_received(obj)[0]}
    except _queue.Empty:
        return {"outcome": "empty"}
    except sb.QueueCompleted:
        return {"outcome": "completed"}
    except (sb.CorruptSegmentError, sb.CorruptDataError) as e:
        return {"outcome": "corrupt", "message": str(e)}
    except Exception as e:  # noqa: BLE001 - the fuzzer reports any other exception as a bug
        return {"outcome": "other:" + type(e).__name__, "message": str(e)}


def q_get_each(ms, *names):
    """_get_one for every NAME in turn: one JSON line each, with the name."""
    for name in names:
        r = _get_one(name, ms)
        r["name"] = name
        _say(r)
    return 0


def q_create(name, capacity, maxsize="0", flavour="queue", lifetime="persistent"):
    """Creates a queue (sb.Queue, SimpleQueue or JoinableQueue) and exits, leaving it."""
    cls = {"queue": sb.Queue, "simple": sb.SimpleQueue, "joinable": sb.JoinableQueue}[flavour]
    kwargs = {"name": name, "capacity": int(capacity), "lifetime": lifetime}
    q = cls(**kwargs) if flavour == "simple" else cls(int(maxsize), **kwargs)
    _say({"created": q.name})
    return 0


def _big_message(seq, size):
    """The SIZE bytes of big message SEQ: u64 sequence, then the byte SEQ & 0xFF repeated."""
    return seq.to_bytes(8, "little") + bytes([seq & 0xFF]) * (size - 8)


def _data_segments(name):
    """The names of queue NAME's out-of-line data segments now in /dev/shm (section 11.5)."""
    prefix = name + ".m"
    return {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}


def q_big_produce(name, count, size):
    """Puts COUNT uint8 numpy arrays of SIZE bytes (_big_message: out of line in a small ring);
    after each put notes which data segments of the queue exist. Prints how many distinct ones
    it saw: with reuse (section 11.5) a few, without it one per message."""
    import numpy as np
    q = sb.attach(name)
    seen = set()
    for seq in range(int(count)):
        q.put(np.frombuffer(_big_message(seq, int(size)), dtype=np.uint8), timeout=LONG)
        seen |= _data_segments(name)
    _say({"produced": int(count), "distinct": len(seen)})
    return 0


def q_big_consume(name, count, hold):
    """Gets COUNT big messages in order, keeping the last HOLD of them (zero-copy views of the
    data segments); after each get checks that every message it holds still has its bytes. Prints
    how many were wrong when got ("bad") and how many changed while held ("changed")."""
    import numpy as np
    q = sb.attach(name)
    held, bad, changed = [], 0, 0
    for seq in range(int(count)):
        a = q.get(timeout=LONG)
        if not isinstance(a, np.ndarray) or a.tobytes() != _big_message(seq, a.nbytes):
            bad += 1
        held.append((seq, a))
        del held[:len(held) - int(hold)]
        changed += sum(1 for s, h in held if h.tobytes() != _big_message(s, h.nbytes))
    _say({"consumed": int(count), "bad": bad, "changed": changed})
    return 0


WORKERS = {
    "q-send-types": q_send_types,
    "q-recv-types": q_recv_types,
    "q-produce": q_produce,
    "q-consume": q_consume,
    "q-roundtrip": q_roundtrip,
    "q-complete": q_complete,
    "q-get-each": q_get_each,
    "q-create": q_create,
    "q-big-produce": q_big_produce,
    "q-big-consume": q_big_consume,
}
