using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;

namespace SharedBridge.Cli.Demo;

/// <summary>`sharedbridge-cli demo`: C# creates two queues (docs/format.md section 11) and puts the input's chunks
/// into the work queue as int32 array messages; C# threads and Python processes (`python -m sharedbridge.demo.worker`,
/// attaching by name) take them, compute, and put a result record per chunk into the results queue, which C#
/// reads; `python -m sharedbridge.demo.baseline` then does that work with the standard library alone
/// (multiprocessing.Queue); every result must equal a single-threaded C# reference. Exit status 0 only if all
/// match and no segment is left in /dev/shm.</summary>
public static class DemoCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The whole demo must stay under a minute: a worker still running after this is stuck.</summary>
    private static readonly TimeSpan WorkerTimeout = TimeSpan.FromSeconds(40);

    public static int Run(string[] args)
    {
        DemoOptions o = DemoOptions.Parse(args);
        var (version, package) = PythonFacts(o);
        int workers = o.PythonWorkers + o.CSharpWorkers;
        Console.WriteLine("SharedBridge demo: C# and Python working on the same named shared memory");
        Console.WriteLine($"  python      {o.Python} ({version})");
        Console.WriteLine($"  package     {package}");
        Console.WriteLine($"  input       {o.Count.ToString("N0", Inv)} int32 samples in {o.Chunks} chunks of {o.Chunk.ToString("N0", Inv)}");
        Console.WriteLine();

        var reference = Workload.Reference(o.Count);
        var mixed = RunShared(o, o.CSharpWorkers, o.PythonWorkers);
        Console.WriteLine($"1. SharedBridge, mixed: this C# process created 2 queues ({mixed.Base}_work, {mixed.Base}_results) and put");
        Console.WriteLine($"   every chunk into the work queue as an int32 array message; {o.CSharpWorkers} C# thread(s) and {o.PythonWorkers} Python");
        Console.WriteLine("   process(es) (sharedbridge.demo.worker, attached by name) took chunks until the queue was completed and drained,");
        Console.WriteLine("   and put a result record (histogram, sum) per chunk into the results queue, which this process read.");
        PrintRun(mixed.ChunksBy.Select(kv => $"{kv.Key} {kv.Value}"), mixed.Seconds, "from the first chunk put, once every Python worker had said ready, to all done");

        var pythonOnly = RunShared(o, 0, workers);
        Console.WriteLine($"2. SharedBridge, Python workers only: queues made and fed by C# the same way, {workers} sharedbridge.demo.worker processes.");
        PrintRun(pythonOnly.ChunksBy.Select(kv => $"{kv.Key} {kv.Value}"), pythonOnly.Seconds, "from the first chunk put to all done");

        var mp = RunMultiprocessing(o, workers);
        Console.WriteLine($"3. multiprocessing: sharedbridge.demo.baseline ran the same worker code (sharedbridge.demo.work) in {workers}");
        Console.WriteLine("   multiprocessing.Process workers, the chunks and the results through two multiprocessing.Queue.");
        PrintRun(mp.Chunks.Select(c => c.ToString(Inv)), mp.Seconds, "workers started to joined; fork start-up included");

        bool Matches(long[] h, long t) => h.SequenceEqual(reference.Histogram) && t == reference.Total;
        var leftovers = mixed.Leftovers.Concat(pythonOnly.Leftovers).ToList();
        var checks = new List<(string What, bool Ok)>
        {
            ("run 1 (C# + Python) histogram and total equal the single-threaded C# reference", Matches(mixed.Histogram, mixed.Total)),
            ("run 2 (Python over SharedBridge) equals the reference", Matches(pythonOnly.Histogram, pythonOnly.Total)),
            ("run 3 (multiprocessing) equals the reference", Matches(mp.Histogram, mp.Total)),
            ($"every chunk processed exactly once ({o.Chunks} in each run, one result each)",
                mixed.ExactlyOnce && pythonOnly.ExactlyOnce && mp.Chunks.Sum() == o.Chunks),
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

    private sealed record SharedRun(string Base, long[] Histogram, long Total, Dictionary<string, long> ChunksBy, double Seconds, bool WorkersOk, bool ExactlyOnce, IReadOnlyList<string> Leftovers);

    private static void PrintRun(IEnumerable<string> chunks, double seconds, string timed)
    {
        Console.WriteLine($"   chunks taken   {string.Join(", ", chunks)}");
        Console.WriteLine($"   time           {Seconds(seconds)} ({timed})");
        Console.WriteLine();
    }

    /// <summary>How long a wait of the producer or the results reader lasts before it looks whether any worker is
    /// still alive (so a run whose workers all died ends at once instead of at the timeout).</summary>
    private static readonly TimeSpan Slice = TimeSpan.FromMilliseconds(100);

    /// <summary>The work queue's ring: big enough for every chunk to travel in the ring (a record of at most a
    /// quarter of it, docs/format.md section 11.5), at least 1 MiB, at most 64 MiB (larger chunks go out of line).</summary>
    private static long WorkCapacity(int chunk) =>
        Math.Clamp((long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)(4L * (4L * chunk + 64))), 1L << 20, 64L << 20);

    /// <summary>One run over two SharedBridge queues this process creates: Python workers are started first and
    /// say "ready" through the results queue; then the clock starts, this process puts every chunk of the input
    /// into the work queue (an int32 array message each) and completes it, the workers (C# threads too) take
    /// chunks until the queue is drained and put a result record per chunk, and this process reads them.</summary>
    private static SharedRun RunShared(DemoOptions o, int csharpWorkers, int pythonWorkers)
    {
        string @base = "sbdemo_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        int workers = pythonWorkers + csharpWorkers;
        var histogram = new long[Workload.Bins];
        long total = 0, results = 0, samples = 0;
        var chunksBy = new Dictionary<string, long>();
        for (int w = 0; w < workers; w++) chunksBy[WorkerName(w, pythonWorkers)] = 0;
        double seconds;
        bool workersOk = true, allRead = true;
        var pythons = new List<PythonProcess>();
        try
        {
            var input = new int[o.Count];
            for (int i = 0; i < input.Length; i++) input[i] = Workload.Sample(i);
            using var work = SharedQueue.Create(@base + "_work", new QueueOptions { Capacity = WorkCapacity(o.Chunk) });
            using var done = SharedQueue.Create(@base + "_results");

            for (int w = 0; w < pythonWorkers; w++)
                pythons.Add(new PythonProcess(o, "sharedbridge.demo.worker",
                    work.Name, done.Name, w.ToString(Inv)));
            WaitUntilReady(done, pythonWorkers, pythons);
            var clock = Stopwatch.StartNew();
            var threads = Enumerable.Range(pythonWorkers, csharpWorkers).Select(index =>
                Task.Factory.StartNew(() => Workload.Work(work.Name, done.Name, index, WorkerTimeout),
                    TaskCreationOptions.LongRunning)).ToArray();
            bool Alive() => pythons.Any(p => !p.HasExited) || threads.Any(t => !t.IsCompleted);
            var producer = Task.Factory.StartNew(() => Produce(work, input, o.Chunk, Alive), TaskCreationOptions.LongRunning);

            while (results < o.Chunks)
            {
                try
                {
                    using var m = done.Read(Slice);
                    if (m.Type != QueueMessageType.Record) continue;     // a late "ready" of a slow worker
                    var r = m.GetValue<ChunkResult>();
                    for (int b = 0; b < Workload.Bins; b++) histogram[b] += r.Bins[b];
                    total += r.Sum;
                    samples += r.Samples;
                    string who = r.Worker >= 0 && r.Worker < workers ? WorkerName((int)r.Worker, pythonWorkers) : $"unknown#{r.Worker}";
                    chunksBy[who] = chunksBy.GetValueOrDefault(who) + 1;
                    results++;
                }
                catch (QueueTimeoutException)
                {
                    if ((!Alive() && done.Count == 0) || clock.Elapsed > WorkerTimeout)
                    {
                        allRead = false;
                        break;
                    }
                }
            }
            try
            {
                workersOk &= producer.Wait(WorkerTimeout) && producer.Result;
                workersOk &= Task.WaitAll(threads, WorkerTimeout);
            }
            catch (AggregateException e)
            {
                Console.Error.WriteLine($"the C# producer or a C# worker failed: {e.InnerException?.Message}");
                workersOk = false;
            }
            for (int w = 0; w < pythons.Count; w++)
                workersOk &= pythons[w].Finish(WorkerTimeout, $"python worker #{w + 1} (sharedbridge.demo.worker)");
            seconds = clock.Elapsed.TotalSeconds;
        }
        finally
        {
            foreach (var p in pythons) p.Dispose();
        }
        var leftovers = Directory.GetFiles("/dev/shm", @base + "*").Select(Path.GetFileName).OfType<string>().ToList();
        bool exactlyOnce = allRead && results == o.Chunks && samples == o.Count;
        return new SharedRun(@base, histogram, total, chunksBy, seconds, workersOk, exactlyOnce, leftovers);
    }

    private static string WorkerName(int w, int pythonWorkers) =>
        w < pythonWorkers ? $"python#{w + 1}" : $"C##{w - pythonWorkers + 1}";

    /// <summary>The producer: every chunk of the input as an int32 array message, then Complete (the workers drain the
    /// queue and stop). Gives up, completing the queue all the same, when no worker is left to make room.</summary>
    private static bool Produce(SharedQueue work, int[] input, int chunk, Func<bool> alive)
    {
        try
        {
            for (long start = 0; start < input.Length; start += chunk)
            {
                var values = input.AsSpan((int)start, (int)Math.Min(chunk, input.Length - start));
                while (true)
                {
                    try
                    {
                        work.Write<int>(values, [values.Length], Slice);
                        break;
                    }
                    catch (QueueTimeoutException) when (alive())
                    {
                    }
                    catch (QueueTimeoutException)
                    {
                        Console.Error.WriteLine("the work queue stayed full and no worker is left: the producer stopped");
                        return false;
                    }
                }
            }
            return true;
        }
        finally
        {
            work.Complete();
        }
    }

    /// <summary>Waits until every Python worker has attached and said "ready" through the results queue (or one died).</summary>
    private static void WaitUntilReady(SharedQueue results, int expected, List<PythonProcess> pythons)
    {
        var deadline = Stopwatch.StartNew();
        for (int ready = 0; ready < expected;)
        {
            try
            {
                // Before the first chunk, a worker's only message is its "ready" string.
                using var m = results.Read(TimeSpan.FromMilliseconds(20));
                ready++;
            }
            catch (QueueTimeoutException)
            {
                if (pythons.Any(p => p.HasExited) || deadline.Elapsed > TimeSpan.FromSeconds(30))
                    return;  // the run goes on without it; the checks will report the failure
            }
        }
    }

    private sealed record MultiprocessingRun(long[] Histogram, long Total, long[] Chunks, double Seconds, bool WorkersOk);

    private static MultiprocessingRun RunMultiprocessing(DemoOptions o, int workers)
    {
        using var p = new PythonProcess(o, "sharedbridge.demo.baseline",
            o.Count.ToString(Inv), o.Chunk.ToString(Inv), workers.ToString(Inv));
        bool finished = p.Finish(WorkerTimeout, "sharedbridge.demo.baseline");
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

    /// <summary>The interpreter's version, and where its sharedbridge comes from (the package folder and
    /// "installed" or "from --repo DIR"). Without a checkout (an installed tool) the interpreter must have the
    /// package installed; a checkout whose package does not import is left to the run (the workers fail and
    /// the checks say so).</summary>
    private static (string Version, string Package) PythonFacts(DemoOptions o)
    {
        const string Probe = "import sys; print('%d.%d.%d' % sys.version_info[:3])\n"
            + "try:\n import sharedbridge.demo.worker, sharedbridge.demo.baseline, sharedbridge as s; print(s.__version__, s.__file__, s.lock_backend(), sep=chr(9))\n"
            + "except ImportError as e: print('missing', e)";
        string stdout, stderr;
        int status;
        try
        {
            using var p = Process.Start(PythonProcess.Start(o, "-c", Probe))!;
            var err = p.StandardError.ReadToEndAsync();
            stdout = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            stderr = err.Result;
            status = p.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new UsageException($"cannot run the Python interpreter '{o.Python}' ({e.Message}): pass --python PATH");
        }
        if (status != 0) throw new UsageException($"{o.Python} does not run: {stderr}");
        var lines = stdout.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        string version = lines[0];
        string package = lines.Length > 1 ? lines[1] : "missing";
        if (package.StartsWith("missing", StringComparison.Ordinal))
        {
            if (o.Repo == null)
            {
                string why = package["missing".Length..].Trim();
                throw new UsageException($"{o.Python} has no sharedbridge package ({why}): pip install the sharedbridge wheel "
                    + "into it (build/dist/sharedbridge-*.whl of `make dist`), pass --python PATH of an interpreter that has it, "
                    + "or --repo DIR of a SharedBridge checkout");
            }
            return (version, $"none importable from {o.PythonPackageDir} ({package["missing".Length..].Trim()})");
        }
        var parts = package.Split('\t');     // version, file, lock backend
        string where = o.Repo == null ? "installed" : $"from --repo {o.Repo}";
        return (version, $"sharedbridge {parts[0]} {where}: {Path.GetDirectoryName(parts[1])} (lock path {parts[^1]})");
    }

    private static string Seconds(double s) => s.ToString("0.000", Inv) + " s";
}
