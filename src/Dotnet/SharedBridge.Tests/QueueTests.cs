using System.Collections.Concurrent;
using System.Text;

namespace SharedBridge.Tests;

/// <summary>SharedQueue (docs/format.md section 11): the ring, message types, blocking, completion, task_done/join,
/// out-of-line messages and the zero-copy message's lifetime, in one process with threads.</summary>
public class QueueTests
{
    private static int s_counter;

    internal static string NewName(string tag) => $"sbt_cr_{Environment.ProcessId}_{Interlocked.Increment(ref s_counter)}_{tag}";

    internal static readonly TimeSpan Long = TimeSpan.FromSeconds(20);

    internal static IEnumerable<string> Leftovers(string name) =>
        Directory.EnumerateFiles("/dev/shm").Select(Path.GetFileName).OfType<string>().Where(n => n.StartsWith(name, StringComparison.Ordinal));

    [Fact]
    public void MessagesOfEveryTypeComeBackInOrder()
    {
        string name = NewName("types");
        using (var q = SharedQueue.Create(name))
        {
            Assert.Equal(QueueOptions.DefaultCapacity, q.Capacity);
            Assert.Equal(int.MaxValue, q.MaxMessages);
            Assert.Equal((6, 6), (q.Header.Version, q.Header.CompatVersion));
            Assert.Equal(SegmentKind.Queue, q.Header.Kind);
            Assert.True(q.TryWrite("abc"u8));
            q.Write("héllo");
            q.Write(42L);
            q.Write(2.5);
            double[] values = [1, 2, 3, 4, 5, 6];
            q.Write<double>(values, [2, 3]);
            Assert.True(q.TryWrite(ReadOnlySpan<byte>.Empty));
            Assert.Equal(6, q.Count);
            Assert.Equal(6L, q.Unfinished);

            using var other = SharedQueue.Open(name);
            using (var m = other.Read(Long))
            {
                Assert.Equal(QueueMessageType.Bytes, m.Type);
                Assert.Equal("abc"u8.ToArray(), m.Data.ToArray());
            }
            using (var m = other.Read(Long)) Assert.Equal("héllo", m.GetString());
            using (var m = other.Read(Long))
            {
                Assert.Equal(QueueMessageType.Scalar, m.Type);
                Assert.Equal('q', m.Typecode);
                Assert.Equal(42L, m.GetValue<long>());
            }
            using (var m = other.Read(Long)) Assert.Equal(2.5, m.GetValue<double>());
            using (var m = other.Read(Long))
            {
                Assert.Equal(QueueMessageType.Array, m.Type);
                Assert.Equal([2L, 3L], m.Shape.ToArray());
                Assert.Equal(values, m.ToArray<double>());
            }
            using (var m = other.Read(Long)) Assert.Equal(0, m.Data.Length);
            Assert.False(other.TryRead(out _));
            Assert.Equal(0, q.Count);
            Assert.Equal(6UL, q.TotalWritten);
            Assert.Equal(6UL, q.TotalRead);
        }
        Assert.Empty(Leftovers(name));
    }

    [Fact]
    public void ShapeMustMatchTheValuesAndStringsMustBeUtf8()
    {
        using var q = SharedQueue.Create(NewName("shape"));
        Assert.Throws<ArgumentException>(() => q.Write<int>(new int[5], [2, 3]));
        Assert.Throws<ArgumentException>(() => q.Write("a\ud800b"));
        Assert.Throws<ArgumentException>(() => q.TryWrite(new string('\ud800', 5000)));
        Assert.Equal(0, q.Count);
    }

    [Fact]
    public void CopyingReadNeedsNoMessageObject()
    {
        using var q = SharedQueue.Create(NewName("copy"));
        q.Write("0123456789"u8);
        q.Write("x");
        q.Write(7);
        Span<byte> small = stackalloc byte[4];
        var tooShort = Assert.Throws<ArgumentException>(() => q.TryRead(new byte[4], out _));
        Assert.Contains("stays in the queue", tooShort.Message);
        Span<byte> buffer = stackalloc byte[64];
        Assert.True(q.TryRead(buffer, out int n));
        Assert.Equal("0123456789", Encoding.ASCII.GetString(buffer[..n]));
        Assert.True(q.TryRead(buffer, out n));
        Assert.Equal("x", Encoding.UTF8.GetString(buffer[..n]));
        Assert.Throws<TypeMismatchException>(() => q.TryRead(new byte[64], out _));
        Assert.True(q.TryRead(out var m));
        using (m) Assert.Equal(7, m!.GetValue<int>());
        Assert.False(q.TryRead(buffer, out _));
    }

