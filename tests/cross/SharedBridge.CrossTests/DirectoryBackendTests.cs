using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>The directory backend (docs/format.md section 1.3) across languages: segments of every kind (every vector) are
/// files in a directory both processes name with SHAREDBRIDGE_DIR, as two containers sharing a tmpfs volume do. One process
/// of one language creates them all and exits as a crash would, one process of the other language checks every one; then
/// the other language's reaper removes, in that directory, the ones whose creator is gone. Nothing goes to /dev/shm.</summary>
public sealed class DirectoryBackendTests : CrossTestBase
{
    public static IEnumerable<TestCaseData> Cases()
    {
        string py = Interpreters.Preferred.Label;
        yield return new TestCaseData(Driver.CSharpLabel, py).SetName($"directory backend: C# creates every kind, {py} reads and reaps");
        yield return new TestCaseData(py, Driver.CSharpLabel).SetName($"directory backend: {py} creates every kind, C# reads and reaps");
    }

    /// <summary>The driver with SHAREDBRIDGE_DIR set for it alone (the suite's other tests use /dev/shm at the same time).</summary>
    private static Driver InDirectory(string label, string dir)
    {
        var d = Driver.ByLabel(label);
        return d with { Command = ["/usr/bin/env", "SHAREDBRIDGE_DIR=" + dir, .. d.Command] };
    }

    [TestCaseSource(nameof(Cases))]
    public void EveryKindThroughADirectory(string producer, string consumer)
    {
        // Not /dev/shm: a directory the user names (here on whatever file system holds the temp directory).
        string dir = Directory.CreateTempSubdirectory(Shm.RunPrefix + "_dir").FullName;
        try
        {
            using var batch = new Batch(Vectors.All, fixedLockNames: false);
            var created = batch.Run(InDirectory(producer, dir), "create-batch");
            foreach (var (id, (name, lockName)) in batch.Entries)
            {
                Assert.That(created[id].Ok, Is.True, $"{producer} could not create {id} in {dir}:\n{created[id].Describe()}");
                foreach (string n in lockName is null ? [name] : new[] { name, lockName })
                {
                    string path = Path.Combine(dir, n);
                    Assert.That(File.Exists(path), Is.True, $"{id}: {n} is not a file in {dir}");
                    Assert.That(File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite), $"{id}: mode of {n}");
                    Assert.That(Shm.Exists(n), Is.False, $"{id}: {n} went to /dev/shm");
                }
            }

            var verified = batch.Run(InDirectory(consumer, dir), "verify-batch");
            foreach (var id in batch.Entries.Keys)
                Assert.That(verified[id].Ok, Is.True, $"{consumer} found a mismatch in {id}:\n{verified[id].Describe()}");

            // The creator "crashed": its creator-lifetime segments are garbage, found and removed in the directory.
            var expected = batch.Entries.Where(e => Vectors.ById(e.Key).Root.TryGetProperty("lifetime", out var l) && l.GetString() == "creator")
                .Select(e => e.Value.Name).Order().ToList();
            Assert.That(expected, Is.Not.Empty);
            DriverResult reap = InDirectory(consumer, dir).Run(Quick, "reap", Shm.RunPrefix);
            Assert.That(reap.ExitCode, Is.Zero, reap.Describe());
            using var doc = JsonDocument.Parse(reap.Stdout.Split('\n').Last(l => l.StartsWith("{\"reaped\"", StringComparison.Ordinal)));
            var removed = doc.RootElement.GetProperty("reaped").EnumerateArray()
                .Where(r => r.GetProperty("removed").GetBoolean()).Select(r => r.GetProperty("name").GetString()!).ToList();
            Assert.That(removed, Is.SupersetOf(expected), reap.Describe());
            foreach (string name in expected)
                Assert.That(File.Exists(Path.Combine(dir, name)), Is.False, $"{name} was reported reaped but is still in {dir}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
