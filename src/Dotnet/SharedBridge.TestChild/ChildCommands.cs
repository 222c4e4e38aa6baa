using System.Runtime.InteropServices;
using System.Text;
using SharedBridge;

namespace SharedBridge.TestChild;

/// <summary>
/// Commands the xunit suite runs in a separate process (a test assembly cannot be launched as a
/// program). Each prints one line when it has done its part, so the parent can synchronize on it.
/// </summary>
internal static partial class ChildCommands
{
    internal static int Run(string[] args)
    {
        switch (args)
        {
            // lifetime create NAME LIFETIME | lifetime open NAME: create (with that SegmentLifetime) or open
            // SharedArray<long> NAME, print "ready", then obey stdin: "dispose" (print "disposed", keep
            // running), "exit" (return without disposing: ProcessExit cleans up); or wait to be killed.
            case ["lifetime", "create" or "open", var name, ..] when args.Length == (args[1] == "create" ? 4 : 3):
            {
                var array = args[1] == "create"
                    ? SharedArray<long>.Create(name, 2, new SegmentOptions { Lifetime = Enum.Parse<SegmentLifetime>(args[3]) })
                    : SharedArray<long>.Open(name);
                Console.WriteLine("ready");
                Console.Out.Flush();
                while (Console.ReadLine() is { } command)
                {
                    if (command == "exit") return 0;
                    if (command != "dispose") continue;
                    array.Dispose();
                    Console.WriteLine("disposed");
                    Console.Out.Flush();
                }
                return 0;
            }
            // create-paused NAME LIFETIME [unsized]: create SharedArray<long> NAME and stop between writing its identity
            // and state = ready (the library's test hook, set by reflection), saying "ready" there; wait
            // to be killed (format.md section 8: reaping a segment whose creator died initializing it).
            // With unsized, stop earlier: right after shm_open made the object, before it is sized (0 bytes).
            case ["create-paused", var name, var lifetime, .. var where] when where is [] or ["unsized"]:
            {
                var hook = typeof(SharedSegment).Assembly.GetType("SharedBridge.Platform.MappedSegment")!
                    .GetField(where is ["unsized"] ? "AfterOpenHook" : "BeforeReadyHook",
                        System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
                hook.SetValue(null, (Action<string>)(_ =>
                {
                    Console.WriteLine("ready");
                    Console.Out.Flush();
                    Thread.Sleep(Timeout.Infinite);
                }));
                SharedArray<long>.Create(name, 2, new SegmentOptions { Lifetime = Enum.Parse<SegmentLifetime>(lifetime) });
                return 1;
            }
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
                    catch (Exception e) when (e is ISharedBridgeException)
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
            // create-and-wait NAME KEPT [cancel-term]: create NAME (unlinked at exit) and KEPT (KeepOnDispose),
            // say "created", then wait for a signal. With cancel-term an application SIGTERM handler that
            // cancels is registered first: the process says "sigterm cancelled" and keeps running until
            // it reads a line on stdin, then returns normally.
            case ["create-and-wait", var name, var kept, .. var rest]:
            {
                PosixSignalRegistration? appHandler = null;
                if (rest is ["cancel-term"])
                    appHandler = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
                    {
                        context.Cancel = true;
                        Console.WriteLine("sigterm cancelled");
                        Console.Out.Flush();
                    });
                SharedArray<int>.Create(name, 4);
                SharedArray<int>.Create(kept, 4, new SegmentOptions { KeepOnDispose = true });
                Console.WriteLine("created");
                Console.Out.Flush();
                if (appHandler is null)
                {
                    Thread.Sleep(Timeout.Infinite);
                    return 1;
                }
                Console.In.ReadLine();
                Console.WriteLine("exiting");
                GC.KeepAlive(appHandler);
                return 0;
            }
            // throw-unhandled NAME: create NAME, say "created", then throw an exception nobody catches.
            case ["throw-unhandled", var name]:
            {
                SharedArray<int>.Create(name, 4);
                Console.WriteLine("created");
                Console.Out.Flush();
                var thread = new Thread(() => throw new InvalidOperationException("unhandled on purpose"));
                thread.Start();
                thread.Join();
                return 1;
            }
            // fork-dispose NAME: create NAME, fork; the fork child disposes its copy of the creator object
            // and _exits; the parent reports "child exited STATUS" and then whether NAME still exists
            // ("exists" / "gone") and its state word, and exits without disposing (the exit hook unlinks).
            case ["fork-dispose", var name]:
                return ForkDispose(name);
            // fuzz-open LOCKNAME: for every stdin line "NAME SHAPE", open NAME untyped and as SHAPE (a short
            // ready timeout, every element read) and print "<untyped outcome> <typed outcome>": "ok", the
            // name of a SharedBridge exception, or "foreign:<type>". Crashes and hangs are the parent's to see.
            case ["fuzz-open"]:
            {
                while (Console.In.ReadLine() is { } line)
                {
                    var parts = line.Split(' ');
                    if (parts.Length != 2) return 2;
                    string untyped = Outcome(() => FuzzOpenUntyped(parts[0]));
                    string typed = Outcome(() => FuzzOpenTyped(parts[0], parts[1]));
                    Console.WriteLine($"{untyped} {typed}");
                    Console.Out.Flush();
                }
                return 0;
            }
            default:
                if (RunSync(args) is int syncResult) return syncResult;
                if (RunQueue(args) is int queueResult) return queueResult;
                if (RunTensor(args) is int tensorResult) return tensorResult;
                Console.Error.WriteLine("usage: SharedBridge.TestChild increment NAME COUNT | hold NAME DEPTH VALUE | hold-lock NAME | create-and-exit NAME | read NAME" +
                                        " | create-and-wait NAME KEPT [cancel-term] | throw-unhandled NAME | fork-dispose NAME | fuzz-open" +
                                        " | try-lock NAME MS | open-and-wait NAME | tensor-serve NAME TYPE SALT DIMS... | tensor-touch NAME TYPE RANK SALT | " + SyncUsage);
                return 2;
        }
    }