    [Fact]
    public void BatchesKeepTheOrderAndStopWhereTheyMust()
    {
        using var q = SharedQueue.Create(NewName("batch"), new QueueOptions { MaxMessages = 5 });
        var messages = Enumerable.Range(0, 8).Select(i => new ReadOnlyMemory<byte>([(byte)i, (byte)i])).ToArray();
        Assert.Equal(5, q.TryWriteMany(messages));                  // max_messages: a prefix
        var buffer = new byte[64];
        var lengths = new int[3];
        Assert.Equal(3, q.TryReadMany(buffer, lengths));
        Assert.Equal([2, 2, 2], lengths);
        Assert.Equal(new byte[] { 0, 0, 1, 1, 2, 2 }, buffer[..6]);
        q.WriteMany(messages.AsSpan(5), Long);
        lengths = new int[10];
        Assert.Equal(5, q.TryReadMany(buffer, lengths));
        Assert.Equal(new byte[] { 3, 3, 4, 4, 5, 5, 6, 6, 7, 7 }, buffer[..10]);
        q.Write(new byte[] { 8, 8 }, Long);
        q.Write(9, Long);
        Assert.Equal(1, q.TryReadMany(buffer, lengths));            // stops before the scalar
        Assert.Throws<TypeMismatchException>(() => q.TryReadMany(buffer, lengths));
        using (var m = q.Read(Long)) Assert.Equal(9, m.GetValue<int>());
        Assert.Equal(0, q.TryReadMany(buffer, lengths));
        q.Write(new byte[100], Long);
        Assert.Throws<ArgumentException>(() => q.TryReadMany(new byte[10], lengths));
        Assert.Equal(1, q.Count);
    }

    [Fact]
    public void ZeroCopyDataIsValidUntilDispose()
    {
        using var q = SharedQueue.Create(NewName("zc"));
        q.Write("payload"u8);
        var m = q.Read(Long);
        q.Dispose();                                // the message keeps the ring mapped
        Assert.Equal("payload"u8.ToArray(), m.Data.ToArray());
        m.Dispose();
        m.Dispose();                                // idempotent
        Assert.True(m.IsDisposed);
        var e = Assert.Throws<ObjectDisposedException>(() => m.Data.Length);
        Assert.Contains("Copy what you need before Dispose", e.Message);
        Assert.Equal(QueueMessageType.Bytes, m.Type);   // the descriptor stays readable
        Assert.Throws<ObjectDisposedException>(() => q.TryWrite("x"u8));
        Assert.Throws<ObjectDisposedException>(() => q.TryRead(out _));
        Assert.Throws<ObjectDisposedException>(() => q.Count);
    }

