using System.Text.Json;

namespace SharedBridge.CrossTests.Infrastructure;

/// <summary>One manifest entry's outcome, as a driver's create-batch / verify-batch reports it.</summary>
public sealed record EntryResult(string Id, bool Ok, IReadOnlyList<string> Errors, IReadOnlyList<string> Values, int Pid)
{
    public string Describe() => Ok ? "ok" : string.Join("\n", Errors);
}

/// <summary>A batch of segments: one name (and lock-segment name) per vector, a manifest file the
/// drivers read, and removal of every name afterwards.</summary>
public sealed class Batch : IDisposable
{
    private readonly string _manifestPath;
    private readonly List<string> _names = new();

    public IReadOnlyDictionary<string, (string Name, string? LockName)> Entries { get; }

    /// <param name="fixedLockNames">use each vector's fixed lock-segment name (golden checks)
    /// instead of a fresh one.</param>
    public Batch(IEnumerable<VectorFile> vectors, bool fixedLockNames)
    {
        if (fixedLockNames) _fixedNamesLock = FixedNamesLock.Acquire();
        var entries = new Dictionary<string, (string, string?)>();
        var manifest = new List<object>();
        foreach (var v in vectors)
        {
            string name = Shm.NewName();
            string? lockName = v.HasExternalLock ? (fixedLockNames ? v.FixedLockSegment : name + "l") : null;
            entries[v.Id] = (name, lockName);
            _names.Add(name);
            if (lockName != null) _names.Add(lockName);
            manifest.Add(new { vector = v.JsonPath, name, lock_name = lockName });
        }
        Entries = entries;
        _manifestPath = Path.Combine(Path.GetTempPath(), Shm.NewName() + ".manifest.json");
        File.WriteAllText(_manifestPath, JsonSerializer.Serialize(new { entries = manifest }));
        foreach (var n in _names) Shm.Remove(n);  // a fixed lock name left by a crashed earlier run
    }

    public string ManifestPath => _manifestPath;

    /// <summary>Runs create-batch or verify-batch; a driver that fails as a whole fails every entry
    /// with its full output.</summary>
    public IReadOnlyDictionary<string, EntryResult> Run(Driver driver, string command)
    {
        DriverResult r = driver.Run(TimeSpan.FromSeconds(120), command, _manifestPath);
        string? line = r.Stdout.Split('\n').LastOrDefault(l => l.StartsWith("{\"results\"", StringComparison.Ordinal));
        if (r.ExitCode != 0 || line == null)
            return Entries.Keys.ToDictionary(id => id, id => new EntryResult(id, false, [$"{driver.Label} {command} failed: {r.Describe()}"], [], 0));
        using var doc = JsonDocument.Parse(line);
        return doc.RootElement.GetProperty("results").EnumerateArray().Select(e => new EntryResult(
            e.GetProperty("id").GetString()!,
            e.GetProperty("ok").GetBoolean(),
            e.GetProperty("errors").EnumerateArray().Select(x => x.GetString()!).ToList(),
            e.GetProperty("values").EnumerateArray().Select(x => x.GetString()!).ToList(),
            e.TryGetProperty("pid", out var pid) ? pid.GetInt32() : 0)).ToDictionary(x => x.Id);
    }

    public void Dispose()
    {
        foreach (var n in _names) Shm.Remove(n);
        File.Delete(_manifestPath);
        _fixedNamesLock?.Dispose();
    }

    private readonly IDisposable? _fixedNamesLock;
}

/// <summary>The golden vectors' lock segments have fixed names, so two runs of the suite on one
/// machine (two checkouts, two users of `make test`) must not use them at the same time: an
/// exclusive lock on a file in the temp directory serializes those batches across processes.</summary>
public static class FixedNamesLock
{
    private static readonly string PathName = Path.Combine(Path.GetTempPath(), "sharedbridge-cross-fixed-names.lock");

    public static IDisposable Acquire()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        while (true)
        {
            try
            {
                return new FileStream(PathName, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(50);  // another run of the suite holds it
            }
        }
    }
}
