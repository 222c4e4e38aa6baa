using System.Collections.Concurrent;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>The multiprocessing documentation's examples, each run with real multiprocessing (the
/// oracle), with a Python parent and C# children, with a C# parent and Python children, and with a
/// Python parent and Python children over sharedbridge: the printed output must be identical.</summary>
public sealed class ScenarioTests : CrossTestBase
{
    /// <summary>What the documentation says the examples print (checked against the baseline run).</summary>
    private static readonly Dictionary<string, string[]> Documented = new()
    {
        ["sharedctypes"] = ["49", "0.1111111111111111", "b'HELLO WORLD'", "[(3.515625, 39.0625), (33.0625, 4.0), (5.640625, 90.25)]"],
        ["increment"] = ["Final Result: [100, 100, 100, 100, 100]", ">> Success: All elements were updated correctly."],
        ["disjoint"] = ["[100, 100, 100, 100, 100, 200, 200, 200, 200, 200]"],
        ["heavy"] = ["Final Result: [80000, 80000, 80000, 80000, 80000]", "Total: 400000", ">> Success: All elements were updated correctly."],
    };

    private static readonly Dictionary<string, int> ChildCount = new() { ["sharedctypes"] = 1, ["increment"] = 2, ["disjoint"] = 2 };

    private static readonly ConcurrentDictionary<(string, string), Lazy<DriverResult>> Baselines = new();

    public enum Way { PythonParentCSharpChild, CSharpParentPythonChild, PythonParentPythonChild }

    private static string Describe(Way way) => way switch
    {
        Way.PythonParentCSharpChild => "Python parent, C# child",
        Way.CSharpParentPythonChild => "C# parent, Python child",
        _ => "Python parent, Python child",
    };

    public static IEnumerable<TestCaseData> BaselineCases() =>
        from scenario in ChildCount.Keys
        from py in Interpreters.All
        select new TestCaseData(scenario, py.Label).SetName($"{py.Label} | {scenario} | multiprocessing prints what the docs say");

    public static IEnumerable<TestCaseData> MixedCases() =>
        from scenario in ChildCount.Keys
        from py in Interpreters.All
        from way in Enum.GetValues<Way>()
        select new TestCaseData(scenario, py.Label, way).SetName($"{py.Label} | {scenario} | {Describe(way)}");

    public static IEnumerable<TestCaseData> HeavyCases() =>
        from py in Interpreters.All
        from csharpParent in new[] { true, false }
        select new TestCaseData(py.Label, csharpParent).SetName(
            $"{py.Label} | heavy | {(csharpParent ? "C#" : "Python")} parent, 2 C# + 2 Python workers x 100,000 locked increments");

    private static DriverResult Baseline(string scenario, string py) =>
        Baselines.GetOrAdd((scenario, py), key => new Lazy<DriverResult>(() =>
            Driver.ByLabel(key.Item2).Run(TimeSpan.FromSeconds(120), "baseline", key.Item1))).Value;

    private static string[] Lines(string stdout) => stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [TestCaseSource(nameof(BaselineCases))]
    public void MultiprocessingBaselinePrintsTheDocumentedResult(string scenario, string py)
    {
        DriverResult r = Baseline(scenario, py);
        Assert.That(r.ExitCode, Is.Zero, r.Describe());
        Assert.That(Lines(r.Stdout), Is.SupersetOf(Documented[scenario]), r.Describe());
    }

    [TestCaseSource(nameof(MixedCases))]
    public void MixedRunPrintsWhatMultiprocessingPrints(string scenario, string py, Way way)
    {
        Driver python = Driver.ByLabel(py), csharp = Driver.CSharp;
        var (parent, child) = way switch
        {
            Way.PythonParentCSharpChild => (python, csharp),
            Way.CSharpParentPythonChild => (csharp, python),
            _ => (python, python),
        };
        DriverResult expected = Baseline(scenario, py);
        Assume.That(expected.ExitCode, Is.Zero, "the multiprocessing baseline itself failed: see its own test");
        DriverResult actual = RunParent(parent, scenario, Enumerable.Repeat(child, ChildCount[scenario]));
        Assert.That(Lines(actual.Stdout), Is.EqualTo(Lines(expected.Stdout)), actual.Describe());
    }

    [TestCaseSource(nameof(HeavyCases))]
    public void HeavyMixedIncrementsLoseNothing(string py, bool csharpParent)
    {
        Driver python = Driver.ByLabel(py), csharp = Driver.CSharp;
        DriverResult expected = Baseline("heavy", py);
        Assert.That(Lines(expected.Stdout), Is.SupersetOf(Documented["heavy"]), expected.Describe());
        DriverResult actual = RunParent(csharpParent ? csharp : python, "heavy", [csharp, python, csharp, python]);
        Assert.That(Lines(actual.Stdout), Is.EqualTo(Lines(expected.Stdout)), actual.Describe());
    }

    /// <summary>Runs a parent driver with its children; the parent created every segment under
    /// one base name, so none of them may remain once it has exited.</summary>
    private static DriverResult RunParent(Driver parent, string scenario, IEnumerable<Driver> children)
    {
        string @base = Shm.NewName();
        var args = new List<string> { "parent", scenario, @base };
        foreach (var c in children) { args.Add("--child"); args.Add(c.ChildJson); }
        DriverResult r;
        IReadOnlyList<string> left;
        try
        {
            r = parent.Run(TimeSpan.FromSeconds(120), [.. args]);
        }
        finally
        {
            left = Shm.RemoveAll(@base);
        }
        Assert.That(r.ExitCode, Is.Zero, r.Describe());
        Assert.That(left, Is.Empty, $"the {parent.Label} parent left segments in /dev/shm");
        return r;
    }
}
