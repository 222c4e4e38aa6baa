using System.Text.Json;
using System.Text.Json.Nodes;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>The suite's own checks can fail: each driver's verifier, given a vector that differs
/// from the segment in one value or in its lock, must exit non-zero and say where.</summary>
public sealed class NegativeTests : CrossTestBase
{
    public static IEnumerable<TestCaseData> Cases() =>
        new[] { Driver.CSharpLabel, Interpreters.Preferred.Label }.SelectMany(d => new[]
        {
            new TestCaseData(d, "value").SetName($"{d} verifier rejects a segment whose element 2 differs"),
            new TestCaseData(d, "lock").SetName($"{d} verifier rejects a locked segment described as unlocked"),
        });

    [TestCaseSource(nameof(Cases))]
    public void VerifierReportsTheDifference(string driverLabel, string change)
    {
        VectorFile original = Vectors.ById("array_int_locked");
        var tampered = JsonNode.Parse(File.ReadAllText(original.JsonPath))!;
        if (change == "value") tampered["values"]![2] = tampered["values"]![2]!.GetValue<long>() + 1;
        else tampered["lock"]!["kind"] = "none";
        string tamperedPath = Path.Combine(Path.GetTempPath(), Shm.NewName() + ".json");
        File.WriteAllText(tamperedPath, tampered.ToJsonString());
        string name = Shm.NewName();
        Driver driver = Driver.ByLabel(driverLabel);
        try
        {
            DriverResult created = driver.Run(Quick, "create", original.JsonPath, name);
            Assert.That(created.ExitCode, Is.Zero, created.Describe());
            DriverResult verified = driver.Run(Quick, "verify", tamperedPath, name);
            Assert.That(verified.ExitCode, Is.EqualTo(1), verified.Describe());
            using var doc = JsonDocument.Parse(verified.Stdout.Trim().Split('\n')[^1]);
            string errors = string.Join("\n", doc.RootElement.GetProperty("errors").EnumerateArray().Select(e => e.GetString()));
            Assert.That(errors, change == "value" ? Does.Contain("[2]") : Does.Contain("lock").IgnoreCase);
        }
        finally
        {
            Shm.Remove(name);
            File.Delete(tamperedPath);
        }
    }
}
