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

    public static int Run(string manifest, bool create)
    {
        var results = new List<object>();
        foreach (var entry in ReadManifest(manifest))
        {
            var vector = Vector.Load(entry.Vector);
            try
            {
                if (create)
                {
                    foreach (var d in VectorCommands.Create(vector, entry.Name, entry.LockName, keep: true)) d.Dispose();
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
        return 0;
    }
}
