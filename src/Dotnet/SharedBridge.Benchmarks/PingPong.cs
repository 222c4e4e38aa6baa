namespace SharedBridge.Benchmarks;

/// <summary>The far side of the Event ping-pong (python/benchmarks/bench_sync_pingpong.py): wait for ping, clear it, set pong.</summary>
internal static class PingPong
{
    internal static int Serve(string pingName, string pongName, int rounds)
    {
        using var ping = SharedEvent.Open(pingName);
        using var pong = SharedEvent.Open(pongName);
        Console.WriteLine("ready");
        Console.Out.Flush();
        var patience = TimeSpan.FromSeconds(30);
        for (int r = 0; r < rounds; r++)
        {
            if (!ping.Wait(patience)) return 1;
            ping.Reset();
            pong.Set();
        }
        return 0;
    }
}
