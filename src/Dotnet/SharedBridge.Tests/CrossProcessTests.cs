namespace SharedBridge.Tests;

/// <summary>
/// The lock across real processes: children are `dotnet exec SharedBridge.TestChild.dll COMMAND ...`
/// (see Child in TestSupport.cs and ChildCommands.cs in the SharedBridge.TestChild project).
/// </summary>
public class CrossProcessTests
{
    [Fact]
    public void ChildrenAndParentIncrementUnderTheLockWithoutLosingUpdates()
    {
        string name = Names.Unique("incr");
        using var counter = SharedArray<long>.Create(name, 1);
        const int perProcess = 50_000;
        using var first = Child.Start("increment", name, perProcess.ToString());
        using var second = Child.Start("increment", name, perProcess.ToString());
        for (int i = 0; i < perProcess; i++)
            using (counter.Lock()) counter[0]++;
        first.ExpectLine("done", 60_000);
        second.ExpectLine("done", 60_000);
        Assert.Equal(0, first.WaitForExit());
        Assert.Equal(0, second.WaitForExit());
        Assert.Equal(3L * perProcess, counter[0]);
        Assert.Equal(0, counter.LockRecoveries);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)] // held recursively twice: one recovery, one unlock releases it
    public void LockOfAKilledHolderIsRecoveredOnceAndItsWritesSurvive(int depth)
    {
        string name = Names.Unique("kill");
        using var array = SharedArray<long>.Create(name, 2);
        array[1] = 11;
        using (var child = Child.Start("hold", name, depth.ToString(), "4242"))
        {
            child.ExpectLine("locked");
            Assert.False(array.TryLock(TimeSpan.Zero, out _)); // really held by the child
            child.KillHard();
        }

        using (var scope = array.Lock(TimeSpan.FromSeconds(10)))
        {
            Assert.True(scope.Recovered);
            Assert.Equal(4242, array[0]);   // written before the kill
            Assert.Equal(11, array[1]);
            array[0]++;
        }
        Assert.Equal(1, array.LockRecoveries);
        using (var again = array.Lock())
            Assert.False(again.Recovered);   // recovered for good, not "recovered" every time

        // Other threads and openers see one recovery, performed by this process.
        using var view = SharedSegment.Open(name);
        Assert.Equal(1, view.Header.RecoveryCount);
        Assert.Equal(Environment.ProcessId, view.Header.LastRecoveredByPid);
        Assert.Equal(0, view.LockOwnerThreadId);
        var other = new Thread(() =>
        {
            using var s = array.Lock();
            Assert.False(s.Recovered);
        });
        other.Start();
        other.Join();
        Assert.Equal(4243, array[0]);
    }

    [Fact]
    public void EachKilledHolderCountsOneRecovery()
    {
        string name = Names.Unique("kill2");
        using var array = SharedArray<long>.Create(name, 1);
        for (int round = 1; round <= 2; round++)
        {
            using (var child = Child.Start("hold", name, "2", (100 * round).ToString()))
            {
                child.ExpectLine("locked");
                child.KillHard();
            }
            using var scope = array.Lock(TimeSpan.FromSeconds(10));
            Assert.True(scope.Recovered);
            Assert.Equal(100 * round, array[0]);
            Assert.Equal(round, array.LockRecoveries);
        }
        using var fresh = SharedArray<long>.Open(name);
        Assert.Equal(2, fresh.LockRecoveries);
        Assert.Equal(2, fresh.Header.RecoveryCount);
    }

    [Fact]
    public void SharedLockOfAKilledHolderIsRecoveredThroughASegmentThatUsesIt()
    {
        using var shared = SharedLock.Create(Names.Unique("klock"));
        using var data = SharedValue<int>.Create(Names.Unique(), 5, new SegmentOptions { SharedLock = shared });
        using (var child = Child.Start("hold-lock", shared.Name))
        {
            child.ExpectLine("locked");
            using var probe = SharedSegment.Open(shared.Name);
            Assert.NotEqual(0, probe.LockOwnerThreadId);
            child.KillHard();
            Assert.True(probe.LockOwnerDied || probe.LockOwnerThreadId != 0);
        }
        Assert.True(data.TryLock(TimeSpan.FromSeconds(10), out var scope));
        Assert.True(scope.Recovered);
        scope.Dispose();
        Assert.Equal(1, shared.LockRecoveries);
        Assert.Equal(1, data.LockRecoveries);
    }

    [Fact]
    public void EveryObjectOnOneLockReportsItsRecoveriesAsLockRecoveries()
    {
        using var shared = SharedLock.Create(Names.Unique("lock", prefix: "sbCN"));
        var options = new SegmentOptions { SharedLock = shared };
        using var array = SharedArray<int>.Create(Names.Unique("array", prefix: "sbCN"), 1, options);
        using var value = SharedValue<int>.Create(Names.Unique("value", prefix: "sbCN"), 0, options);
        using var chars = SharedCharArray.Create(Names.Unique("chars", prefix: "sbCN"), 4, options);
        using var view = SharedSegment.Open(array.Name);
        long[] Counts() => [shared.LockRecoveries, array.LockRecoveries, value.LockRecoveries, chars.LockRecoveries, view.LockRecoveries];
        Assert.Equal([0, 0, 0, 0, 0], Counts());
        using (var child = Child.Start("hold-lock", shared.Name))
        {
            child.ExpectLine("locked");
            child.KillHard();
        }
        using (var scope = chars.Lock(TimeSpan.FromSeconds(10)))
            Assert.True(scope.Recovered);
        Assert.Equal([1, 1, 1, 1, 1], Counts());
#pragma warning disable CS0618 // the old name stays, as an alias
        Assert.Equal(1, shared.Recoveries);
#pragma warning restore CS0618
    }

    [Fact]
    public void ChildSeesWhatTheParentWrote()
    {
        string name = Names.Unique("read");
        using var array = SharedArray<long>.Create(name, [3, 1, 4, 1, 5]);
        using var child = Child.Start("read", name);
        Assert.Equal("3,1,4,1,5", child.ReadLine());
        Assert.Equal(0, child.WaitForExit());
    }
}