    [Fact]
    public void AMessageWithACorruptDescriptorIsConsumedAndTheNextOneIsRead()
    {
        using var q = SharedQueue.Create(NewName("baddesc"));
        q.Write(42L);                               // a scalar: its descriptor (typecode 'q', 7 zeros) at record +32
        q.Write("next");
        using (var file = new FileStream(Names.ShmPath(q.Name), FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = q.Header.DataOffset + 256 + 32;     // the first record starts at ring position 0
            file.WriteByte((byte)'x');                          // no such typecode
        }
        var e = Assert.Throws<CorruptDataException>(() => q.Read(Long));
        Assert.Contains(q.Name, e.Message);
        using var m = q.Read(Long);
        Assert.Equal("next", m.GetString());
        Assert.Equal(0, q.Count);
    }

    [Fact]
    public void TheRingWrapsAndHeldMessagesHoldTheirSpace()
    {
        using var q = SharedQueue.Create(NewName("wrap"), new QueueOptions { Capacity = 4096 });
        var payload = new byte[900];        // 932-byte records (inline up to 1024): 4 fit in 4096
        int written = 0;
        while (q.TryWrite(payload)) written++;
        Assert.Equal(4, written);
        var held = q.Read(Long);            // taken: its bytes stay in the ring
        Assert.False(q.TryWrite(payload));
        Assert.Throws<QueueTimeoutException>(() => q.Write(payload, TimeSpan.FromMilliseconds(50)));
        held.Dispose();                     // released: the head moves
        Assert.True(q.TryWrite(payload));
        for (int round = 0; round < 100; round++)
        {
            using (var m = q.Read(Long)) Assert.Equal(900, m.Data.Length);
            payload[0] = (byte)round;
            Assert.True(q.TryWrite(payload));
        }
        Assert.Equal(4, q.Count);
    }

    [Fact]
    public void MaxMessagesBoundsTheReadyMessages()
    {
        using var q = SharedQueue.Create(NewName("max"), new QueueOptions { MaxMessages = 2 });
        Assert.Equal(2, q.MaxMessages);
        Assert.True(q.TryWrite(1));
        Assert.True(q.TryWrite(2));
        Assert.False(q.TryWrite(3));
        var e = Assert.Throws<QueueTimeoutException>(() => q.Write(3, TimeSpan.FromMilliseconds(30)));
        Assert.Contains("stayed full", e.Message);
        using (q.Read(Long)) { }
        Assert.True(q.TryWrite(3));
    }

    [Fact]
    public async Task BlockedReadsAndWritesWakeUp()
    {
        using var q = SharedQueue.Create(NewName("block"), new QueueOptions { MaxMessages = 1 });
        var reader = Task.Run(() =>
        {
            using var m = q.Read(Long);
            return m.GetValue<int>();
        });
        Thread.Sleep(50);
        q.Write(5);
        Assert.Equal(5, await reader.WaitAsync(Long));
        q.Write(6);
        var writer = Task.Run(() => q.Write(7, Long));
        Thread.Sleep(50);
        Assert.False(writer.IsCompleted);
        using (var m = q.Read(Long)) Assert.Equal(6, m.GetValue<int>());
        await writer.WaitAsync(Long);
        using (var m = q.Read(Long)) Assert.Equal(7, m.GetValue<int>());
        Assert.Throws<QueueTimeoutException>(() => q.Read(TimeSpan.FromMilliseconds(20)));
        Assert.Throws<QueueTimeoutException>(() => q.Read(TimeSpan.Zero));
    }

    [Fact]
    public void CancellingABlockedReadLeavesTheQueueUsable()
    {
        using var q = SharedQueue.Create(NewName("cancel"));
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        Assert.ThrowsAny<OperationCanceledException>(() => q.Read(Long, cts.Token));
        Assert.Equal(0u, QueueWords.Read(q, 4));        // R waiters back to 0
        q.Write(1);
        using var m = q.Read(Long);
        Assert.Equal(1, m.GetValue<int>());
    }

    [Fact]
    public async Task CompletionDrainsThenFails()
    {
        using var q = SharedQueue.Create(NewName("done"));
        q.Write(1);
        q.Write(2);
        var waiting = Task.Run(() =>
        {
            using var other = SharedQueue.Open(q.Name);
            var got = new List<int>();
            try
            {
                while (true)
                    using (var m = other.Read(Long)) got.Add(m.GetValue<int>());
            }
            catch (QueueCompletedException) { }
            return got;
        });
        Assert.True(SpinWait.SpinUntil(() => q.Count == 0, Long));
        Assert.False(q.IsCompleted);
        q.Complete();
        Assert.True(q.IsCompleted);
        Assert.Equal([1, 2], await waiting.WaitAsync(Long));
        var e = Assert.Throws<QueueCompletedException>(() => q.Write(3));
        Assert.Contains("completed", e.Message);
        Assert.Throws<QueueCompletedException>(() => q.TryWrite(3));
        Assert.Throws<QueueCompletedException>(() => q.TryRead(out _));
        Assert.Throws<QueueCompletedException>(() => q.Read(Long));
    }

    [Fact]
    public async Task CompletionWakesBlockedWriters()
    {
        using var q = SharedQueue.Create(NewName("donew"), new QueueOptions { MaxMessages = 1 });
        q.Write(1);
        var writer = Task.Run(() => q.Write(2, Long));
        Thread.Sleep(50);
        q.Complete();
        await Assert.ThrowsAsync<QueueCompletedException>(() => writer.WaitAsync(Long));
        using (var m = q.Read(Long)) Assert.Equal(1, m.GetValue<int>());   // drained after completion
    }

    [Fact]
    public async Task TaskDoneAndJoin()
    {
        using var q = SharedQueue.Create(NewName("join"), new QueueOptions { Flavour = QueueFlavour.JoinableQueue });
        Assert.Equal(QueueFlavour.JoinableQueue, q.Flavour);
        q.Join(TimeSpan.Zero);
        q.Write(1);
        q.Write(2);
        Assert.Throws<QueueTimeoutException>(() => q.Join(TimeSpan.FromMilliseconds(20)));
        var joined = Task.Run(() => q.Join(Long));
        for (int i = 0; i < 2; i++)
        {
            using (q.Read(Long)) { }
            q.TaskDone();
        }
        await joined.WaitAsync(Long);
        Assert.Equal(0L, q.Unfinished);
        var e = Assert.Throws<InvalidOperationException>(() => q.TaskDone());
        Assert.Contains("too many times", e.Message);
    }

    [Theory]
    [InlineData(2000)]          // > capacity / 4 (4096-byte ring): out of line
    [InlineData(100_000)]       // > capacity
    public void LargeMessagesTravelOutOfLine(int length)
    {
        string name = NewName("ool");
        var data = new byte[length];
        Random.Shared.NextBytes(data);
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096 }))
        {
            q.Write(data);
            q.Write(new string('x', length));
            Assert.Equal(3, Leftovers(name).Count());      // the queue and two message segments
            using (var m = q.Read(Long))
            {
                Assert.True(m.IsOutOfLine);
                Assert.Equal(data, m.Data.ToArray());
            }
            var buffer = new byte[length];
            Assert.True(q.TryRead(buffer, out int n));
            Assert.Equal(new string('x', length), Encoding.UTF8.GetString(buffer, 0, n));
            // Read, but kept by their producer for later messages of the same length (format version 6, section 11.5).
            Assert.Equal(3, Leftovers(name).Count());
            q.Write(data);                                  // reuses one; left in the queue when it goes
            Assert.Equal(3, Leftovers(name).Count());
        }
        Assert.Empty(Leftovers(name));
    }

    [Fact]
    public async Task ManyThreadsDeliverEveryMessageOnceInProducerOrder()
    {
        const int producers = 3, consumers = 3, perProducer = 20_000;
        using var q = SharedQueue.Create(NewName("mt"), new QueueOptions { Capacity = 8192 });
        var seen = new ConcurrentBag<long>();
        var writers = Enumerable.Range(0, producers).Select(p => Task.Run(() =>
        {
            using var mine = SharedQueue.Open(q.Name);
            for (long i = 0; i < perProducer; i++) mine.Write(p * 1_000_000L + i, Long);
        })).ToArray();
        var readers = Enumerable.Range(0, consumers).Select(_ => Task.Run(() =>
        {
            using var mine = SharedQueue.Open(q.Name);
            var last = new long[producers];
            Array.Fill(last, -1);
            var got = new List<long>();
            try
            {
                while (true)
                {
                    using var m = mine.Read(Long);
                    long v = m.GetValue<long>();
                    int p = (int)(v / 1_000_000);
                    Assert.True(v % 1_000_000 > last[p], "FIFO per producer");
                    last[p] = v % 1_000_000;
                    got.Add(v);
                }
            }
            catch (QueueCompletedException) { }
            foreach (var v in got) seen.Add(v);
        })).ToArray();
        await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(60));
        q.Complete();
        await Task.WhenAll(readers).WaitAsync(TimeSpan.FromSeconds(60));
        var all = seen.ToArray();
        Assert.Equal(producers * perProducer, all.Length);
        Assert.Equal(all.Length, all.Distinct().Count());
        Assert.Equal(0u, QueueWords.Read(q, 4));
    }

    [Fact]
    public void OptionsAreChecked()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SharedQueue.Create(NewName("cap"), new QueueOptions { Capacity = 0 }));
        Assert.Throws<ArgumentException>(() => SharedQueue.Create(new string('a', 240)));
        using var q = SharedQueue.Create(NewName("round"), new QueueOptions { Capacity = 5000 });
        Assert.Equal(8192, q.Capacity);
        using var ev = SharedEvent.Create(NewName("ev"));
        Assert.Throws<TypeMismatchException>(() => SharedQueue.Open(ev.Name));
    }
}

/// <summary>Raw words of a queue's data area, for the tests (docs/format.md section 11.2).</summary>
internal static class QueueWords
{
    /// <summary>The u32 at <paramref name="offset"/> from data_offset, read from /dev/shm (no lock).</summary>
    internal static uint Read(SharedQueue q, int offset)
    {
        using var f = File.OpenRead("/dev/shm/" + q.Name);
        var b = new byte[4];
        f.Position = q.Header.DataOffset + offset;
        f.ReadExactly(b);
        return BitConverter.ToUInt32(b);
    }
}
