#!/usr/bin/env python3
"""Regenerate tests/cross/vectors/*.header.bin from the Python implementation, and the queue
vectors (docs/format.md section 9): vectors/queue_*.json with their control block
(control_hex) and vectors/messages/<id>.bin, the exact record of every message of
queue/messages.json as the Python library writes it (section 11.3, 11.4).

Run once when the format or the vectors change (PYTHONPATH=python python3 tests/cross/make_golden.py),
then review the diff: the NUnit suite checks every golden file byte by byte against an
independent encoder written from docs/format.md, and both implementations against the files.
External-lock vectors use their fixed lock-segment name, which the header records in lock_name.
"""
import glob
import os
import struct
import zlib

import json

import cross_queue
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


# Queue vectors (section 11): one per flavour, lifetimes and bounds of section 11.1 / 11.2.
QUEUE_VECTORS = [
    {"id": "queue_4096", "title": "queue Queue 4096 bytes", "flavour": "queue", "capacity": 4096,
     "max_messages": 0x7FFFFFFF},
    {"id": "queue_joinable_bounded_lastcloser", "title": "queue JoinableQueue(8) last-closer",
     "flavour": "joinable", "capacity": 65536, "max_messages": 8, "lifetime": "last-closer"},
    {"id": "queue_simple_persistent", "title": "queue SimpleQueue persistent", "flavour": "simple",
     "capacity": 1 << 20, "max_messages": 0x7FFFFFFF, "lifetime": "persistent"},
]


def write_queue_vectors():
    for q in QUEUE_VECTORS:
        vector = {"id": q["id"], "title": q["title"], "object": "queue", "typecode": "B",
                  "lock": {"kind": "embedded", "type": "lock"}, "values": [],
                  **{k: v for k, v in q.items() if k not in ("id", "title")}}
        with open(os.path.join(VECTORS, q["id"] + ".json"), "w", encoding="ascii") as f:
            json.dump(vector, f, indent=2)
            f.write("\n")


def add_control_hex(path, vector, segment, header_size):
    """A queue vector's control block (the 256 bytes at data_offset) as the library wrote it."""
    vector["control_hex"] = segment[header_size:header_size + 256].hex()
    with open(path, "w", encoding="ascii") as f:
        json.dump(vector, f, indent=2)
        f.write("\n")


def write_message_records():
    """vectors/messages/<id>.bin: each message of queue/messages.json put into an empty queue, the
    record's bytes as they are in the ring."""
    import sharedbridge as sb
    out_dir = os.path.join(VECTORS, "messages")
    os.makedirs(out_dir, exist_ok=True)
    name = "sbxgolden_messages"
    if os.path.exists("/dev/shm/" + name):
        os.unlink("/dev/shm/" + name)
    q = sb.Queue(name=name, capacity=1 << 20)
    try:
        messages = cross_queue.load_messages()
        for m in messages:
            q.put(cross_queue.message_object(m))
        with open("/dev/shm/" + name, "rb") as f:
            seg = f.read()
        ring = 0x200 + 256
        tail = struct.unpack_from("<Q", seg, 0x200 + 80)[0]
        p = 0
        for m in messages:
            size = struct.unpack_from("<I", seg, ring + p)[0]
            with open(os.path.join(out_dir, m["id"] + ".bin"), "wb") as out:
                out.write(seg[ring + p:ring + p + size])
            print(f"messages/{m['id']}: {size} bytes")
            p += size
        assert p == tail, (p, tail)
    finally:
        sb.close(q)


def main():
    write_queue_vectors()
    write_message_records()
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
                if vector["object"] == "queue":
                    f.seek(0)
                    add_control_hex(path, vector, f.read(header_size + 256), header_size)
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
