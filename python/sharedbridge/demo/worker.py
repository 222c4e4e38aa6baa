"""One Python worker of the demo (`sharedbridge demo`, `make demo`): attaches by name to the two queues
the .NET tool created and runs sharedbridge.demo.work.work on them next to C# workers.

Usage: python -m sharedbridge.demo.worker WORK_QUEUE RESULTS_QUEUE INDEX
(the installed package, or a checkout's python/ folder on PYTHONPATH: `sharedbridge demo --repo DIR`)
Says "ready" through the results queue once attached (the C# side starts the clock when every worker
has), takes chunks until the work queue is completed and drained, then prints one JSON line:
{"worker": INDEX, "chunks": N, "pid": PID}.
"""
import json
import os
import sys

import sharedbridge

from sharedbridge.demo.work import work

# The longest a worker waits for a chunk: the demo's own timeout kills a worker before that.
PATIENCE_S = 50


def main(argv):
    work_name, results_name, index = argv
    tasks = sharedbridge.attach(work_name)        # sharedbridge.Queue: C# puts int32 array messages
    results = sharedbridge.attach(results_name)   # this worker puts ChunkResult records
    try:
        import numpy  # noqa: F401  (the chunks arrive as numpy arrays when it is there: import it before the clock)
    except ImportError:
        pass
    results.put(f"ready python#{int(index) + 1}")

    def next_chunk():
        try:
            return tasks.get(timeout=PATIENCE_S)  # an ndarray (a memoryview without numpy)
        except sharedbridge.QueueCompleted:       # completed by C# and drained: no more work
            return None

    taken = work(next_chunk, results.put, int(index))
    print(json.dumps({"worker": int(index), "chunks": taken, "pid": os.getpid()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
