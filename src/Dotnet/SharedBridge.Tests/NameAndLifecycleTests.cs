using System.Text.RegularExpressions;

namespace SharedBridge.Tests;

public class NameAndLifecycleTests
{
    [Theory]
    [InlineData("")]
    [InlineData("/leading-slash")]
    [InlineData("has space")]
    [InlineData("tab\there")]
    [InlineData("nul\0byte")]
    [InlineData("ünïcode")]
    [InlineData(".hidden")]
    [InlineData("..")]
    [InlineData("sem.reserved")]
    [InlineData("a/b")]
    public void InvalidNamesAreRefusedBeforeTheOs(string name)
    {
        var e = Assert.Throws<InvalidSegmentNameException>(() => SharedArray<int>.Create(name, 1));
        Assert.Contains("Invalid segment name", e.Message);
        Assert.Throws<InvalidSegmentNameException>(() => SharedArray<int>.Open(name));
        Assert.Throws<InvalidSegmentNameException>(() => SharedSegment.Unlink(name));
    }

    [Fact]
    public void NamesUpTo255BytesAreAcceptedAndLongerRefused()
    {
        string longest = "neth_" + Environment.ProcessId + new string('x', 255 - 5 - Environment.ProcessId.ToString().Length);
        Assert.Equal(255, longest.Length);
        using (var a = SharedArray<int>.Create(longest, 1))
            Assert.True(Names.Exists(longest));
        Assert.False(Names.Exists(longest));
        Assert.Throws<InvalidSegmentNameException>(() => SharedArray<int>.Create(longest + "y", 1));
    }

    [Fact]
    public void GeneratedNamesAreSbAnd16HexDigits()
    {
        using var a = SharedArray<int>.Create(null, 1);
        using var b = SharedArray<int>.Create(null, 1);
        Assert.Matches(new Regex("^sb_[0-9a-f]{16}$"), a.Name);
        Assert.NotEqual(a.Name, b.Name);
        Assert.True(Names.Exists(a.Name));
    }

    [Fact]
    public void NameTakenIsSegmentExists()
    {
        string name = Names.Unique();
        using var a = SharedArray<int>.Create(name, 1);
        var e = Assert.Throws<SegmentExistsException>(() => SharedArray<int>.Create(name, 1));
        Assert.Equal(name, e.SegmentName);
        Assert.Throws<SegmentExistsException>(() => SharedLock.Create(name));
    }

    [Fact]
    public void UnknownNameIsSegmentNotFound()
    {
        string name = Names.Unique("missing");
        var e = Assert.Throws<SegmentNotFoundException>(() => SharedArray<int>.Open(name));
        Assert.Equal(name, e.SegmentName);
        Assert.Throws<SegmentNotFoundException>(() => SharedSegment.Open(name));
        Assert.Throws<SegmentNotFoundException>(() => SharedSegment.Unlink(name));
    }

