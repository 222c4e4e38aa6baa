using SharedBridge.Format;

namespace SharedBridge.Tests;

/// <summary>Who removes a segment's name (docs/format.md section 8, docs/api.md "Lifetimes"): claims
/// belong to objects, not to processes; every implicit removal checks device and inode; a creator that
/// is a zombie (ended, not yet waited for) is gone. Real processes: TestChild children, killed for real.</summary>
public class OwnershipTests
{
    private static int s_counter;

    private static string NewName() => $"sbown_{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}";

    private static SegmentOptions With(SegmentLifetime lifetime) => new() { Lifetime = lifetime };

    private static void Remove(string name)
    {
        if (Names.Exists(name)) File.Delete(Names.ShmPath(name));
    }

    public static TheoryData<string> Kinds => ["array", "value", "chars", "event", "semaphore"];

    private static (IDisposable Created, Func<IDisposable> Open) Make(string kind, string name) => kind switch
    {
        "array" => (SharedArray<int>.Create(name, 4), () => SharedArray<int>.Open(name)),
        "value" => (SharedValue<long>.Create(name, 5), () => SharedValue<long>.Open(name)),
        "chars" => (SharedCharArray.Create(name, 3), () => SharedCharArray.Open(name)),
        "event" => (SharedEvent.Create(name), () => SharedEvent.Open(name)),
        _ => (SharedSemaphore.Create(name, 2), () => SharedSemaphore.Open(name)),
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void DisposingAnObjectOpenedInTheCreatingProcessLeavesTheSegment(string kind)
    {
        string name = NewName();
        try
        {
            var (created, open) = Make(kind, name);
            open().Dispose();
            Assert.True(Names.Exists(name), "disposing an opened object unlinked the creator's segment");
            using (open()) { }
            Assert.True(Names.Exists(name));
            created.Dispose();
            Assert.False(Names.Exists(name));
        }
        finally
        {
            Remove(name);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ALastCloserProcessHoldsItsFlockUntilItsLastObjectCloses(bool creatorFirst)
    {
        string name = NewName();
        try
        {
            var created = SharedArray<long>.Create(name, 2, With(SegmentLifetime.LastCloser));
            var opened = SharedArray<long>.Open(name);
            (creatorFirst ? (IDisposable)created : opened).Dispose();
            Assert.True(Names.Exists(name));
            Assert.Empty(SegmentReaper.Reap(dryRun: true, prefix: name));  // still held: no exclusive flock
            (creatorFirst ? (IDisposable)opened : created).Dispose();
            Assert.False(Names.Exists(name));
        }
        finally
        {
            Remove(name);
        }
    }

    [Fact]
    public void ACreatorNeverRemovesANewerSegmentUnderItsName()
    {
        string name = NewName();
        try
        {
            var first = SharedArray<int>.Create(name, 2);
            SharedSegment.Unlink(name);
            using var second = SharedArray<int>.Create(name, 2);
            second[0] = 7;
            var e = Assert.Throws<SegmentNotFoundException>(() => first.Unlink());
            Assert.Contains("reused", e.Message);
            first.Dispose();
            Assert.True(Names.Exists(name));
            using var check = SharedArray<int>.Open(name);
            Assert.Equal(7, check[0]);
        }
        finally
        {
            Remove(name);
        }
    }

    private static char StateOf(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }

    [Fact]
    public void ReapRemovesTheSegmentOfAZombieCreator()
    {
        string name = NewName();
        try
        {
            // sh starts the creator in the background (its stdin kept through fd 3: a background job's
            // stdin is /dev/null otherwise) and becomes `sleep`, which never waits for it: once killed,
            // the creator stays a zombie until sleep ends.
            using var child = Child.StartVia(
                ["/bin/sh", "-c", "exec 3<&0; \"$@\" 0<&3 3<&- & exec sleep 120 0<&- 3<&-", "sh"],
                "lifetime", "create", name, nameof(SegmentLifetime.Creator));
            child.ExpectLine("ready");
            int creator = checked((int)SegmentDirectory.Inspect(name).CreatorPid!.Value);
            Assert.NotEqual(child.Pid, creator);
            Signals.Send(creator, "KILL");
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (StateOf(creator) != 'Z')
            {
                Assert.True(DateTime.UtcNow < deadline, "the creator never became a zombie");
                Thread.Sleep(5);
            }
            Assert.False(SegmentDirectory.Inspect(name).CreatorAlive, "ls calls a zombie creator alive");
            var reaped = Assert.Single(SegmentReaper.Reap(prefix: name));
            Assert.True(reaped.Removed);
            Assert.Contains($"creator pid {creator}", reaped.Reason);
            Assert.False(Names.Exists(name));
        }
        finally
        {
            Remove(name);
        }
    }
}
