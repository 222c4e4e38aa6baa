using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;

namespace SharedBridge.Cli.Demo;

/// <summary>`sharedbridge-cli demo`: C# creates shared arrays, C# threads and Python processes
/// (python/examples/demo_worker.py, attaching by name) do the same work on them under one shared
/// lock; python/examples/demo_multiprocessing.py then does that work with the standard library
/// alone; both results must equal a single-threaded C# reference. Exit status 0 only if all match
/// and no segment is left in /dev/shm.</summary>
public static class DemoCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The whole demo must stay under a minute: a worker still running after this is stuck.</summary>
    private static readonly TimeSpan WorkerTimeout = TimeSpan.FromSeconds(40);

    public static int Run(string[] args)
    {
        DemoOptions o = DemoOptions.Parse(args);
        string version = PythonVersion(o.Python);
        int workers = o.PythonWorkers + o.CSharpWorkers;
        Console.WriteLine("SharedBridge demo: C# and Python working on the same named shared memory");
        Console.WriteLine($"  python      {o.Python} ({version})");
        Console.WriteLine($"  input       {o.Count.ToString("N0", Inv)} int32 samples in {o.Chunks} chunks of {o.Chunk.ToString("N0", Inv)}");
        Console.WriteLine();

        var reference = Workload.Reference(o.Count);
        var mixed = RunShared(o, o.CSharpWorkers, o.PythonWorkers);
        Console.WriteLine($"1. SharedBridge, mixed: this C# process created 5 segments ({mixed.Base}_*); {o.CSharpWorkers} C# thread(s)");
        Console.WriteLine($"   and {o.PythonWorkers} Python process(es) (demo_worker.py, attached by name) pulled chunks from one shared");
        Console.WriteLine("   queue and added to a shared histogram under one robust lock (a C# SharedLock).");
        PrintRun(mixed.ChunksBy.Select(kv => $"{kv.Key} {kv.Value}"), mixed.Seconds, "from the start signal, once every Python worker had attached, to all done");

        var pythonOnly = RunShared(o, 0, workers);
        Console.WriteLine($"2. SharedBridge, Python workers only: segments made by C# the same way, {workers} demo_worker.py processes.");
        PrintRun(pythonOnly.ChunksBy.Select(kv => $"{kv.Key} {kv.Value}"), pythonOnly.Seconds, "from the start signal to all done");

        var mp = RunMultiprocessing(o, workers);
        Console.WriteLine($"3. multiprocessing: demo_multiprocessing.py ran the same worker code (demo_work.py) in {workers}");
        Console.WriteLine("   multiprocessing.Process workers over multiprocessing.Array/RawArray with a multiprocessing.Lock.");
        PrintRun(mp.Chunks.Select(c => c.ToString(Inv)), mp.Seconds, "workers started to joined; fork start-up included");

        bool Matches(long[] h, long t) => h.SequenceEqual(reference.Histogram) && t == reference.Total;
        var leftovers = mixed.Leftovers.Concat(pythonOnly.Leftovers).ToList();
        var checks = new List<(string What, bool Ok)>
        {
            ("run 1 (C# + Python) histogram and total equal the single-threaded C# reference", Matches(mixed.Histogram, mixed.Total)),
            ("run 2 (Python over SharedBridge) equals the reference", Matches(pythonOnly.Histogram, pythonOnly.Total)),
            ("run 3 (multiprocessing) equals the reference", Matches(mp.Histogram, mp.Total)),
            ($"every chunk processed exactly once ({o.Chunks} in each run)",
                mixed.ChunksBy.Values.Sum() == o.Chunks && pythonOnly.ChunksBy.Values.Sum() == o.Chunks && mp.Chunks.Sum() == o.Chunks),
            ("every worker exited cleanly", mixed.WorkersOk && pythonOnly.WorkersOk && mp.WorkersOk),
            ($"no segment left in /dev/shm ({mixed.Base}_*, {pythonOnly.Base}_*)", leftovers.Count == 0),
        };
        Console.WriteLine($"   histogram      {string.Join(" ", mixed.Histogram)}");
        Console.WriteLine($"   total          {mixed.Total.ToString("N0", Inv)}");
        foreach (var (what, ok) in checks) Console.WriteLine($"   [{(ok ? "ok" : "FAILED")}] {what}");
        if (leftovers.Count > 0) Console.WriteLine($"   left behind: {string.Join(", ", leftovers)}");
        bool allOk = checks.All(c => c.Ok);
        Console.WriteLine();
        Console.WriteLine(allOk ? "demo OK: all three runs produced identical results." : "demo FAILED: see the checks above.");
        return allOk ? 0 : 1;
    }

    private sealed record SharedRun(string Base, long[] Histogram, long Total, Dictionary<string, long> ChunksBy, double Seconds, bool WorkersOk, IReadOnlyList<string> Leftovers);

    private static void PrintRun(IEnumerable<string> chunks, double seconds, string timed)
    {
        Console.WriteLine($"   chunks taken   {string.Join(", ", chunks)}");
        Console.WriteLine($"   time           {Seconds(seconds)} ({timed})");
        Console.WriteLine();
    }

    /// <summary>One run over SharedBridge segments this process creates: Python workers are
    /// started first and counted in at a barrier, then everyone (C# threads too) starts at once.</summary>
    private static SharedRun RunShared(DemoOptions o, int csharpWorkers, int pythonWorkers)
    {
        string @base = "sbdemo_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        int workers = pythonWorkers + csharpWorkers;
        long[] histogram;
        long total;
        var chunksBy = new Dictionary<string, long>();
        double seconds;
        bool workersOk = true;
        var pythons = new List<PythonProcess>();
        try
        {
            using var shared = SharedLock.Create(@base + "_lock");
            var withLock = new SegmentOptions { SharedLock = shared };
            var input = new int[o.Count];
            for (int i = 0; i < input.Length; i++) input[i] = Workload.Sample(i);
            using var inp = SharedArray<int>.Create(@base + "_in", input, new SegmentOptions { Synchronized = false });
            using var hist = SharedArray<long>.Create(@base + "_hist", Workload.Bins, withLock);
            using var queue = SharedArray<long>.Create(@base + "_queue", Workload.QueueLength, withLock);
            using var counts = SharedArray<long>.Create(@base + "_counts", workers, withLock);

            for (int w = 0; w < pythonWorkers; w++)
                pythons.Add(new PythonProcess(o, Path.Combine(o.ExamplesDir, "demo_worker.py"),
                    inp.Name, hist.Name, queue.Name, counts.Name, w.ToString(Inv), o.Chunk.ToString(Inv)));
            WaitUntilReady(queue, pythonWorkers, pythons);
            var clock = Stopwatch.StartNew();
            using (queue.Lock()) queue[Workload.QueueGo] = 1;
            var threads = Enumerable.Range(pythonWorkers, csharpWorkers).Select(index =>
                Task.Factory.StartNew(() => Workload.Work(inp.Name, hist.Name, queue.Name, counts.Name, index, o.Chunk),
                    TaskCreationOptions.LongRunning)).ToArray();
            Task.WaitAll(threads);
            for (int w = 0; w < pythons.Count; w++)
                workersOk &= pythons[w].Finish(WorkerTimeout, $"python worker #{w + 1} (demo_worker.py)");
            seconds = clock.Elapsed.TotalSeconds;

            using (hist.Lock())
            {
                histogram = hist.ToArray();
                total = queue[Workload.QueueTotal];
                long[] c = counts.ToArray();
                for (int w = 0; w < workers; w++)
                    chunksBy[w < pythonWorkers ? $"python#{w + 1}" : $"C##{w - pythonWorkers + 1}"] = c[w];
            }
        }
        finally
        {
            foreach (var p in pythons) p.Dispose();
        }
        var leftovers = Directory.GetFiles("/dev/shm", @base + "*").Select(Path.GetFileName).OfType<string>().ToList();
        return new SharedRun(@base, histogram, total, chunksBy, seconds, workersOk, leftovers);
    }

    /// <summary>Waits until every Python worker has attached and counted itself in (or one died).</summary>
    private static void WaitUntilReady(SharedArray<long> queue, int expected, List<PythonProcess> pythons)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            using (queue.Lock())
                if (queue[Workload.QueueReady] >= expected) return;
            if (pythons.Any(p => p.HasExited) || deadline.Elapsed > TimeSpan.FromSeconds(30))
                return;  // the run goes on without it; the checks will report the failure
            Thread.Sleep(1);
        }
    }

    private sealed record MultiprocessingRun(long[] Histogram, long Total, long[] Chunks, double Seconds, bool WorkersOk);

    private static MultiprocessingRun RunMultiprocessing(DemoOptions o, int workers)
    {
        using var p = new PythonProcess(o, Path.Combine(o.ExamplesDir, "demo_multiprocessing.py"),
            o.Count.ToString(Inv), o.Chunk.ToString(Inv), workers.ToString(Inv));
        bool finished = p.Finish(WorkerTimeout, "demo_multiprocessing.py");
        string? line = p.Stdout.Split('\n').LastOrDefault(l => l.StartsWith('{'));
        if (!finished || line == null) return new MultiprocessingRun([], 0, [], 0, false);
        using var doc = JsonDocument.Parse(line);
        var root = doc.RootElement;
        return new MultiprocessingRun(
            root.GetProperty("histogram").EnumerateArray().Select(e => e.GetInt64()).ToArray(),
            root.GetProperty("total").GetInt64(),
            root.GetProperty("chunks").EnumerateArray().Select(e => e.GetInt64()).ToArray(),
            root.GetProperty("seconds").GetDouble(),
            root.GetProperty("failed").GetArrayLength() == 0);
    }

    private static string PythonVersion(string python)
    {
        try
        {
            var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add("import sys; print('%d.%d.%d' % sys.version_info[:3])");
            using var p = Process.Start(psi)!;
            string v = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return p.ExitCode == 0 ? v : throw new UsageException($"{python} does not run: {p.StandardError.ReadToEnd()}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new UsageException($"cannot run the Python interpreter '{python}' ({e.Message}): pass --python PATH");
        }
    }

    private static string Seconds(double s) => s.ToString("0.000", Inv) + " s";
}
