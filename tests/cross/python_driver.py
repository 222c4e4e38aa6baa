#!/usr/bin/env python3
"""The Python driver of the cross-language suite (the C# twin is tests/cross/CSharpDriver).

Commands (every command prints JSON or the scenario's text on stdout; diagnostics go to stderr):
  create VECTOR NAME [--lock-name L]   create the segment a vector describes, keep it, exit
  create-batch MANIFEST                create every segment a manifest lists (one result each)
  verify-batch MANIFEST                verify every segment a manifest lists (one result each)
  verify VECTOR NAME [--lock-name L]   attach by name, check header facts and values, exit 0/1
  classify-batch MANIFEST              open every name of a manifest, report each error class
  host VECTOR NAME [--lock-name L]     create and stay: stdin "verify" re-checks, "exit" closes
  worker SCENARIO ARGS...              one child of a scenario (cross_scenarios.WORKERS)
  parent SCENARIO BASE --child ARGV_JSON [--child ...]
                                       the parent of a scenario; children are other drivers
  baseline SCENARIO                    the scenario with the standard library's multiprocessing
  hold create NAME LIFETIME | hold open NAME
                                       a 2-element 'q' array with that lifetime (creator,
                                       last-closer, persistent), or attached; prints ready;
                                       stdin "close" closes it, "exit" ends normally
  reap PREFIX [--dry-run]              sharedbridge.reap(prefix=PREFIX): {"reaped": [...]}

Needs only the standard library and sharedbridge on PYTHONPATH (PYTHONPATH=python).
"""
import argparse
import json
import os
import sys
import time
import warnings

import cross_vectors as cv


def _sharedbridge():
    import sharedbridge
    return sharedbridge


# ---- create ---------------------------------------------------------------------------------

def _lock_argument(sb, vector, lock_name, lifetime):
    """The lock= argument for a vector, and the lock segment it created (or None)."""
    kind = vector["lock"]["kind"]
    if kind == "none":
        return False, None
    if kind == "embedded":
        return True, None
    factory = sb.Lock if vector["lock"]["type"] == "lock" else sb.RLock
    lock = _create_lock(factory, lock_name, lifetime)
    return lock, lock


def _create_lock(factory, name, lifetime):
    return factory(name=name, lifetime=lifetime)


def create(vector, name, lock_name, keep=True):
    """Create the vector's segment; returns the objects to keep alive. keep=True: with the
    vector's lifetime (cv.lifetime); keep=False: lifetime "creator"."""
    sb = _sharedbridge()
    lifetime = cv.lifetime(vector) if keep else "creator"
    obj_kind = vector["object"]
    if obj_kind == "lock":
        factory = sb.Lock if vector["lock"]["type"] == "lock" else sb.RLock
        return [_create_lock(factory, name, lifetime)]
    if obj_kind == "queue":
        return [_create_queue(sb, vector, name, lifetime)]
    if obj_kind in cv.SYNC_OBJECTS:
        return _create_sync(sb, vector, name, lock_name, lifetime)
    lock, lock_obj = _lock_argument(sb, vector, lock_name, lifetime)
    if obj_kind == "ndarray":
        obj = _create_ndarray(sb, vector, name, lock, lifetime)
    elif obj_kind == "chararray":
        obj = sb.Array("c", cv.char_bytes(vector), lock=lock, name=name, lifetime=lifetime)
    elif obj_kind == "array":
        etype = cv.element_type(vector)
        init = [cv.py_element(vector, v) for v in vector["values"]]
        obj = sb.Array(etype, init, lock=lock, name=name, lifetime=lifetime)
    else:
        etype = cv.element_type(vector)
        value = cv.py_element(vector, vector["values"])
        args = value if vector["typecode"] == "T" else (value,)
        if lock is False:
            obj = sb.RawValue(etype, *args, name=name, lifetime=lifetime)
        else:
            obj = sb.Value(etype, *args, lock=lock, name=name, lifetime=lifetime)
    return [o for o in (obj, lock_obj) if o is not None]


