"""sharedbridge.dotnet: the .NET SharedBridge library in this Python process, through pythonnet.

For Jupyter notebooks and scripts that call .NET in-process with pythonnet (Python.NET 3).
Nothing else in sharedbridge imports this module, and it imports pythonnet only when
:func:`load` runs (every other function calls it first)::

    import sharedbridge.dotnet as sbn
    sb = sbn.load()                         # pythonnet.load("coreclr"), clr, the assembly
    from System import Double
    net = sb.SharedArray[Double].Create("pts", 1_000_000)   # or sbn.create_array('d', ...)
    view = sbn.as_numpy(net)                # zero-copy numpy view of .NET's own mapping
    py = sbn.to_python(net)                 # the Python package's object, same segment and lock
    back = sbn.to_dotnet(py)                # and a .NET object again

The assembly is found, in order: the *path* given to load(), the environment variable
SHAREDBRIDGE_DOTNET_ASSEMBLY (a SharedBridge.dll, or the folder holding it), and a
SharedBridge.dll shipped inside the installed package (``sharedbridge/_dotnet/``).

Errors: .NET SharedBridge exceptions raised inside this module's functions arrive as the
Python package's exceptions (SegmentNotFoundError, a FileNotFoundError, ...), the .NET
exception kept as ``__cause__`` and ``.dotnet_exception``. Calls you make on the .NET objects
yourself raise the .NET types; wrap them in ``with sbn.errors():`` to get the Python ones.

Lifetime: under pythonnet ``AppDomain.ProcessExit`` never runs, and the .NET library's
SIGTERM/SIGINT/SIGHUP handlers would fight the interpreter's (an interrupted notebook cell
would unlink every .NET segment). load() therefore hands the signals to Python
(``SegmentCleanup.SignalHandlersEnabled = False``) and releases every segment this process
created, .NET's and Python's, itself: in an atexit function registered after pythonnet's own,
so it runs first and in microseconds, before ``pythonnet.unload()`` (seconds; a Jupyter kernel
is sent SIGTERM 2.5 s after a shutdown request); and on SIGTERM and SIGHUP (and SIGINT when
its action is the default), with the rules of the Python package: a signal left at its default
action gets a handler that releases, restores the default and re-sends the signal; an
application's handler is left alone. Python's own SIGINT handler (KeyboardInterrupt, and a
notebook's interrupt) is left alone: interrupting a cell releases nothing.

Locks: .NET and Python objects for one segment share one robust mutex. From Python, take the
.NET lock with ``with net_obj.LockUnscoped():`` (a LockHandle; ``Lock()`` returns a LockScope, a
ref struct pythonnet cannot return). Called on one thread, the two languages are one owner: with
the default recursive lock, .NET's lock inside Python's
``with obj.get_lock():`` (or the reverse) nests, it does not exclude; it protects against
other threads and processes only. A non-recursive lock (``SegmentOptions(recursiveLock=False)``,
``sharedbridge.Lock``) taken by one language and again by the other on the same thread is
refused (.NET: LockRecursionException; Python: RuntimeError), never a hang.
"""

import atexit
import contextlib
import ctypes
import errno
import os
import signal
import sys
import threading
import weakref

from . import _segment_for, header_of
from . import attach as _py_attach
from ._format import header as H
from ._platform import exit_cleanup
from ._objects.lifetimes import lifetime_code as _lifetime_code
from .errors import (CorruptDataError, CorruptLockError, CorruptSegmentError,
                     InsufficientMemoryError, InvalidNameError, LockNotRecoverableError,
                     NotASharedBridgeSegmentError, SegmentExistsError, SegmentInUseError,
                     SegmentNotFoundError, SegmentNotReadyError, SegmentPermissionError,
                     SharedBridgeError, TypeMismatchError, UnsupportedTypeError,
                     UnsupportedVersionError)

ENV_ASSEMBLY = "SHAREDBRIDGE_DOTNET_ASSEMBLY"
ASSEMBLY_FILE = "SharedBridge.dll"

__all__ = ["load", "loaded", "as_numpy", "to_python", "to_dotnet", "create_array",
           "create_value", "attach", "errors", "translate", "release_created_segments",
           "DotnetUnavailableError", "LockTimeoutError", "ENV_ASSEMBLY"]


class DotnetUnavailableError(ImportError):
    """pythonnet, the .NET runtime or the SharedBridge assembly cannot be found or loaded;
    the message says which and how to get it."""


