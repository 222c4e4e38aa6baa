using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using System.Text.Json;
using SharedBridge;

namespace SharedBridge.Benchmarks;

/// <summary>The .NET workers of bench/run.py (items 2, 3 and 4). Output: one line (a count or JSON) on stdout.</summary>
internal static class BenchItems
{
    /// <summary>Item 2: locked increments of a[0] of a shared long array from START_UNIX_MS for DURATION_MS.</summary>
    internal static int Contend(string name, long startUnixMs, int durationMs)
    {
        using var array = SharedArray<long>.Open(name, TimeSpan.FromSeconds(10));
        while (DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() < startUnixMs) Thread.SpinWait(100);
        var sw = Stopwatch.StartNew();
        long count = 0;
        while (sw.ElapsedMilliseconds < durationMs)
        {
            for (int i = 0; i < 256; i++)
            {
                using (array.Lock())
                    array[0]++;
            }
            count += 256;
        }
        Console.WriteLine(count);
        return 0;
    }

    private static double Median(List<double> xs)
    {
        xs.Sort();
        int n = xs.Count;
        return n % 2 == 1 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
    }

    /// <summary>Item 3: GB/s of Span.CopyTo into a segment, out of it, and between two private arrays; rounds interleaved.</summary>
    internal static int Copy(int rounds, long[] sizes)
    {
        var rows = new List<object>();
        foreach (long size in sizes)
        {
            int n = checked((int)size);
            using var seg = SharedArray<byte>.Create(null, n);
            byte[] a = new byte[n], b = new byte[n];
            Random.Shared.NextBytes(a);
            int reps = (int)Math.Clamp((64L << 20) / size, 1, 2000);
            var cases = new (string Case, Action Run)[]
            {
                ("into segment", () => a.AsSpan().CopyTo(seg.AsSpan())),
                ("out of segment", () => seg.AsSpan().CopyTo(b.AsSpan())),
                ("private to private", () => a.AsSpan().CopyTo(b.AsSpan())),
            };
            var samples = cases.Select(_ => new List<double>()).ToArray();
            foreach (var c in cases) c.Run();  // first touch
            for (int r = 0; r < rounds; r++)
            {
                for (int k = 0; k < cases.Length; k++)
                {
                    int j = (k + r) % cases.Length;
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < reps; i++) cases[j].Run();
                    samples[j].Add(size * (double)reps / sw.Elapsed.TotalSeconds / 1e9);
                }
            }
            for (int k = 0; k < cases.Length; k++)
                rows.Add(new { lang = ".NET", method = "Span.CopyTo", @case = cases[k].Case, bytes = size, gb_per_s = Median(samples[k]) });
        }
        Console.WriteLine(JsonSerializer.Serialize(rows));
        return 0;
    }

    /// <summary>Item 4: microseconds of SharedArray&lt;double&gt;.Open + AsSpan + Dispose against a bare
    /// MemoryMappedFile of the same /dev/shm file, by the array's size in bytes.</summary>
    internal static int Open(int rounds, long[] sizes)
    {
        var rows = new List<object>();
        foreach (long size in sizes)
        {
            using var created = SharedArray<double>.Create(null, checked((int)(size / 8)));
            string name = created.Name;
            string path = "/dev/shm/" + name.TrimStart('/');
            int reps = 200;
            var cases = new (string Case, Action Run)[]
            {
                ("SharedArray.Open + AsSpan + Dispose", () =>
                {
                    using var a = SharedArray<double>.Open(name);
                    _ = a.AsSpan().Length;
                }),
                ("bare MemoryMappedFile.CreateFromFile + view", () =>
                {
                    using var f = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
                    using var v = f.CreateViewAccessor();
                    _ = v.Capacity;
                }),
            };
            var samples = cases.Select(_ => new List<double>()).ToArray();
            foreach (var c in cases) c.Run();
            for (int r = 0; r < rounds; r++)
            {
                for (int k = 0; k < cases.Length; k++)
                {
                    int j = (k + r) % cases.Length;
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < reps; i++) cases[j].Run();
                    samples[j].Add(sw.Elapsed.TotalMicroseconds / reps);
                }
            }
            for (int k = 0; k < cases.Length; k++)
                rows.Add(new { lang = ".NET", @case = cases[k].Case, bytes = size, us_per_call = Median(samples[k]) });
        }
        Console.WriteLine(JsonSerializer.Serialize(rows));
        return 0;
    }
}