def _create_ndarray(sb, vector, name, lock, lifetime):
    """An n-dimensional array (docs/format.md section 12) of the vector's shape, filled in C
    order through the flat ctypes view (standard library only)."""
    obj = sb.ndarray(tuple(vector["shape"]), cv.element_type(vector), lock=lock, name=name,
                     lifetime=lifetime)
    if vector["values"]:
        flat = obj.as_ctypes()
        for k, value in enumerate(vector["values"]):
            flat[k] = cv.py_element(vector, value)
    return obj


def _verify_ndarray(vector, obj, name, lock_name, errors):
    """Shape (the object, the header, the memoryview) and every element in C order."""
    sb = _sharedbridge()
    _check_header(vector, sb.header_of(name), lock_name, errors)
    if type(obj).__name__ != "SharedNDArray":
        errors.append(f"attach returned a {type(obj).__name__}, not a SharedNDArray")
        return []
    shape = tuple(vector["shape"])
    if obj.shape != shape or obj.ndim != len(shape) or obj.size != cv.element_count(vector):
        errors.append(f"(shape, ndim, size): expected {(shape, len(shape), cv.element_count(vector))}, "
                      f"found {(obj.shape, obj.ndim, obj.size)}")
    if vector["typecode"] not in "Tu" and obj.size:
        view = obj.memoryview()
        if view.shape != shape:
            errors.append(f"memoryview shape: expected {shape}, found {view.shape}")
    try:
        lock = obj.get_lock()
    except AttributeError:
        lock = None
    if (lock is None) != (vector["lock"]["kind"] == "none"):
        errors.append(f"expected lock kind {vector['lock']['kind']}, found {lock!r}")
    elif lock is not None:
        if vector["lock"]["kind"] == "external" and getattr(lock, "name", None) != lock_name:
            errors.append(f"expected the lock of segment {lock_name!r}, found {getattr(lock, 'name', lock)!r}")
        if not lock.acquire(timeout=5):
            errors.append("could not acquire the lock within 5 s")
        else:
            lock.release()
    elements = list(obj.as_ctypes()) if obj.size else []
    actual = [cv.canon_shape(obj.shape)] + cv.canon_actual(vector, elements)
    errors += cv.diff(cv.canon_expected(vector), actual)
    return actual


QUEUE_CLASSES = {"queue": "Queue", "simple": "SimpleQueue", "joinable": "JoinableQueue"}
UNBOUNDED = 0x7FFFFFFF


def _create_queue(sb, vector, name, lifetime):
    """A queue segment (docs/format.md section 11): the vector's flavour, capacity and max_messages."""
    cls = getattr(sb, QUEUE_CLASSES[vector["flavour"]])
    kwargs = {"name": name, "lifetime": lifetime, "capacity": vector["capacity"]}
    if vector["flavour"] == "simple":
        return cls(**kwargs)
    maxsize = vector["max_messages"]
    return cls(0 if maxsize == UNBOUNDED else maxsize, **kwargs)


def _verify_queue(vector, obj, name, errors):
    sb = _sharedbridge()
    _check_header(vector, sb.header_of(name), None, errors)
    cls = QUEUE_CLASSES[vector["flavour"]]
    actual = [type(obj).__name__, obj.capacity, obj.maxsize if obj.maxsize else UNBOUNDED, obj.qsize()]
    expected = [cls, vector["capacity"], vector["max_messages"], 0]
    if actual != expected:
        errors.append(f"queue (class, capacity, max_messages, qsize): expected {expected}, found {actual}")
    return [str(v) for v in actual]


def _create_sync(sb, vector, name, lock_name, lifetime):
    """A synchronization segment whose words are the vector's values, made through the API."""
    obj_kind, words = vector["object"], vector["values"]
    if obj_kind == "event":
        obj = sb.Event(name=name, lifetime=lifetime)
        if words[3]:
            obj.set()
    elif obj_kind == "semaphore":
        obj = (sb.BoundedSemaphore if words[5] else sb.Semaphore)(words[3], name=name, lifetime=lifetime)
    elif obj_kind == "barrier":
        obj = sb.Barrier(words[3], name=name, lifetime=lifetime)
    else:
        lock, lock_obj = _lock_argument(sb, vector, lock_name, lifetime)
        obj = sb.Condition(lock_obj, name=name, lifetime=lifetime)
        return [o for o in (obj, lock_obj) if o is not None]
    return [obj]


