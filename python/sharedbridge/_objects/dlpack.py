"""DLPack export of shared memory: the capsules of ``__dlpack__`` (standard library only).

DLPack (https://dmlc.github.io/dlpack/latest/) hands a tensor from a producer to a
consumer (numpy.from_dlpack, torch.from_dlpack) as a PyCapsule holding a
``DLManagedTensor`` (the legacy capsule "dltensor", DLPack < 1.0: what numpy 1.24 and
torch 1.13 ask for) or a ``DLManagedTensorVersioned`` ("dltensor_versioned", DLPack 1.0,
for consumers that pass ``max_version >= (1, 0)``). The structures are built with ctypes;
the consumer calls their ``deleter`` when it no longer uses the memory.

What keeps the memory valid: every export is an :class:`_Export` registered in
``_exports`` under the address of its managed structure. It holds the managed structure,
the shape and strides, and *owner*, an object that keeps the mapping alive (mapping.py:
the segment's mapping is unmapped only when the last object using it is gone). The
deleter removes the registration, so the mapping can go once the consumer's view is gone
and nothing else uses it. A capsule that no consumer took (its name is still
"dltensor"/"dltensor_versioned" when it is collected) calls the deleter itself, as the
DLPack specification asks of producers.
"""

import ctypes

KDL_CPU = 1                  # DLDeviceType kDLCPU
KDL_INT, KDL_UINT, KDL_FLOAT, KDL_BOOL = 0, 1, 2, 6      # DLDataTypeCode
FLAG_IS_COPIED = 1 << 1      # DLPACK_FLAG_BITMASK_IS_COPIED (versioned capsules only)
DLPACK_VERSION = (1, 0)      # the version of DLManagedTensorVersioned built here

# typecode -> (DLDataTypeCode, bits). 'c' (one byte) travels as uint8 and 'u' (a Unicode
# code point) as uint32: DLPack has no character types (docs/api.md, "DLPack").
DL_TYPES = {
    "b": (KDL_INT, 8), "h": (KDL_INT, 16), "i": (KDL_INT, 32), "l": (KDL_INT, 64),
    "q": (KDL_INT, 64), "B": (KDL_UINT, 8), "H": (KDL_UINT, 16), "I": (KDL_UINT, 32),
    "L": (KDL_UINT, 64), "Q": (KDL_UINT, 64), "f": (KDL_FLOAT, 32), "d": (KDL_FLOAT, 64),
    "?": (KDL_BOOL, 8), "c": (KDL_UINT, 8), "u": (KDL_UINT, 32),
}


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("version", DLPackVersion), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p), ("flags", ctypes.c_uint64),
                ("dl_tensor", DLTensor)]


_LEGACY_NAME = b"dltensor"
_VERSIONED_NAME = b"dltensor_versioned"

_api = ctypes.pythonapi
_capsule_new = _api.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)
# Called with the address of a capsule being deallocated: c_void_p, never py_object (which
# would take a new reference to a dying object).
_capsule_is_valid = _api.PyCapsule_IsValid
_capsule_is_valid.restype = ctypes.c_int
_capsule_is_valid.argtypes = (ctypes.c_void_p, ctypes.c_char_p)


class _Export:
    """One exported tensor: the managed structure, its shape and strides, and the object
    that keeps the memory mapped, alive until the consumer calls the deleter."""

    __slots__ = ("managed", "dims", "owner")

    def __init__(self, managed, dims, owner):
        self.managed = managed
        self.dims = dims
        self.owner = owner


# address of a managed structure -> its _Export (the consumer holds the address only).
_exports = {}
# address of a capsule not yet collected -> the address of its managed structure.
_capsules = {}


def live_exports():
    """How many exported tensors a consumer still holds (tests: nothing leaks)."""
    return len(_exports)


def _deleter(address, _exports=_exports):
    # The consumer is done (or the capsule was never consumed): the registration goes,
    # and with it the last reference this module holds to the mapping. A default
    # argument, not a global: it may run while the interpreter clears modules at exit.
    _exports.pop(address, None)


