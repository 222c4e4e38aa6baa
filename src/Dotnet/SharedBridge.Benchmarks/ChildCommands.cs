using SharedBridge;

namespace SharedBridge.Benchmarks;

/// <summary>
/// Commands the xunit suite runs in a separate process (a test assembly cannot be launched as a
/// program). Each prints one line when it has done its part, so the parent can synchronize on it.
/// </summary>
internal static class ChildCommands
{
    internal static int Run(string[] args)
    {
        switch (args)
        {
            // increment NAME COUNT: COUNT times { lock; a[0]++; unlock } on SharedArray<long> NAME.
            case ["increment", var name, var count]:
            {
                using var array = SharedArray<long>.Open(name);
                long n = long.Parse(count);
                for (long i = 0; i < n; i++)
                {
                    using (array.Lock())
                        array[0]++;
                }
                Console.WriteLine("done");
                return 0;
            }
            // hold NAME DEPTH VALUE: lock DEPTH times (recursively), write VALUE to a[0], say "locked",
            // then wait to be killed while holding the lock.
            case ["hold", var name, var depth, var value]:
            {
                var array = SharedArray<long>.Open(name);
                for (int i = 0; i < int.Parse(depth); i++) array.Lock();
                array[0] = long.Parse(value);
                Console.WriteLine("locked");
                Console.Out.Flush();
                Thread.Sleep(Timeout.Infinite);
                return 1;
            }
            // hold-lock NAME: lock a SharedLock and wait to be killed.
            case ["hold-lock", var name]:
            {
                var shared = SharedLock.Open(name);
                shared.Lock();
                Console.WriteLine("locked");
                Console.Out.Flush();
                Thread.Sleep(Timeout.Infinite);
                return 1;
            }
            // create-and-exit NAME: create an array and return without disposing it
            // (the process-exit hook must unlink it).
            case ["create-and-exit", var name]:
            {
                SharedArray<int>.Create(name, 4);
                Console.WriteLine("created");
                return 0;
            }
            // read NAME: print the elements of SharedArray<long> NAME.
            case ["read", var name]:
            {
                using var array = SharedArray<long>.Open(name);
                Console.WriteLine(string.Join(",", array.ToArray()));
                return 0;
            }
            // try-lock NAME MS: open the lock of segment NAME, try Lock(MS ms) twice, print the outcome of
            // each ("acquired", "timeout" or the exception's type name).
            case ["try-lock", var name, var ms]:
            {
                using var shared = SharedLock.Open(name);
                for (int i = 0; i < 2; i++)
                {
                    try
                    {
                        if (shared.TryLock(TimeSpan.FromMilliseconds(int.Parse(ms)), out var scope))
                        {
                            scope.Dispose();
                            Console.WriteLine("acquired");
                        }
                        else Console.WriteLine("timeout");
                    }
                    catch (SharedBridgeException e)
                    {
                        Console.WriteLine(e.GetType().Name);
                    }
                }
                return 0;
            }
            // open-and-wait NAME: open segment NAME, say "opened", wait to be killed.
            case ["open-and-wait", var name]:
            {
                var segment = SharedSegment.Open(name);
                Console.WriteLine("opened");
                Console.Out.Flush();
                Thread.Sleep(Timeout.Infinite);
                GC.KeepAlive(segment);
                return 1;
            }
            default:
                Console.Error.WriteLine("usage: child increment NAME COUNT | hold NAME DEPTH VALUE | hold-lock NAME | create-and-exit NAME | read NAME | try-lock NAME MS | open-and-wait NAME");
                return 2;
        }
    }
}
