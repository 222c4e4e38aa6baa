using System.Diagnostics;
using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// The soak test: 2 C# and 2 Python processes do locked increments of one shared counter for a while,
/// each counting its own; the counter must equal the sum (0 lost updates). `make test` runs it for a
/// few seconds; a long run:
/// <code>SB_SOAK_SECONDS=600 dotnet test tests/cross/SharedBridge.CrossTests -c Release --filter "FullyQualifiedName~Soak"</code>
/// (the figures are printed to the test output).
/// </summary>
public sealed class SoakTests : CrossTestBase
{
    private static double Seconds =>
        double.TryParse(Environment.GetEnvironmentVariable("SB_SOAK_SECONDS"), System.Globalization.CultureInfo.InvariantCulture, out double s) && s > 0 ? s : 3;

    [Test]
    public void TwoCSharpAndTwoPythonProcessesLoseNoUpdate()
    {
        string name = Shm.NewName();
        using var counter = SharedArray<long>.Create(name, 1);
        string seconds = Seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var drivers = new[] { Driver.CSharp, Driver.CSharp, Driver.Python(Interpreters.Preferred), Driver.Python(Interpreters.Preferred) };
        var watch = Stopwatch.StartNew();
        var workers = drivers.Select(d => d.Start("worker", "soak", name, seconds)).ToList();
        var counts = new List<long>();
        try
        {
            foreach (var worker in workers)
            {
                DriverResult r = worker.WaitForExit(TimeSpan.FromSeconds(Seconds + 120));
                Assert.That(r.ExitCode, Is.Zero, r.Describe());
                using var doc = JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
                counts.Add(doc.RootElement.GetProperty("count").GetInt64());
            }
        }
        finally
        {
            foreach (var worker in workers) worker.Dispose();
        }
        watch.Stop();
        long total;
        using (counter.Lock()) total = counter[0];
        TestContext.Out.WriteLine(
            $"soak {Seconds:0.#} s: counter {total:N0}, workers [{string.Join(", ", counts.Select(c => c.ToString("N0")))}] " +
            $"(C#, C#, py, py), {total / watch.Elapsed.TotalSeconds:N0} locked increments/s, lost {counts.Sum() - total}");
        Assert.That(total, Is.EqualTo(counts.Sum()), "lost or invented updates");
        Assert.That(counts, Is.All.GreaterThan(0));
    }
}
