"""What a creator puts into a header (docs/format.md sections 3 and 6.1): the one builder
of a new SegmentHeader for every kind of segment (the .NET library's HeaderSpec).

The derived fields follow from the few a creator chooses: version and compat_version
from the kind and the lifetime (section 6.3), header_size from the field table, the data
area right after the header, and the lock fields from the lock kind and this machine's
mutex ABI (section 3.1: only an embedded lock has an ABI, a size, an offset and a type).
"""

import os
import time

from . import header as H


def no_lock_abi(what, advice=""):
    """The error for *what* (e.g. "sharedbridge locks") on a machine without a defined
    mutex ABI (docs/format.md section 3.1, lock_abi)."""
    return OSError(f"{what} need Linux glibc on x86_64 or aarch64 (the mutex ABIs of "
                   f"docs/format.md section 3.1){advice}")


def new_header(kind, *, creator_start_time, lifetime=H.LIFETIME_CREATOR, typecode="",
               element_size=0, element_count=0, fields=(), type_name="",
               lock_kind=H.LOCK_NONE, lock_type=H.LOCK_TYPE_NONE, lock_name="",
               what="sharedbridge locks", advice="", shape=None):
    """A new SegmentHeader of *kind* for a segment this process creates now.

    *creator_start_time* is this process's start time (section 8: the creator record);
    *lifetime* a header lifetime code; *fields* the field table of a structure
    (typecode 'T'); *shape* the dimensions of an n-dimensional array (kind 9, section
    12: its header_size covers them). An embedded lock (*lock_kind* LOCK_EMBEDDED) gets this machine's
    lock ABI, or no_lock_abi(*what*, *advice*) is raised; any other lock kind records
    no ABI and lock type none."""
    if lock_kind == H.LOCK_EMBEDDED:
        abi, lock_size = H.native_lock_abi()
        if not abi:
            raise no_lock_abi(what, advice)
        lock_offset = H.LOCK_OFFSET
    else:
        abi = lock_size = lock_offset = 0
        lock_type = H.LOCK_TYPE_NONE
    compat = H.compat_version_for(lifetime, kind)
    header_size = H.header_size_for(len(fields), None if shape is None else len(shape))
    return H.SegmentHeader(
        version=H.writer_version(compat), compat_version=compat, header_size=header_size,
        kind=kind, typecode=typecode, element_size=element_size, element_count=element_count,
        data_offset=header_size, data_size=element_size * element_count,
        lock_kind=lock_kind, lock_abi=abi, lock_size=lock_size, lock_offset=lock_offset,
        lock_type=lock_type, fields=fields, creator_pid=os.getpid(),
        creator_start_time=creator_start_time, created_unix_ns=time.time_ns(),
        type_name=type_name, lock_name=lock_name, lifetime_code=lifetime,
        shape=None if shape is None else tuple(shape))
