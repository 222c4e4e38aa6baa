#!/usr/bin/env python3
"""Regenerate tests/cross/vectors/*.header.bin from the Python implementation.

Run once when the format or the vectors change (PYTHONPATH=python python3 tests/cross/make_golden.py),
then review the diff: the NUnit suite checks every golden file byte by byte against an
independent encoder written from docs/format.md, and both implementations against the files.
External-lock vectors use their fixed lock-segment name, which the header records in lock_name.
"""
import glob
import os
import struct
import zlib

import cross_vectors as cv
import python_driver

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors")


# Masked fields (docs/format.md section 9) get fixed values so that regenerating changes no
# byte unless the format did: pid 1 (never a dead creator), start time 0 ("unknown"),
# 2026-01-01T00:00:00Z; the checksum is then recomputed over the result.
FIXED_CREATOR = struct.pack("<IQq", 1, 0, 1_767_225_600 * 1_000_000_000)


def normalized(header):
    h = bytearray(header)
    h[0x044:0x058] = FIXED_CREATOR
    struct.pack_into("<I", h, 0x184, zlib.crc32(bytes(h[0x000:0x180]) + bytes(h[0x200:])))
    return bytes(h)


def main():
    for path in sorted(glob.glob(os.path.join(VECTORS, "*.json"))):
        vector = cv.load(path)
        name = "sbxgolden_" + vector["id"][:40]
        lock_name = vector["lock"].get("segment")
        for stale in (name, lock_name):
            if stale and os.path.exists("/dev/shm/" + stale):
                os.unlink("/dev/shm/" + stale)
        objects = python_driver.create(vector, name, lock_name, keep=True)   # the vector's lifetime
        try:
            with open("/dev/shm/" + name, "rb") as f:
                head = f.read(512)
                header_size = struct.unpack_from("<I", head, 0x0C)[0]
                f.seek(0)
                header = f.read(header_size)
            with open(path[: -len(".json")] + ".header.bin", "wb") as out:
                out.write(normalized(header))
            print(f"{vector['id']}: {header_size} bytes")
        finally:
            for obj in objects:         # creator and last-closer: closing unlinks
                python_driver._close(obj)
            for created in (name, lock_name):
                if created and os.path.exists("/dev/shm/" + created):
                    os.unlink("/dev/shm/" + created)


if __name__ == "__main__":
    main()
