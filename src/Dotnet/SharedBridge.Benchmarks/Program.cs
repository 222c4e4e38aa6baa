// SharedBridge benchmark:
//
//   dotnet SharedBridge.Benchmarks.dll [iterations]      uncontended Lock()+increment+unlock vs a bare
//                                                         pthread_mutex_lock/unlock pair, same run
using SharedBridge.Benchmarks;

long iterations = args.Length > 0 ? long.Parse(args[0]) : 20_000_000;
return LockBenchmark.Run(iterations);
