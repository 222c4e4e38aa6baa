using System.Collections.Concurrent;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>Every (producer, consumer) pair over every vector: the producer process creates the
/// segment and exits, the consumer process attaches by name and checks header facts, the lock and
/// every value. One producer run and one consumer run serve all vectors of a pair; each vector is
/// its own test case.</summary>
public sealed class VectorPairTests : CrossTestBase
{
    private sealed record PairOutcome(IReadOnlyDictionary<string, EntryResult> Created, IReadOnlyDictionary<string, EntryResult> Verified);

    private static readonly ConcurrentDictionary<(string, string), Lazy<PairOutcome>> Outcomes = new();

    /// <summary>C# -> C#, and for every interpreter C# -> py, py -> C#, and py -> the next
    /// interpreter (so Python pairs also cross versions).</summary>
    public static IEnumerable<(string Producer, string Consumer)> Pairs()
    {
        var py = Interpreters.All.Select(i => i.Label).ToList();
        yield return (Driver.CSharpLabel, Driver.CSharpLabel);
        foreach (var p in py) yield return (Driver.CSharpLabel, p);
        foreach (var p in py) yield return (p, Driver.CSharpLabel);
        for (int i = 0; i < py.Count; i++) yield return (py[i], py[(i + 1) % py.Count]);
    }

    public static IEnumerable<TestCaseData> Cases() =>
        from pair in Pairs()
        from v in Vectors.All
        select new TestCaseData(pair.Producer, pair.Consumer, v.Id).SetName($"{pair.Producer} -> {pair.Consumer} | {v.Title}");

    [TestCaseSource(nameof(Cases))]
    public void ConsumerSeesWhatProducerCreated(string producer, string consumer, string vectorId)
    {
        PairOutcome outcome = Outcomes.GetOrAdd((producer, consumer), key => new Lazy<PairOutcome>(() => Run(key.Item1, key.Item2))).Value;
        EntryResult created = outcome.Created[vectorId];
        Assert.That(created.Ok, Is.True, $"{producer} could not create the segment:\n{created.Describe()}");
        EntryResult verified = outcome.Verified[vectorId];
        Assert.That(verified.Ok, Is.True, $"{consumer} found a mismatch:\n{verified.Describe()}");
        int expectedElements = Vectors.ById(vectorId).Root.GetProperty("object").GetString() switch
        {
            "lock" => 0,
            "queue" => 4,   // the drivers report class, capacity, max_messages and depth
            "ndarray" => 1 + Vectors.ById(vectorId).Root.GetProperty("values").GetArrayLength(),   // the shape, then the elements
            "array" or "event" or "semaphore" or "condition" or "barrier" => Vectors.ById(vectorId).Root.GetProperty("values").GetArrayLength(),
            _ => 1,
        };
        Assert.That(verified.Values, Has.Count.EqualTo(expectedElements), "the consumer did not report every element it checked");
        if (Vectors.ById(vectorId).Root.TryGetProperty("shape", out var shape))
            Assert.That(verified.Values[0], Is.EqualTo("shape=[" + string.Join(",", shape.EnumerateArray().Select(d => d.GetInt64())) + "]"),
                "the consumer read another shape (docs/format.md section 12)");
    }

    private static PairOutcome Run(string producer, string consumer)
    {
        using var batch = new Batch(Vectors.All, fixedLockNames: false);
        var created = batch.Run(Driver.ByLabel(producer), "create-batch");
        var verified = batch.Run(Driver.ByLabel(consumer), "verify-batch");
        return new PairOutcome(created, verified);
    }
}
