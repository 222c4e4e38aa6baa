"""The lock never wedges and a corrupt mutex is an error (docs/format.md sections 7.2-7.4).

A not-recoverable lock gives every acquirer, through every entry point, the
not-recoverable error, promptly and every time, and leaves the lock word 0. Mutex bytes
overwritten by a buggy peer (a wrong kind word, a forged owner, a lock word changed under
the holder) raise CorruptLockError instead of aborting or hanging. reset_lock() is the
operator's explicit way out.
"""

import ctypes
import os
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from sharedbridge._platform import robust_mutex

from conftest import child_env, fresh_names, run_python

_libc = ctypes.CDLL(None)


def _word(obj, offset):
    lock = obj if isinstance(obj, (sb.Lock, sb.RLock)) else obj.get_lock()
    return struct.unpack_from("<i", lock._seg.mm, H.LOCK_OFFSET + offset)[0]


def _set_word(obj, offset, value):
    lock = obj if isinstance(obj, (sb.Lock, sb.RLock)) else obj.get_lock()
    struct.pack_into("<i", lock._seg.mm, H.LOCK_OFFSET + offset, value)


def _die_holding(lock):
    """A fork child takes the raw mutex and exits without releasing it."""
    pid = os.fork()
    if pid == 0:
        _libc.pthread_mutex_lock(lock._m)
        os._exit(0)
    os.waitpid(pid, 0)


def _make_not_recoverable(lock):
    """What a careless third program does: unlock a dead owner's lock without
    pthread_mutex_consistent."""
    _die_holding(lock)
    assert _libc.pthread_mutex_lock(lock._m) == robust_mutex.EOWNERDEAD
    assert _libc.pthread_mutex_unlock(lock._m) == 0
    assert _word(lock, robust_mutex.OWNER_WORD) == robust_mutex.OWNER_NOTRECOVERABLE


def _nonexistent_tid():
    tid = 4_000_000
    while os.path.exists(f"/proc/{tid}"):
        tid += 1
    return tid


@pytest.fixture(params=["Lock", "RLock"])
def lock_cls(request):
    return getattr(sb, request.param)


# ---------------------------------------------------------------- not recoverable

def _entry_points(arr, val, text):
    lk = arr.get_lock()
    return {
        "acquire()": lambda: lk.acquire(),
        "acquire(timeout=0.2)": lambda: lk.acquire(timeout=0.2),
        "acquire(block=False)": lambda: lk.acquire(False),
        "with get_lock()": lambda: lk.__enter__(),
        "with arr": lambda: arr.__enter__(),
        "arr[0]": lambda: arr[0],
        "arr[0] = 1": lambda: arr.__setitem__(0, 1),
        "arr[0] += 1": lambda: arr.__setitem__(0, arr[0] + 1),
        "arr[:]": lambda: arr[:],
        "value.value": lambda: val.value,
        "value.value = 2": lambda: setattr(val, "value", 2),
        "string.value": lambda: text.value,
        "string.raw = ...": lambda: setattr(text, "raw", b"ab"),
    }


def test_every_entry_point_reports_not_recoverable_every_time(lock_cls):
    lock = lock_cls()
    arr = sb.Array("i", 3, lock=lock)
    val = sb.Value("q", 1, lock=lock)
    text = sb.Array("c", 4, lock=lock)
    _make_not_recoverable(lock)
    for _ in range(3):                       # forever, not just for the first acquirer
        for what, call in _entry_points(arr, val, text).items():
            start = time.monotonic()
            with pytest.raises(sb.LockNotRecoverableError, match="reset_lock"):
                call()
            assert time.monotonic() - start < 1, what
            assert _word(lock, robust_mutex.LOCK_WORD) == 0, f"{what} left the lock word set"
    assert lock.state == "not recoverable"


