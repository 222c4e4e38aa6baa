// SharedBridge benchmarks (the .NET side of `make bench`, bench/run.py; docs/benchmarks.md):
//
//   dotnet SharedBridge.Benchmarks.dll [iterations]      uncontended Lock()+increment+unlock vs a bare
//                                                         pthread_mutex_lock/unlock pair, same run
//   ... pingpong-serve PING PONG ROUNDS                   the C# side of python/benchmarks/bench_sync_pingpong.py
//   ... contend NAME START_UNIX_MS DURATION_MS            item 2: Lock()+a[0]++ on a shared long array until
//                                                         the deadline; prints the count
//   ... copy ROUNDS SIZE...                               item 3: Span.CopyTo into/out of a segment vs private (JSON)
//   ... open ROUNDS SIZE...                               item 4: SharedArray<double>.Open+Dispose vs a bare mmap (JSON)
//   ... bdn smoke|short OUT.json                          item 5: BenchmarkDotNet, Lock() vs Monitor vs pthread (JSON)
//   ... wake serve KIND ROUND_TRIPS PEER_PID PATIENCE_S NAME...          item 7 (bench/wakeup.py): the serving
//   ... wake drive KIND ROUND_TRIPS WARMUP PEER_PID PATIENCE_S NAME...   and driving sides of a ping-pong over
//                                                         KIND event|semaphore|condition; drive prints ns per round trip
//   ... wake slim ROUND_TRIPS WARMUP PATIENCE_S           item 7: SemaphoreSlim ping-pong between two threads
//   ... wake settings                                     item 7: the spin budget and CPU count this process sees (JSON)
//   ... queue produce|consume|serve|drive|has-batch ...   item 8 (bench/queue_bench.py): the .NET sides of the
//                                                         queue benchmark (Queue.cs)
using System.Globalization;
using SharedBridge.Benchmarks;

return args switch
{
    ["pingpong-serve", var ping, var pong, var rounds] => PingPong.Serve(ping, pong, int.Parse(rounds)),
    ["contend", var name, var start, var duration] => BenchItems.Contend(name, long.Parse(start), int.Parse(duration)),
    ["copy", var rounds, .. var sizes] => BenchItems.Copy(int.Parse(rounds), sizes.Select(long.Parse).ToArray()),
    ["open", var rounds, .. var sizes] => BenchItems.Open(int.Parse(rounds), sizes.Select(long.Parse).ToArray()),
    ["bdn", var mode, var output] => LockBdn.RunAll(mode == "smoke", output),
    ["wake", "serve", var kind, var n, var peer, var patience, .. var names] =>
        Wake.Serve(kind, int.Parse(n), int.Parse(peer), double.Parse(patience, CultureInfo.InvariantCulture), names),
    ["wake", "drive", var kind, var n, var warmup, var peer, var patience, .. var names] =>
        Wake.Drive(kind, int.Parse(n), int.Parse(warmup), int.Parse(peer), double.Parse(patience, CultureInfo.InvariantCulture), names),
    ["wake", "slim", var n, var warmup, var patience] =>
        Wake.Slim(int.Parse(n), int.Parse(warmup), double.Parse(patience, CultureInfo.InvariantCulture)),
    ["wake", "settings"] => Wake.Settings(),
    ["queue", .. var rest] => SharedBridge.Benchmarks.Queue.Run(rest),
    [var iterations] => LockBenchmark.Run(long.Parse(iterations)),
    _ => LockBenchmark.Run(20_000_000),
};
