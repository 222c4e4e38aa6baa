"""The objects users get: raw ctypes objects over a segment (raw_object), named locks
(shared_lock), the synchronized wrappers (synchronized), synchronization objects (sync),
attach by name (attach), the multiprocessing.sharedctypes factories (sharedctypes),
n-dimensional arrays (ndarray, with their DLPack capsules in dlpack) and numpy views
(numpy_view); the .NET library's Objects folder holds the same. Every kind of
object tells protocol.segment_of how to find its segment: the one way the public
functions (close, header_of) and sharedbridge.dotnet use. Imports _platform, _format,
sharedbridge.errors and the standard library, never the public package; inside the
layer, protocol, unavailable and lifetimes import no sibling, raw_object and shared_lock
build on them, synchronized and sync on those, and attach, sharedctypes and numpy_view
on top. scripts/check_python_layers.py enforces it (no cycle, nothing upward).
"""