def test_other_processes_also_get_not_recoverable_and_never_hang(lock_cls):
    lock = lock_cls()
    _make_not_recoverable(lock)
    code = f"""
import sharedbridge as sb
lk = sb.attach({lock.name!r})
for call in (lambda: lk.acquire(), lambda: lk.acquire(timeout=1), lambda: lk.acquire(False)):
    for _ in range(2):
        try:
            call()
            print("acquired")
        except sb.LockNotRecoverableError:
            print("not recoverable")
"""
    first = run_python(code, timeout=20).stdout.split()
    second = run_python(code, timeout=20).stdout.split()
    assert first == second == ["not", "recoverable"] * 6
    assert _word(lock, robust_mutex.LOCK_WORD) == 0


# ---------------------------------------------------------------- corrupt mutex bytes

@pytest.mark.parametrize("kind", [0, 0x10 | 0x80, 0x91 | 0x20, 0x92 | 0x20, 0x01, 0x7FFFFFFF])
def test_wrong_kind_word_is_a_corrupt_lock_error(kind):
    arr = sb.Array("i", 2)
    lock = arr.get_lock()
    good = _word(lock, robust_mutex.KIND_WORD)
    _set_word(lock, robust_mutex.KIND_WORD, kind)
    for call in (lock.acquire, lambda: lock.acquire(timeout=0.1), lambda: lock.acquire(False),
                 lambda: arr[0], lambda: arr.__setitem__(1, 5)):
        with pytest.raises(sb.CorruptLockError, match="kind"):
            call()
    assert lock.state == "corrupt"
    _set_word(lock, robust_mutex.KIND_WORD, good)
    arr[0] = 7
    assert arr[0] == 7


@pytest.fixture
def ctl_names():
    yield from fresh_names("sbt_ctl")


def test_wrong_kind_word_stops_every_idiom_of_the_seeds(ctl_names):
    # The four idioms of the seeds (a `with` block and the synchronized accessors, on an
    # Array and a Value), each checking the kind before its pthread call.
    arr, val = sb.Array("q", 3, name=ctl_names()), sb.Value("q", 0, name=ctl_names())

    def with_block(obj, op):
        with obj.get_lock():
            op()

    def increment(a):
        a[1] += 1

    def value_increment(v):
        v.value += 1

    idioms = {
        "with arr.get_lock(): arr[1] += 1": lambda: with_block(arr, lambda: increment(arr)),
        "arr[1] += 1": lambda: increment(arr),
        "with v.get_lock(): v.value += 1": lambda: with_block(val, lambda: value_increment(val)),
        "v.value += 1": lambda: value_increment(val),
        "v.value": lambda: val.value,
    }
    try:
        for obj in (arr, val):
            good = _word(obj, robust_mutex.KIND_WORD)
            _set_word(obj, robust_mutex.KIND_WORD, 0x7FFFFFFF)
            for what, idiom in idioms.items():
                if (obj is arr) == what.startswith(("with arr", "arr")):
                    with pytest.raises(sb.CorruptLockError, match="kind"):
                        idiom()
            assert obj.get_lock().state == "corrupt"
            _set_word(obj, robust_mutex.KIND_WORD, good)
        for idiom in idioms.values():
            idiom()
        assert arr[1] == 2 and val.value == 2
    finally:
        for obj in (arr, val):
            obj.get_lock().close()
            obj.close()


def test_priority_inheritance_kind_with_forged_owner_never_aborts():
    # With the PI bit set and a non-existent owner, glibc's lock paths assert and abort
    # the process: the kind check must stop before any pthread call. Run in a child so
    # that a regression shows as an abort, not as a dead test run.
    code = f"""
import struct, sharedbridge as sb
from sharedbridge._format import header as H
a = sb.Array('i', 1)
mm = a.get_lock()._seg.mm
struct.pack_into('<i', mm, H.LOCK_OFFSET + 16, 0x91 | 0x20)
struct.pack_into('<I', mm, H.LOCK_OFFSET, {_nonexistent_tid()} | 0x40000000)
for call in (lambda: a[0], lambda: a.get_lock().acquire(), lambda: a.get_lock().acquire(False)):
    try:
        call()
        print('no error')
    except sb.CorruptLockError:
        print('corrupt')
"""
    proc = run_python(code, timeout=20)
    assert proc.stdout.split() == ["corrupt"] * 3


