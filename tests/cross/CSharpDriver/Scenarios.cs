using System.Text.Json;

namespace SharedBridge.CrossDriver;

/// <summary>The scenarios from the multiprocessing documentation, C# side: a parent whose children
/// are other driver processes (C# or Python), and the C# worker of each scenario. The parent
/// prints exactly what cross_baseline.py prints with Python's standard library.</summary>
public static class Scenarios
{
    public const int IncrementLoops = 50;
    public const int HeavyRounds = 20_000;  // x 5 elements = 100,000 locked increments per worker

    private static readonly Point[] Points = [new(1.875, -6.25), new(-5.75, 2.0), new(2.375, 9.5)];

    // ---- parents ----

    public static int Parent(string scenario, string @base, IReadOnlyList<IReadOnlyList<string>> children) => scenario switch
    {
        "sharedctypes" => ParentSharedCtypes(@base, children),
        "increment" => ParentIncrements(@base, children, IncrementLoops, pause: true),
        "heavy" => ParentIncrements(@base, children, HeavyRounds, pause: false),
        "disjoint" => ParentDisjoint(@base, children),
        _ => throw new ArgumentException($"unknown scenario '{scenario}'"),
    };

    private static IReadOnlyList<IReadOnlyList<string>> With(IReadOnlyList<IReadOnlyList<string>> children, params string[] args) =>
        children.Select(c => (IReadOnlyList<string>)[.. c, .. args]).ToList();

    private static int ParentSharedCtypes(string @base, IReadOnlyList<IReadOnlyList<string>> children)
    {
        // multiprocessing.Lock(): a non-recursive lock shared by s and A
        using var lk = SharedLock.Create(@base + "_lk", new SegmentOptions { RecursiveLock = false });
        using var n = SharedValue<int>.Create(@base + "_n", 7);
        using var x = SharedValue<double>.Create(@base + "_x", 1.0 / 3.0, new SegmentOptions { Synchronized = false });
        using var s = SharedCharArray.Create(@base + "_s", "hello world"u8, new SegmentOptions { SharedLock = lk });
        using var a = SharedArray<Point>.Create(@base + "_A", Points, new SegmentOptions { SharedLock = lk });
        int status = Children.RunAll(With(children, "worker", "sharedctypes", n.Name, x.Name, s.Name, a.Name));
        Console.WriteLine(PyRepr.Int(n.Value));
        Console.WriteLine(PyRepr.Float(x.Value));
        Console.WriteLine(PyRepr.Bytes(s.Value));
        Console.WriteLine(PyRepr.List(a.ToArray().Select(p => PyRepr.Tuple(PyRepr.Float(p.x), PyRepr.Float(p.y)))));
        return status;
    }

    private static int ParentIncrements(string @base, IReadOnlyList<IReadOnlyList<string>> children, int loops, bool pause)
    {
        using var arr = SharedArray<int>.Create(@base + "_arr", 5);
        Console.WriteLine($"Initial State: {IntList(arr.ToArray())}");
        int status = Children.RunAll(With(children, "worker", "increment", arr.Name, loops.ToString(), pause ? "pause" : "nopause"));
        int[] final = arr.ToArray();
        Console.WriteLine("--- All processes completed ---");
        Console.WriteLine($"Final Result: {IntList(final)}");
        Console.WriteLine($"Total: {final.Sum(v => (long)v)}");
        bool success = final.All(v => v == children.Count * loops);
        Console.WriteLine(success ? ">> Success: All elements were updated correctly." : ">> Failure: Data inconsistency occurred.");
        return status;
    }

    private static int ParentDisjoint(string @base, IReadOnlyList<IReadOnlyList<string>> children)
    {
        using var arr = SharedArray<int>.Create(@base + "_arr", 10, new SegmentOptions { Synchronized = false });
        string[][] parts = [["0", "5", "100"], ["5", "10", "200"]];
        var commands = children.Zip(parts, (c, part) => (IReadOnlyList<string>)[.. c, "worker", "fill", arr.Name, .. part]).ToList();
        int status = Children.RunAll(commands);
        Console.WriteLine(IntList(arr.ToArray()));
        return status;
    }

    private static string IntList(IEnumerable<int> values) => PyRepr.List(values.Select(v => PyRepr.Int(v)));

    // ---- workers ----

