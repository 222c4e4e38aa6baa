"""sharedbridge.dotnet with pythonnet: the span-free .NET surface from Python, numpy views of
.NET objects, conversions both ways on one lock, error translation, and the cleanup of .NET
and Python segments at exit and on signals (those in child interpreters)."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import sharedbridge
import sharedbridge.dotnet as sbn
from sharedbridge.dotnet import cleanup, loader


@pytest.fixture
def np():
    return pytest.importorskip("numpy")


def exists(name):
    return os.path.exists("/dev/shm/" + name)


def test_load_is_idempotent_and_hands_signals_to_python(sb):
    assert sbn.load() is sb and sbn.loaded()
    assert sb.SegmentCleanup.SignalHandlersEnabled is False
    # pytest leaves SIGTERM and SIGHUP at their default action: sharedbridge.dotnet took them
    # (releasing .NET's and Python's segments); Python's SIGINT handler stays.
    assert signal.getsignal(signal.SIGTERM) is cleanup.on_signal
    assert signal.getsignal(signal.SIGHUP) is cleanup.on_signal
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_span_free_surface_from_python(sb, names):
    from System import Array, Double
    name = names("arr")
    a = sb.SharedArray[Double].Create(name, Array[Double]([1.0, 2.0, 3.0, 4.0]),
                                      sb.SegmentOptions(recursiveLock=True))
    a.Set(1, 9.5)
    assert a.Get(1) == 9.5 and a[1] == 9.5
    a.CopyFrom(Array[Double]([7.0, 8.0]))
    out = Array.CreateInstance(Double, 4)
    a.CopyTo(out)
    assert list(out) == [7.0, 8.0, 3.0, 4.0]
    a.CopyTo(2, out, 0, 2)
    assert list(out)[:2] == [3.0, 4.0]
    assert a.ByteLength == 32 and a.DataAddress.ToInt64() != 0
    with pytest.raises(Exception):
        a.Get(4)
    o = sb.SegmentOptions(synchronized=False, keepOnDispose=True)
    assert (o.Synchronized, o.KeepOnDispose, o.RecursiveLock) == (False, True, True)
    a.Dispose()
    assert not exists(name)


def test_as_numpy_is_a_view_both_ways(sb, names, np):
    a = sbn.create_array("d", 1000, name=names("view"))
    v = sbn.as_numpy(a)
    assert v.shape == (1000,) and v.dtype == np.float64
    v[:] = np.arange(1000)
    assert a.Get(999) == 999.0
    a.Set(0, -5.0)
    assert v[0] == -5.0
    assert sbn.as_numpy(a).__array_interface__["data"][0] == a.DataAddress.ToInt64()


def test_create_array_from_numpy_and_typecodes(sb, names, np):
    data = np.linspace(0, 1, 257)
    a = sbn.create_array("d", data, name=names("init"))
    assert np.array_equal(sbn.as_numpy(a), data)
    i = sbn.create_array("i", [1, -2, 3], name=names("int"))
    assert sbn.as_numpy(i).dtype == np.int32 and list(sbn.as_numpy(i)) == [1, -2, 3]
    l = sbn.create_array("l", 2, name=names("long"))
    assert l.TypeCode == "l" and sbn.as_numpy(l).dtype == np.int64
    empty = sbn.create_array("d", 0, name=names("empty"))
    assert sbn.as_numpy(empty).shape == (0,)


def test_value_view_and_conversion(sb, names, np):
    val = sbn.create_value("q", 41, name=names("val"))
    view = sbn.as_numpy(val)
    assert view.shape == () and int(view) == 41
    view[()] = 42
    assert val.Value == 42
    py = sbn.to_python(val)
    assert py.value == 42
    py.value = 43
    assert val.Value == 43


def test_view_outlives_dispose_of_the_dotnet_object(sb, names, np):
    name = names("outlive")
    a = sbn.create_array("d", [1.0, 2.0], name=name)
    v = sbn.as_numpy(a)
    a.Dispose()
    assert not exists(name)           # the creator's Dispose unlinked the name
    assert v[1] == 2.0                # the mapping is still there
    v[1] = 3.0
    del v


def mapped(name):
    with open("/proc/self/maps") as f:
        return any(line.rstrip().endswith(("/dev/shm/" + name, "/dev/shm/" + name + " (deleted)"))
                   for line in f)


def test_repeated_views_share_one_data_view_released_with_the_object(sb, names, np):
    """as_numpy keeps one data view per .NET object: later calls are new numpy views of the same
    memory; after Dispose the next call raises, and once the views are gone the mapping is too."""
    import gc
    from System import ObjectDisposedException
    name = names("cache")
    a = sbn.create_array("d", 8, name=name)
    first, second = sbn.as_numpy(a), sbn.as_numpy(a)
    assert first is not second and first.base is second.base
    second.shape = (2, 4)               # a view's own shape does not change the next one
    assert sbn.as_numpy(a).shape == (8,)
    first[5] = 7.5
    assert a.Get(5) == 7.5 and second[1, 1] == 7.5
    v = sbn.create_value("i", 3, name=names("cachev"))
    assert sbn.as_numpy(v).shape == () and int(sbn.as_numpy(v)) == 3
    v.Dispose()
    a.Dispose()
    assert first[5] == 7.5              # earlier views stay valid
    with pytest.raises(ObjectDisposedException):
        sbn.as_numpy(a)
    assert mapped(name)
    del first, second
    gc.collect()
    assert not mapped(name)


def test_struct_array_is_a_structured_numpy_array(sb, Point, names, np):
    name = names("pts")
    pts = sb.SharedArray[Point].Create(name, 3)
    v = sbn.as_numpy(pts)
    assert v.dtype.names == ("X", "Y") and v.dtype.itemsize == 16
    v["X"] = [1.875, -5.75, 2.375]
    v["Y"] = [-6.25, 2.0, 9.5]
    assert pts.Get(2).Y == 9.5
    py = sbn.to_python(pts)
    assert (py[0].X, py[0].Y) == (1.875, -6.25)
    back = sbn.to_dotnet(py, Point)
    assert back.Get(1).X == -5.75 and not back.IsOwner
    with pytest.raises(TypeError, match="net_type"):
        sbn.to_dotnet(py)


def test_to_dotnet_and_back_share_memory_and_lock(sb, names, np):
    py = sharedbridge.Array("d", 4, name=names("py"))
    net = sbn.to_dotnet(py)
    assert type(net).__name__.startswith("SharedArray") and not net.IsOwner
    py[2] = 1.5
    assert net.Get(2) == 1.5
    sbn.as_numpy(net)[3] = 2.5
    assert py[3] == 2.5
    # One thread: .NET's lock and Python's nest (a recursive mutex counts both). From Python the
    # .NET lock is a LockHandle (LockUnscoped): a LockScope is a ref struct, which pythonnet cannot return.
    with net.LockUnscoped():
        with py.get_lock():
            py[0] = 1.0
    # Another thread is excluded while .NET holds it.
    got = []
    with net.LockUnscoped():
        t = threading.Thread(target=lambda: got.append(py.get_lock().acquire(timeout=0.2)))
        t.start()
        t.join()
    assert got == [False]
    assert py.get_lock().acquire(timeout=1)
    py.get_lock().release()
    net.Dispose()
    assert exists(py.name)            # the .NET opener unlinks nothing
    lock = sharedbridge.RLock(name=names("lock"))
    assert type(sbn.to_dotnet(lock)).__name__ == "SharedLock"
    chars = sharedbridge.Array("c", b"hello", name=names("chars"))
    assert bytes(sbn.to_dotnet(chars).Value) == b"hello"


def test_non_recursive_lock_taken_twice_on_one_thread_is_refused(sb, names):
    net = sbn.create_array("i", 1, name=names("errcheck"))
    opts = sb.SegmentOptions(recursiveLock=False)
    net2 = sb.SharedArray[__import__("System").Int32].Create(names("errcheck2"), 1, opts)
    py = sbn.to_python(net2)
    with net2.LockUnscoped():
        with pytest.raises(RuntimeError):
            py.get_lock().acquire()
        with pytest.raises(RuntimeError):
            py.get_lock().acquire(timeout=0.05)
    net.Dispose()
    net2.Dispose()


def test_dotnet_lock_from_python_is_the_handle_and_scope_is_refused(sb, names):
    """LockScope is a ref struct (it cannot cross an await in C#); pythonnet cannot return one, so
    Python code holds the .NET lock through LockUnscoped(), a LockHandle released by `with`."""
    net = sbn.create_array("i", 1, name=names("handle"))
    py = sbn.to_python(net)
    from System import NotSupportedException
    with pytest.raises(NotSupportedException):
        net.Lock()
    with net.LockUnscoped() as handle:
        assert handle.IsHeld and not handle.Recovered
        assert "held by thread" in str(handle)
        got = []
        t = threading.Thread(target=lambda: got.append(py.get_lock().acquire(timeout=0.1)))
        t.start()
        t.join()
        assert got == [False]
    assert not handle.IsHeld
    net.Dispose()


@pytest.mark.parametrize("make, expected", [
    (lambda sb, n: sb.SharedArray[__import__("System").Double].Open(n("missing")), sharedbridge.SegmentNotFoundError),
    (lambda sb, n: sb.SharedArray[__import__("System").Double].Open("bad/name"), sharedbridge.InvalidNameError),
])
def test_errors_are_translated(sb, names, make, expected):
    with pytest.raises(expected) as info:
        with sbn.errors():
            make(sb, names)
    assert info.value.dotnet_exception is not None
    assert type(info.value.__cause__).__module__ == "SharedBridge"


def test_translation_of_exists_and_type_mismatch(sb, names):
    name = names("dup")
    a = sbn.create_array("d", 1, name=name)
    with pytest.raises(sharedbridge.SegmentExistsError) as e:
        sbn.create_array("d", 1, name=name)
    assert isinstance(e.value, FileExistsError) and e.value.filename == name
    from System import Int32
    with pytest.raises(sharedbridge.TypeMismatchError):
        with sbn.errors():
            sb.SharedArray[Int32].Open(name)
    with pytest.raises(FileNotFoundError):
        with sbn.errors():
            sb.SharedValue[Int32].Open(names("nothing"))
    assert sbn.translate(ValueError("x")) is None
    a.Dispose()


def test_missing_assembly_is_a_clear_error(sb, tmp_path):
    # Already loaded from elsewhere: refused, naming the loaded copy.
    with pytest.raises(sbn.DotnetUnavailableError, match="already loaded"):
        sbn.load(tmp_path)
    with pytest.raises(sbn.DotnetUnavailableError, match="not found"):
        loader.find_assembly(tmp_path)


# ---- The end of the process: child interpreters --------------------------------------------

CHILD = textwrap.dedent("""
    import os, sys, time, signal
    import sharedbridge, sharedbridge.dotnet as sbn
    sbn.load()
    py_first = sharedbridge.Array('d', 2, name=sys.argv[1] + '_py0')   # before and after load
    net = sbn.create_array('d', 4, name=sys.argv[1] + '_net')
    py = sharedbridge.Value('i', 1, name=sys.argv[1] + '_py')
    mode = sys.argv[2]
    print('ready', flush=True)
    if mode == 'exit':
        sys.exit(0)
    if mode == 'int':
        try:
            os.kill(os.getpid(), signal.SIGINT); time.sleep(5)
        except KeyboardInterrupt:
            print('interrupted; net exists:', os.path.exists('/dev/shm/' + sys.argv[1] + '_net'), flush=True)
        sys.exit(0)
    time.sleep(30)
""")


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return env


def _run_child(base, mode):
    p = subprocess.Popen([sys.executable, "-c", CHILD, base, mode], stdout=subprocess.PIPE,
                         text=True, env=_child_env())
    assert p.stdout.readline().strip() == "ready"
    return p


def _left(base):
    return [n for n in os.listdir("/dev/shm") if n.startswith(base)]


@pytest.mark.parametrize("mode", ["exit", "term", "hup"])
def test_segments_of_both_languages_are_released(sb, mode):
    base = f"pyn_{os.getpid()}_end_{mode}"
    p = _run_child(base, mode)
    if mode != "exit":
        assert len(_left(base)) == 3
        p.send_signal(signal.SIGTERM if mode == "term" else signal.SIGHUP)
    rc = p.wait(30)
    try:
        assert _left(base) == []
        assert rc == {"exit": 0, "term": -signal.SIGTERM, "hup": -signal.SIGHUP}[mode]
    finally:
        for n in _left(base):
            os.unlink("/dev/shm/" + n)


def test_interrupt_releases_nothing_until_exit(sb):
    base = f"pyn_{os.getpid()}_end_int"
    p = _run_child(base, "int")
    out = p.stdout.read()
    assert p.wait(30) == 0
    try:
        assert "net exists: True" in out
        assert _left(base) == []
    finally:
        for n in _left(base):
            os.unlink("/dev/shm/" + n)


def test_release_at_exit_runs_before_pythonnet_unload(sb):
    # The cleanup must not wait for pythonnet.unload() (seconds; a Jupyter kernel is killed
    # 2.5 s after a shutdown request): the names are gone before unload starts.
    base = f"pyn_{os.getpid()}_order"
    code = CHILD.replace("print('ready', flush=True)", textwrap.dedent("""
        import pythonnet
        real_unload = pythonnet.unload
        def unload():
            print('left at unload:', sorted(n for n in os.listdir('/dev/shm') if n.startswith(sys.argv[1])), flush=True)
            real_unload()
        import atexit; atexit.unregister(real_unload); atexit.register(unload)
        sbn.atexit_reregister_for_test = True
        print('ready', flush=True)"""))
    # Re-register ours after the replaced unload so the order stays: ours first, then unload.
    code = code.replace("sbn.atexit_reregister_for_test = True",
                        "from sharedbridge.dotnet import cleanup; atexit.unregister(cleanup.at_exit); "
                        "atexit.register(cleanup.at_exit)")
    p = subprocess.Popen([sys.executable, "-c", code, base, "exit"], stdout=subprocess.PIPE,
                         text=True, env=_child_env())
    out = p.stdout.read()
    assert p.wait(30) == 0
    assert "left at unload: []" in out, out


def test_python_rows_and_simple_subclasses_open_in_dotnet_as_their_flat_type(sb, names):
    # Rows (docs/format.md section 4): Array(c_int * 2, 3) is a flat int array of 6 for .NET;
    # a subclass of c_int is an int value. Written from either side, read on the other.
    import ctypes

    class MyInt(ctypes.c_int):
        pass

    rows = sharedbridge.Array(ctypes.c_int * 2, [(1, 2), (3, 4), (5, 6)], name=names("rows"))
    net = sbn.to_dotnet(rows)
    assert type(net).__name__.startswith("SharedArray") and net.Length == 6
    assert [net.Get(i) for i in range(6)] == [1, 2, 3, 4, 5, 6]
    net.Set(5, 60)
    assert rows[2][1] == 60
    net.Dispose()
    value = sharedbridge.Value(MyInt, 7, name=names("myint"))
    net = sbn.to_dotnet(value)
    assert net.Value == 7
    net.Value = 8
    assert value.value == 8 and isinstance(value.get_obj(), MyInt)
    net.Dispose()


def test_a_broken_dotnet_barrier_arrives_as_pythons_broken_barrier_error(sb):
    # Python's Barrier raises threading.BrokenBarrierError (as multiprocessing's does); the
    # same mistake made through .NET must arrive as that class (docs/api.md, "Errors in
    # both languages"), not as the SharedBridgeError base.
    from System import TimeSpan
    name = f"sbPO_{os.getpid()}_barrier"
    barrier = sb.SharedBarrier.Create(name, 2)
    try:
        barrier.Abort()
        with pytest.raises(threading.BrokenBarrierError) as info:
            with sbn.errors():
                barrier.SignalAndWait(TimeSpan.FromSeconds(5))
        assert type(info.value.dotnet_exception).__name__ == "BrokenBarrierException"
    finally:
        barrier.Dispose()
    assert not exists(name)


def test_dotnet_tensor_is_a_shaped_numpy_view_both_ways(sb, names, np):
    # docs/format.md section 12: .NET SharedTensor<T> in this process, numpy sees its shape
    name = names("tensor")
    t = sbn.create_tensor("f", (2, 3, 4), np.arange(24, dtype=np.float32).reshape(2, 3, 4),
                          name=name)
    v = sbn.as_numpy(t)
    assert v.shape == (2, 3, 4) and v.dtype == np.float32
    assert v.__array_interface__["data"][0] == t.DataAddress.ToInt64()   # no copy
    assert t.Get(1, 2, 3) == 23.0
    v[0, 1, 2] = -1.5
    assert t.Get(0, 1, 2) == -1.5
    assert list(t.GetShape()) == [2, 3, 4]
    # the Python package's object of the same segment, and back to .NET by name
    py = sbn.to_python(t)
    assert py.shape == (2, 3, 4) and py.numpy()[0, 1, 2] == -1.5
    back = sbn.to_dotnet(py)
    assert type(back).__name__.startswith("SharedTensor") and list(back.GetShape()) == [2, 3, 4]
    back.Dispose()
    rank0 = sbn.create_tensor("d", (), name=names("rank0"))
    assert sbn.as_numpy(rank0).shape == ()
    empty = sbn.create_tensor("h", (3, 0), name=names("empty"))
    assert sbn.as_numpy(empty).shape == (3, 0)


def test_python_ndarray_attached_from_dotnet_sees_the_same_memory(sb, names, np):
    name = names("pynd")
    a = sharedbridge.from_numpy(np.ones((4, 5), dtype=np.float64), name=name)
    t = sbn.attach(name)
    assert type(t).__name__.startswith("SharedTensor") and t.Rank == 2
    t.Set([3, 4], 7.0)
    assert a.numpy()[3, 4] == 7.0
    assert sbn.as_numpy(t).shape == (4, 5)
    t.Dispose()


def test_open_and_to_dotnet_take_the_directory_of_the_directory_backend(sb, names):
    # dir= as everywhere else in the API (docs/format.md section 1.3).
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="sbdir.", dir="/dev/shm")
    try:
        name = names("dir")
        py = sharedbridge.Array("i", [1, 2, 3], name=name, dir=d)
        net = sbn.open(name, dir=d)
        assert net.Get(2) == 3 and not net.IsOwner
        net.Set(0, 7)
        assert py[0] == 7
        net.Dispose()
        net = sbn.to_dotnet(py)                 # the object's own directory
        assert net.Get(1) == 2
        net.Dispose()
        if not os.environ.get("SHAREDBRIDGE_DIR"):
            with pytest.raises(sharedbridge.SegmentNotFoundError):
                sbn.open(name)                  # not in /dev/shm
        py.close()                              # the creator unlinks
        assert os.listdir(d) == []
    finally:
        shutil.rmtree(d)