def test_forged_owner_that_does_not_exist_stops_a_blocked_acquire(lock_cls):
    lock = lock_cls()
    arr = sb.Array("d", 1, lock=lock)
    tid = _nonexistent_tid()
    _set_word(lock, robust_mutex.LOCK_WORD, tid)
    assert lock.acquire(False) is False            # busy, as far as a try can tell
    calls = {"acquire()": lock.acquire, "acquire(timeout=30)": lambda: lock.acquire(timeout=30),
             "arr[0]": lambda: arr[0]}
    outcomes = {}

    def blocked(what, call):
        start = time.monotonic()
        try:
            call()
            outcomes[what] = "returned"
        except Exception as exc:      # noqa: BLE001 - compared below
            outcomes[what] = exc
        outcomes[what] = (outcomes[what], time.monotonic() - start)

    # The three block at once, in threads: each notices the stale owner at its own
    # owner check (docs/format.md section 7.3), none waits for another.
    threads = [threading.Thread(target=blocked, args=item) for item in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), outcomes
    for what, (outcome, took) in outcomes.items():
        assert isinstance(outcome, sb.CorruptLockError) and str(tid) in str(outcome), (what, outcome)
        assert took < 5, what
    assert lock.state == "corrupt"
    _set_word(lock, robust_mutex.LOCK_WORD, 0)
    arr[0] = 1.5
    assert arr[0] == 1.5


def test_live_owner_is_waited_for_not_reported():
    lock = sb.Lock()
    code = f"""
import sys, time, sharedbridge as sb
lk = sb.attach({lock.name!r})
lk.acquire()
print('held', flush=True)
time.sleep(2.5)
lk.release()
"""
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          env=child_env()) as child:
        assert child.stdout.readline().strip() == "held"
        start = time.monotonic()
        assert lock.acquire(timeout=20)            # waits past two owner checks
        assert time.monotonic() - start > 1.5
        lock.release()
        assert child.wait(timeout=20) == 0


def test_unlock_result_is_checked(lock_cls):
    lock = lock_cls()
    arr = sb.Array("i", 1, lock=lock)
    lock.acquire()
    me = _word(lock, robust_mutex.LOCK_WORD)
    # Someone overwrote the owner (glibc checks __lock for Lock, __owner for RLock).
    _set_word(lock, robust_mutex.LOCK_WORD, _nonexistent_tid())
    _set_word(lock, robust_mutex.OWNER_WORD, _nonexistent_tid())
    with pytest.raises(sb.CorruptLockError, match="unlock"):
        lock.release()
    _set_word(lock, robust_mutex.LOCK_WORD, me)                   # repair, then release for real
    _set_word(lock, robust_mutex.OWNER_WORD, me)
    assert _libc.pthread_mutex_unlock(lock._m) == 0
    arr[0] = 3
    assert arr[0] == 3


def test_accessor_unlock_result_is_checked():
    arr = sb.Array("i", 1)
    lock = arr.get_lock()

    # The element write runs between the accessor's lock and unlock: make it overwrite
    # the owner, as a buggy peer would, by writing through a view of the lock word.
    word = ctypes.c_uint32.from_buffer(lock._seg.mm, H.LOCK_OFFSET)
    owner = ctypes.c_int32.from_buffer(lock._seg.mm, H.LOCK_OFFSET + robust_mutex.OWNER_WORD)
    real = arr.get_obj()

    class Hook:
        def __setitem__(self, i, v):
            real[i] = v
            saved[0] = word.value, owner.value
            word.value = owner.value = _nonexistent_tid()

        def __getitem__(self, i):
            return real[i]

    saved = [0]
    arr._obj = Hook()
    with pytest.raises(sb.CorruptLockError, match="unlock"):
        arr[0] = 9
    word.value, owner.value = saved[0]
    assert _libc.pthread_mutex_unlock(lock._m) == 0
    arr._obj = real
    assert arr[0] == 9
    del word, owner