    public static int Worker(string scenario, IReadOnlyList<string> args) => scenario switch
    {
        "sharedctypes" => WorkerSharedCtypes(args[0], args[1], args[2], args[3]),
        "increment" => WorkerIncrement(args[0], int.Parse(args[1]), args[2] == "pause"),
        "fill" => WorkerFill(args[0], int.Parse(args[1]), int.Parse(args[2]), int.Parse(args[3])),
        "hold" => WorkerHold(args[0], args.Skip(1).Select(int.Parse).ToArray()),
        "acquire" => WorkerAcquire(args[0]),
        "lock-probe" => WorkerLockProbe(args[0]),
        "read-elements" => args[1] switch
        {
            "u" => WorkerReadElements<System.Text.Rune>(args[0], r => r.Value),
            "?" => WorkerReadElements<bool>(args[0], b => b),
            _ => throw new ArgumentException($"read-elements: unsupported typecode {args[1]}"),
        },
        "soak" => WorkerSoak(args[0], double.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture)),
        "reset-lock" => WorkerResetLock(args[0]),
        _ => SyncWorkers.Run(scenario, args) ?? QueueWorkers.Run(scenario, args) ?? throw new ArgumentException($"unknown scenario '{scenario}'"),
    };

    /// <summary>The documentation's modify(n, x, s, A), on segments opened by name.</summary>
    private static int WorkerSharedCtypes(string nName, string xName, string sName, string aName)
    {
        using var n = SharedValue<int>.Open(nName);
        using var x = SharedValue<double>.Open(xName);
        using var s = SharedCharArray.Open(sName);
        using var a = SharedArray<Point>.Open(aName);
        using (n.Lock()) n.Value *= n.Value;
        x.Value = Math.Pow(x.Value, 2);  // Python's x **= 2 is C pow(x, 2.0)
        using (s.Lock()) s.Value = AsciiUpper(s.Value);
        using (a.Lock())
        {
            for (int i = 0; i < a.Length; i++)
            {
                a[i].x = Math.Pow(a[i].x, 2);
                a[i].y = Math.Pow(a[i].y, 2);
            }
        }
        return 0;
    }

    /// <summary>bytes.upper(): ASCII letters only.</summary>
    private static byte[] AsciiUpper(byte[] value) => value.Select(b => b is >= (byte)'a' and <= (byte)'z' ? (byte)(b - 32) : b).ToArray();

    private static int WorkerIncrement(string name, int loops, bool pause)
    {
        using var arr = SharedArray<int>.Open(name);
        for (int loop = 0; loop < loops; loop++)
        {
            for (int i = 0; i < arr.Length; i++)
            {
                using (arr.Lock()) arr[i] += 1;
            }
            if (pause) Thread.Sleep(1);
        }
        return 0;
    }

    private static int WorkerFill(string name, int start, int end, int value)
    {
        using var arr = SharedArray<int>.Open(name);
        for (int i = start; i < end; i++) arr[i] = value;
        return 0;
    }

    /// <summary>Takes the lock (twice if it is recursive), writes the values, says so, waits to be killed.</summary>
    private static int WorkerHold(string name, int[] values)
    {
        var arr = SharedArray<int>.Open(name);
        var sharedLock = arr.GetLock();
        arr.Lock();
        if (sharedLock.LockType == LockType.Recursive) arr.Lock();
        values.CopyTo(arr.AsSpan());
        Json.Emit(new { holding = name });
        Thread.Sleep(TimeSpan.FromMinutes(10));
        return 3;  // reached only if nobody killed us: the test failed to
    }

    /// <summary>Acquires the lock once and reports whether that recovered it from a dead owner.</summary>
    private static int WorkerAcquire(string name)
    {
        using var arr = SharedArray<int>.Open(name);
        if (!arr.TryLock(TimeSpan.FromSeconds(10), out var scope))
        {
            Json.Emit(new { acquired = false });
            return 1;
        }
        using (scope)
        {
            Json.Emit(new { acquired = true, recovered = scope.Recovered, recoveries = arr.LockRecoveries, values = arr.ToArray() });
        }
        return 0;
    }

    /// <summary>Every acquire entry point, twice, on the lock of the int array; then the lock word.
    /// Outcomes in the words the Python driver uses.</summary>
    private static int WorkerLockProbe(string name)
    {
        using var arr = SharedArray<int>.Open(name);
        using var shared = arr.GetLock();
        var calls = new Func<bool>[]
        {
            () => { arr.Lock().Dispose(); return true; },
            () => { if (!arr.TryLock(TimeSpan.FromMilliseconds(1500), out var s)) return false; s.Dispose(); return true; },
            () => { if (!arr.TryLock(TimeSpan.Zero, out var s)) return false; s.Dispose(); return true; },
            () => { using (shared.Lock()) arr[0] = arr[0]; return true; },
        };
        var outcomes = new List<string>();
        for (int round = 0; round < 2; round++)
        {
            foreach (var call in calls)
            {
                try { outcomes.Add(call() ? "acquired" : "busy"); }
                catch (LockNotRecoverableException) { outcomes.Add("not-recoverable"); }
                catch (CorruptLockException) { outcomes.Add("corrupt-lock"); }
                catch (Exception e) { outcomes.Add($"other:{e.GetType().Name}:{e.Message}"); }
            }
        }
        int word = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(
            File.ReadAllBytes("/dev/shm/" + name).AsSpan(0x1C0, 4));
        Json.Emit(new { outcomes, lock_word = word });
        return 0;
    }

    /// <summary>Locked increments of a[0] until the time is up, alternating Lock() and TryLock(timeout);
    /// reports its own count.</summary>
    private static int WorkerSoak(string name, double seconds)
    {
        using var arr = SharedArray<long>.Open(name);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        long count = 0;
        while (watch.Elapsed.TotalSeconds < seconds)
        {
            for (int i = 0; i < 1000; i++)
            {
                using (arr.Lock()) arr[0]++;
                if (!arr.TryLock(TimeSpan.FromSeconds(5), out var scope)) throw new TimeoutException("lock not acquired in 5 s");
                using (scope) arr[0]++;
            }
            count += 2000;
        }
        Json.Emit(new { count });
        return 0;
    }

    /// <summary>Reads every element the way a user does (ToArray); reports the values or the error class.</summary>
    private static int WorkerReadElements<T>(string name, Func<T, object> canonical) where T : unmanaged
    {
        using var arr = SharedArray<T>.Open(name);
        try
        {
            Json.Emit(new { result = "ok", values = arr.ToArray().Select(canonical).ToArray() });
        }
        catch (CorruptDataException e)
        {
            Json.Emit(new { result = "corrupt-data", message = e.Message });
        }
        return 0;
    }

    /// <summary>The operator's reset (docs/format.md section 7.4).</summary>
    private static int WorkerResetLock(string name)
    {
        Json.Emit(new { reset = SharedLock.Reset(name) });
        return 0;
    }

    public static IReadOnlyList<string> ParseChild(string json) =>
        JsonSerializer.Deserialize<List<string>>(json) ?? throw new ArgumentException("--child needs a JSON list of strings");
}
