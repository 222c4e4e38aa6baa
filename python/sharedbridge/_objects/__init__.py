"""The objects users get: raw ctypes objects over a segment (raw_object), named locks
(shared_lock), the synchronized wrappers (synchronized), attach by name (attach), the
multiprocessing.sharedctypes factories (sharedctypes) and numpy views (numpy_view); the
.NET library's Objects folder holds the same. Imports _platform, _format,
sharedbridge.errors and the standard library, never the public package; inside the
layer, raw_object and shared_lock import no sibling, synchronized builds on both, and
attach, sharedctypes and numpy_view on top. scripts/check_python_layers.py enforces it.
"""
