namespace SharedBridge.CrossDriver;

/// <summary>hold / reap: segment lifetimes across languages (docs/format.md section 8), the twin of
/// python_driver.py's cmd_hold and cmd_reap.</summary>
public static class LifetimeCommands
{
    private static SegmentLifetime Parse(string lifetime) => lifetime switch
    {
        "creator" => SegmentLifetime.Creator,
        "last-closer" => SegmentLifetime.LastCloser,
        "persistent" => SegmentLifetime.Persistent,
        _ => throw new ArgumentException($"unknown lifetime '{lifetime}'"),
    };

    private static string Name(SegmentLifetime lifetime) => lifetime switch
    {
        SegmentLifetime.LastCloser => "last-closer",
        var other => other.ToString().ToLowerInvariant(),
    };

    /// <summary>A 2-element long array created with <paramref name="lifetime"/> or opened; prints
    /// ready; stdin "close" disposes it, "exit" ends the process normally.</summary>
    public static int Hold(string mode, string name, string lifetime)
    {
        if (mode == "paused")
        {
            // Stop the creator between its identity write and state = ready (the library's test hook, set by
            // reflection), say so, and wait to be killed (format.md section 8, reaping).
            typeof(SharedSegment).Assembly.GetType("SharedBridge.Platform.MappedSegment")!
                .GetField("BeforeReadyHook", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
                .SetValue(null, (Action<string>)(_ =>
                {
                    Json.Emit(new { ready = name, lifetime });
                    Thread.Sleep(Timeout.Infinite);
                }));
            SharedArray<long>.Create(name, 2, new SegmentOptions { Lifetime = Parse(lifetime) });
            return 1;
        }
        var array = mode == "create"
            ? SharedArray<long>.Create(name, 2, new SegmentOptions { Lifetime = Parse(lifetime) })
            : SharedArray<long>.Open(name);
        Json.Emit(new { ready = name, lifetime = Name(array.Header.Lifetime) });
        while (Console.ReadLine() is { } line)
        {
            string command = line.Trim();
            if (command == "exit") break;
            if (command != "close") continue;
            array.Dispose();
            Json.Emit(new { closed = name });
        }
        return 0;
    }

    public static int Reap(string prefix, bool dryRun)
    {
        var reaped = SegmentReaper.Reap(dryRun, prefix);
        Json.Emit(new { reaped = reaped.Select(r => new { name = r.Name, reason = r.Reason, removed = r.Removed }) });
        return 0;
    }
}