class LockTimeoutError(SharedBridgeError, TimeoutError):
    """A .NET ``Lock(timeout)`` did not get the lock in time (.NET LockTimeoutException)."""


_gate = threading.RLock()
_sb = None              # the SharedBridge .NET namespace once loaded
_assembly_path = None


def loaded():
    """True once load() has succeeded in this process."""
    return _sb is not None


def load(path=None):
    """Load the .NET runtime (pythonnet, "coreclr" unless PYTHONNET_RUNTIME says otherwise or
    a runtime is already loaded) and the SharedBridge assembly; return the ``SharedBridge``
    .NET namespace (``sb.SharedArray[Double]``, ``sb.SegmentOptions``, ...). Idempotent.

    *path*: a SharedBridge.dll or its folder; else SHAREDBRIDGE_DOTNET_ASSEMBLY, else the
    copy shipped in the package. Raises DotnetUnavailableError saying what is missing.
    """
    global _sb, _assembly_path
    with _gate:
        if _sb is not None:
            if path is not None and _resolve(path) != _assembly_path:
                raise DotnetUnavailableError(
                    f"SharedBridge is already loaded from {_assembly_path}; a process holds one "
                    f"copy (asked for {path})")
            return _sb
        dll = _find_assembly(path)
        clr = _load_runtime()
        try:
            clr.AddReference(dll)
            import SharedBridge as sb          # the .NET namespace, through pythonnet
        except Exception as e:
            raise DotnetUnavailableError(
                f"cannot load the SharedBridge assembly {dll}: {e} (it needs .NET 10; build it "
                f"with `dotnet build src/Dotnet/SharedBridge -c Release`)") from e
        _take_over_cleanup(sb)
        _assembly_path = dll
        _sb = sb
        return sb


def _resolve(path):
    path = os.path.abspath(os.fspath(path))
    return os.path.join(path, ASSEMBLY_FILE) if os.path.isdir(path) else path


def _find_assembly(path):
    tried = []
    candidates = []
    if path is not None:
        candidates.append(("the path given to load()", _resolve(path)))
    elif os.environ.get(ENV_ASSEMBLY):
        candidates.append((ENV_ASSEMBLY, _resolve(os.environ[ENV_ASSEMBLY])))
    else:
        candidates.append(("the installed package",
                           os.path.join(os.path.dirname(os.path.abspath(__file__)), "_dotnet",
                                        ASSEMBLY_FILE)))
    for source, candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
        tried.append(f"{candidate} ({source})")
    raise DotnetUnavailableError(
        "the SharedBridge .NET assembly was not found: tried " + ", ".join(tried) + ". Build "
        "it (`dotnet build src/Dotnet/SharedBridge -c Release`) and pass its path to "
        f"sharedbridge.dotnet.load(path) or set {ENV_ASSEMBLY} to it")


def _load_runtime():
    try:
        import pythonnet
    except ImportError as e:
        raise DotnetUnavailableError(
            "sharedbridge.dotnet needs pythonnet (Python.NET 3): pip install pythonnet "
            "(it needs cffi: apt-get install python3-cffi for Debian's python3)") from e
    if "clr" not in sys.modules and pythonnet.get_runtime_info() is None:
        runtime = os.environ.get("PYTHONNET_RUNTIME") or "coreclr"
        try:
            pythonnet.load(runtime)
        except Exception as e:
            raise DotnetUnavailableError(
                f"pythonnet could not start the .NET runtime ({runtime!r}): {e}. Install the "
                ".NET 10 runtime (https://dotnet.microsoft.com/download) or set DOTNET_ROOT") from e
    try:
        import clr
    except Exception as e:
        raise DotnetUnavailableError(f"pythonnet is installed but `import clr` failed: {e}") from e
    return clr


def _sb_or_load():
    return _sb if _sb is not None else load()


# ---- Errors ----------------------------------------------------------------------------

def _errno_error(cls, code):
    return lambda e, msg: cls(code, msg, str(e.SegmentName))


