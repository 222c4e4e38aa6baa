using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SharedBridge.Tests;

/// <summary>.NET conventions (docs/api.md, "Errors in both languages" and "SharedArray as a collection and as
/// Memory"): the exceptions a .NET developer catches as BCL types, every SharedBridge exception recognizable as
/// one, and SharedArray&lt;T&gt; as an IReadOnlyList&lt;T&gt; and a Memory&lt;T&gt;.</summary>
public class DotnetConventionTests
{
    private static string Name(string tag) => Names.Unique(tag, "sbn22");

    // The BCL type each exception derives from (the table's ".NET base" column); the rest derive from
    // SharedBridgeException.
    public static readonly TheoryData<Type, Type> BclBases = new()
    {
        { typeof(SegmentNotFoundException), typeof(FileNotFoundException) },
        { typeof(SegmentExistsException), typeof(IOException) },
        { typeof(InsufficientSharedMemoryException), typeof(IOException) },
        { typeof(InvalidSegmentNameException), typeof(ArgumentException) },
        { typeof(SegmentAccessDeniedException), typeof(UnauthorizedAccessException) },
        { typeof(LockTimeoutException), typeof(TimeoutException) },
        { typeof(SegmentNotReadyException), typeof(TimeoutException) },
        { typeof(QueueTimeoutException), typeof(TimeoutException) },
    };

    [Theory]
    [MemberData(nameof(BclBases))]
    public void AnExceptionWithABclCounterpartDerivesFromIt(Type exception, Type bcl)
    {
        Assert.True(bcl.IsAssignableFrom(exception), $"{exception.Name} is not a {bcl.Name}");
        Assert.True(typeof(ISharedBridgeException).IsAssignableFrom(exception));
    }

    [Fact]
    public void EveryOtherExceptionIsASharedBridgeExceptionAndAllAreISharedBridgeException()
    {
        var withBcl = BclBases.Select(row => (Type)row[0]).ToHashSet();
        var all = typeof(SharedBridgeException).Assembly.GetExportedTypes()
            .Where(t => typeof(Exception).IsAssignableFrom(t)).ToList();
        Assert.True(all.Count >= 19);
        foreach (var t in all)
        {
            Assert.True(typeof(ISharedBridgeException).IsAssignableFrom(t), $"{t.Name} is not an ISharedBridgeException");
            if (!withBcl.Contains(t))
                Assert.True(typeof(SharedBridgeException).IsAssignableFrom(t), $"{t.Name} has no BCL base and is not a SharedBridgeException");
        }
    }

    [Fact]
    public void CatchTimeoutExceptionAroundATimedLockCatchesTheTimeout()
    {
        using var a = SharedArray<int>.Create(Name("lock"), 1);
        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var holder = new Thread(() =>
        {
            using (a.Lock())
            {
                held.Set();
                release.Wait(TimeSpan.FromSeconds(30));
            }
        });
        holder.Start();
        Assert.True(held.Wait(TimeSpan.FromSeconds(30)));
        Exception? caught = null;
        try
        {
            using (a.Lock(TimeSpan.FromMilliseconds(20))) { }
        }
        catch (TimeoutException e)
        {
            caught = e;
        }
        release.Set();
        holder.Join();
        Assert.IsType<LockTimeoutException>(caught);
        Assert.IsAssignableFrom<ISharedBridgeException>(caught);
    }

    [Fact]
    public void CatchFileNotFoundAndIOExceptionAroundOpenAndCreate()
    {
        string missing = Name("missing");
        Exception? notFound = null;
        try { SharedArray<double>.Open(missing).Dispose(); }
        catch (FileNotFoundException e) { notFound = e; Assert.Equal(missing, e.FileName); }
        Assert.IsType<SegmentNotFoundException>(notFound);
        Assert.Contains(missing, notFound!.Message);

        string name = Name("taken");
        using var first = SharedArray<double>.Create(name, 1);
        Exception? exists = null;
        try { SharedArray<double>.Create(name, 1).Dispose(); }
        catch (IOException e) { exists = e; }
        Assert.IsType<SegmentExistsException>(exists);
    }

