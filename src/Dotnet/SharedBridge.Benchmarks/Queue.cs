using System.Diagnostics;

namespace SharedBridge.Benchmarks;

/// <summary>
/// The .NET sides of the queue benchmark (bench/queue_bench.py, docs/benchmarks.md section 8). The Python
/// harness creates the queues and events (sharedbridge Queue / Event); these sides open them by name.
/// <list type="bullet">
/// <item><c>produce QUEUE READY GO COUNT SIZE BATCH PATIENCE_S</c>: sets READY, waits for GO, writes COUNT bytes
/// messages of SIZE bytes (<c>Write</c>; BATCH &gt; 1: <c>WriteMany</c> of BATCH messages at a time).</item>
/// <item><c>consume QUEUE READY GO COUNT take|copy|many PATIENCE_S</c>: waits for READY, sets GO, reads COUNT messages
/// and prints the nanoseconds from GO to the last one. <c>take</c>: <c>Read</c>, then <c>Dispose</c> of the taken
/// message (zero-copy); <c>copy</c>: <c>TryRead(Span&lt;byte&gt;)</c>, which copies the bytes out in one step, and
/// <c>Read</c> only when the queue is empty; <c>many</c>: <c>ReadMany</c> of up to 64 messages under one lock, which
/// waits only when the queue is empty; <c>array</c>: <c>Read</c>, a copy of the message's bytes (any message type: the
/// 1 MiB numpy arrays of bench/queue_bench.py a1-py-cs) into one reused buffer, then <c>Dispose</c>, so that the bytes are
/// used as a consumer would (an out-of-line message's mapping is touched).</item>
/// <item><c>serve PING PONG TOTAL PATIENCE_S</c>: TOTAL times, reads a message from PING and writes its bytes to PONG.</item>
/// <item><c>drive PING PONG ROUND_TRIPS WARMUP SIZE PATIENCE_S</c>: WARMUP + ROUND_TRIPS times, writes SIZE bytes to
/// PING and reads the answer from PONG; prints the nanoseconds of each measured round trip.</item>
/// </list>
/// Every wait has the patience as its timeout (a <see cref="QueueTimeoutException"/> ends the side with exit 1),
/// so a dead peer never leaves a side hanging.
/// </summary>
internal static class Queue
{
    public static int Run(string[] args)
    {
        try
        {
            return args switch
            {
                ["produce", var q, var ready, var go, var n, var size, var batch, var patience] =>
                    Produce(q, ready, go, long.Parse(n), int.Parse(size), int.Parse(batch), Seconds(patience)),
                ["consume", var q, var ready, var go, var n, var mode and ("take" or "copy" or "many" or "array"), var patience] =>
                    Consume(q, ready, go, long.Parse(n), mode, Seconds(patience)),
                ["serve", var ping, var pong, var total, var patience] =>
                    Serve(ping, pong, int.Parse(total), Seconds(patience)),
                ["drive", var ping, var pong, var n, var warmup, var size, var patience] =>
                    Drive(ping, pong, int.Parse(n), int.Parse(warmup), int.Parse(size), Seconds(patience)),
                _ => Usage(),
            };
        }
        catch (Exception e) when (e is ISharedBridgeException)
        {
            Console.Error.WriteLine($"queue {args.FirstOrDefault()}: {e.GetType().Name}: {e.Message}");
            return 1;
        }
    }

    private static TimeSpan Seconds(string s) => TimeSpan.FromSeconds(double.Parse(s, System.Globalization.CultureInfo.InvariantCulture));

    private static int Usage()
    {
        Console.Error.WriteLine("usage: queue produce|consume|serve|drive ... (Queue.cs)");
        return 2;
    }

    private static void WaitFor(SharedEvent e, TimeSpan patience, string what)
    {
        if (!e.Wait(patience)) throw new TimeoutException($"{what}: nothing within {patience.TotalSeconds} s");
    }

    private static int Produce(string name, string readyName, string goName, long n, int size, int batch, TimeSpan patience)
    {
        using var q = SharedQueue.Open(name);
        using var ready = SharedEvent.Open(readyName);
        using var go = SharedEvent.Open(goName);
        var message = new byte[size];
        for (int i = 0; i < size; i++) message[i] = (byte)i;
        ready.Set();
        WaitFor(go, patience, "producer waiting for go");
        if (batch > 1)
        {
            var chunk = new ReadOnlyMemory<byte>[batch];
            Array.Fill(chunk, message);
            for (long i = 0; i < n; i += batch)
                q.WriteMany(chunk.AsSpan(0, (int)Math.Min(batch, n - i)), patience);
            return 0;
        }
        for (long i = 0; i < n; i++)
            q.Write(message, patience);
        return 0;
    }

    private static int Consume(string name, string readyName, string goName, long n, string mode, TimeSpan patience)
    {
        using var q = SharedQueue.Open(name);
        using var ready = SharedEvent.Open(readyName);
        using var go = SharedEvent.Open(goName);
        WaitFor(ready, patience, "consumer waiting for the producer");
        go.Set();
        long start = Stopwatch.GetTimestamp();
        if (mode == "many")
        {
            // ReadMany copies up to 64 ready messages out under one acquisition of the mutex, waiting (as Read does)
            // only when the queue is empty (Python's get_many).
            var buffer = new byte[1 << 16];
            var lengths = new int[64];
            for (long i = 0; i < n;)
                i += q.ReadMany(buffer, lengths.AsSpan(0, (int)Math.Min(lengths.Length, n - i)), patience);
        }
        else if (mode == "copy")
        {
            // TryRead(Span<byte>) copies the message out in one locked step (no take and release); when the
            // queue is empty, Read waits for the next message (taken and released).
            var buffer = new byte[1 << 16];
            for (long i = 0; i < n; i++)
            {
                if (q.TryRead(buffer, out _)) continue;
                using var m = q.Read(patience);
            }
        }
        else if (mode == "array")
        {
            byte[] buffer = [];
            for (long i = 0; i < n; i++)
            {
                using var m = q.Read(patience);
                var data = m.Data;
                if (buffer.Length != data.Length) buffer = new byte[data.Length];
                data.CopyTo(buffer);
            }
        }
        else
        {
            for (long i = 0; i < n; i++)
            {
                using var m = q.Read(patience);
                if (m.Length == 0) throw new InvalidOperationException("an empty message");
            }
        }
        long ns = (long)Stopwatch.GetElapsedTime(start).TotalNanoseconds;
        Console.WriteLine(ns);
        return 0;
    }

    private static int Serve(string pingName, string pongName, int total, TimeSpan patience)
    {
        using var ping = SharedQueue.Open(pingName);
        using var pong = SharedQueue.Open(pongName);
        for (int i = 0; i < total; i++)
        {
            using var m = ping.Read(patience);
            pong.Write(m.Data, patience);
        }
        return 0;
    }

    private static int Drive(string pingName, string pongName, int n, int warmup, int size, TimeSpan patience)
    {
        using var ping = SharedQueue.Open(pingName);
        using var pong = SharedQueue.Open(pongName);
        var message = new byte[size];
        var times = new long[n];
        for (int i = -warmup; i < n; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            ping.Write(message, patience);
            using (pong.Read(patience)) { }
            long t1 = Stopwatch.GetTimestamp();
            if (i >= 0) times[i] = (long)Stopwatch.GetElapsedTime(t0, t1).TotalNanoseconds;
        }
        Console.WriteLine(string.Join(' ', times));
        return 0;
    }
}
