using SharedBridge.Format;

namespace SharedBridge.Tests;

/// <summary>The directory backend (docs/format.md section 1.3): segments as files in a directory the user names, with the
/// per-object Directory option; the prefix of generated names (section 1.1); waiting for a name to appear.</summary>
public sealed class DirectoryBackendTests : IDisposable
{
    private const string Prefix = "sbd22";
    private readonly string _dir = Directory.CreateTempSubdirectory(Prefix + "_").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private SegmentOptions InDir => new() { Directory = _dir };
    private OpenOptions OpenInDir => new() { Directory = _dir };
    private string PathOf(string name) => Path.Combine(_dir, name);
    private static string Name(string tag) => Names.Unique(tag, Prefix);

    private void AssertFileOnly(string name)
    {
        Assert.True(File.Exists(PathOf(name)), $"{name} is not a file in the directory");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(PathOf(name)));
        Assert.False(File.Exists("/dev/shm/" + name), $"{name} went to /dev/shm");
    }

    [Fact]
    public void EveryKindLivesInTheDirectoryAndGoesWithItsCreator()
    {
        string a = Name("a"), v = Name("v"), l = Name("l"), e = Name("e"), s = Name("s"), c = Name("c"), b = Name("b"),
            q = Name("q"), t = Name("t");
        using (var array = SharedArray<int>.Create(a, [1, 2, 3], InDir))
        using (var value = SharedValue<double>.Create(v, 2.5, InDir))
        using (var lk = SharedLock.Create(l, InDir))
        using (var ev = SharedEvent.Create(e, options: InDir))
        using (var sem = SharedSemaphore.Create(s, 2, options: InDir))
        using (var cond = SharedCondition.Create(c, lk, InDir))
        using (var bar = SharedBarrier.Create(b, 2, InDir))
        using (var queue = SharedQueue.Create(q, new QueueOptions { Directory = _dir }))
        using (var tensor = SharedTensor<float>.Create(t, [2L, 3L], InDir))
        {
            foreach (string n in new[] { a, v, l, e, s, c, b, q, t }) AssertFileOnly(n);
            Assert.Equal(a, array.Name);                       // the name, not the path
            using (var again = SharedArray<int>.Open(a, OpenInDir)) Assert.Equal([1, 2, 3], again.ToArray());
            using (var again = SharedValue<double>.Open(v, OpenInDir)) Assert.Equal(2.5, again.Value);
            using (var again = SharedCondition.Open(c, OpenInDir)) { using var held = again.Lock(); }
            using (var again = SharedTensor<float>.Open(t, OpenInDir)) Assert.Equal([2, 3], again.Shape.ToArray());
            // An out-of-line message's segment goes beside its queue (section 11.5).
            queue.Write(new byte[queue.Capacity / 2]);
            Assert.Single(Directory.GetFiles(_dir, q + ".m*"));
            using (var consumer = SharedQueue.Open(q, OpenInDir))
            using (var message = consumer.Read(TimeSpan.FromSeconds(30)))
            {
                Assert.True(message.IsOutOfLine);
                Assert.Equal(queue.Capacity / 2, message.Length);
            }
            // Not in /dev/shm: opening there finds nothing.
            Assert.Throws<SegmentNotFoundException>(() => SharedArray<int>.Open(a, new OpenOptions { Directory = "/dev/shm" }));
            Assert.Contains(SegmentDirectory.List(prefix: Prefix, directory: _dir), i => i.Name == a && i.Status == SegmentStatus.Ok);
            Assert.Equal(3, SegmentDirectory.Inspect(a, 3, _dir).Elements!.Count);
        }
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void AnExternalLockMustBeInTheObjectsDirectory()
    {
        using var lk = SharedLock.Create(Name("l"), InDir);
        var e = Assert.Throws<ArgumentException>(() =>
            SharedArray<int>.Create(Name("a"), 1, new SegmentOptions { SharedLock = lk, Directory = "/dev/shm" }));
        Assert.Contains("one directory", e.Message);
        using var arr = SharedArray<int>.Create(Name("a"), 1, new SegmentOptions { SharedLock = lk, Directory = _dir });
        using var again = SharedArray<int>.Open(arr.Name, OpenInDir);
        using (again.Lock()) again[0] = 7;
        Assert.Equal(7, arr[0]);
    }

    [Fact]
    public void AMissingDirectoryIsNamedInTheError()
    {
        string missing = Path.Combine(_dir, "nowhere");
        var e = Assert.Throws<DirectoryNotFoundException>(() => SharedArray<int>.Create(Name("a"), 1, new SegmentOptions { Directory = missing }));
        Assert.Contains(missing, e.Message);
    }

    [Fact]
    public void ReapLeavesAPersistentSegmentAndUnlinkRemovesIt()
    {
        // Reaping what a dead creator left in a directory is the cross suite's (DirectoryBackendTests there).
        string name = Name("r");
        using (var kept = SharedArray<long>.Create(name, 2, new SegmentOptions { Directory = _dir, Lifetime = SegmentLifetime.Persistent })) { }
        Assert.Empty(SegmentReaper.Reap(prefix: Prefix, directory: _dir));      // persistent: never garbage
        SharedSegment.Unlink(name, _dir);
        Assert.False(File.Exists(PathOf(name)));
    }

    [Fact]
    public void OpenWaitsForANameToAppear()
    {
        string name = Name("w");
        SharedArray<int>? made = null;
        var creator = new Thread(() =>
        {
            Thread.Sleep(100);
            made = SharedArray<int>.Create(name, [42], InDir);
        });
        // Without waiting, a consumer that starts first fails at once.
        Assert.Throws<SegmentNotFoundException>(() => SharedArray<int>.Open(name, OpenInDir));
        creator.Start();
        try
        {
            using var opened = SharedArray<int>.Open(name, new OpenOptions { Directory = _dir, WaitForName = TimeSpan.FromSeconds(30) });
            Assert.Equal(42, opened[0]);
        }
        finally
        {
            Assert.True(creator.Join(TimeSpan.FromSeconds(30)));
            made?.Dispose();
        }
        var e = Assert.Throws<SegmentNotFoundException>(() =>
            SharedArray<int>.Open(Name("never"), new OpenOptions { Directory = _dir, WaitForName = TimeSpan.FromMilliseconds(20) }));
        Assert.Contains("appeared within", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            SharedArray<int>.Open(name, new OpenOptions { WaitForName = TimeSpan.FromSeconds(-1) }));
    }
}

