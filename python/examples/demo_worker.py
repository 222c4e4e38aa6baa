#!/usr/bin/env python3
"""One Python worker of `make demo`: attaches by name to the segments the C# CLI
(`sharedbridge demo`) created and runs demo_work.work on them next to C# workers.

Usage: demo_worker.py INPUT HIST QUEUE COUNTS INDEX CHUNK   (PYTHONPATH must include python/)
Prints one JSON line: {"worker": INDEX, "chunks": N, "pid": PID}.
"""
import json
import os
import sys
import time

import sharedbridge

from demo_work import work

QUEUE_READY, QUEUE_GO = 2, 3  # the start barrier, after demo_work's two queue cells


def wait_for_go(queue):
    """Say we are attached, then wait for the C# parent to start everyone at once (so that
    the timed part excludes interpreter start-up, and no one starts before the others)."""
    with queue.get_lock():
        queue.get_obj()[QUEUE_READY] += 1
    while queue[QUEUE_GO] == 0:
        time.sleep(0.0005)


def main(argv):
    input_name, hist_name, queue_name, counts_name, index, chunk = argv
    inp = sharedbridge.attach(input_name)      # a RawArray: read without the lock
    hist = sharedbridge.attach(hist_name)      # these three share the C# SharedLock
    queue = sharedbridge.attach(queue_name)
    counts = sharedbridge.attach(counts_name)
    wait_for_go(queue)
    taken = work(inp, hist, queue, counts, int(index), int(chunk))
    print(json.dumps({"worker": int(index), "chunks": taken, "pid": os.getpid()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
