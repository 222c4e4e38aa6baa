// SharedBridge benchmark:
//
//   dotnet SharedBridge.Benchmarks.dll [iterations]      uncontended Lock()+increment+unlock vs a bare
//                                                         pthread_mutex_lock/unlock pair, same run
//   dotnet SharedBridge.Benchmarks.dll pingpong-serve PING PONG ROUNDS
//                                                         the C# side of python/benchmarks/bench_sync_pingpong.py
using SharedBridge.Benchmarks;

if (args is ["pingpong-serve", var ping, var pong, var rounds])
    return PingPong.Serve(ping, pong, int.Parse(rounds));
long iterations = args.Length > 0 ? long.Parse(args[0]) : 20_000_000;
return LockBenchmark.Run(iterations);