/// <summary>The prefix of generated names is process-wide: these tests run one at a time.</summary>
[Collection(NamePrefixCollection.Name)]
public sealed class NamePrefixTests
{
    [Fact]
    public void GeneratedNamesTakeTheConfiguredPrefix()
    {
        string before = SharedBridgeSettings.NamePrefix;
        Assert.Equal("sb_", before);
        try
        {
            SharedBridgeSettings.NamePrefix = "sbd22_team.";
            using var ev = SharedEvent.Create();
            Assert.StartsWith("sbd22_team.", ev.Name);
            Assert.Equal("sbd22_team.".Length + 16, ev.Name.Length);
            Assert.Contains(SegmentDirectory.List(prefix: "sbd22_team."), i => i.Name == ev.Name);
            foreach (string bad in new[] { ".x", "sem.", "a/b", "é", new string('a', 240) })
                Assert.Throws<InvalidSegmentNameException>(() => SharedBridgeSettings.NamePrefix = bad);
            Assert.Throws<InvalidSegmentNameException>(() => SharedBridgeSettings.NamePrefix = null!);
            Assert.Equal("sbd22_team.", SharedBridgeSettings.NamePrefix);
        }
        finally
        {
            SharedBridgeSettings.NamePrefix = before;
        }
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public class NamePrefixCollection
{
    public const string Name = "name prefix";
}