def _capsule_destructor(capsule, _deleter=_deleter, _capsules=_capsules):
    # A capsule still named "dltensor"/"dltensor_versioned" when it is collected was not
    # consumed: the producer deletes it (DLPack, "Python specification"). A consumed one
    # was renamed "used_dltensor..." and its consumer calls the deleter. The managed
    # structure's address comes from our own table, not from PyCapsule_GetPointer, which
    # was seen to fail on a capsule that torch 1.13 had refused (Unsupported code).
    address = _capsules.pop(capsule, None)
    if address is not None and (_capsule_is_valid(capsule, _LEGACY_NAME)
                                or _capsule_is_valid(capsule, _VERSIONED_NAME)):
        _deleter(address)


_DELETER_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_DELETER = _DELETER_T(_deleter)
_DESTRUCTOR = _DELETER_T(_capsule_destructor)
# The callbacks' code must outlive every tensor a consumer may free late (torch can free
# one while the interpreter shuts down): one reference each that is never released.
for _callback in (_DELETER, _DESTRUCTOR):
    _api.Py_IncRef(ctypes.py_object(_callback))
del _callback
_DELETER_ADDRESS = ctypes.cast(_DELETER, ctypes.c_void_p).value
_DESTRUCTOR_ADDRESS = ctypes.cast(_DESTRUCTOR, ctypes.c_void_p).value


def check_request(stream=None, max_version=None, dl_device=None, copy=None):
    """Validate the keyword arguments of __dlpack__ (array API 2023.12) for a CPU array;
    returns True for a versioned capsule (the consumer accepts DLPack 1.0 or newer)."""
    if stream is not None and stream != -1:
        raise BufferError(f"stream={stream!r}: a shared-memory array lives on the CPU, "
                          "which has no streams; pass stream=None")
    if dl_device is not None and tuple(dl_device) != (KDL_CPU, 0):
        raise BufferError(f"dl_device={tuple(dl_device)!r}: a shared-memory array lives on "
                          f"the CPU (kDLCPU, 0); copy it to the device with the consumer's "
                          "own functions")
    if copy not in (None, True, False):
        raise TypeError(f"copy must be None, True or False, not {copy!r}")
    if max_version is None:
        return False
    major = tuple(max_version)[0]
    return major >= DLPACK_VERSION[0]


def export(typecode, shape, address, owner, *, versioned, copied=False):
    """A DLPack capsule over *shape* (C order) elements of *typecode* at *address*;
    *owner* keeps the memory valid until the consumer releases the capsule. *copied*
    marks a private copy (the versioned capsule's IS_COPIED flag)."""
    code, bits = DL_TYPES[typecode]
    ndim = len(shape)
    dims = (ctypes.c_int64 * max(1, 2 * ndim))()
    stride = 1
    for k in reversed(range(ndim)):
        dims[k] = shape[k]
        dims[ndim + k] = stride
        stride *= max(shape[k], 1)
    managed = DLManagedTensorVersioned() if versioned else DLManagedTensor()
    t = managed.dl_tensor
    t.data = address
    t.device = DLDevice(KDL_CPU, 0)
    t.ndim = ndim
    t.dtype = DLDataType(code, bits, 1)
    base = ctypes.addressof(dims)
    t.shape = ctypes.cast(base, ctypes.POINTER(ctypes.c_int64))
    t.strides = ctypes.cast(base + 8 * ndim, ctypes.POINTER(ctypes.c_int64))
    t.byte_offset = 0
    managed.deleter = _DELETER_ADDRESS
    if versioned:
        managed.version = DLPackVersion(*DLPACK_VERSION)
        managed.flags = FLAG_IS_COPIED if copied else 0
    address_of_managed = ctypes.addressof(managed)
    managed.manager_ctx = address_of_managed
    _exports[address_of_managed] = _Export(managed, dims, owner)
    try:
        capsule = _capsule_new(address_of_managed,
                               _VERSIONED_NAME if versioned else _LEGACY_NAME,
                               _DESTRUCTOR_ADDRESS)
    except BaseException:
        _exports.pop(address_of_managed, None)
        raise
    _capsules[id(capsule)] = address_of_managed
    return capsule
