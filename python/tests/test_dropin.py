"""Drop-in behaviour that CPython's own shared-ctypes tests never check (issue "Drop-in
for real"): descriptors per object, segments made in workers, objects returned from
workers, copy, isinstance, the exception class for impossible sizes."""

import copy
import ctypes
import errno
import multiprocessing.sharedctypes as mpsc
import pickle

import pytest

import sharedbridge as sb
from conftest import run_python

START_METHODS = ("fork", "spawn", "forkserver")


def test_ten_thousand_values_under_ulimit_256_keep_no_descriptor():
    # Item 1: no file descriptor is kept per object (libc mmap, descriptor closed).
    proc = run_python(
        "import os, resource, sharedbridge as sb\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
        "before = len(os.listdir('/proc/self/fd'))\n"
        "objs = [sb.Value('i', i) for i in range(10000)]\n"
        "after = len(os.listdir('/proc/self/fd'))\n"
        "assert sum(o.value for o in objs) == 10000 * 9999 // 2\n"
        "print(after - before)\n", timeout=120)
    assert int(proc.stdout) <= 0


WORKERS = r'''
import concurrent.futures, multiprocessing as mp, os, signal, sys, time
import sharedbridge as sb

KEEP = None

def make_value(x):
    return sb.Value('i', x), os.getpid()

def make_raw(x):
    return sb.RawArray('d', [x] * 3), os.getpid()

def init_worker():
    global KEEP                       # per-worker arrays kept in a global
    KEEP = sb.RawArray('i', 4)

def pid_with_global(_):
    return os.getpid(), KEEP.name

def main(method):
    ctx = mp.get_context(method)
    pids = set()
    with ctx.Pool(2) as pool:                      # __exit__ terminates (SIGTERM)
        v, pid = pool.apply(make_value, (3,))
        pids.add(pid)
        assert v.value == 3 and isinstance(v, sb.Synchronized)
        with v:
            v.value += 1
        for i, (a, pid) in enumerate(pool.map(make_raw, range(4))):
            assert a[:] == [float(i)] * 3
            pids.add(pid)
    pool.join()
    with ctx.Pool(2, initializer=init_worker) as pool:
        names = set(pool.map(pid_with_global, range(4)))
        pids.update(p for p, _ in names)
        pool.close()                               # ordinary ending: close + join
        pool.join()
    with ctx.Pool(1, initializer=init_worker, maxtasksperchild=1) as pool:
        pids.update(p for p, _ in pool.map(pid_with_global, range(2)))
    pool.join()
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        a, pid = ex.submit(make_raw, 7).result(timeout=60)
        pids.add(pid)
        assert a[:] == [7.0] * 3
    print(' '.join(map(str, sorted(pids))))

if __name__ == '__main__':
    main(sys.argv[1])
'''


@pytest.mark.parametrize("method", START_METHODS)
def test_objects_returned_from_workers_and_nothing_leaks(method):
    # Items 2 and 3: an object a worker returns arrives with its memory; worker segments
    # (returned, kept in globals by a Pool initializer) are gone after close/join,
    # maxtasksperchild and terminate (SIGTERM).
    from conftest import segments_created_by, SHM
    import os
    proc = run_python(WORKERS, method, timeout=120)
    pids = [int(p) for p in proc.stdout.split()]
    assert pids
    left = set()
    for pid in pids:
        left |= segments_created_by(pid)
    for name in left:
        os.unlink(os.path.join(SHM, name))
    assert not left, f"worker segments leaked: {sorted(left)}"


def test_pickle_round_trip_in_one_process():
    # Item 3: the creator's object dropped right after pickling can still be unpickled.
    for make in (lambda: sb.Value("i", 5), lambda: sb.RawValue("d", 2.5),
                 lambda: sb.Array("i", [1, 2]), lambda: sb.RawArray("c", b"ab"), sb.Lock):
        back = pickle.loads(pickle.dumps(make()))
        assert not isinstance(back, sb.UnavailableObject)


def test_unpickling_a_missing_segment_never_raises():
    # Item 3: an exception while unpickling would hang multiprocessing.Pool.
    data = pickle.dumps(sb.Value("i", 1))
    lock_data = pickle.dumps(sb.RLock())
    from sharedbridge._platform import exit_cleanup
    exit_cleanup.release_exported()
    for blob in (data, lock_data):
        got = pickle.loads(blob)
        assert isinstance(got, sb.UnavailableObject)
        with pytest.raises(sb.SegmentNotFoundError):
            got.value
        with pytest.raises(sb.SegmentNotFoundError):
            with got:
                pass
        assert "SegmentNotFoundError" in repr(got)


@pytest.mark.parametrize("make", [
    lambda m: m.RawValue("i", 5), lambda m: m.RawArray("i", [1, 2]),
    lambda m: m.RawArray("c", b"xy"), lambda m: m.Value("d", 1.5, lock=False)])
def test_copy_and_deepcopy_match_multiprocessing(make):
    # Item 4: copy.copy is a private copy; deepcopy raises TypeError.
    for m in (mpsc, sb):
        obj = make(m)
        c = copy.copy(obj)
        before = bytes(memoryview(obj).cast("B"))
        ctypes.memset(ctypes.addressof(c), 0x7F, ctypes.sizeof(c))
        assert bytes(memoryview(obj).cast("B")) == before, m
        assert ctypes.sizeof(c) == ctypes.sizeof(obj)
        with pytest.raises(TypeError):
            copy.deepcopy(obj)
    assert sb.segment_of(copy.copy(make(sb))) is None


@pytest.mark.parametrize("fn", [copy.copy, copy.deepcopy])
def test_copying_a_wrapper_is_refused_as_in_multiprocessing(fn):
    for m in (mpsc, sb):
        with pytest.raises(RuntimeError):
            fn(m.Value("i", 1))
        with pytest.raises(RuntimeError):
            fn(m.Array("i", 2))


def test_isinstance_against_multiprocessing_classes():
    # Item 6.
    cases = [(lambda m: m.Value("i"), mpsc.Synchronized),
             (lambda m: m.Array("i", 2), mpsc.SynchronizedArray),
             (lambda m: m.Array("c", 2), mpsc.SynchronizedString),
             (lambda m: m.Value("i"), mpsc.SynchronizedBase),
             (lambda m: m.synchronized(m.RawArray("d", 2)), mpsc.SynchronizedArray)]
    for make, cls in cases:
        assert isinstance(make(mpsc), cls) and isinstance(make(sb), cls), cls


def test_impossible_size_is_an_oserror_efbig_like_multiprocessing():
    # Item 8: multiprocessing: OSError EFBIG; ours is also still a MemoryError.
    with pytest.raises(OSError) as theirs:
        mpsc.RawArray("b", 2 ** 62)
    with pytest.raises(OSError) as ours:
        sb.RawArray("b", 2 ** 62)
    assert theirs.value.errno == ours.value.errno == errno.EFBIG
    assert isinstance(ours.value, MemoryError) and "/dev/shm" in str(ours.value)
