namespace SharedBridge.Cli.Demo;

/// <summary>The demo's work, the C# twin of python/examples/demo_work.py: workers pull chunk
/// numbers from a shared queue, histogram bits 20-23 of each value of their chunk, and add the
/// histogram, the chunk's sum and their chunk count to shared arrays under the one shared lock.</summary>
public static class Workload
{
    public const int Bins = 16;
    public const int QueueNext = 0, QueueTotal = 1;

    /// <summary>The start barrier after the two work cells: Python workers count themselves in
    /// QueueReady once attached, and start when the parent sets QueueGo.</summary>
    public const int QueueReady = 2, QueueGo = 3, QueueLength = 4;

    /// <summary>Element i of the input: the same multiplicative hash as demo_work.sample.</summary>
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

    /// <summary>One C# worker over segments opened by name, exactly as a Python worker does it.</summary>
    public static int Work(string inputName, string histName, string queueName, string countsName, int index, int chunk)
    {
        using var input = SharedArray<int>.Open(inputName);
        using var hist = SharedArray<long>.Open(histName);
        using var queue = SharedArray<long>.Open(queueName);
        using var counts = SharedArray<long>.Open(countsName);
        int n = input.Length, taken = 0;
        Span<long> local = stackalloc long[Bins];
        while (true)
        {
            long c;
            using (queue.Lock())
            {
                c = queue[QueueNext];
                queue[QueueNext] = c + 1;
            }
            long start = c * chunk;
            if (start >= n) return taken;
            local.Clear();
            long sum = 0;
            foreach (int v in input.AsSpan()[(int)start..(int)Math.Min(start + chunk, n)])
            {
                local[Bin(v)]++;
                sum += v;
            }
            using (hist.Lock())  // the same lock as queue's and counts'
            {
                for (int b = 0; b < Bins; b++) hist[b] += local[b];
                queue[QueueTotal] += sum;
                counts[index] += 1;
            }
            taken++;
        }
    }
}