def _verify_sync(vector, obj, name, lock_name, errors):
    sb = _sharedbridge()
    _check_header(vector, sb.header_of(name), lock_name, errors)
    lock = obj._lock
    if vector["lock"]["kind"] == "external" and lock.name != lock_name:
        errors.append(f"expected the lock of segment {lock_name!r}, found {lock.name!r}")
    if not lock.acquire(timeout=5):
        errors.append("could not acquire the lock within 5 s")
        return []
    try:
        actual = cv.canon_actual(vector, list(obj._w))
    finally:
        lock.release()
    errors += cv.diff(cv.canon_expected(vector), actual)
    return actual


# ---- verify ---------------------------------------------------------------------------------

def _elements(vector, raw):
    if vector["object"] == "chararray":
        return ["x" + bytes(raw.raw).hex()]
    if vector["object"] == "value":
        value = raw.value if vector["typecode"] != "T" else raw
        return cv.canon_actual(vector, [value])
    return cv.canon_actual(vector, list(raw))


def _check_lock(vector, obj, lock_name, errors):
    kind = vector["lock"]["kind"]
    has_lock = hasattr(obj, "get_lock")
    if kind == "none":
        if has_lock:
            errors.append("expected an unsynchronized object, found a lock")
        return
    if not has_lock:
        errors.append(f"expected a {kind} lock, found an unsynchronized object")
        return
    lock = obj.get_lock()
    if kind == "external" and getattr(lock, "name", None) != lock_name:
        errors.append(f"expected the lock of segment {lock_name!r}, found {getattr(lock, 'name', lock)!r}")
    if not lock.acquire(timeout=5):
        errors.append("could not acquire the lock within 5 s")
    else:
        lock.release()


def _check_lock_only(vector, lock, errors):
    """A Lock refuses a second acquire by its holder; an RLock grants it."""
    if not lock.acquire(timeout=5):
        errors.append("could not acquire the lock within 5 s")
        return
    try:
        again = lock.acquire(block=False)
        if again:
            lock.release()
        recursive = vector["lock"]["type"] == "rlock"
        if again != recursive:
            errors.append(f"second acquire by the holder returned {again}, expected {recursive}")
    except Exception as exc:  # an error-checking lock may raise instead of returning False
        if vector["lock"]["type"] == "rlock":
            errors.append(f"second acquire of an RLock raised {exc!r}")
    finally:
        lock.release()


def verify(vector, name, lock_name):
    sb = _sharedbridge()
    errors = []
    # Not closed afterwards: in the creating process (host) attach returns the creator's own
    # segment, and closing it would give up the creator's claim and unlink the name.
    obj = sb.attach(name)
    if vector["object"] == "lock":
        _check_lock_only(vector, obj, errors)
        return {"ok": not errors, "errors": errors, "values": []}
    if vector["object"] in cv.SYNC_OBJECTS:
        actual = _verify_sync(vector, obj, name, lock_name, errors)
        return {"ok": not errors, "errors": errors, "values": actual}
    if vector["object"] == "queue":
        actual = _verify_queue(vector, obj, name, errors)
        return {"ok": not errors, "errors": errors, "values": actual}
    if vector["object"] == "ndarray":
        actual = _verify_ndarray(vector, obj, name, lock_name, errors)
        return {"ok": not errors, "errors": errors, "values": actual}
    _check_header(vector, sb.header_of(name), lock_name, errors)
    _check_lock(vector, obj, lock_name, errors)
    raw = obj.get_obj() if hasattr(obj, "get_obj") else obj
    expected = cv.canon_expected(vector)
    actual = _elements(vector, raw)
    if vector["object"] == "array" and len(raw) != len(vector["values"]):
        errors.append(f"length: expected {len(vector['values'])}, found {len(raw)}")
    errors += cv.diff(expected, actual)
    return {"ok": not errors, "errors": errors, "values": actual}


KINDS = {"array": 1, "chararray": 1, "value": 2, "lock": 3, **cv.SYNC_OBJECTS, "queue": 8, "ndarray": 9}
LOCK_KINDS = {"none": 0, "embedded": 1, "external": 2}