    // .NET does not support fork: the child has only the forking thread, so it must not need the JIT
    // or anything another thread holds. The Dispose path is compiled before forking (a throwaway
    // segment), and the child leaves through a function pointer to _exit.
    private static unsafe int ForkDispose(string name)
    {
        SharedArray<int>.Create(name + "-warm", 1).Dispose();
        var exit = (delegate* unmanaged<int, void>)NativeLibrary.GetExport(NativeLibrary.Load("libc.so.6"), "_exit");
        var array = SharedArray<int>.Create(name, 4);
        array[0] = 5;
        int pid = Fork();
        if (pid == 0)
        {
            array.Dispose();
            exit(0);
        }
        if (pid < 0)
        {
            Console.WriteLine("fork failed");
            return 1;
        }
        int status = 0;
        while (WaitPid(pid, ref status, 0) < 0 && Marshal.GetLastPInvokeError() == 4) { }
        Console.WriteLine($"child exited {status}");
        bool exists = File.Exists("/dev/shm/" + name);
        using (var view = SharedSegment.Open(name))
            Console.WriteLine($"{(exists ? "exists" : "gone")} state {view.CurrentState}");
        return 0;
    }

    private static readonly OpenOptions FuzzOptions = new() { ReadyTimeout = TimeSpan.FromMilliseconds(20) };

    private static string Outcome(Action action)
    {
        try
        {
            action();
            return "ok";
        }
        catch (Exception e) when (e is ISharedBridgeException)
        {
            return e.GetType().Name;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine(e);
            return "foreign:" + e.GetType().FullName;
        }
    }

    private static void FuzzOpenUntyped(string name)
    {
        using var segment = SharedSegment.Open(name, FuzzOptions);
        long sum = 0;
        foreach (byte b in segment.Data) sum += b; // every data byte is mapped
        _ = segment.Header.TypeDescription;
        _ = segment.HasLock;
        GC.KeepAlive(sum);
    }

    private static void FuzzOpenTyped(string name, string shape)
    {
        switch (shape)
        {
            case "c": { using var a = SharedCharArray.Open(name, FuzzOptions); _ = a.Value; _ = a.Raw; break; }
            case "u": ReadArray<Rune>(name); break;
            case "b": ReadArray<sbyte>(name); break;
            case "B": ReadArray<byte>(name); break;
            case "h": ReadArray<short>(name); break;
            case "H": ReadArray<ushort>(name); break;
            case "i": ReadArray<int>(name); break;
            case "I": ReadArray<uint>(name); break;
            case "l" or "q": ReadArray<long>(name); break;
            case "L" or "Q": ReadArray<ulong>(name); break;
            case "f": ReadArray<float>(name); break;
            case "d": ReadArray<double>(name); break;
            case "?": ReadArray<bool>(name); break;
            case "T": ReadArray<FuzzOuter>(name); break;
            case "value-d": { using var v = SharedValue<double>.Open(name, FuzzOptions); _ = v.Value; break; }
            case "value-u": { using var v = SharedValue<Rune>.Open(name, FuzzOptions); _ = v.Value; break; }
            case "value-?": { using var v = SharedValue<bool>.Open(name, FuzzOptions); _ = v.Value; break; }
            case "value-T": { using var v = SharedValue<FuzzOuter>.Open(name, FuzzOptions); _ = v.Value; break; }
            case "lock": { using var l = SharedLock.Open(name, FuzzOptions); _ = l.LockType; break; }
            case "tensor-d": ReadTensor<double>(name); break;
            case "tensor-T": ReadTensor<FuzzOuter>(name); break;
            default: throw new ArgumentException("unknown shape " + shape);
        }
    }

    private static void ReadArray<T>(string name) where T : unmanaged
    {
        using var array = SharedArray<T>.Open(name, FuzzOptions);
        var copy = array.ToArray();
        if (copy.Length != array.Length) throw new InvalidOperationException("ToArray lost elements");
        if (array.Length > 0) _ = array[array.Length - 1];
    }

    private static void ReadTensor<T>(string name) where T : unmanaged
    {
        using var tensor = SharedTensor<T>.Open(name, FuzzOptions);
        var copy = tensor.ToArray();
        if (copy.Length != tensor.Length) throw new InvalidOperationException("ToArray lost elements");
        if (tensor.Length > 0)
        {
            var last = new nint[tensor.Rank];
            for (int k = 0; k < last.Length; k++) last[k] = tensor.Shape[k] - 1;
            _ = tensor[last];
        }
    }

    [LibraryImport("libc", EntryPoint = "fork", SetLastError = true)]
    private static partial int Fork();

    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    private static partial int WaitPid(int pid, ref int status, int options);
}
