using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SharedBridge.Cli.Demo;

/// <summary>The histogram of one chunk: 16 counters (a C <c>int64_t bins[16]</c>, Python <c>c_int64 * 16</c>).</summary>
[InlineArray(Workload.Bins)]
public struct Bins16
{
    private long _element;
}

/// <summary>What a worker puts into the results queue for each chunk it took: a record message (docs/format.md
/// section 11.4, tag 4) whose field table matches sharedbridge.demo.work's (python/sharedbridge/demo/work.py) <c>ChunkResult</c> (field names
/// compare case-insensitively).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ChunkResult
{
    /// <summary>Who computed it: 0.. for the Python workers, then the C# threads.</summary>
    public long Worker;
    /// <summary>How many samples the chunk had.</summary>
    public long Samples;
    /// <summary>The sum of the chunk's samples.</summary>
    public long Sum;
    /// <summary>The chunk's histogram of bits 20-23.</summary>
    public Bins16 Bins;
}

/// <summary>The demo's work, the C# twin of python/sharedbridge/demo/work.py: workers take chunks of the input (int32
/// array messages) from the work queue until it is completed and drained, histogram bits 20-23 of each value of the
/// chunk, and put one <see cref="ChunkResult"/> per chunk into the results queue.</summary>
public static class Workload
{
    public const int Bins = 16;

    /// <summary>Element i of the input: the same multiplicative hash as sharedbridge.demo.work.sample.</summary>
    public static int Sample(long i) => (int)(i * 2654435761L % 2147483648L);

    public static int Bin(int value) => (value >> 20) & 15;

    /// <summary>The expected result, computed here in one thread without any sharing.</summary>
    public static (long[] Histogram, long Total) Reference(int count)
    {
        var hist = new long[Bins];
        long total = 0;
        for (int i = 0; i < count; i++)
        {
            int v = Sample(i);
            hist[Bin(v)]++;
            total += v;
        }
        return (hist, total);
    }

    /// <summary>One chunk's result.</summary>
    public static ChunkResult Compute(ReadOnlySpan<int> values, int worker)
    {
        var r = new ChunkResult { Worker = worker, Samples = values.Length };
        foreach (int v in values)
        {
            r.Bins[Bin(v)]++;
            r.Sum += v;
        }
        return r;
    }

    /// <summary>One C# worker over the two queues opened by name, exactly as a Python worker does it: take a chunk
    /// (zero-copy: the span reads the ring until the message is disposed), put its result, until the work queue is
    /// completed and drained. Returns how many chunks it took.</summary>
    public static int Work(string workName, string resultsName, int index, TimeSpan timeout)
    {
        using var work = SharedQueue.Open(workName);
        using var results = SharedQueue.Open(resultsName);
        int taken = 0;
        while (true)
        {
            ChunkResult r;
            try
            {
                using var chunk = work.Read(timeout);
                r = Compute(chunk.GetSpan<int>(), index);
            }
            catch (QueueCompletedException)
            {
                return taken;
            }
            results.Write(r, timeout);
            taken++;
        }
    }
}
