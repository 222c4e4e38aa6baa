using SharedBridge.Platform;

namespace SharedBridge.Tests;

/// <summary>The spin before sleeping (docs/wakeups-design.md section 3 "Spinning" and section 5):
/// its budget, its switch, and that a waiter nobody wakes does not burn a CPU.</summary>
[Collection(SpinCollection.Name)]
public class SpinTests
{
    private static string NewName(string tag) => Names.Unique(tag, "sbCW");

    [Fact]
    public void TheSpinBudgetIsZeroToOneMillisecond()
    {
        var before = SharedBridgeSettings.SpinBudget;
        try
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => SharedBridgeSettings.SpinBudget = TimeSpan.FromTicks(-1));
            Assert.Throws<ArgumentOutOfRangeException>(() => SharedBridgeSettings.SpinBudget = TimeSpan.FromMilliseconds(1) + TimeSpan.FromTicks(1));
            Assert.Equal(before, SharedBridgeSettings.SpinBudget);
            SharedBridgeSettings.SpinBudget = TimeSpan.Zero;
            Assert.Equal(TimeSpan.Zero, SharedBridgeSettings.SpinBudget);
            SharedBridgeSettings.SpinBudget = SharedBridgeSettings.MaxSpinBudget;
            Assert.Equal(TimeSpan.FromMilliseconds(1), SharedBridgeSettings.SpinBudget);
        }
        finally
        {
            SharedBridgeSettings.SpinBudget = before;
        }
    }

    [Theory]
    [InlineData(null, "200")]
    [InlineData("0", "0")]
    [InlineData("50", "50")]
    [InlineData("5000", "1000")]
    [InlineData("-3", "0")]
    [InlineData("99999999999999999999999", "1000")]
    public void TheEnvironmentSetsTheBudgetAtStartup(string? value, string expected)
    {
        var env = new Dictionary<string, string>();
        if (value is not null) env["SHAREDBRIDGE_SPIN_US"] = value;
        else Assert.Null(Environment.GetEnvironmentVariable("SHAREDBRIDGE_SPIN_US"));
        using var child = Child.StartWithEnvironment(env, "spin-budget");
        child.ExpectLine($"budget {expected}");
        Assert.Equal(0, child.WaitForExit());
    }

    [Fact]
    public void ABudgetThatIsNotANumberIsReportedAndTheDefaultUsed()
    {
        using var child = Child.StartWithEnvironment(new Dictionary<string, string> { ["SHAREDBRIDGE_SPIN_US"] = "fast" }, "spin-budget");
        string warning = child.ReadLine();
        Assert.Contains("SHAREDBRIDGE_SPIN_US=\"fast\" is not an integer", warning);
        child.ExpectLine("budget 200");
        Assert.Equal(0, child.WaitForExit());
    }

    /// <summary>CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID): what the wait itself used, whatever
    /// the other tests of this process do meanwhile.</summary>
    private static unsafe TimeSpan ThreadCpuTime()
    {
        Interop.Timespec ts;
        Assert.Equal(0, Interop.ClockGetTime(3, &ts));
        return TimeSpan.FromTicks(ts.Seconds * TimeSpan.TicksPerSecond + ts.Nanoseconds / 100);
    }

    [Theory]
    [InlineData(0)]      // spinning off
    [InlineData(-1)]     // the default budget: the adaptive spin stops spinning for a waiter nobody wakes
    [InlineData(1000)]   // the largest budget
    public void AWaitNobodyEndsUsesLittleCpuAndReturnsAtItsTimeout(int budgetMicroseconds)
    {
        var before = SharedBridgeSettings.SpinBudget;
        try
        {
            if (budgetMicroseconds >= 0) SharedBridgeSettings.SpinBudget = TimeSpan.FromMicroseconds(budgetMicroseconds);
            using var ev = SharedEvent.Create(NewName("spin"));
            bool? set = null;
            TimeSpan cpu = default, wall = default;
            var waiter = new Thread(() =>
            {
                var cpu0 = ThreadCpuTime();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                set = ev.Wait(TimeSpan.FromSeconds(1));
                wall = sw.Elapsed;
                cpu = ThreadCpuTime() - cpu0;
            });
            waiter.Start();
            Assert.True(waiter.Join(TimeSpan.FromSeconds(30)), "the wait did not return at its timeout");
            Assert.False(set);
            Assert.True(cpu < 0.3 * wall, $"the waiting thread used {cpu.TotalMilliseconds:0.0} ms of CPU in {wall.TotalMilliseconds:0} ms");
        }
        finally
        {
            SharedBridgeSettings.SpinBudget = before;
        }
    }
}

/// <summary>Tests that change the process-wide spin budget run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public class SpinCollection
{
    public const string Name = "spin budget";
}
