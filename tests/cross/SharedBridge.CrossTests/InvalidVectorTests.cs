using System.Runtime.InteropServices;
using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// The negative golden vectors of tests/cross/vectors/invalid (made by make_invalid.py from the spec):
/// each object is put at its fixed name exactly as stored (FIFOs, directories, symbolic links and
/// objects of another owner included), every driver opens every one, and each must report the
/// expected error class: both libraries classify every vector identically.
/// </summary>
[NonParallelizable]
public sealed partial class InvalidVectorTests : CrossTestBase
{
    private static readonly string Dir = Path.Combine(Repo.Root, "tests", "cross", "vectors", "invalid");
    private static readonly Lazy<IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>>> Classes = new(ClassifyAll);

    internal sealed record Case(string Id, string Expect, string Rule, long Size, string? Special, string? Lock)
    {
        public string Name => "sbinv_" + Id;
        public string LockName => Name + "_l";
    }

    internal static IReadOnlyList<Case> Cases => CasesLoaded.Value;

    private static readonly Lazy<IReadOnlyList<Case>> CasesLoaded = new(() =>
        Directory.GetFiles(Dir, "*.json").Where(p => !Path.GetFileName(p).StartsWith("companion_", StringComparison.Ordinal)).Order()
            .Select(p =>
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(p));
                var r = doc.RootElement;
                string? Str(string k) => r.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
                return new Case(Str("id")!, Str("expect")!, Str("rule")!, r.GetProperty("size").GetInt64(), Str("special"), Str("lock"));
            }).ToList());

    private static IEnumerable<string> Drivers() => new[] { Driver.CSharpLabel }.Concat(Interpreters.All.Select(i => i.Label));

    public static IEnumerable<TestCaseData> ClassifyCases() =>
        from d in Drivers() from c in Cases
        select new TestCaseData(d, c.Id).SetName($"{d} classifies invalid/{c.Id} as {c.Expect} ({c.Rule})");

    [Test]
    public void TheVectorsCoverEveryErrorClass()
    {
        Assert.That(Cases.Select(c => c.Expect).Distinct(), Is.SupersetOf(new[]
            { "ok", "not-sharedbridge", "unsupported-version", "corrupt", "not-found", "initializing", "permission" }));
    }

    [TestCaseSource(nameof(ClassifyCases))]
    public void DriverReportsTheExpectedClass(string driver, string id)
    {
        Case c = Cases.Single(x => x.Id == id);
        if (c.Special == "other-owner" && Geteuid() != 0)
            Assert.Ignore("giving a segment to another user needs root");
        Assert.That(Classes.Value[driver][c.Name], Is.EqualTo(c.Expect), c.Rule);
    }

    /// <summary>Materializes every case once, runs each driver's classify-batch over all of them, removes them.</summary>
    private static IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>> ClassifyAll()
    {
        using var fixedNames = FixedNamesLock.Acquire();
        var names = new List<string>();
        try
        {
            foreach (var c in Cases) names.AddRange(Materialize(c));
            string manifest = Path.Combine(Path.GetTempPath(), Shm.NewName() + ".classify.json");
            File.WriteAllText(manifest, JsonSerializer.Serialize(new { names = Cases.Select(c => c.Name), timeout = 0.3 }));
            try
            {
                var result = new Dictionary<string, IReadOnlyDictionary<string, string>>();
                foreach (string label in Drivers())
                {
                    DriverResult r = Driver.ByLabel(label).Run(TimeSpan.FromSeconds(120), "classify-batch", manifest);
                    Assert.That(r.ExitCode, Is.Zero, r.Describe());
                    using var doc = JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
                    result[label] = doc.RootElement.GetProperty("classes").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
                }
                return result;
            }
            finally
            {
                File.Delete(manifest);
            }
        }
        finally
        {
            foreach (string n in names) RemoveAnything(n);
        }
    }

    /// <summary>Puts case <paramref name="c"/> at its fixed name(s), which it returns (hold FixedNamesLock).</summary>
    internal static IEnumerable<string> Materialize(Case c)
    {
        RemoveAnything(c.Name);
        RemoveAnything(c.LockName);
        string path = Shm.PathOf(c.Name);
        switch (c.Special)
        {
            case "fifo":
                Assert.That(Mkfifo(path, 0x180), Is.Zero, "mkfifo");
                return [c.Name];
            case "dir":
                Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                return [c.Name];
            case "symlink":
            {
                // A link to a perfectly valid segment: refused because it is a link.
                WriteObject(c.Name + "_target", File.ReadAllBytes(Path.Combine(Dir, "struct_ok.bin")), 0x280 + 32);
                File.CreateSymbolicLink(path, Shm.PathOf(c.Name + "_target"));
                return [c.Name, c.Name + "_target"];
            }
        }
        WriteObject(c.Name, File.ReadAllBytes(Path.Combine(Dir, c.Id + ".bin")), c.Size);
        if (c.Special == "other-owner" && Geteuid() == 0)
            Assert.That(Chown(path, 65534, 65534), Is.Zero, "chown");
        if (c.Lock is null) return [c.Name];
        using var companion = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, $"companion_{c.Lock}.json")));
        WriteObject(c.LockName, File.ReadAllBytes(Path.Combine(Dir, $"companion_{c.Lock}.bin")),
            companion.RootElement.GetProperty("size").GetInt64());
        return [c.Name, c.LockName];
    }

    private static void WriteObject(string name, byte[] head, long size)
    {
        Shm.WriteNew(name, head);
        using var fs = new FileStream(Shm.PathOf(name), FileMode.Open, FileAccess.Write);
        fs.SetLength(size);
    }

    internal static void RemoveAnything(string name)
    {
        string path = Shm.PathOf(name);
        var info = new FileInfo(path);
        if (info.LinkTarget is not null || File.Exists(path)) File.Delete(path);
        else if (Directory.Exists(path)) Directory.Delete(path);
    }

    [LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Mkfifo(string path, uint mode);

    [LibraryImport("libc", EntryPoint = "chown", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Chown(string path, uint uid, uint gid);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    internal static partial uint Geteuid();
}