def _check_header(vector, h, lock_name, errors):
    """What the validated header says must match the vector (as the C# driver checks)."""
    expected = {
        "kind": KINDS[vector["object"]],
        "typecode": vector["typecode"],
        "length": (len(vector["values"]) if vector["object"] in cv.LIST_OBJECTS
                   else vector["length"] if vector["object"] == "chararray"
                   else 256 + vector["capacity"] if vector["object"] == "queue"
                   else cv.element_count(vector) if vector["object"] == "ndarray" else 1),
        "type name": (vector["struct"].get("type_name", vector["struct"]["name"])
                      if "struct" in vector else ""),
        "lock kind": LOCK_KINDS[vector["lock"]["kind"]],
    }
    actual = {"kind": int(h.kind), "typecode": h.typecode, "length": h.element_count,
              "type name": h.type_name, "lock kind": int(h.lock_kind), "lifetime": h.lifetime}
    if "lifetime" in vector:       # else the producer chose (host: creator, batch: persistent)
        expected["lifetime"] = vector["lifetime"]
    if vector["lock"]["kind"] == "external":
        expected["lock name"], actual["lock name"] = lock_name, h.lock_name
    if vector["object"] == "ndarray":
        expected["shape"], actual["shape"] = tuple(vector["shape"]), tuple(h.shape)
    for what, value in expected.items():
        if actual[what] != value:
            errors.append(f"{what}: expected {value}, found {actual[what]}")


def _close(obj):
    if type(obj).__name__ in QUEUE_CLASSES.values():
        _sharedbridge().close(obj)      # Queue.close() is multiprocessing's (the handle only)
        return
    for target in (obj, getattr(obj, "get_obj", lambda: None)()):
        close = getattr(target, "close", None)
        if close is not None:
            close()
            return


# ---- commands -------------------------------------------------------------------------------

def _emit(payload):
    print(json.dumps(payload), flush=True)


def cmd_create(args):
    vector = cv.load(args.vector)
    create(vector, args.name, args.lock_name)
    _emit({"created": args.name, "lock": args.lock_name})
    return 0


def cmd_verify(args):
    result = verify(cv.load(args.vector), args.name, args.lock_name)
    _emit(result)
    return 0 if result["ok"] else 1


def _batch(manifest_path, action):
    """Runs action on every manifest entry; an error in one entry is that entry's result."""
    with open(manifest_path, encoding="utf-8") as f:
        entries = json.load(f)["entries"]
    results = []
    for entry in entries:
        vector = cv.load(entry["vector"])
        try:
            result = action(vector, entry["name"], entry.get("lock_name"))
        except Exception as exc:
            result = {"ok": False, "errors": [f"{type(exc).__name__}: {exc}"], "values": []}
        result["id"] = vector["id"]
        results.append(result)
    _emit({"results": results})
    return 0


# Objects of creator and last-closer vectors: closing them would unlink them, so create-batch
# leaves them as a crash would (os._exit: no finalizer, no exit cleanup).
_left_open = []


def _create_and_release(vector, name, lock_name):
    objects = create(vector, name, lock_name)
    if cv.lifetime(vector) == "persistent":
        for obj in objects:
            _close(obj)
    else:
        _left_open.extend(objects)
    return {"ok": True, "errors": [], "values": [], "pid": os.getpid()}


def cmd_create_batch(args):
    status = _batch(args.manifest, _create_and_release)
    if _left_open:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def cmd_verify_batch(args):
    return _batch(args.manifest, verify)


def cmd_host(args):
    vector = cv.load(args.vector)
    objects = create(vector, args.name, args.lock_name, keep=False)
    _emit({"ready": args.name})
    for line in sys.stdin:
        command = line.strip()
        if command == "verify":
            result = verify(vector, args.name, args.lock_name)
            result["exists"] = os.path.exists("/dev/shm/" + args.name)
            _emit(result)
        elif command == "exit":
            break
    for obj in objects:
        _close(obj)
    _emit({"closed": args.name})
    return 0


def cmd_worker(args):
    import cross_scenarios
    return cross_scenarios.run_worker(args.scenario, args.args)


def cmd_parent(args):
    import cross_scenarios
    children = [json.loads(c) for c in args.child]
    return cross_scenarios.run_parent(args.scenario, args.base, children)


