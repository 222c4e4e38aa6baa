using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>`make demo` (`sharedbridge demo`, the .NET CLI's demo verb): it succeeds on this machine, and its exit status
/// reports a broken run instead of hiding it.</summary>
public sealed class DemoTests : CrossTestBase
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    public static IEnumerable<TestCaseData> Cases() =>
        Interpreters.All.Select(py => new TestCaseData(py.Label).SetName($"{py.Label} | sharedbridge demo: every run matches, nothing left behind"));

    [TestCaseSource(nameof(Cases))]
    public void DemoMatchesMultiprocessing(string py)
    {
        DriverResult r = RunDemo("--python", Interpreters.ByLabel(py).Executable, "--count", "500000", "--chunk", "16384", "--repo", Repo.Root);
        Assert.That(r.ExitCode, Is.Zero, r.Describe());
        Assert.That(r.Stdout, Does.Contain("demo OK").And.Not.Contain("FAILED"), r.Describe());
        Assert.That(r.Stdout, Does.Contain("[ok] no segment left in /dev/shm"), r.Describe());
        // The work went through the two queues: one result per chunk, each chunk taken once.
        Assert.That(r.Stdout, Does.Contain("created 2 queues").And.Contain("[ok] every chunk processed exactly once"), r.Describe());
    }

    /// <summary>A checkout whose Python package is missing: the Python workers die on import, and
    /// the demo must say so and exit 1 even though the C# thread still computes the right result.</summary>
    [Test]
    public void DemoFailsWhenThePythonWorkersCannotRun()
    {
        string fake = Path.Combine(Path.GetTempPath(), Shm.NewName() + "_repo");
        Directory.CreateDirectory(Path.Combine(fake, "python"));
        try
        {
            DriverResult r = RunDemo("--python", Interpreters.Preferred.Executable, "--count", "200000", "--repo", fake);
            Assert.That(r.ExitCode, Is.EqualTo(1), r.Describe());
            Assert.That(r.Stdout, Does.Contain("[FAILED] every worker exited cleanly"), r.Describe());
            Assert.That(r.Stdout, Does.Contain("demo FAILED"), r.Describe());
        }
        finally
        {
            Directory.Delete(fake, recursive: true);
        }
    }

    [Test]
    public void DemoRejectsABadOptionWithStatus2()
    {
        DriverResult r = RunDemo("--count", "zero");
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Describe());
        Assert.That(r.Stderr, Does.Contain("--count needs a positive integer"), r.Describe());
    }

    private static DriverResult RunDemo(params string[] args)
    {
        using var p = DriverProcess.Start([Repo.Cli, "demo", .. args], withPythonPath: false);
        return p.WaitForExit(Limit);
    }
}
