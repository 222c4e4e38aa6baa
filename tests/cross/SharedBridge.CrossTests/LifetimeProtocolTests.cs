using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>Segment lifetimes across languages (docs/format.md section 8): a last-closer segment
/// shared by a C# and a Python process is removed by whichever closes last, in both orders; a
/// SIGKILLed creator's segment is garbage that the other language's reap() removes, while a
/// persistent one stays. Real processes, the drivers' hold and reap commands.</summary>
public sealed class LifetimeProtocolTests : CrossTestBase
{
    public static IEnumerable<TestCaseData> LastCloserCases() =>
        from py in Interpreters.All
        from pair in new[] { (Driver.CSharpLabel, py.Label), (py.Label, Driver.CSharpLabel) }
        from creatorFirst in new[] { true, false }
        select new TestCaseData(pair.Item1, pair.Item2, creatorFirst).SetName(
            $"last-closer made by {pair.Item1}, opened by {pair.Item2}: {(creatorFirst ? "creator" : "attacher")} closes first");

    public static IEnumerable<TestCaseData> ReapCases() =>
        Interpreters.All.SelectMany(py => new[]
        {
            new TestCaseData(Driver.CSharpLabel, py.Label).SetName($"{py.Label} reaps what a killed C# process left"),
            new TestCaseData(py.Label, Driver.CSharpLabel).SetName($"C# reaps what a killed {py.Label} process left"),
        });

    private static string NewName() => "sblt_" + Shm.NewName();

    private static DriverProcess Hold(Driver driver, string name, string? lifetime)
    {
        var process = lifetime is null ? driver.Start("hold", "open", name) : driver.Start("hold", "create", name, lifetime);
        string line = process.ReadLine(Quick);
        Assert.That(line, Does.Contain("\"ready\""), process.Describe());
        return process;
    }

    private static void Close(DriverProcess process)
    {
        process.WriteLine("close");
        Assert.That(process.ReadLine(Quick), Does.Contain("\"closed\""), process.Describe());
    }

    [TestCaseSource(nameof(LastCloserCases))]
    public void LastCloserIsRemovedByWhoeverClosesLast(string creatorLabel, string attacherLabel, bool creatorFirst)
    {
        string name = NewName();
        try
        {
            using var creator = Hold(Driver.ByLabel(creatorLabel), name, "last-closer");
            using var attacher = Hold(Driver.ByLabel(attacherLabel), name, null);
            var (first, second) = creatorFirst ? (creator, attacher) : (attacher, creator);
            Close(first);
            Assert.That(Shm.Exists(name), Is.True, "the first closer removed a segment another process still holds");
            Close(second);
            Assert.That(Shm.Exists(name), Is.False, "the last closer did not remove the segment");
            foreach (var p in new[] { creator, attacher })
            {
                p.WriteLine("exit");
                Assert.That(p.WaitForExit(Quick).ExitCode, Is.Zero, p.Describe());
            }
        }
        finally
        {
            Shm.Remove(name);
        }
    }

    [TestCaseSource(nameof(ReapCases))]
    public void ReapRemovesTheKilledProcessesGarbageButNotItsPersistentSegment(string victimLabel, string reaperLabel)
    {
        string prefix = NewName() + "_";
        string creatorOwned = prefix + "c", lastCloser = prefix + "l", persistent = prefix + "p";
        Driver victim = Driver.ByLabel(victimLabel), reaper = Driver.ByLabel(reaperLabel);
        try
        {
            var holders = new[] { Hold(victim, creatorOwned, "creator"), Hold(victim, lastCloser, "last-closer"), Hold(victim, persistent, "persistent") };
            foreach (var h in holders)
            {
                h.Kill();
                h.Dispose();
            }
            Assert.That(new[] { creatorOwned, lastCloser, persistent }.All(Shm.Exists), Is.True, "SIGKILL removed a segment");

            var dry = Reaped(reaper, prefix, dryRun: true);
            Assert.That(dry.Select(r => (r.Name, r.Removed)), Is.EqualTo(new[] { (creatorOwned, false), (lastCloser, false) }));
            Assert.That(dry[0].Reason, Does.Match(@"^creator pid \d+ \(started \d+\) is gone$"));
            Assert.That(dry[1].Reason, Is.EqualTo("last-closer: no process holds it open"));
            Assert.That(new[] { creatorOwned, lastCloser, persistent }.All(Shm.Exists), Is.True, "a dry run removed something");

            var real = Reaped(reaper, prefix, dryRun: false);
            Assert.That(real.Select(r => (r.Name, r.Removed)), Is.EqualTo(new[] { (creatorOwned, true), (lastCloser, true) }));
            Assert.That(Shm.Exists(creatorOwned) || Shm.Exists(lastCloser), Is.False, "reap left garbage");
            Assert.That(Shm.Exists(persistent), Is.True, "reap removed a persistent segment");
        }
        finally
        {
            foreach (var n in new[] { creatorOwned, lastCloser, persistent }) Shm.Remove(n);
        }
    }

    private sealed record Reap(string Name, string Reason, bool Removed);

    private static List<Reap> Reaped(Driver reaper, string prefix, bool dryRun)
    {
        DriverResult r = dryRun ? reaper.Run(Quick, "reap", prefix, "--dry-run") : reaper.Run(Quick, "reap", prefix);
        Assert.That(r.ExitCode, Is.Zero, r.Describe());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.GetProperty("reaped").EnumerateArray().Select(e => new Reap(
            e.GetProperty("name").GetString()!, e.GetProperty("reason").GetString()!, e.GetProperty("removed").GetBoolean())).ToList();
    }
}