    [Fact]
    public void DefaultModeIs0600AndModeIsConfigurable()
    {
        string name = Names.Unique();
        using (SharedArray<int>.Create(name, 1))
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Names.ShmPath(name)));
        var mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        using (SharedArray<int>.Create(name, 1, new SegmentOptions { Mode = mode }))
            Assert.Equal(mode, File.GetUnixFileMode(Names.ShmPath(name)));
    }

    [Fact]
    public void CreatorUnlinksOnDisposeAndAttacherNever()
    {
        string name = Names.Unique();
        var creator = SharedArray<long>.Create(name, 3);
        var attacher = SharedArray<long>.Open(name);
        Assert.True(creator.IsOwner);
        Assert.False(attacher.IsOwner);
        attacher.Dispose();
        Assert.True(Names.Exists(name));
        creator[1] = 42;
        creator.Dispose();
        Assert.False(Names.Exists(name));
    }

    [Fact]
    public void MemoryStaysValidForAttachersAfterTheCreatorUnlinks()
    {
        string name = Names.Unique();
        var creator = SharedArray<long>.Create(name, 2);
        using var attacher = SharedArray<long>.Open(name);
        creator[0] = 7;
        creator.Dispose();
        Assert.Equal(7, attacher[0]);
        attacher[1] = 8;
        Assert.Equal(8, attacher[1]);
        using (attacher.Lock()) attacher[0]++;
        Assert.Equal(8, attacher[0]);
    }

    [Fact]
    public void RetiredStateIsVisibleToAttachersAfterTheCreatorUnlinks()
    {
        string name = Names.Unique();
        var creator = SharedArray<long>.Create(name, 1);
        using var watcher = SharedSegment.Open(name);
        Assert.Equal(1, watcher.Header.State);
        Assert.Equal(1, watcher.CurrentState);
        creator.Dispose();
        Assert.Equal(2, watcher.CurrentState);
        Assert.Equal(1, watcher.Header.State); // the header is the snapshot taken at open
        Assert.False(Names.Exists(name));
    }

    [Fact]
    public void KeptSegmentIsNotRetiredByItsCreator()
    {
        string name = Names.Unique();
        try
        {
            var creator = SharedArray<long>.Create(name, 1, new SegmentOptions { KeepOnDispose = true });
            using var watcher = SharedSegment.Open(name);
            creator.Dispose();
            Assert.Equal(1, watcher.CurrentState);
            Assert.True(Names.Exists(name));
        }
        finally
        {
            SharedSegment.Unlink(name);
        }
    }

    [Fact]
    public void KeepOnDisposeLeavesTheSegmentForOthers()
    {
        string name = Names.Unique();
        try
        {
            using (var a = SharedArray<int>.Create(name, [1, 2, 3], new SegmentOptions { KeepOnDispose = true }))
                Assert.True(a.IsOwner);
            Assert.True(Names.Exists(name));
            using var b = SharedArray<int>.Open(name);
            Assert.Equal([1, 2, 3], b.ToArray());
        }
        finally
        {
            SharedSegment.Unlink(name);
        }
        Assert.False(Names.Exists(name));
    }

    [Fact]
    public void ExplicitUnlinkRemovesTheNameOnceAndTheDataStays()
    {
        string name = Names.Unique();
        using var a = SharedArray<int>.Create(name, [5]);
        a.Unlink();
        Assert.False(Names.Exists(name));
        Assert.Equal(5, a[0]);
        Assert.Throws<SegmentNotFoundException>(() => a.Unlink());
        Assert.Throws<SegmentNotFoundException>(() => SharedArray<int>.Open(name));
    }

    [Fact]
    public void CreatorDoesNotUnlinkAStrangerThatReusedTheName()
    {
        string name = Names.Unique();
        var first = SharedArray<int>.Create(name, [1]);
        SharedSegment.Unlink(name);
        using var second = SharedArray<int>.Create(name, [2]);
        first.Dispose(); // must not remove "second"
        Assert.True(Names.Exists(name));
        using var check = SharedArray<int>.Open(name);
        Assert.Equal(2, check[0]);
    }

    [Fact]
    public void UseAfterDisposeThrowsObjectDisposed()
    {
        var a = SharedArray<int>.Create(Names.Unique(), 2);
        a.Dispose();
        a.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => a[0]);
        Assert.Throws<ObjectDisposedException>(() => a.AsSpan());
        Assert.Throws<ObjectDisposedException>(() => a.ToArray());
        Assert.Throws<ObjectDisposedException>(() => a.Lock());
        Assert.Throws<ObjectDisposedException>(() => a.TryLock(TimeSpan.Zero, out _));
        Assert.Throws<ObjectDisposedException>(() => a.Unlink());
        Assert.Throws<ObjectDisposedException>(() => a.LockRecoveries);

        var v = SharedValue<double>.Create(Names.Unique(), 1.0);
        v.Dispose();
        Assert.Throws<ObjectDisposedException>(() => v.Value);
        var c = SharedCharArray.Create(Names.Unique(), 4);
        c.Dispose();
        Assert.Throws<ObjectDisposedException>(() => c.Value);
        var l = SharedLock.Create(Names.Unique());
        l.Dispose();
        Assert.Throws<ObjectDisposedException>(() => l.Lock());
    }

    [Fact]
    public void UndisposedCreatorSegmentsAreUnlinkedWhenTheProcessExits()
    {
        string name = Names.Unique("exit");
        using var child = Child.Start("create-and-exit", name);
        child.ExpectLine("created");
        Assert.Equal(0, child.WaitForExit());
        Assert.False(Names.Exists(name));
    }

    [Fact]
    public void NegativeSizesAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SharedArray<int>.Create(Names.Unique(), -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => SharedCharArray.Create(Names.Unique(), -5));
    }

    [Fact]
    public void MoreThanSharedMemoryHoldsIsInsufficientSharedMemoryAndLeavesNothing()
    {
        // One 4 KiB element more than the whole tmpfs: the kernel refuses the reservation at once.
        long total = new DriveInfo("/dev/shm").TotalSize;
        int length = checked((int)(total / 4096 + 1));
        string name = Names.Unique();
        var e = Assert.Throws<InsufficientSharedMemoryException>(() => SharedArray<Big>.Create(name, length));
        Assert.Contains("/dev/shm", e.Message);
        Assert.False(Names.Exists(name));
    }

    internal unsafe struct Big
    {
        public fixed long Items[512];
    }
}
