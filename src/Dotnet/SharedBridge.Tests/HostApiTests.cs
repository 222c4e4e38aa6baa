namespace SharedBridge.Tests;

/// <summary>
/// The span-free, ref-free surface for reflection-based hosts (pythonnet, PowerShell, F# interactive):
/// element Get/Set, array CopyFrom/CopyTo, Create from an array, option constructors, the data address
/// and data views, and the host's control of the exit cleanup (SegmentCleanup).
/// </summary>
[Collection(HostCleanupCollection.Name)]
public class HostApiTests
{
    [Fact]
    public void GetSetAndArrayCopiesWithoutSpans()
    {
        double[] initial = [1, 2, 3, 4];
        using var a = SharedArray<double>.Create(Names.Unique("host"), initial);
        a.Set(2, 9.5);
        Assert.Equal(9.5, a.Get(2));
        Assert.Equal(9.5, a[2]);
        a.CopyFrom([7.0, 8.0]);
        Assert.Equal([7.0, 8.0, 9.5, 4.0], a.ToArray());
        a.CopyFrom([0.0, 1.0, 2.0], 1, 2, 2);
        Assert.Equal([7.0, 8.0, 1.0, 2.0], a.ToArray());
        var all = new double[4];
        a.CopyTo(all);
        Assert.Equal(a.ToArray(), all);
        var part = new double[5];
        a.CopyTo(1, part, 3, 2);
        Assert.Equal([0.0, 0.0, 0.0, 8.0, 1.0], part);
        Assert.Throws<IndexOutOfRangeException>(() => a.Get(4));
        Assert.Throws<IndexOutOfRangeException>(() => a.Set(-1, 0));
        Assert.ThrowsAny<ArgumentException>(() => a.CopyFrom(new double[5]));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.CopyFrom(initial, 1, 1, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.CopyTo(3, part, 0, 2));
        Assert.Throws<ArgumentNullException>(() => SharedArray<double>.Create(null, (double[])null!));
    }

    [Fact]
    public void GetNormalizesBoolsLikeToArray()
    {
        using var a = SharedArray<bool>.Create(Names.Unique("host"), 2);
        unsafe { *(byte*)a.DataAddress = 2; }
        Assert.True(a.Get(0));
        Assert.Equal([true, false], a.ToArray());
    }

    [Fact]
    public void OptionConstructorsTakeEveryOption()
    {
        var o = new SegmentOptions(synchronized: false, typeCode: 'l', keepOnDispose: true, recursiveLock: false);
        Assert.False(o.Synchronized);
        Assert.Equal('l', o.TypeCode);
        Assert.True(o.KeepOnDispose);
        Assert.False(o.RecursiveLock);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, o.Mode);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead,
            new SegmentOptions(mode: UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead).Mode);
        var d = new SegmentOptions();
        Assert.True(d.Synchronized && d.RecursiveLock && !d.KeepOnDispose && d.TypeCode is null);
        var open = new OpenOptions(TimeSpan.FromSeconds(1), allowOtherOwner: true);
        Assert.Equal(TimeSpan.FromSeconds(1), open.ReadyTimeout);
        Assert.True(open.AllowOtherOwner);
    }

    [Fact]
    public unsafe void DataViewOutlivesTheObjectButNotTheName()
    {
        string name = Names.Unique("host");
        var a = SharedArray<long>.Create(name, [10L, 20L, 30L]);
        Assert.Equal(24, a.ByteLength);
        var view = a.CreateDataView();
        Assert.Equal(a.DataAddress, view.Address);
        Assert.Equal(24, view.ByteLength);
        a.Dispose();
        Assert.False(Names.Exists(name));                 // the creator's Dispose still unlinks
        Assert.Equal(20L, ((long*)view.Address)[1]);      // but the mapping is still there
        view.Dispose();
        Assert.True(view.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => view.Address);
        Assert.Throws<ObjectDisposedException>(() => a.DataAddress);

        using var v = SharedValue<int>.Create(Names.Unique("host"), 42);
        using var vv = v.CreateDataView();
        Assert.Equal(4, v.ByteLength);
        Assert.Equal(42, *(int*)vv.Address);
    }

    [Fact]
    public void ReleaseCreatedSegmentsUnlinksWhatThisProcessCreated()
    {
        string kept = Names.Unique("host"), released = Names.Unique("host");
        using var k = SharedArray<int>.Create(kept, 1, new SegmentOptions(keepOnDispose: true));
        using var r = SharedArray<int>.Create(released, 1);
        try
        {
            Assert.True(SegmentCleanup.CreatedSegmentCount >= 1);
            Assert.True(SegmentCleanup.ReleaseCreatedSegments() >= 1);
            Assert.False(Names.Exists(released));
            Assert.True(Names.Exists(kept));
            r.Set(0, 5);                                  // the object keeps working on its mapping
            Assert.Equal(5, r.Get(0));
        }
        finally
        {
            SharedSegment.Unlink(kept);
        }
    }

    [Fact]
    public void SignalHandlersCanBeHandedToTheHostAndBack()
    {
        Assert.True(SegmentCleanup.SignalHandlersEnabled);
        try
        {
            SegmentCleanup.SignalHandlersEnabled = false;
            Assert.False(SegmentCleanup.SignalHandlersEnabled);
            using var a = SharedArray<int>.Create(Names.Unique("host"), 1);   // does not re-register
            Assert.False(SegmentCleanup.SignalHandlersEnabled);
        }
        finally
        {
            SegmentCleanup.SignalHandlersEnabled = true;
        }
        Assert.True(SegmentCleanup.SignalHandlersEnabled);
    }
}

/// <summary>ReleaseCreatedSegments unlinks every segment of the test process: nothing else may run meanwhile.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class HostCleanupCollection
{
    public const string Name = "host cleanup (not parallel)";
}
