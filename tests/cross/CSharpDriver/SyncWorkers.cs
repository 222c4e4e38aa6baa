using System.Text.Json;
using SharedBridge;

namespace SharedBridge.CrossDriver;

/// <summary>The C# side of the synchronization scenarios: the same workers, arguments and output as
/// cross_sync.py (see SharedBridge.CrossTests/SyncTests.cs).</summary>
public static class SyncWorkers
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(20);

    public static int? Run(string scenario, IReadOnlyList<string> args) => scenario switch
    {
        "sync-event-wait" => EventWait(args[0], int.Parse(args[1])),
        "sync-event-set" => EventSet(args[0]),
        "sync-cond-wait" => CondWait(args[0], int.Parse(args[1])),
        "sync-cond-notify-nested" => CondNotifyNested(args[0]),
        "sync-sem-hold" => SemHold(args[0]),
        "sync-sem-acquire" => SemAcquire(args[0], int.Parse(args[1])),
        "sync-barrier-wait" => BarrierWait(args[0], int.Parse(args[1])),
        "sync-barrier" => Barrier(args[0], int.Parse(args[1]), args[2]),
        "sync-produce" => Produce(args[0], args[1], long.Parse(args[2]), int.Parse(args[3])),
        "sync-consume" => Consume(args[0], args[1], int.Parse(args[2])),
        "sync-pingpong" => PingPong(args[0], args[1], int.Parse(args[2])),
        "sync-rules" => Rules(),
        _ => null,
    };

    private static void Say(string line)
    {
        Console.WriteLine(line);
        Console.Out.Flush();
    }

    private static int EventWait(string name, int ms)
    {
        using var ev = SharedEvent.Open(name);
        Say("waiting");
        Say(ev.Wait(TimeSpan.FromMilliseconds(ms)) ? "set" : "timeout");
        return 0;
    }

    private static int EventSet(string name)
    {
        using var ev = SharedEvent.Open(name);
        ev.Set();
        Say("done");
        return 0;
    }

    private static int CondWait(string name, int ms)
    {
        using var cond = SharedCondition.Open(name);
        bool got;
        using (cond.Lock())
        {
            Say("waiting");
            got = cond.Wait(ms < 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromMilliseconds(ms));
        }
        Say(got ? "notified" : "timeout");
        return 0;
    }

    private static int CondNotifyNested(string name)
    {
        using var cond = SharedCondition.Open(name);
        using (cond.Lock())
        {
            using (cond.Lock()) cond.Notify();
            Say("inner released");
        }
        Say("released");
        return 0;
    }

    private static int SemHold(string name)
    {
        var sem = SharedSemaphore.Open(name);
        sem.Wait();
        Say("held");
        Thread.Sleep(TimeSpan.FromMinutes(10));
        return 3;
    }

    private static int SemAcquire(string name, int ms)
    {
        using var sem = SharedSemaphore.Open(name);
        bool got = sem.Wait(TimeSpan.FromMilliseconds(ms));
        Say(got ? "acquired" : "timeout");
        if (got) sem.Release();
        return 0;
    }

    private static int BarrierWait(string name, int ms)
    {
        using var barrier = SharedBarrier.Open(name);
        Say("entering");
        try
        {
            Say(barrier.SignalAndWait(TimeSpan.FromMilliseconds(ms)).ToString());
        }
        catch (BrokenBarrierException)
        {
            Say("broken");
        }
        return 0;
    }

    private static int Barrier(string name, int rounds, string countsName)
    {
        using var barrier = SharedBarrier.Open(name);
        using var counts = SharedArray<long>.Open(countsName);
        for (int r = 0; r < rounds; r++)
        {
            int i = barrier.SignalAndWait(Long);
            using (counts.Lock()) counts[i]++;
        }
        Say("done");
        return 0;
    }

    private static int Produce(string condName, string bufName, long first, int count)
    {
        using var cond = SharedCondition.Open(condName);
        using var buf = SharedArray<long>.Open(bufName);
        int size = buf.Length - 2;
        for (long item = first; item < first + count; item++)
        {
            using var scope = cond.Lock();
            if (!cond.WaitFor(() => buf[1] - buf[0] < size, Long))
            {
                Say("stuck");
                return 1;
            }
            buf[2 + (int)(buf[1] % size)] = item;
            buf[1]++;
            cond.NotifyAll();
        }
        Say("done");
        return 0;
    }

    private static int Consume(string condName, string bufName, int count)
    {
        using var cond = SharedCondition.Open(condName);
        using var buf = SharedArray<long>.Open(bufName);
        int size = buf.Length - 2;
        var got = new List<long>();
        for (int n = 0; n < count; n++)
        {
            using var scope = cond.Lock();
            if (!cond.WaitFor(() => buf[1] > buf[0], Long))
            {
                Say("stuck");
                return 1;
            }
            got.Add(buf[2 + (int)(buf[0] % size)]);
            buf[0]++;
            cond.NotifyAll();
        }
        Say(JsonSerializer.Serialize(got));
        return 0;
    }

    private static int PingPong(string pingName, string pongName, int rounds)
    {
        using var ping = SharedEvent.Open(pingName);
        using var pong = SharedEvent.Open(pongName);
        Say("ready");
        for (int r = 0; r < rounds; r++)
        {
            if (!ping.Wait(Long)) return 1;
            ping.Reset();
            pong.Set();
        }
        return 0;
    }

    private static TimeSpan Ms(string ms) => int.Parse(ms) < 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromMilliseconds(int.Parse(ms));

    /// <summary>The cases of section 10's settled rules (SyncRulesTests.cs), one command per stdin line (COMMAND NAME [MS],
    /// MS &lt; 0: no timeout); one result line each ("corrupt" for a corrupt segment, "error TYPE: message" for any
    /// other error), as cross_sync.sync_rules. Objects stay open until "exit".</summary>
    private static int Rules()
    {
        var objects = new Dictionary<string, IDisposable>();
        while (Console.ReadLine() is { } line)
        {
            var a = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (a[0] == "exit") break;
            try
            {
                Say(a[0] switch
                {
                    "open" => Open(objects, a[1]),
                    "cond-nested-wait" => CondNestedWait((SharedCondition)objects[a[1]], Ms(a[2])),
                    "event-wait" => Waiting(() => ((SharedEvent)objects[a[1]]).Wait(Ms(a[2])) ? "true" : "false"),
                    "sem-acquire" => Waiting(() => ((SharedSemaphore)objects[a[1]]).Wait(Ms(a[2])) ? "acquired" : "timeout"),
                    "sem-release" => SemRelease((SharedSemaphore)objects[a[1]]),
                    "barrier-wait" => Waiting(() => BarrierIndex((SharedBarrier)objects[a[1]], Ms(a[2]))),
                    _ => throw new ArgumentException($"unknown command {a[0]}"),
                });
            }
            catch (CorruptSegmentException)
            {
                Say("corrupt");
            }
            catch (Exception e)
            {
                Say($"error {e.GetType().Name}: {e.Message}");
            }
        }
        foreach (var o in objects.Values) o.Dispose();
        return 0;
    }

    private static string Waiting(Func<string> wait)
    {
        Say("waiting");
        return wait();
    }

    private static string Open(Dictionary<string, IDisposable> objects, string name)
    {
        objects[name] = SharedSegment.ReadHeader(name).Kind switch
        {
            SegmentKind.Event => SharedEvent.Open(name),
            SegmentKind.Semaphore => SharedSemaphore.Open(name),
            SegmentKind.Condition => SharedCondition.Open(name),
            SegmentKind.Barrier => SharedBarrier.Open(name),
            var k => throw new ArgumentException($"not a synchronization segment: {k}"),
        };
        return "ok";
    }

    /// <summary>Waits with the condition's lock held twice (section 10.3): released completely while waiting, held
    /// twice again after: Notify works after the inner release, not after the outer.</summary>
    private static string CondNestedWait(SharedCondition cond, TimeSpan timeout)
    {
        bool got;
        string held;
        using (cond.Lock())
        {
            using (cond.Lock())
            {
                Say("waiting");
                got = cond.Wait(timeout);
            }
            try
            {
                cond.Notify();
                held = "held";
            }
            catch (SynchronizationLockException)
            {
                held = "not-held";
            }
        }
        string released;
        try
        {
            cond.Notify();
            released = "not-released";
        }
        catch (SynchronizationLockException)
        {
            released = "released";
        }
        return $"{(got ? "notified" : "timeout")} {held} {released}";
    }

    private static string SemRelease(SharedSemaphore sem)
    {
        try
        {
            sem.Release();
            return "ok";
        }
        catch (SemaphoreFullException)
        {
            return "full";
        }
    }

    private static string BarrierIndex(SharedBarrier barrier, TimeSpan timeout)
    {
        try
        {
            return barrier.SignalAndWait(timeout).ToString();
        }
        catch (BrokenBarrierException)
        {
            return "broken";
        }
    }
}