_TRANSLATIONS = {
    "SegmentNotFoundException": _errno_error(SegmentNotFoundError, errno.ENOENT),
    "SegmentExistsException": _errno_error(SegmentExistsError, errno.EEXIST),
    "SegmentAccessDeniedException": lambda e, msg: SegmentPermissionError(errno.EACCES, msg),
    "InvalidSegmentNameException": lambda e, msg: InvalidNameError(msg),
    "UnsupportedFormatVersionException": lambda e, msg: UnsupportedVersionError(msg),
    "NotASharedBridgeSegmentException": lambda e, msg: NotASharedBridgeSegmentError(msg),
    "CorruptDataException": lambda e, msg: CorruptDataError(msg, str(e.SegmentName), int(e.Index)),
    "CorruptSegmentException": lambda e, msg: CorruptSegmentError(msg),
    "TypeMismatchException": lambda e, msg: TypeMismatchError(msg),
    "UnsupportedTypeException": lambda e, msg: UnsupportedTypeError(msg),
    "SegmentNotReadyException": lambda e, msg: SegmentNotReadyError(msg),
    "LockTimeoutException": lambda e, msg: LockTimeoutError(msg),
    "LockNotRecoverableException": lambda e, msg: LockNotRecoverableError(msg),
    "CorruptLockException": lambda e, msg: CorruptLockError(msg),
    "SegmentInUseException": lambda e, msg: SegmentInUseError(msg, [int(p) for p in e.ProcessIds]),
    "InsufficientSharedMemoryException": lambda e, msg: InsufficientMemoryError(msg),
    "SharedBridgeException": lambda e, msg: SharedBridgeError(msg),
}


def translate(exc):
    """The Python package's exception for a .NET SharedBridge exception (the nearest mapped
    base class), with ``.dotnet_exception``; None for any other exception."""
    for cls in type(exc).__mro__:
        make = _TRANSLATIONS.get(cls.__name__) if cls.__module__ == "SharedBridge" else None
        if make is not None:
            try:
                msg = str(exc.Message)
            except Exception:
                msg = str(exc)
            py = make(exc, msg)
            py.dotnet_exception = exc
            return py
    return None


@contextlib.contextmanager
def errors():
    """Context manager (and decorator): .NET SharedBridge exceptions raised inside arrive as
    the Python package's exceptions, chained to the .NET one."""
    try:
        yield
    except Exception as e:
        py = translate(e)
        if py is None:
            raise
        raise py from e


# ---- numpy views -----------------------------------------------------------------------

_SIMPLE_DTYPES = {"c": "S1", "u": "<U1", "?": "?", "b": "i1", "B": "u1", "h": "<i2",
                  "H": "<u2", "i": "<i4", "I": "<u4", "l": "<i8", "L": "<u8", "q": "<i8",
                  "Q": "<u8", "f": "<f4", "d": "<f8"}
_dtype_cache = {}