# ---------------------------------------------------------------- reset_lock

def test_reset_lock_is_explicit_refused_in_use_and_then_works(lock_cls, seg_name):
    lock = lock_cls(seg_name)
    arr = sb.Array("i", 2, lock=lock)
    assert sb.reset_lock(seg_name) is False        # healthy: nothing to do
    _make_not_recoverable(lock)
    with pytest.raises(sb.LockNotRecoverableError):
        arr[0] = 1                                 # never reset implicitly
    code = f"""
import sys, sharedbridge as sb
lk = sb.attach({seg_name!r})
print('attached', flush=True)
sys.stdin.readline()
"""
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, env=child_env()) as child:
        assert child.stdout.readline().strip() == "attached"
        with pytest.raises(sb.SegmentInUseError) as err:
            sb.reset_lock(seg_name)
        assert child.pid in err.value.pids
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=20) == 0
    before = lock.recoveries
    assert sb.reset_lock(seg_name) is True
    assert lock.recoveries == before + 1
    assert lock.state == "free"
    arr[0] += 5
    with arr.get_lock():
        arr[1] = arr[0]
    assert arr[:] == [5, 5]


def test_reset_lock_of_a_corrupt_kind(seg_name):
    arr = sb.Array("i", 1, name=seg_name)
    _set_word(arr, robust_mutex.KIND_WORD, 0)
    with pytest.raises(sb.CorruptLockError):
        arr[0] = 1
    assert sb.reset_lock(seg_name) is True
    arr[0] = 1
    assert arr[0] == 1


def test_reset_lock_names_the_lock_segment_of_an_external_lock(seg_name):
    lock = sb.RLock()
    arr = sb.Array("i", 1, lock=lock, name=seg_name)
    with pytest.raises(sb.TypeMismatchError, match=lock.name):
        sb.reset_lock(arr.name)
    raw = sb.RawArray("i", 1)
    with pytest.raises(sb.TypeMismatchError, match="no shared lock"):
        sb.reset_lock(raw.name)


def test_lock_del_after_failed_construction_is_silent():
    code = """
import sharedbridge as sb
try:
    sb.Lock('bad/name')
except sb.InvalidNameError:
    print('refused')
"""
    proc = run_python(code)
    assert proc.stdout.split() == ["refused"]
    assert proc.stderr == ""


def test_failed_lock_construction_is_quiet(pyh_name):
    name = pyh_name()
    held = sb.Lock(name=name)
    proc = run_python(
        "import gc, sys, sharedbridge as sb\n"
        "for bad in (sys.argv[1], 'no/slash'):\n"
        "    try:\n"
        "        sb.Lock(name=bad)\n"
        "    except (sb.SegmentExistsError, sb.InvalidNameError) as e:\n"
        "        print(type(e).__name__)\n"
        "gc.collect()\n", name)
    assert proc.stdout.split() == ["SegmentExistsError", "InvalidNameError"]
    assert proc.stderr == ""
    assert held.name == name


def test_kill_while_blocked_leaves_the_lock_consistent():
    # A waiter killed in the middle of its wait slices leaves nothing that blocks others.
    lock = sb.Lock()
    lock.acquire()
    code = f"""
import sharedbridge as sb
lk = sb.attach({lock.name!r})
print('waiting', flush=True)
lk.acquire()
"""
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          env=child_env()) as child:
        assert child.stdout.readline().strip() == "waiting"
        time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    lock.release()
    assert lock.acquire(timeout=1)
    lock.release()
    assert lock.state == "free"
