using System.Text.Json;

namespace SharedBridge.CrossTests.Infrastructure;

/// <summary>One test vector file (tests/cross/vectors/ID.json) and its golden header (ID.header.bin).</summary>
public sealed record VectorFile(string Id, string Title, string JsonPath, JsonElement Root)
{
    public string GoldenPath => Path.ChangeExtension(JsonPath, null) + ".header.bin";

    /// <summary>The fixed name of its lock segment when it uses an external lock (golden vectors
    /// record that name in lock_name, so it cannot be randomized there).</summary>
    public string? FixedLockSegment =>
        Root.GetProperty("lock").TryGetProperty("segment", out var s) ? s.GetString() : null;

    public bool HasExternalLock => FixedLockSegment != null;

    public string? ExternalLockType =>
        HasExternalLock ? Root.GetProperty("lock").GetProperty("type").GetString() : null;

    public override string ToString() => Title;
}

public static class Vectors
{
    private static readonly Lazy<IReadOnlyList<VectorFile>> Loaded = new(Load);

    public static IReadOnlyList<VectorFile> All => Loaded.Value;

    public static VectorFile ById(string id) => All.First(v => v.Id == id);

    private static IReadOnlyList<VectorFile> Load() =>
        Directory.GetFiles(Repo.VectorsDir, "*.json").Order().Select(path =>
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            JsonElement root = doc.RootElement.Clone();
            return new VectorFile(root.GetProperty("id").GetString()!, root.GetProperty("title").GetString()!, path, root);
        }).ToList();
}
