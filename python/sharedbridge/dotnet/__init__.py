"""sharedbridge.dotnet: the .NET SharedBridge library in this Python process, through pythonnet.

For Jupyter notebooks and scripts that call .NET in-process with pythonnet (Python.NET 3).
Nothing else in sharedbridge imports this subpackage, and it imports pythonnet only when
:func:`load` runs (every other function calls it first)::

    import sharedbridge.dotnet as sbn
    sb = sbn.load()                         # pythonnet.load("coreclr"), clr, the assembly
    from System import Double
    net = sb.SharedArray[Double].Create("pts", 1_000_000)   # or sbn.create_array('d', ...)
    view = sbn.as_numpy(net)                # zero-copy numpy view of .NET's own mapping
    py = sbn.to_python(net)                 # the Python package's object, same segment and lock
    back = sbn.to_dotnet(py)                # and a .NET object again

The assembly: one this process already loaded (an application's own
``clr.AddReference(path)``: used as it is, wherever it came from); else, in order, the *path*
given to load(), the environment variable SHAREDBRIDGE_DOTNET_ASSEMBLY (a SharedBridge.dll, or
the folder holding it), and a SharedBridge.dll shipped inside the installed package
(``sharedbridge/_dotnet/``).

``open(name)`` opens a segment of any kind as its .NET object (arrays, values, n-dimensional
arrays, locks, events, semaphores, conditions, barriers, queues); ``to_dotnet(obj)`` does it
for a Python object.

Errors: .NET SharedBridge exceptions raised inside this subpackage's functions arrive as the
Python package's exceptions (SegmentNotFoundError, a FileNotFoundError, ...), the .NET
exception kept as ``__cause__`` and ``.dotnet_exception`` (the table of docs/api.md, "Errors
in both languages"). Calls you make on the .NET objects
yourself raise the .NET types; wrap them in ``with sbn.errors():`` to get the Python ones.

Lifetime: under pythonnet ``AppDomain.ProcessExit`` never runs, and the .NET library's
SIGTERM/SIGINT/SIGHUP handlers would fight the interpreter's (an interrupted notebook cell
would unlink every .NET segment). load() therefore hands the signals to Python
(``SegmentCleanup.SignalHandlersEnabled = False``) and releases every segment this process
created, .NET's and Python's, itself, however the assembly was loaded (importing this
subpackage after ``clr.AddReference`` takes the cleanup over at once; imported before, its
first call does, or the exit when pythonnet was loaded before the import): in an atexit function registered after pythonnet's own,
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

One module each: loader (pythonnet, the runtime and the assembly), error_map (.NET
exceptions -> Python ones), views (numpy views), factories (create, attach, convert) and
cleanup (exit and signals). Only loader imports pythonnet, and only when load() runs.
"""

from ..errors import LockTimeoutError
from .cleanup import release_created_segments
from .error_map import errors, translate
from .factories import (attach, create_array, create_tensor, create_value, open, to_dotnet,
                        to_python)
from .loader import (ASSEMBLY_FILE, ENV_ASSEMBLY, DotnetUnavailableError, install_exit_hook, load,
                     loaded)
from .views import as_numpy

install_exit_hook()

__all__ = ["load", "loaded", "as_numpy", "to_python", "to_dotnet", "create_array",
           "create_tensor", "create_value", "open", "attach", "errors", "translate",
           "release_created_segments", "DotnetUnavailableError", "LockTimeoutError", "ENV_ASSEMBLY"]
