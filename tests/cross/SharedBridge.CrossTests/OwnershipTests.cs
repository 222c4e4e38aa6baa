using System.Buffers.Binary;
using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>A creator that has ended but is not yet waited for by its parent (a zombie) is gone
/// (docs/format.md section 8, "Reaping"): the other language's reap() removes its segment. The
/// creator runs under `sleep`, which never waits for its children, and is killed for real.</summary>
public sealed class OwnershipTests : CrossTestBase
{
    public static IEnumerable<TestCaseData> Cases() =>
        Interpreters.All.SelectMany(py => new[]
        {
            new TestCaseData(py.Label, Driver.CSharpLabel).SetName($"C# reaps the segment of a zombie {py.Label} creator"),
            new TestCaseData(Driver.CSharpLabel, py.Label).SetName($"{py.Label} reaps the segment of a zombie C# creator"),
        });

    private static char StateOf(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }

    [TestCaseSource(nameof(Cases))]
    public void ReapRemovesTheSegmentOfAZombieCreator(string creatorLabel, string reaperLabel)
    {
        string name = "sbown_" + Shm.NewName();
        Driver creator = Driver.ByLabel(creatorLabel), reaper = Driver.ByLabel(reaperLabel);
        try
        {
            // sh starts the creator in the background (stdin kept through fd 3: a background job's
            // stdin is /dev/null otherwise) and becomes sleep: the creator's parent never waits.
            using var host = DriverProcess.Start(["/bin/sh", "-c", "exec 3<&0; \"$@\" 0<&3 3<&- & exec sleep 120 0<&- 3<&-", "sh",
                                                  .. creator.Argv("hold", "create", name, "creator")]);
            Assert.That(host.ReadLine(Quick), Does.Contain("\"ready\""), host.Describe());
            int pid = (int)BinaryPrimitives.ReadUInt32LittleEndian(Shm.ReadAll(name).AsSpan(0x44));
            Assert.That(pid, Is.Not.EqualTo(host.Id));
            using (var kill = System.Diagnostics.Process.Start("kill", ["-s", "KILL", pid.ToString()])!) kill.WaitForExit();
            var deadline = DateTime.UtcNow + Quick;
            while (StateOf(pid) != 'Z')
            {
                Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "the creator never became a zombie");
                Thread.Sleep(5);
            }

            DriverResult r = reaper.Run(Quick, "reap", name);
            Assert.That(r.ExitCode, Is.Zero, r.Describe());
            using var doc = JsonDocument.Parse(r.Stdout);
            var reaped = doc.RootElement.GetProperty("reaped").EnumerateArray()
                .Select(e => (e.GetProperty("name").GetString(), e.GetProperty("removed").GetBoolean(), e.GetProperty("reason").GetString()!)).ToList();
            Assert.That(reaped.Select(x => (x.Item1, x.Item2)), Is.EqualTo(new[] { (name, true) }), $"{reaperLabel} left a zombie creator's segment");
            Assert.That(reaped[0].Item3, Does.StartWith($"creator pid {pid} "));
            Assert.That(Shm.Exists(name), Is.False);
        }
        finally
        {
            Shm.Remove(name);
        }
    }
}
