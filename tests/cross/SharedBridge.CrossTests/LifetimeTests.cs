using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>A process of one language attaches to a segment the other language created, checks
/// it and exits: the segment and its data must still be there for the creator and for a fresh
/// attach, and must disappear when the creator closes it.</summary>
public sealed class LifetimeTests : CrossTestBase
{
    private const string VectorId = "array_double_locked";

    public static IEnumerable<TestCaseData> Cases() =>
        Interpreters.All.SelectMany(py => new[]
        {
            new TestCaseData(Driver.CSharpLabel, py.Label).SetName($"{py.Label} attaches to a C# segment and exits -> C# still has it"),
            new TestCaseData(py.Label, Driver.CSharpLabel).SetName($"C# attaches to a {py.Label} segment and exits -> {py.Label} still has it"),
        });

    [TestCaseSource(nameof(Cases))]
    public void AttacherExitDoesNotRemoveTheSegment(string creatorLabel, string attacherLabel)
    {
        string name = Shm.NewName();
        string vector = Vectors.ById(VectorId).JsonPath;
        Driver creator = Driver.ByLabel(creatorLabel), attacher = Driver.ByLabel(attacherLabel);
        try
        {
            using var host = creator.Start("host", vector, name);
            Assert.That(host.ReadLine(Quick), Does.Contain("ready"), host.Describe());

            DriverResult attached = attacher.Run(Quick, "verify", vector, name);
            Assert.That(attached.ExitCode, Is.Zero, attached.Describe());
            Assert.That(Shm.Exists(name), Is.True, $"{attacherLabel} removed the segment when it exited");

            host.WriteLine("verify");
            using (var seen = JsonDocument.Parse(host.ReadLine(Quick)))
            {
                Assert.That(seen.RootElement.GetProperty("ok").GetBoolean(), Is.True, $"the creator's data changed: {seen.RootElement}");
                Assert.That(seen.RootElement.GetProperty("exists").GetBoolean(), Is.True, "the creator no longer finds the name");
            }

            DriverResult again = creator.Run(Quick, "verify", vector, name);
            Assert.That(again.ExitCode, Is.Zero, "a fresh attach after the attacher exited: " + again.Describe());

            host.WriteLine("exit");
            Assert.That(host.ReadLine(Quick), Does.Contain("closed"), host.Describe());
            Assert.That(host.WaitForExit(Quick).ExitCode, Is.Zero, host.Describe());
            Assert.That(Shm.Exists(name), Is.False, $"the {creatorLabel} creator did not remove its segment on close");
        }
        finally
        {
            Shm.Remove(name);
        }
    }
}
