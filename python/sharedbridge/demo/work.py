"""The work of the demo (`sharedbridge demo`), written once and run over both kinds of queues: sharedbridge's (two queues a C#
process created) and the standard library's multiprocessing.Queue.

A producer puts the input's chunks (arrays of int32 samples) into a work queue; workers take chunks until
there are none left, histogram each chunk (bits 20-23 of each value) and put one ChunkResult per chunk
into a results queue, which the producer's side reads. The input is a fixed pseudo-random sequence that
C# computes too.
"""
import ctypes

BINS = 16


class ChunkResult(ctypes.Structure):
    """One chunk's result: a record message whose field table matches the C# struct ChunkResult."""
    _fields_ = [("worker", ctypes.c_int64), ("samples", ctypes.c_int64), ("sum", ctypes.c_int64),
                ("bins", ctypes.c_int64 * BINS)]


def sample(i):
    """Element i of the input: a multiplicative hash, in 0 .. 2**31 - 1 (C# uses the same formula)."""
    return (i * 2654435761) % 2147483648


def make_input(count):
    return [sample(i) for i in range(count)]


def compute(values, index):
    """The ChunkResult of one chunk (a list of ints) computed by worker *index*."""
    local = [0] * BINS
    for v in values:
        local[(v >> 20) & 15] += 1
    r = ChunkResult(worker=index, samples=len(values), sum=sum(values))
    r.bins[:] = local
    return r


def work(next_chunk, put_result, index):
    """Take chunks (next_chunk() returns one, or None when there are no more) and put their results;
    returns how many this worker took. A chunk is anything with tolist(): a numpy array or a
    memoryview (sharedbridge, with or without numpy), an array.array (multiprocessing)."""
    taken = 0
    while True:
        chunk = next_chunk()
        if chunk is None:
            return taken
        put_result(compute(chunk.tolist(), index))
        taken += 1
