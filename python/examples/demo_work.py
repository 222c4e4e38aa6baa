"""The work of the demo, written once and run against both kinds of shared objects: sharedbridge's
(segments a C# process created) and the standard library's multiprocessing ones.

Workers pull chunk numbers from a shared queue, histogram their chunk of the input (bits 20-23 of each value)
and add the histogram, the chunk's sum and their own chunk count to shared arrays, all under the
one lock those arrays share. The input is a fixed pseudo-random sequence that C# computes too.
"""
BINS = 16
QUEUE_NEXT, QUEUE_TOTAL = 0, 1


def sample(i):
    """Element i of the input: a multiplicative hash, in 0 .. 2**31 - 1 (C# uses the same formula)."""
    return (i * 2654435761) % 2147483648


def make_input(count):
    return [sample(i) for i in range(count)]


def work(inp, hist, queue, counts, index, chunk):
    """Process chunks until the queue is empty; returns how many this worker took."""
    lock = hist.get_lock()  # queue and counts share it: one lock guards every update
    raw_hist, raw_queue, raw_counts = hist.get_obj(), queue.get_obj(), counts.get_obj()
    n = len(inp)
    taken = 0
    while True:
        with lock:
            c = raw_queue[QUEUE_NEXT]
            raw_queue[QUEUE_NEXT] = c + 1
        start = c * chunk
        if start >= n:
            return taken
        values = inp[start:min(start + chunk, n)]
        local = [0] * BINS
        for v in values:
            local[(v >> 20) & 15] += 1
        with lock:
            for b in range(BINS):
                raw_hist[b] += local[b]
            raw_queue[QUEUE_TOTAL] += sum(values)
            raw_counts[index] += 1
        taken += 1
