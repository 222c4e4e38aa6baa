using static SharedBridge.Tests.QueueTests;

namespace SharedBridge.Tests;

/// <summary>What the tools see of a queue: SegmentDirectory (the CLI's ls / inspect) and SegmentReaper (out-of-line
/// message segments whose queue is gone, docs/format.md section 11.5).</summary>
public class QueueToolTests
{
    [Fact]
    public void ListingShowsDepthCapacityAndCounts()
    {
        using var q = SharedQueue.Create(NewName("ls"), new QueueOptions { Capacity = 8192, MaxMessages = 10 });
        q.Write(1);
        q.Write(2);
        using (q.Read(Long)) { }
        var info = SegmentDirectory.Inspect(q.Name, data: 5);
        Assert.Equal(SegmentStatus.Ok, info.Status);
        Assert.Equal(SegmentKind.Queue, info.Kind);
        var status = Assert.IsType<QueueStatus>(info.Queue);
        Assert.Equal((1u, 8192L, 10u, 2UL, 1UL, 2u, false), (status.Count, status.Capacity, status.MaxMessages, status.Puts, status.Gets,
            status.Unfinished, status.Completed));
        Assert.True(status.BytesUsed > 0);
        Assert.Empty(info.Elements);            // a ring is not elements
        Assert.Null(info.Sync);
        q.Complete();
        Assert.True(SegmentDirectory.List(prefix: q.Name).Single().Queue!.Completed);
    }

    [Fact]
    public void ReapRemovesOutOfLineMessagesOfAQueueThatIsGone()
    {
        string name = NewName("reap");
        var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096, Lifetime = SegmentLifetime.Persistent });
        q.Write(new byte[5000]);
        string message = Leftovers(name).Single(n => n != name);
        Assert.Empty(SegmentReaper.Reap(dryRun: true, prefix: name));          // its queue exists: not garbage
        q.Dispose();
        File.Delete(Names.ShmPath(name));                                      // the queue's name goes without its owner's cleanup
        var reaped = SegmentReaper.Reap(prefix: name);
        Assert.Equal(message, Assert.Single(reaped).Name);
        Assert.Contains("no longer exists", reaped[0].Reason);
        Assert.Empty(Leftovers(name));
    }
}
