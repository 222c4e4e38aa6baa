namespace SharedBridge.Tests;

/// <summary>ctypes c_char array semantics of .value and .raw.</summary>
public class CharArrayTests
{
    [Fact]
    public void ValueStopsAtTheFirstNulAndRawIsEverything()
    {
        using var c = SharedCharArray.Create(Names.Unique(), "hello\0world"u8);
        Assert.Equal("hello"u8.ToArray(), c.Value);
        Assert.Equal("hello\0world"u8.ToArray(), c.Raw);
        Assert.Equal(11, c.Length);
        Assert.Equal('c', c.TypeCode);
    }

    [Fact]
    public void SettingValueNulTerminatesAndKeepsTheRest()
    {
        using var c = SharedCharArray.Create(Names.Unique(), "abcdefgh"u8);
        c.Value = "xy"u8.ToArray();
        Assert.Equal("xy"u8.ToArray(), c.Value);
        Assert.Equal("xy\0defgh"u8.ToArray(), c.Raw); // like ctypes: only one NUL written
    }

    [Fact]
    public void ValueOfExactlyTheLengthHasNoTerminator()
    {
        using var c = SharedCharArray.Create(Names.Unique(), 4);
        c.Value = "full"u8.ToArray();
        Assert.Equal("full"u8.ToArray(), c.Value);
        Assert.Equal("full"u8.ToArray(), c.Raw);
    }

    [Fact]
    public void TooLongIsAnArgumentErrorLikeCtypesValueError()
    {
        using var c = SharedCharArray.Create(Names.Unique(), 3);
        var e = Assert.Throws<ArgumentException>(() => c.Value = "four"u8.ToArray());
        Assert.Contains("too long", e.Message);
        Assert.Throws<ArgumentException>(() => c.Raw = "four"u8.ToArray());
        Assert.Equal(new byte[3], c.Raw);
    }

    [Fact]
    public void SettingRawCopiesWithoutTerminator()
    {
        using var c = SharedCharArray.Create(Names.Unique(), "zzzz"u8);
        c.Raw = "ab"u8.ToArray();
        Assert.Equal("abzz"u8.ToArray(), c.Raw);
        c[3] = (byte)'!';
        Assert.Equal((byte)'!', c[3]);
        Assert.Throws<IndexOutOfRangeException>(() => c[4]);
    }

    [Fact]
    public void OnlyCharSegmentsOpenAsSharedCharArray()
    {
        string name = Names.Unique();
        using var bytes = SharedArray<byte>.Create(name, 4); // 'B', not 'c'
        var e = Assert.Throws<TypeMismatchException>(() => SharedCharArray.Open(name));
        Assert.Contains("'B'", e.Message);
    }

    [Fact]
    public void CharArrayIsSharedAndLockable()
    {
        string name = Names.Unique();
        using var a = SharedCharArray.Create(name, 8);
        using var b = SharedCharArray.Open(name);
        using (b.Lock()) b.Value = "shared"u8.ToArray();
        Assert.Equal("shared"u8.ToArray(), a.Value);
        using var asBytes = SharedArray<byte>.Open(name); // 'c' accepts byte
        Assert.Equal((byte)'s', asBytes[0]);
    }

    [Fact]
    public void GetLockSharesTheCharArraysLockAsAnArraysDoes()
    {
        using var chars = SharedCharArray.Create(Names.Unique("chars", prefix: "sbCN"), 4);
        var itsLock = chars.GetLock();
        Assert.Equal(chars.Name, itsLock.Name);
        Assert.False(itsLock.IsOwner);
        using var follower = SharedArray<int>.Create(Names.Unique("follower", prefix: "sbCN"), 1, new SegmentOptions { SharedLock = itsLock });
        Assert.Equal(chars.Name, follower.Header.LockName);
        bool freeForAnotherThread = true;
        using (itsLock.Lock())
        {
            var other = new Thread(() =>
            {
                freeForAnotherThread = chars.TryLock(TimeSpan.Zero, out var scope);
                scope.Dispose();
            });
            other.Start();
            Assert.True(other.Join(TimeSpan.FromSeconds(10)));
        }
        Assert.False(freeForAnotherThread); // one lock: held through the SharedLock, busy for the array
        itsLock.Dispose();
        using (follower.Lock()) follower[0] = 1; // the follower keeps its own reference on the lock segment

        using var external = SharedLock.Create(Names.Unique("lock", prefix: "sbCN"));
        using var synced = SharedCharArray.Create(Names.Unique("synced", prefix: "sbCN"), 1, new SegmentOptions { SharedLock = external });
        using (var lockOfSynced = synced.GetLock()) Assert.Equal(external.Name, lockOfSynced.Name);

        using var raw = SharedCharArray.Create(Names.Unique("raw", prefix: "sbCN"), 1, new SegmentOptions { Synchronized = false });
        Assert.Contains("not synchronized", Assert.Throws<InvalidOperationException>(() => raw.GetLock()).Message);
        raw.Dispose();
        Assert.Throws<ObjectDisposedException>(() => raw.GetLock());
    }
}
