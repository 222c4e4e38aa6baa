using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>Runs around the whole suite: kills every child a failed test left running and checks
/// that the run left nothing in /dev/shm (and removes it if it did, so one failure does not leak).</summary>
[SetUpFixture]
public sealed class SuiteLifetime
{
    [OneTimeTearDown]
    public void KillChildrenAndCheckShm()
    {
        int killed = DriverProcess.KillAll();
        var left = Shm.RemoveAll(Shm.RunPrefix);
        var fixedNames = Vectors.All.Select(v => v.FixedLockSegment).OfType<string>().Where(Shm.Exists).ToList();
        foreach (var n in fixedNames) Shm.Remove(n);
        Assert.Multiple(() =>
        {
            Assert.That(killed, Is.Zero, "child processes were still running at the end of the suite");
            Assert.That(left.Concat(fixedNames), Is.Empty, "segments were left in /dev/shm (now removed)");
        });
    }
}

/// <summary>Per-test hygiene shared by every fixture: children of the test die with it, and a
/// test that passed while leaving a child running fails (it would leak into the next test).</summary>
public abstract class CrossTestBase
{
    [TearDown]
    public void KillLeftoverChildren()
    {
        int killed = DriverProcess.KillAll();
        if (killed > 0 && TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Passed)
            Assert.Fail($"the test left {killed} child process(es) running (killed now)");
    }

    protected static readonly TimeSpan Quick = TimeSpan.FromSeconds(60);
}
