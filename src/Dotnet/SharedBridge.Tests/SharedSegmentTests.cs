namespace SharedBridge.Tests;

public class SharedSegmentTests
{
    [Fact]
    public void OpensAnyKindAndDescribesIt()
    {
        string array = Names.Unique(), value = Names.Unique(), lockName = Names.Unique();
        using var a = SharedArray<Point>.Create(array, [new Point { X = 1, Y = 2 }]);
        using var v = SharedValue<int>.Create(value, 7, new SegmentOptions { Synchronized = false });
        using var l = SharedLock.Create(lockName);

        using (var s = SharedSegment.Open(array))
        {
            Assert.Equal(SegmentKind.Array, s.Header.Kind);
            Assert.Equal("'T' (structure Point, 16 bytes)", s.Header.TypeDescription);
            Assert.Equal(2, s.Header.Fields.Count);
            Assert.Equal(16, s.Data.Length);
            Assert.Equal(2.0, BitConverter.ToDouble(s.Data[8..]));
            Assert.True(s.HasLock);
            Assert.Equal(0, s.LockOwnerThreadId);
            using (s.Lock()) Assert.NotEqual(0, s.LockOwnerThreadId);
        }
        using (var s = SharedSegment.Open(value))
        {
            Assert.Equal(SegmentKind.Value, s.Header.Kind);
            Assert.False(s.HasLock);
            Assert.Equal(7, BitConverter.ToInt32(s.Data));
            Assert.Throws<InvalidOperationException>(() => s.Lock());
        }
        using (var s = SharedSegment.Open(lockName))
        {
            Assert.Equal(SegmentKind.Lock, s.Header.Kind);
            Assert.Equal('\0', s.Header.TypeCode);
            Assert.Equal(0, s.Data.Length);
            Assert.True(s.TryLock(TimeSpan.Zero, out var scope));
            scope.Dispose();
        }
    }

    [Fact]
    public void AnAttachingSegmentNeverUnlinks()
    {
        string name = Names.Unique();
        using var a = SharedArray<int>.Create(name, 1);
        SharedSegment.Open(name).Dispose();
        Assert.True(Names.Exists(name));
        Assert.True(SharedSegment.Exists(name));
        SharedSegment.Unlink(name);
        Assert.False(SharedSegment.Exists(name));
    }
}