def _struct_dtype(numpy, fields, parent, size):
    names, formats, offsets = [], [], []
    for index, f in enumerate(fields):
        if f[5] != parent:
            continue
        name, code, offset, count, item_size = f[:5]
        base = (_struct_dtype(numpy, fields, index, item_size) if code == "T"
                else numpy.dtype(_SIMPLE_DTYPES[code]))
        names.append(name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(offset)
    return numpy.dtype({"names": names, "formats": formats, "offsets": offsets,
                        "itemsize": size})


def _dtype_of(numpy, net_obj, typecode):
    key = (type(net_obj), typecode)
    dtype = _dtype_cache.get(key)
    if dtype is None:
        if typecode == "T":
            h = net_obj.Header
            fields = [(str(f.Name), str(f.TypeCode), int(f.Offset), int(f.Count),
                       int(f.ItemSize), int(f.Parent)) for f in h.Fields]
            dtype = _struct_dtype(numpy, fields, -1, int(h.ElementSize))
        else:
            dtype = numpy.dtype(_SIMPLE_DTYPES[typecode])
        _dtype_cache[key] = dtype
    return dtype


def _kind(net_obj):
    name = type(net_obj).__name__
    if name.startswith("SharedArray"):
        return "array"
    if name.startswith("SharedValue"):
        return "value"
    return None


# One numpy base array per .NET object (keyed by the id of its pythonnet wrapper, checked through a
# weak reference): building it takes four pythonnet member calls (about 25 us, mostly pythonnet's
# method binding), handing out a new view of it takes about a microsecond.
_views = {}


def as_numpy(net_obj):
    """A zero-copy numpy view of a .NET ``SharedArray<T>`` (shape (n,)) or ``SharedValue<T>``
    (shape ()), over .NET's own mapping (no second mapping). Struct elements give a structured
    dtype with the field names the segment records. The view holds a ``SharedDataView``, so it
    stays valid as long as the view lives, even after the .NET object is disposed. Like the
    Python package's as_numpy, the view is raw memory and does not take the lock.

    The first call for an object makes its data view; later calls return new numpy views of the
    same memory (about a microsecond). That data view, and so the mapping, is released when the
    .NET object's Python wrapper and every numpy view of it are gone, or at the first call after
    the object is disposed (which raises ObjectDisposedException, as ever)."""
    key = id(net_obj)
    entry = _views.get(key)
    if entry is not None and entry[0]() is net_obj:
        if not net_obj.IsDisposed:
            return entry[1].view()
        _views.pop(key, None)
    try:
        import numpy
    except ImportError:
        raise ImportError("sharedbridge.dotnet.as_numpy needs numpy: pip install numpy "
                          "(or apt-get install python3-numpy)") from None
    kind = _kind(net_obj)
    if kind is None:
        raise TypeError(f"as_numpy expects a .NET SharedArray<T> or SharedValue<T>, not "
                        f"{type(net_obj).__name__}")
    with errors():
        dtype = _dtype_of(numpy, net_obj, str(net_obj.TypeCode))
        view = net_obj.CreateDataView()
    nbytes = int(view.ByteLength)
    if nbytes == 0:
        view.Dispose()
        return numpy.empty(0, dtype)
    buf = (ctypes.c_char * nbytes).from_address(view.Address.ToInt64())
    finalizer = weakref.finalize(buf, view.Dispose)
    finalizer.atexit = False        # at exit the runtime may be gone; the mapping goes anyway
    base = numpy.frombuffer(buf, dtype)
    if kind == "value":
        base = base.reshape(())
    try:
        ref = weakref.ref(net_obj, lambda r, key=key: _views.pop(key, None)
                          if _views.get(key, (None,))[0] is r else None)
    except TypeError:               # a wrapper without weak references: no cache
        return base.view()
    _views[key] = (ref, base)
    return base.view()


# ---- Conversions -----------------------------------------------------------------------

_NET_TYPE_NAMES = {"b": "SByte", "B": "Byte", "h": "Int16", "H": "UInt16", "i": "Int32",
                   "I": "UInt32", "l": "Int64", "L": "UInt64", "q": "Int64", "Q": "UInt64",
                   "f": "Single", "d": "Double", "?": "Boolean"}


def _net_element_type(typecode, net_type):
    if net_type is not None:
        return net_type
    if typecode == "u":
        from System.Text import Rune
        return Rune
    if typecode == "T":
        raise TypeError("a structure segment needs its .NET struct type: pass net_type= "
                        "(a [StructLayout(Sequential)] struct with the same fields)")
    import System
    return getattr(System, _NET_TYPE_NAMES[typecode])


def attach(name, net_type=None, *, ready_timeout=None, allow_other_owner=False):
    """Open the existing segment *name* as the .NET object its header describes:
    ``SharedArray<T>``, ``SharedValue<T>``, ``SharedCharArray`` ('c' arrays) or ``SharedLock``.
    T is *net_type* or the .NET type of the typecode (structures need *net_type*)."""
    sb = _sb_or_load()
    with errors():
        options = _open_options(sb, ready_timeout, allow_other_owner)
        h = header_of(name, allow_other_owner=allow_other_owner)
        if h.kind == H.KIND_LOCK:
            return sb.SharedLock.Open(name, options)
        if h.kind == H.KIND_ARRAY and h.typecode == "c" and net_type is None:
            return sb.SharedCharArray.Open(name, options)
        element = _net_element_type(h.typecode, net_type)
        generic = sb.SharedArray if h.kind == H.KIND_ARRAY else sb.SharedValue
        return generic[element].Open(name, options)


def _open_options(sb, ready_timeout, allow_other_owner):
    from System import TimeSpan
    timeout = None if ready_timeout is None else TimeSpan.FromSeconds(float(ready_timeout))
    return sb.OpenOptions(timeout, bool(allow_other_owner))


def to_dotnet(py_obj, net_type=None):
    """A .NET object for the segment of a Python sharedbridge object (Array, Value, RawArray,
    RawValue, their synchronized wrappers, Lock, RLock): the same memory and the same robust
    lock. The .NET object is an opener, never the creator: disposing it unlinks nothing."""
    return attach(_segment_for(py_obj).name, net_type)


def to_python(net_obj, typecode_or_type=None):
    """The Python package's object for the segment of a .NET SharedBridge object: attach() by
    name (a synchronized wrapper when the segment has a lock: the same robust mutex)."""
    _sb_or_load()
    with errors():
        name = str(net_obj.Name)
    return _py_attach(name, typecode_or_type)


def _segment_options(sb, lock, keep, typecode=None, lifetime=None):
    # lifetime= and keep= as in sharedbridge.Array (keep=True: persistent; contradictions
    # are a ValueError), given to .NET as SegmentOptions.Lifetime.
    code = _lifetime_code(lifetime, keep)
    net_lifetime = (sb.SegmentLifetime.Creator, sb.SegmentLifetime.LastCloser,
                    sb.SegmentLifetime.Persistent)[code]
    return sb.SegmentOptions(synchronized=bool(lock), typeCode=typecode, lifetime=net_lifetime)


def _element_and_code(typecode_or_type):
    """(.NET element type, explicit typecode for SegmentOptions or None) of a typecode or a
    .NET type: 'l'/'L' are recorded as such, every other typecode by the .NET type alone."""
    if isinstance(typecode_or_type, str):
        code = typecode_or_type if typecode_or_type in ("l", "L") else None
        return _net_element_type(typecode_or_type, None), code
    return typecode_or_type, None


def create_array(typecode_or_type, size_or_initializer, *, name=None, lock=True, lifetime=None,
                 keep=False):
    """Create a .NET ``SharedArray<T>`` from Python: *typecode_or_type* is a typecode ('d',
    'i', ...) or a .NET type; *size_or_initializer* a length or a sequence / numpy array
    (copied in through a numpy view when numpy is there: one memcpy, not element by element)."""
    sb = _sb_or_load()
    element, code = _element_and_code(typecode_or_type)
    initial = None
    if isinstance(size_or_initializer, int):
        length = size_or_initializer
    else:
        initial = size_or_initializer
        length = len(initial)
    with errors():
        arr = sb.SharedArray[element].Create(name, length,
                                             _segment_options(sb, lock, keep, code, lifetime))
    if initial is not None:
        try:
            as_numpy(arr)[:] = initial
        except ImportError:
            for i, v in enumerate(initial):
                arr.Set(i, v)
    return arr


def create_value(typecode_or_type, value=None, *, name=None, lock=True, lifetime=None,
                 keep=False):
    """Create a .NET ``SharedValue<T>`` holding *value* (default zero)."""
    sb = _sb_or_load()
    element, code = _element_and_code(typecode_or_type)
    options = _segment_options(sb, lock, keep, code, lifetime)
    with errors():
        if value is None:
            return sb.SharedValue[element].Create(name, options=options)
        return sb.SharedValue[element].Create(name, value, options)


# ---- Lifetime --------------------------------------------------------------------------

_HANDLED = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n))
_installed = set()


