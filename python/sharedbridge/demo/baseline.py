"""The comparison run of the demo (`sharedbridge demo`, `make demo`): the same work
(sharedbridge.demo.work.work) with the standard library only,
multiprocessing.Queue and multiprocessing.Process, as a Python program would do it without SharedBridge.

Usage: python -m sharedbridge.demo.baseline COUNT CHUNK WORKERS
This process puts every chunk of the input into a work queue (an array.array('i') each), then one None
per worker (multiprocessing.Queue has no "completed"); the workers put a ChunkResult per chunk into a
results queue, which this process reads. Prints one JSON line: histogram, total, chunks per worker,
seconds (workers started to joined).
"""
import array
import json
import multiprocessing
import queue
import sys
import time

from sharedbridge.demo.work import BINS, make_input, work

PATIENCE_S = 50


def worker(tasks, results, index):
    work(tasks.get, results.put, index)


def main(argv):
    count, chunk, workers = (int(a) for a in argv)
    data = array.array("i", make_input(count))
    tasks, results = multiprocessing.Queue(), multiprocessing.Queue()
    started = time.perf_counter()
    procs = [multiprocessing.Process(target=worker, args=(tasks, results, i)) for i in range(workers)]
    for p in procs:
        p.start()
    chunks = 0
    for start in range(0, count, chunk):
        tasks.put(data[start:start + chunk])
        chunks += 1
    for _ in procs:
        tasks.put(None)
    hist, total, per_worker = [0] * BINS, 0, [0] * workers
    try:
        for _ in range(chunks):
            r = results.get(timeout=PATIENCE_S)
            for b in range(BINS):
                hist[b] += r.bins[b]
            total += r.sum
            per_worker[r.worker] += 1
    except queue.Empty:
        pass        # a worker died: the counts below show it
    for p in procs:
        p.join(PATIENCE_S)
    seconds = time.perf_counter() - started
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    print(json.dumps({"histogram": hist, "total": total, "chunks": per_worker,
                      "seconds": seconds, "failed": failed}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