def classify(name, timeout):
    """The error class of opening *name*, in the words of tests/cross/vectors/invalid."""
    sb = _sharedbridge()
    from sharedbridge._objects.attach import open_external_lock
    from sharedbridge._platform.segment import open_segment
    try:
        # What the C# driver's untyped SharedSegment.Open checks: the header (section 6.2)
        # and, for an external lock, the lock segment (step 7). attach() would also
        # rebuild a ctypes structure, which a valid header may not allow.
        h = open_segment(name, timeout, join=False).header   # never joins a last-closer segment
        if h.lock_kind == 2:
            open_external_lock(name, h.lock_name, timeout, False)
    except sb.NotASharedBridgeSegmentError:
        return "not-sharedbridge"
    except sb.UnsupportedVersionError:
        return "unsupported-version"
    except sb.CorruptSegmentError:
        return "corrupt"
    except sb.SegmentNotFoundError:
        return "not-found"
    except sb.SegmentPermissionError:
        return "permission"
    except sb.SegmentNotReadyError:
        return "initializing"
    except Exception as exc:  # noqa: BLE001 - the test reports it as a foreign exception
        return f"other:{type(exc).__module__}.{type(exc).__name__}: {exc}"
    return "ok"


def cmd_classify_batch(args):
    """Open every name of the manifest ({"names": [...], "timeout": s}); print one JSON
    object {"classes": {name: class}}."""
    with open(args.manifest) as f:
        manifest = json.load(f)
    classes = {name: classify(name, manifest.get("timeout", 0.3)) for name in manifest["names"]}
    print(json.dumps({"classes": classes}), flush=True)
    return 0


def cmd_hold(args):
    sb = _sharedbridge()
    if args.mode == "paused":
        # Stop the creator between its identity write and state = ready (the library's test
        # hook), say so, and wait to be killed (format.md section 8, reaping).
        from sharedbridge._platform import segment as S

        def pause(name):
            _emit({"ready": name, "lifetime": args.lifetime})
            time.sleep(600)
        S._before_ready = pause
        sb.Array("q", 2, name=args.name, lifetime=args.lifetime)
        return 1
    if args.mode == "create":
        obj = sb.Array("q", 2, name=args.name, lifetime=args.lifetime)
    else:
        obj = sb.attach(args.name)
    _emit({"ready": args.name, "lifetime": sb.header_of(obj).lifetime})
    for line in sys.stdin:
        command = line.strip()
        if command == "close":
            sb.close(obj)
            _emit({"closed": args.name})
        elif command == "exit":
            break
    return 0


def cmd_reap(args):
    sb = _sharedbridge()
    reaped = sb.reap(dry_run=args.dry_run, prefix=args.prefix)
    _emit({"reaped": [{"name": r.name, "reason": r.reason, "removed": r.removed} for r in reaped]})
    return 0


def cmd_baseline(args):
    import cross_baseline
    return cross_baseline.run(args.scenario)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command, handler in (("create", cmd_create), ("verify", cmd_verify), ("host", cmd_host)):
        p = sub.add_parser(command)
        p.add_argument("vector")
        p.add_argument("name")
        p.add_argument("--lock-name")
        p.set_defaults(handler=handler)
    for command, handler in (("create-batch", cmd_create_batch), ("verify-batch", cmd_verify_batch),
                             ("classify-batch", cmd_classify_batch)):
        p = sub.add_parser(command)
        p.add_argument("manifest")
        p.set_defaults(handler=handler)
    p = sub.add_parser("worker")
    p.add_argument("scenario")
    p.add_argument("args", nargs="*")
    p.set_defaults(handler=cmd_worker)
    p = sub.add_parser("parent")
    p.add_argument("scenario")
    p.add_argument("base")
    p.add_argument("--child", action="append", default=[])
    p.set_defaults(handler=cmd_parent)
    p = sub.add_parser("hold")
    p.add_argument("mode", choices=("create", "open", "paused"))
    p.add_argument("name")
    p.add_argument("lifetime", nargs="?", default="creator")
    p.set_defaults(handler=cmd_hold)
    p = sub.add_parser("reap")
    p.add_argument("prefix")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(handler=cmd_reap)
    p = sub.add_parser("baseline")
    p.add_argument("scenario")
    p.set_defaults(handler=cmd_baseline)
    args = parser.parse_args(argv)
    if getattr(args, "vector", None) and args.lock_name is None:
        args.lock_name = cv.load(args.vector)["lock"].get("segment")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        return args.handler(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
