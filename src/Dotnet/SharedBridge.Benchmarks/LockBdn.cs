using System.Runtime.InteropServices;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace SharedBridge.Benchmarks;

/// <summary>
/// Item 5 (BenchmarkDotNet): SharedArray.Lock() + a[0]++ against Monitor (the C# lock statement)
/// + increment and a bare pthread_mutex_lock + increment + unlock on a mutex of the library's kind,
/// with 1 thread (uncontended) and 2 threads on the same lock. One invocation is OpsPerThread
/// operations per thread; results are ns per operation (all threads' operations counted).
/// </summary>
public unsafe class LockBdn
{
    private const int OpsPerThread = 200_000;
    private SharedArray<long>? _array;
    private readonly object _monitor = new();
    private long _counter;
    private void* _mutex;

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _array = SharedArray<long>.Create(null, 1);
        _mutex = LockBenchmark.NewMutex();
        if (_mutex == null) throw new InvalidOperationException("pthread mutex initialization failed");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _array?.Dispose();
        NativeMemory.AlignedFree(_mutex);
    }

    private void OnThreads(Action body)
    {
        if (Threads == 1) { body(); return; }
        var threads = new Thread[Threads];
        for (int t = 0; t < Threads; t++) (threads[t] = new Thread(() => body())).Start();
        foreach (var t in threads) t.Join();
    }

    [Benchmark(Description = "SharedArray.Lock() + a[0]++", OperationsPerInvoke = OpsPerThread)]
    public void SharedBridgeLock() => OnThreads(() =>
    {
        var a = _array!;
        for (int i = 0; i < OpsPerThread; i++)
        {
            using (a.Lock())
                a[0]++;
        }
    });

    [Benchmark(Baseline = true, Description = "Monitor (lock statement) + increment", OperationsPerInvoke = OpsPerThread)]
    public void MonitorLock() => OnThreads(() =>
    {
        for (int i = 0; i < OpsPerThread; i++)
        {
            lock (_monitor)
                _counter++;
        }
    });

    [Benchmark(Description = "bare pthread_mutex_lock + increment + unlock", OperationsPerInvoke = OpsPerThread)]
    public void PthreadLock() => OnThreads(() =>
    {
        void* m = _mutex;
        for (int i = 0; i < OpsPerThread; i++)
        {
            LockBenchmark.MutexLock(m);
            _counter++;
            LockBenchmark.MutexUnlock(m);
        }
    });

    /// <summary>Runs the benchmarks (smoke: BenchmarkDotNet's Dry job; else 1 launch, 2 warm-up and 5 measured
    /// iterations), in process, and writes [{case, threads, ns_per_op, ns_stddev}] to OUTPUT: ns_per_op is
    /// the median invocation time over all threads' operations (wall time / (threads x OpsPerThread)).</summary>
    internal static int RunAll(bool smoke, string output)
    {
        var job = (smoke ? Job.Dry : Job.ShortRun.WithWarmupCount(2).WithIterationCount(5))
            .WithToolchain(InProcessEmitToolchain.Instance);
        var config = ManualConfig.CreateEmpty()
            .AddJob(job)
            .AddLogger(ConsoleLogger.Default)
            .AddColumnProvider(BenchmarkDotNet.Columns.DefaultColumnProviders.Instance)
            .WithArtifactsPath(Path.Combine(Path.GetTempPath(), "sharedbridge-bdn-" + Environment.ProcessId))
            .WithOptions(ConfigOptions.DisableLogFile);
        var summary = BenchmarkRunner.Run<LockBdn>(config);
        var rows = summary.Reports.Where(r => r.ResultStatistics != null).Select(r => new
        {
            @case = r.BenchmarkCase.Descriptor.WorkloadMethodDisplayInfo.Trim('\''),
            threads = (int)r.BenchmarkCase.Parameters["Threads"],
            ns_per_op = r.ResultStatistics!.Median / (int)r.BenchmarkCase.Parameters["Threads"],
            ns_stddev = r.ResultStatistics.StandardDeviation / (int)r.BenchmarkCase.Parameters["Threads"],
        }).ToList();
        File.WriteAllText(output, JsonSerializer.Serialize(new { bdn_version = typeof(BenchmarkRunner).Assembly.GetName().Version?.ToString(), job = smoke ? "Dry" : "ShortRun(warmup 2, iterations 5)", toolchain = "InProcessEmit", results = rows }));
        return rows.Count == 6 ? 0 : 1;
    }
}
