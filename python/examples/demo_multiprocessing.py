#!/usr/bin/env python3
"""The comparison run of `make demo`: the same work (demo_work.work) with the standard
library only, multiprocessing.Array/RawArray and multiprocessing.Process, as a Python program
would do it without SharedBridge.

Usage: demo_multiprocessing.py COUNT CHUNK WORKERS
Prints one JSON line: histogram, total, chunks per worker, seconds (workers started to joined).
"""
import json
import multiprocessing
import sys
import time

from demo_work import BINS, make_input, work


def main(argv):
    count, chunk, workers = (int(a) for a in argv)
    lock = multiprocessing.Lock()
    inp = multiprocessing.RawArray("i", make_input(count))
    hist = multiprocessing.Array("q", BINS, lock=lock)
    queue = multiprocessing.Array("q", 2, lock=lock)
    counts = multiprocessing.Array("q", workers, lock=lock)
    started = time.perf_counter()
    procs = [multiprocessing.Process(target=work, args=(inp, hist, queue, counts, i, chunk))
             for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - started
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    print(json.dumps({"histogram": list(hist), "total": queue[1], "chunks": list(counts),
                      "seconds": seconds, "failed": failed}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
