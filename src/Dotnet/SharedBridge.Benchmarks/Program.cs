// SharedBridge benchmark and test child.
//
//   dotnet SharedBridge.Benchmarks.dll [iterations]      uncontended Lock()+increment+unlock vs a bare
//                                                         pthread_mutex_lock/unlock pair, same run
//   dotnet SharedBridge.Benchmarks.dll child <command>    helper process for the xunit suite (ChildCommands.cs)
using SharedBridge.Benchmarks;

if (args.Length > 0 && args[0] == "child")
    return ChildCommands.Run(args[1..]);

long iterations = args.Length > 0 ? long.Parse(args[0]) : 20_000_000;
return LockBenchmark.Run(iterations);
