using System.Text.Json;

namespace SharedBridge.CrossDriver;

/// <summary>create-batch / verify-batch: one process handles every entry of a manifest
/// ({"entries": [{"vector", "name", "lock_name"}]}), and an error in one entry is that entry's
/// result, so one launch serves a whole (producer, consumer) pair of the suite.</summary>
public static class Batch
{
    private sealed record Entry(string Vector, string Name, string? LockName);

    private static List<Entry> ReadManifest(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.GetProperty("entries").EnumerateArray().Select(e => new Entry(
            e.GetProperty("vector").GetString()!,
            e.GetProperty("name").GetString()!,
            e.TryGetProperty("lock_name", out var l) && l.ValueKind == JsonValueKind.String ? l.GetString() : null)).ToList();
    }

    /// <summary>_exit(2): ends the process without ProcessExit handlers (ExitCleanup), as a crash would.</summary>
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "_exit")]
    private static extern void ExitNow(int status);

    public static int Run(string manifest, bool create)
    {
        // Creator and last-closer segments: disposing them (or ending normally) would unlink them, so
        // create-batch leaves them as a crash would and ends with _exit.
        var leftOpen = new List<IDisposable>();
        var results = new List<object>();
        foreach (var entry in ReadManifest(manifest))
        {
            var vector = Vector.Load(entry.Vector);
            try
            {
                if (create)
                {
                    var created = VectorCommands.Create(vector, entry.Name, entry.LockName, keep: true);
                    if (vector.Lifetime == SegmentLifetime.Persistent)
                        foreach (var d in created) d.Dispose();
                    else
                        leftOpen.AddRange(created);
                    results.Add(new { id = vector.Id, ok = true, errors = Array.Empty<string>(), values = Array.Empty<string>(), pid = Environment.ProcessId });
                }
                else
                {
                    var r = VectorCommands.Verify(vector, entry.Name, entry.LockName);
                    results.Add(new { id = vector.Id, ok = r.Ok, errors = r.Errors, values = r.Values });
                }
            }
            catch (Exception e)
            {
                results.Add(new { id = vector.Id, ok = false, errors = new[] { $"{e.GetType().Name}: {e.Message}" }, values = Array.Empty<string>() });
            }
        }
        Json.Emit(new { results });
        if (leftOpen.Count > 0)
        {
            Console.Out.Flush();
            ExitNow(0);
        }
        return 0;
    }
}