    [Fact]
    public void CatchArgumentExceptionAroundABadNameAndTheInterfaceAroundAnything()
    {
        Exception? bad = null;
        try { SharedArray<double>.Create("bad/name", 1).Dispose(); }
        catch (ArgumentException e) { bad = e; }
        Assert.IsType<InvalidSegmentNameException>(bad);

        // One filter catches every SharedBridge error, whatever its base.
        string name = Name("kind");
        using var value = SharedValue<int>.Create(name);
        var caught = new List<Type>();
        foreach (var action in new Action[]
                 {
                     () => SharedArray<int>.Open(name).Dispose(),          // TypeMismatchException: SharedBridgeException
                     () => SharedArray<int>.Open(Name("none")).Dispose(),  // SegmentNotFoundException: FileNotFoundException
                     () => SharedArray<int>.Open("bad/name").Dispose(),    // InvalidSegmentNameException: ArgumentException
                 })
        {
            try { action(); }
            catch (Exception e) when (e is ISharedBridgeException) { caught.Add(e.GetType()); }
        }
        Assert.Equal([typeof(TypeMismatchException), typeof(SegmentNotFoundException), typeof(InvalidSegmentNameException)], caught);
    }

    [Fact]
    public void CatchTimeoutExceptionAroundAQueueRead()
    {
        using var q = SharedQueue.Create(Name("queue"));
        Exception? caught = null;
        try { q.Read(TimeSpan.FromMilliseconds(10)); }
        catch (TimeoutException e) { caught = e; }
        Assert.IsType<QueueTimeoutException>(caught);
    }

    [Fact]
    public void SharedArrayIsAReadOnlyListOfNormalizedCopies()
    {
        using var a = SharedArray<int>.Create(Name("list"), [3, 1, 4, 1, 5]);
        IReadOnlyList<int> list = a;
        Assert.Equal(5, list.Count);
        Assert.Equal(4, list[2]);
        Assert.Equal(14, a.Sum());
        Assert.Equal([1, 1, 3, 4, 5], a.Order());
        var seen = new List<int>();
        foreach (int x in a) seen.Add(x);
        Assert.Equal([3, 1, 4, 1, 5], seen);
        Assert.Throws<IndexOutOfRangeException>(() => list[5]);

        // A bool byte another process wrote as 2 arrives as true (1), as Get returns it.
        using var b = SharedArray<bool>.Create(Name("bools"), 2);
        Marshal.WriteByte(b.DataAddress, 1, 2);
        bool viaList = ((IReadOnlyList<bool>)b)[1];
        Assert.Equal((byte)1, Unsafe.As<bool, byte>(ref viaList));
        Assert.Equal([(byte)0, (byte)1], b.Select(x => Unsafe.As<bool, byte>(ref x)));

        a.Dispose();
        Assert.Throws<ObjectDisposedException>(() => a.GetEnumerator());
    }

    [Fact]
    public async Task AsMemoryIsTheMappingForMemoryApis()
    {
        string name = Name("memory");
        using var a = SharedArray<byte>.Create(name, 8);
        Memory<byte> memory = a.AsMemory();
        Assert.Equal(8, memory.Length);
        // An async API that takes Memory<T> writes straight into shared memory.
        using var source = new MemoryStream([1, 2, 3, 4, 5]);
        Assert.Equal(5, await source.ReadAsync(memory[2..]));
        Assert.Equal([0, 0, 1, 2, 3, 4, 5, 0], a.ToArray());
        a[7] = 9;
        Assert.Equal(9, memory.Span[7]);
        using var reader = SharedArray<byte>.Open(name);
        Assert.Equal(3, reader[4]);
        Assert.True(MemoryMarshal.TryGetMemoryManager<byte, MemoryManager<byte>>(memory, out _));
    }

    [Fact]
    public void MemoryOfADisposedArrayIsRefusedAndAPinKeepsTheMappingUntilReleased()
    {
        string name = Name("pin");
        var a = SharedArray<long>.Create(name, [7, 8, 9]);
        Memory<long> memory = a.AsMemory();
        MemoryHandle pin = memory[1..].Pin();
        a.Dispose();
        Assert.False(Names.Exists(name));                       // the creator's Dispose unlinked the name
        Assert.Throws<ObjectDisposedException>(() => memory.Span.Length);
        Assert.Throws<ObjectDisposedException>(() => memory.Pin());
        Assert.Throws<ObjectDisposedException>(() => a.AsMemory());
        unsafe
        {
            Assert.True(Mapped(name));                           // still mapped: the pin holds it
            Assert.Equal(8, *(long*)pin.Pointer);
        }
        pin.Dispose();
        Assert.False(Mapped(name));                              // the last reference went with the pin
    }

    private static bool Mapped(string name) =>
        File.ReadLines("/proc/self/maps").Any(line =>
            line.EndsWith(Names.ShmPath(name), StringComparison.Ordinal) ||
            line.EndsWith(Names.ShmPath(name) + " (deleted)", StringComparison.Ordinal));
}
