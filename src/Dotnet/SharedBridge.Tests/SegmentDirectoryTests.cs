namespace SharedBridge.Tests;

/// <summary>The survey API under `sharedbridge ls` / `inspect` (SegmentDirectory, SegmentInfo): what it reports
/// for real segments, corrupt and foreign objects, a held lock; the CLIs on top are tested in tests/cross.</summary>
public sealed class SegmentDirectoryTests : IDisposable
{
    private static int s_counter;
    private readonly string _prefix = $"sbcli_{Environment.ProcessId}_{Interlocked.Increment(ref s_counter)}_";

    public void Dispose()
    {
        foreach (string path in Directory.GetFiles("/dev/shm", _prefix + "*")) File.Delete(path);
    }

    [Fact]
    public void ListDescribesEachSegmentOfThisProcess()
    {
        using var lockSeg = SharedLock.Create(_prefix + "l");
        using var arr = SharedArray<double>.Create(_prefix + "a", [1.5, 2.5, 3.5]);
        using var val = SharedValue<int>.Create(_prefix + "v", 7, new SegmentOptions { SharedLock = lockSeg });
        using var pts = SharedArray<Point>.Create(_prefix + "p", 2, new SegmentOptions { Synchronized = false });
        var found = SegmentDirectory.List(prefix: _prefix).ToDictionary(i => i.Name);
        Assert.Equal(new[] { _prefix + "a", _prefix + "l", _prefix + "p", _prefix + "v" }, found.Keys.Order(StringComparer.Ordinal));
        var a = found[_prefix + "a"];
        Assert.Equal((SegmentStatus.Ok, SegmentKind.Array, 'd', 3L, LockKind.Embedded, LockState.Free, 1),
            (a.Status, a.Kind!.Value, a.TypeCode!.Value, a.Length!.Value, a.Lock!.Value, a.LockState!.Value, a.State!.Value));
        Assert.Equal(new FileInfo(Names.ShmPath(_prefix + "a")).Length, a.Bytes);
        Assert.Equal(Environment.ProcessId, a.CreatorPid);
        Assert.True(a.CreatorAlive);
        Assert.Contains(Environment.ProcessId, a.MappedBy);
        Assert.InRange(a.Age!.Value, TimeSpan.Zero, TimeSpan.FromMinutes(1));
        var v = found[_prefix + "v"];
        Assert.Equal((LockKind.External, _prefix + "l", LockState.Free), (v.Lock!.Value, v.LockName, v.LockState!.Value));
        var p = found[_prefix + "p"];
        Assert.Equal(("Point", LockKind.None, (LockState?)null, (long?)null), (p.ElementType, p.Lock!.Value, p.LockState, p.Recoveries));
    }

    [Fact]
    public void CorruptIsListedForeignOnlyWhenAsked()
    {
        using (SharedArray<int>.Create(_prefix + "ok", 4, new SegmentOptions { KeepOnDispose = true })) { }
        byte[] bad = File.ReadAllBytes(Names.ShmPath(_prefix + "ok"));
        bad[0x184] ^= 1; // header_crc32
        File.WriteAllBytes(Names.ShmPath(_prefix + "bad"), bad);
        File.WriteAllText(Names.ShmPath(_prefix + "text"), new string('x', 600));
        var listed = SegmentDirectory.List(prefix: _prefix).ToDictionary(i => i.Name);
        Assert.Equal(new[] { _prefix + "bad", _prefix + "ok" }, listed.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(SegmentStatus.Corrupt, listed[_prefix + "bad"].Status);
        Assert.Contains("checksum", listed[_prefix + "bad"].Reason);
        Assert.Null(listed[_prefix + "bad"].Kind);
        Assert.Equal(SegmentStatus.Ok, listed[_prefix + "ok"].Status);
        Assert.False(listed[_prefix + "ok"].CreatorAlive == false); // this process made it and lives
        var all = SegmentDirectory.List(includeForeign: true, prefix: _prefix).ToDictionary(i => i.Name);
        Assert.Equal(SegmentStatus.Foreign, all[_prefix + "text"].Status);
        Assert.Equal(600, all[_prefix + "text"].Bytes);
    }

    [Fact]
    public void InspectDecodesElementsAndReportsAHeldLockWithoutTakingIt()
    {
        using var arr = SharedArray<Point>.Create(_prefix + "p", [new Point { X = 1, Y = double.NaN }, new Point { X = -2, Y = 0.5 }]);
        var info = SegmentDirectory.Inspect(_prefix + "p", data: 5);
        Assert.Equal(2, info.Elements.Count);
        var first = Assert.IsAssignableFrom<IReadOnlyDictionary<string, object?>>(info.Elements[0]);
        Assert.Equal(1.0, first["X"]);
        Assert.Equal("NaN", first["Y"]);
        using (arr.Lock())
        {
            var held = SegmentDirectory.Inspect(_prefix + "p");
            Assert.Equal(LockState.Held, held.LockState);
            Assert.Equal(Environment.ProcessId, held.LockHolderPid);
        }
        Assert.Equal(LockState.Free, SegmentDirectory.Inspect(_prefix + "p").LockState);
        Assert.Empty(SegmentDirectory.Inspect(_prefix + "p").Elements);
    }

    [Fact]
    public void InspectOfAnUnknownNameThrows()
    {
        Assert.Throws<SegmentNotFoundException>(() => SegmentDirectory.Inspect(_prefix + "none"));
        Assert.Throws<InvalidSegmentNameException>(() => SegmentDirectory.Inspect("bad/name"));
    }
}