def release_created_segments():
    """Retire and unlink every segment this process created and did not keep, .NET's and
    Python's (objects stay usable; their names are gone). Returns how many .NET segments
    were released. Runs by itself at exit and on SIGTERM/SIGHUP; call it from your own
    shutdown path if you have one."""
    released = 0
    sb = _sb
    if sb is not None:
        try:
            released = int(sb.SegmentCleanup.ReleaseCreatedSegments())
        except Exception:
            pass
    exit_cleanup.release_owned()
    return released


def _at_exit():
    release_created_segments()
    # Nothing is left to release: during pythonnet's slow unload that follows, SIGTERM (a
    # Jupyter kernel's shutdown deadline) may have its default action again.
    for sig in list(_installed):
        try:
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, signal.SIG_DFL)
        except (ValueError, OSError, RuntimeError):
            pass


def _on_signal(signum, frame):
    release_created_segments()
    _installed.discard(signum)
    exit_cleanup.die_by_default_action(signum)


def _take_over_cleanup(sb):
    # The .NET handlers would run on a .NET thread, beside the interpreter's: SIGINT (a
    # notebook's interrupt) would unlink every .NET segment while the kernel goes on.
    sb.SegmentCleanup.SignalHandlersEnabled = False
    atexit.register(_at_exit)          # after pythonnet.load's atexit(unload): runs before it
    if threading.current_thread() is not threading.main_thread():
        return
    python_handler = getattr(exit_cleanup, "_on_signal", None)
    for sig in _HANDLED:
        try:
            current = signal.getsignal(sig)
            if current == signal.SIG_DFL or (current is python_handler and python_handler):
                signal.signal(sig, _on_signal)
                _installed.add(sig)
        except (ValueError, OSError, RuntimeError):
            return
