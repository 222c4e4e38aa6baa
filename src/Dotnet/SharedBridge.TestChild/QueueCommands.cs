using System.Reflection;
using SharedBridge;

namespace SharedBridge.TestChild;

/// <summary>Child commands for SharedQueue (QueueProcessTests.cs): each prints a line when it has done its part.</summary>
internal static partial class ChildCommands
{
    private static int? RunQueue(string[] args)
    {
        switch (args)
        {
            // queue-produce NAME PRODUCER COUNT: write the longs PRODUCER * 10^9 + i, i = 0 .. COUNT-1; say "done".
            case ["queue-produce", var name, var producer, var count]:
            {
                using var q = SharedQueue.Open(name);
                long p = long.Parse(producer), n = long.Parse(count);
                for (long i = 0; i < n; i++) q.Write(p * 1_000_000_000 + i, TimeSpan.FromSeconds(60));
                Say("done");
                return 0;
            }
            // queue-consume NAME: read longs until the queue is completed; check the order per producer; say
            // "COUNT SUM SUMSQ" (mod 2^64) or "order VALUE" at the first out-of-order value.
            case ["queue-consume", var name]:
            {
                using var q = SharedQueue.Open(name);
                var last = new Dictionary<long, long>();
                ulong count = 0, sum = 0, squares = 0;
                try
                {
                    while (true)
                    {
                        long v;
                        using (var m = q.Read(TimeSpan.FromSeconds(60))) v = m.GetValue<long>();
                        long p = v / 1_000_000_000, i = v % 1_000_000_000;
                        if (last.TryGetValue(p, out long before) && i <= before)
                        {
                            Say($"order {v}");
                            return 1;
                        }
                        last[p] = i;
                        count++;
                        sum = unchecked(sum + (ulong)v);
                        squares = unchecked(squares + (ulong)v * (ulong)v);
                    }
                }
                catch (QueueCompletedException) { }
                Say($"{count} {sum} {squares}");
                return 0;
            }
            // queue-die-in-put NAME before|after: write a 64-byte bytes message and stop with the mutex held, before tail
            // is stored (nothing committed) or after it (committed, counters not updated); say "dying"; wait to be killed.
            case ["queue-die-in-put", var name, var where]:
            {
                var hook = typeof(SharedQueue).GetField(where == "before" ? "BeforeCommitHook" : "AfterCommitHook",
                    BindingFlags.NonPublic | BindingFlags.Static)!;
                hook.SetValue(null, (Action<string>)(_ =>
                {
                    Say("dying");
                    Thread.Sleep(Timeout.Infinite);
                }));
                var q = SharedQueue.Open(name);
                q.Write(new byte[64]);
                return 1;
            }
            // queue-die-in-write-many NAME K: WriteMany of 10 messages (64 bytes, all equal to their index) and stop with the
            // mutex held right after the K-th commit (its tail stored, the batch's counters not); say "dying"; wait to be killed.
            case ["queue-die-in-write-many", var name, var k]:
            {
                int commits = 0, dieAt = int.Parse(k);
                typeof(SharedQueue).GetField("AfterCommitHook", BindingFlags.NonPublic | BindingFlags.Static)!.SetValue(null,
                    (Action<string>)(_ =>
                    {
                        if (++commits < dieAt) return;
                        Say("dying");
                        Thread.Sleep(Timeout.Infinite);
                    }));
                var q = SharedQueue.Open(name);
                q.WriteMany(Enumerable.Range(0, 10).Select(i => new ReadOnlyMemory<byte>(Enumerable.Repeat((byte)i, 64).ToArray())).ToArray());
                return 1;
            }
            // queue-write-sized NAME SIZE: for each stdin line "w FILL", write a bytes message of SIZE bytes that all equal FILL
            // and say "written"; the line "dispose" disposes the queue and ends, "exit" ends without disposing it (the process
            // exit's cleanup leaves what the producer kept), and the tests kill it to leave what its producer kept behind
            // (docs/format.md section 11.5, reusable data segments).
            case ["queue-write-sized", var name, var size]:
            {
                var q = SharedQueue.Open(name);
                var data = new byte[int.Parse(size)];
                string? line;
                while ((line = Console.ReadLine()) is not (null or "dispose" or "exit"))
                {
                    Array.Fill(data, byte.Parse(line[2..]));
                    q.Write(data, TimeSpan.FromSeconds(30));
                    Say("written");
                }
                if (line == "dispose") q.Dispose();
                GC.KeepAlive(q);
                return 0;
            }
            // queue-take-and-hold NAME: take one message (zero-copy), say "taken LENGTH", wait to be killed holding it.
            case ["queue-take-and-hold", var name]:
            {
                var q = SharedQueue.Open(name);
                var m = q.Read(TimeSpan.FromSeconds(30));
                Say($"taken {m.Data.Length}");
                Thread.Sleep(Timeout.Infinite);
                GC.KeepAlive(m);
                return 1;
            }
            // queue-drain NAME COUNT [many]: read COUNT bytes messages (one at a time, or in batches with TryReadMany) and
            // count them (the throughput partner); say "ready", then "COUNT".
            case ["queue-drain", var name, var count, "many"]:
            {
                using var q = SharedQueue.Open(name);
                var buffer = new byte[1 << 16];
                var lengths = new int[1024];
                long n = long.Parse(count), got = 0;
                Say("ready");
                var deadline = DateTime.UtcNow.AddMinutes(2);
                while (got < n && DateTime.UtcNow < deadline)
                {
                    int k = q.TryReadMany(buffer, lengths);
                    if (k > 0) got += k;
                    else
                    {
                        using var m = q.Read(TimeSpan.FromSeconds(10));
                        got++;
                    }
                }
                Say(got.ToString());
                return 0;
            }
            case ["queue-drain", var name, var count]:
            {
                using var q = SharedQueue.Open(name);
                Span<byte> buffer = stackalloc byte[4096];
                long n = long.Parse(count), got = 0;
                Say("ready");
                var deadline = DateTime.UtcNow.AddMinutes(2);
                while (got < n && DateTime.UtcNow < deadline)
                {
                    if (q.TryRead(buffer, out _)) got++;
                    else
                    {
                        using var m = q.Read(TimeSpan.FromSeconds(10));
                        got++;
                    }
                }
                Say(got.ToString());
                return 0;
            }
            // queue-fuzz: for every stdin line NAME, use queue NAME every way (open, read every message and its typed view,
            // copy-read, write, count, complete) and print "<outcome>": "ok", a SharedBridge exception's name or
            // "foreign:<type>". Crashes and hangs are the parent's to see.
            case ["queue-fuzz"]:
            {
                while (Console.In.ReadLine() is { } name)
                {
                    Console.WriteLine(Outcome(() => FuzzQueue(name)));
                    Console.Out.Flush();
                }
                return 0;
            }
            default:
                return null;
        }
    }

    private static void FuzzQueue(string name)
    {
        using var q = SharedQueue.Open(name, new OpenOptions { ReadyTimeout = TimeSpan.Zero });
        _ = q.Count;
        _ = q.Unfinished;
        Span<byte> buffer = stackalloc byte[8192];
        for (int i = 0; i < 12; i++)
        {
            if (i == 3 && q.TryRead(buffer, out _)) continue;
            if (!q.TryRead(out var m)) break;
            using (m)
            {
                long sum = 0;
                foreach (byte b in m.Data) sum += b;
                GC.KeepAlive(sum);
                _ = m.Type switch
                {
                    QueueMessageType.String => m.GetString().Length,
                    QueueMessageType.Scalar => m.Typecode == 'q' ? (int)m.GetValue<long>() : 0,
                    QueueMessageType.Array => m.Typecode == 'd' ? m.ToArray<double>().Length : 0,
                    QueueMessageType.Record => m.Fields.Count,
                    _ => 0,
                };
            }
        }
        q.TryWrite(new byte[100]);
        q.TryWrite("after");
        _ = q.Read(TimeSpan.FromMilliseconds(1)).Data.Length;
        q.Complete();
    }
}
