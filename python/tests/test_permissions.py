"""Who may open a segment (docs/format.md section 1.2, docs/security.md): segments are
0600 whatever the umask, a configured mode is exact and checked, a segment owned by another
user is refused unless the caller opts in (and the opt-in travels with a pickled object),
and EACCES is a PermissionError."""

import os
import pickle
import stat

import pytest

import sharedbridge as sb
from sharedbridge._format import header as H
from sharedbridge._platform.segment import create as create_segment
from sharedbridge._format.segment_name import qualify
from conftest import run_python, shm_exists

# The directory backend run (docs/format.md section 1.3) sets SHAREDBRIDGE_DIR: segments are files there.
SHM = os.environ.get("SHAREDBRIDGE_DIR") or "/dev/shm"


def test_default_mode_is_0600_whatever_the_umask():
    proc = run_python(
        "import os, stat, sharedbridge as sb\n"
        "os.umask(0o277)\n"
        "a = sb.RawArray('i', 1); l = sb.Lock()\n"
        "d = os.environ.get('SHAREDBRIDGE_DIR') or '/dev/shm'\n"
        "print(*[oct(stat.S_IMODE(os.stat(d + '/' + o.name).st_mode)) for o in (a, l)])\n"
        "print(a[0])\n")
    assert proc.stdout.split() == ["0o600", "0o600", "0"]


def _lock_header():
    abi, size = H.native_lock_abi()
    return H.SegmentHeader(
        version=1, compat_version=1, header_size=512, kind=3, typecode="", element_size=0,
        element_count=0, data_offset=512, data_size=0, lock_kind=1, lock_abi=abi,
        lock_size=size, lock_offset=0x1C0, lock_type=1, fields=(), creator_pid=os.getpid(),
        creator_start_time=0, created_unix_ns=0, type_name="", lock_name="")


def test_configured_mode_is_exact_and_checked(pyh_name):
    old = os.umask(0o077)
    try:
        name = pyh_name()
        seg = create_segment(qualify(name), _lock_header(), lambda mm: None, mode=0o660)
        assert stat.S_IMODE(os.stat(f"{SHM}/{name}").st_mode) == 0o660
        seg.close()
    finally:
        os.umask(old)
    for bad in (0o1600, 0o4600, 0o10600, 0o400, 0o200, 0o066, -1, "0600", 600.0, True):
        name = pyh_name()
        with pytest.raises(ValueError, match="mode"):
            create_segment(qualify(name), _lock_header(), lambda mm: None, mode=bad)
        assert not shm_exists(name)


def test_segment_of_another_user_needs_opt_in():
    a = sb.RawArray("i", [11])
    lock = sb.RLock()
    v = sb.Value("i", 5, lock=lock)
    for obj in (a, lock, v):
        os.chown(f"{SHM}/{obj.name}", 65534, -1)
    for obj in (a, lock, v):
        with pytest.raises(sb.SegmentPermissionError, match="owned by uid 65534") as e:
            sb.attach(obj.name)
        assert "allow_other_owner=True" in str(e.value)
        assert isinstance(e.value, PermissionError)
        with pytest.raises(sb.SegmentPermissionError):
            sb.header_of(obj.name)
    assert sb.attach(a.name, allow_other_owner=True)[0] == 11
    assert sb.header_of(a.name, allow_other_owner=True).element_count == 1
    assert sb.attach(lock.name, allow_other_owner=True) is lock
    got = sb.attach(v.name, allow_other_owner=True)
    with got:
        assert got.value == 5
    # the permission travels with the object to another process
    proc = run_python(
        "import pickle, sys, sharedbridge as sb\n"
        "try:\n"
        "    sb.attach(sys.argv[2])\n"
        "except sb.SegmentPermissionError:\n"
        "    print('refused')\n"
        "obj = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        "with obj: print(obj.value)\n",
        pickle.dumps(got).hex(), v.name)
    assert proc.stdout.split() == ["refused", "5"]


def test_eacces_is_a_permission_error():
    a = sb.RawArray("i", 1)
    proc = run_python(
        "import os, sys, sharedbridge as sb\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "for fn in (lambda: sb.attach(sys.argv[1]), lambda: sb.attach(sys.argv[1], allow_other_owner=True)):\n"
        "    try:\n"
        "        fn()\n"
        "    except sb.SegmentPermissionError as e:\n"
        "        print(type(e).__name__, isinstance(e, PermissionError), sys.argv[1] in str(e))\n",
        a.name)
    assert proc.stdout.split() == ["SegmentPermissionError", "True", "True"] * 2
