namespace SharedBridge.Tests;

/// <summary>The README's C# quick start, compiled and run as a test.</summary>
public class QuickStartTests
{
    [Fact]
    public void QuickStartRuns()
    {
        string name = Names.Unique("quickstart");
        // --- quick start (README) ---
        // Process A creates a synchronized array of doubles (like multiprocessing.Array('d', ...)).
        using var prices = SharedArray<double>.Create(name, [1.5, 2.5, 3.5, 0.0]);
        using (prices.Lock())          // the robust, process-shared lock
            prices[3] += 1.0;

        // Process B (.NET, or Python: sharedbridge.attach(name)) opens it by name.
        using var view = SharedArray<double>.Open(name);
        double[] snapshot = view.ToArray(); // [1.5, 2.5, 3.5, 1.0]
        // --- end of quick start ---

        Assert.Equal([1.5, 2.5, 3.5, 1.0], snapshot);
        Assert.Equal('d', view.TypeCode);
    }
}
