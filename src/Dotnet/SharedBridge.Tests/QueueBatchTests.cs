namespace SharedBridge.Tests;

/// <summary>SharedQueue batches (docs/format.md section 11.3: a batch is exactly as many single puts or gets):
/// TryWriteMany / WriteMany, TryReadMany / ReadMany, in one process with threads.</summary>
public class QueueBatchTests
{
    private static int s_counter;

    private static string NewName(string tag) => $"sbt_csb_{Environment.ProcessId}_{Interlocked.Increment(ref s_counter)}_{tag}";

    private static readonly TimeSpan Long = QueueTests.Long;

    /// <summary>Message i: i % 97 bytes of value i (lengths 0 to 96, so records of 32 to 128 bytes and pads at the wrap).</summary>
    private static byte[] Message(int i) => Enumerable.Repeat((byte)i, i % 97).ToArray();

    /// <summary>The segment's data area (control words and ring), read from /dev/shm.</summary>
    private static byte[] DataArea(SharedQueue q) => File.ReadAllBytes("/dev/shm/" + q.Name)[(int)q.Header.DataOffset..];

    [Fact]
    public void BatchesLeaveTheRingAndWordsExactlyAsSingleWritesAndReads()
    {
        using var single = SharedQueue.Create(NewName("one"), new QueueOptions { Capacity = 4096 });
        using var batch = SharedQueue.Create(NewName("many"), new QueueOptions { Capacity = 4096 });
        var buffer = new byte[4096];
        var copy = new byte[128];
        var lengths = new int[64];
        int next = 0, read = 0;
        for (int round = 0; round < 60; round++)
        {
            // Rounds of 1 to 20 messages through the wraps of the ring (pads), every length from 0 to 96.
            int size = round % 20 + 1;
            var messages = Enumerable.Range(next, size).Select(i => new ReadOnlyMemory<byte>(Message(i))).ToArray();
            Assert.Equal(size, batch.TryWriteMany(messages));
            foreach (var m in messages) Assert.True(single.TryWrite(m.Span));
            next += size;
            Assert.Equal(DataArea(single), DataArea(batch));
            int take = Math.Max(1, size + (round % 3 == 0 ? -1 : round % 3 == 1 ? 1 : 0));     // now and then one stays
            int got = batch.TryReadMany(buffer, lengths.AsSpan(0, take));
            for (int k = 0, offset = 0; k < got; offset += lengths[k], k++, read++)
            {
                Assert.Equal(Message(read), buffer.AsSpan(offset, lengths[k]).ToArray());
                Assert.True(single.TryRead(copy, out int n));
                Assert.Equal(lengths[k], n);
            }
            Assert.Equal(DataArea(single), DataArea(batch));
        }
        Assert.Equal((single.Count, single.Unfinished, single.TotalWritten, single.TotalRead),
            (batch.Count, batch.Unfinished, batch.TotalWritten, batch.TotalRead));
        Assert.Equal((ulong)next, batch.TotalWritten);
    }

    [Fact]
    public void TryReadManyCopiesAnOutOfLineMessageAloneInsteadOfSayingEmpty()
    {
        string name = NewName("ool");
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096 }))
        {
            var large = Enumerable.Range(0, 2000).Select(i => (byte)i).ToArray();     // above capacity / 4: out of line
            q.WriteMany([new byte[] { 1 }, large, new byte[] { 2 }, new byte[] { 3 }], Long);
            var buffer = new byte[4096];
            var lengths = new int[8];
            Assert.Equal(1, q.TryReadMany(buffer, lengths));     // stops before the out-of-line message
            Assert.Equal(1, q.TryReadMany(buffer, lengths));     // which comes alone (it was 0: "empty")
            Assert.Equal(large, buffer[..lengths[0]]);
            Assert.Equal(2, q.TryReadMany(buffer, lengths));
            Assert.Equal(new byte[] { 2, 3 }, buffer[..2]);
            Assert.Equal(0, q.TryReadMany(buffer, lengths));
        }
        Assert.Empty(QueueTests.Leftovers(name));     // the queue and its out-of-line segment
    }

    [Fact]
    public async Task ReadManyWaitsForTheFirstMessageThenTakesWhatIsReady()
    {
        using var q = SharedQueue.Create(NewName("wait"));
        var buffer = new byte[256];
        var lengths = new int[4];
        Assert.Throws<QueueTimeoutException>(() => q.ReadMany(buffer, lengths, TimeSpan.Zero));
        Assert.Throws<QueueTimeoutException>(() => q.ReadMany(buffer, lengths, TimeSpan.FromMilliseconds(20)));
        Assert.Throws<ArgumentException>(() => q.ReadMany(buffer, Span<int>.Empty, Long));
        var reader = Task.Run(() => q.ReadMany(buffer, lengths, Long));
        Thread.Sleep(50);
        Assert.False(reader.IsCompleted);
        q.Write("ab"u8);
        Assert.Equal(1, await reader.WaitAsync(Long));
        Assert.Equal("ab"u8.ToArray(), buffer[..2]);
        q.WriteMany([new byte[] { 1 }, new byte[] { 2, 2 }, new byte[] { 3 }, new byte[] { 4 }, new byte[] { 5 }], Long);
        Assert.Equal(4, q.ReadMany(buffer, lengths, Long));
        Assert.Equal([1, 2, 1, 1], lengths);
        q.Write(6);
        Assert.Equal(1, q.ReadMany(buffer, lengths, Long));                  // up to the scalar
        Assert.Throws<TypeMismatchException>(() => q.ReadMany(buffer, lengths, Long));
        using (var m = q.Read(Long)) Assert.Equal(6, m.GetValue<int>());
        using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50)))
            Assert.ThrowsAny<OperationCanceledException>(() => q.ReadMany(buffer, lengths, Long, cts.Token));
        Assert.Equal(0u, QueueWords.Read(q, 4));        // R waiters back to 0
        q.Write("x"u8);
        q.Complete();
        Assert.Equal(1, q.ReadMany(buffer, lengths, Long));                  // drains, then completion
        Assert.Throws<QueueCompletedException>(() => q.ReadMany(buffer, lengths, Long));
    }

    [Fact]
    public async Task WriteManyWaitsForRoomAndEveryMessageArrivesInOrder()
    {
        using var q = SharedQueue.Create(NewName("room"), new QueueOptions { Capacity = 4096, MaxMessages = 5 });
        const int total = 3000;
        var writer = Task.Run(() =>
        {
            for (int i = 0; i < total; i += 50)
                q.WriteMany(Enumerable.Range(i, 50).Select(k => new ReadOnlyMemory<byte>(Message(k))).ToArray(), Long);
        });
        var buffer = new byte[4096];
        var lengths = new int[7];
        int read = 0;
        while (read < total)
        {
            int got = q.ReadMany(buffer, lengths, Long);
            for (int k = 0, offset = 0; k < got; offset += lengths[k], k++, read++)
                Assert.Equal(Message(read), buffer.AsSpan(offset, lengths[k]).ToArray());
        }
        await writer.WaitAsync(Long);
        Assert.Equal(((ulong)total, (ulong)total, (long)total, 0), (q.TotalWritten, q.TotalRead, q.Unfinished, q.Count));
        Assert.Equal(0u, QueueWords.Read(q, 20));       // W waiters back to 0
        q.Write("x"u8);
        var e = Assert.Throws<QueueTimeoutException>(() =>
            q.WriteMany(Enumerable.Range(0, 10).Select(k => new ReadOnlyMemory<byte>(Message(k))).ToArray(), TimeSpan.FromMilliseconds(30)));
        Assert.Contains("stayed full", e.Message);
        Assert.Equal(5, q.Count);                       // the messages that fitted were written
    }

    [Fact]
    public void AProducerKilledInsideABatchLeavesTheMessagesItCommitted()
    {
        using var q = SharedQueue.Create(NewName("kill"), new QueueOptions { Capacity = 4096 });
        using (var child = Child.Start("queue-die-in-write-many", q.Name, "3"))
        {
            child.ExpectLine("dying");
            child.KillHard();       // three messages committed (tail stored), the batch's count / unfinished / puts not
        }
        Assert.Equal(3, q.Count);   // takes the lock: recovered, then made consistent (section 11.3, repair)
        Assert.Equal(3L, q.Unfinished);
        var buffer = new byte[1024];
        var lengths = new int[16];
        Assert.Equal(3, q.ReadMany(buffer, lengths, Long));
        for (int i = 0; i < 3; i++) Assert.Equal(Enumerable.Repeat((byte)i, 64), buffer.AsSpan(64 * i, 64).ToArray());
        Assert.Throws<QueueTimeoutException>(() => q.ReadMany(buffer, lengths, TimeSpan.Zero));
        q.WriteMany([new byte[] { 7 }], Long);      // the ring goes on over the abandoned bytes
        Assert.Equal(1, q.ReadMany(buffer, lengths, Long));
        Assert.Equal(7, buffer[0]);
    }

    /// <summary>Overwrites bytes of the segment's data area (control words at 0, the ring at 256) in /dev/shm, as a buggy
    /// or hostile peer would.</summary>
    private static void Poke(SharedQueue q, long offset, params byte[] bytes)
    {
        using var file = new FileStream(Names.ShmPath(q.Name), FileMode.Open, FileAccess.ReadWrite);
        file.Position = q.Header.DataOffset + offset;
        file.Write(bytes);
    }

    private const int Ring = 256;

    /// <summary>"a", "b", a string message (tag 2) whose bytes are not UTF-8, "c": four 40-byte records at ring positions
    /// 0, 40, 80 and 120.</summary>
    private static SharedQueue QueueWithBadTextThird()
    {
        var q = SharedQueue.Create(NewName("utf8"), new QueueOptions { Capacity = 4096 });
        q.Write("a");
        q.Write("b");
        q.Write(new byte[] { 0xFF, 0xFE });     // written as bytes (tag 1) ...
        q.Write("c");
        Poke(q, Ring + 80 + 5, (byte)QueueMessageType.String);     // ... then its tag says string
        return q;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AStringThatIsNotUtf8EndsTheBatchBeforeItAndTheNextReadReportsIt(bool blocking)
    {
        using var q = QueueWithBadTextThird();
        var buffer = new byte[256];
        var lengths = new int[8];
        int Read() => blocking ? q.ReadMany(buffer, lengths, Long) : q.TryReadMany(buffer, lengths);
        Assert.Equal(2, Read());                     // "a" and "b" are returned, not lost
        Assert.Equal("ab"u8.ToArray(), buffer[..2]);
        Assert.Equal([1, 1], lengths[..2]);
        Assert.Equal((2, 2UL), (q.Count, q.TotalRead));      // the bad message stays, ready
        var e = Assert.Throws<CorruptDataException>(() => Read());
        Assert.Contains("UTF-8", e.Message);
        Assert.Equal((1, 3UL), (q.Count, q.TotalRead));      // reported and consumed, as a single read does
        Assert.Equal(1, Read());
        Assert.Equal((byte)'c', buffer[0]);
        Assert.Equal((0, 4UL, 4UL), (q.Count, q.TotalWritten, q.TotalRead));
        Assert.Equal(0, q.TryReadMany(buffer, lengths));
    }

    [Fact]
    public void AStringThatIsNotUtf8FirstInABatchIsConsumedAndReportedAsASingleRead()
    {
        using var q = QueueWithBadTextThird();
        var buffer = new byte[256];
        var lengths = new int[2];
        Assert.Equal(2, q.TryReadMany(buffer, lengths));
        Assert.Throws<CorruptDataException>(() => q.TryReadMany(buffer, lengths));
        Assert.True(q.TryRead(buffer, out int n));
        Assert.Equal((1, (byte)'c'), (n, buffer[0]));
        Assert.Equal((0, 4UL), (q.Count, q.TotalRead));
    }

    [Fact]
    public void TryReadMeetsTheBadStringABatchStoppedBefore()
    {
        using var q = QueueWithBadTextThird();
        var buffer = new byte[256];
        var lengths = new int[8];
        Assert.Equal(2, q.TryReadMany(buffer, lengths));
        Assert.Throws<CorruptDataException>(() => q.TryRead(buffer, out _));
        Assert.True(q.TryRead(out var m));
        using (m) Assert.Equal("c", m.GetString());
        Assert.Equal((0, 4UL), (q.Count, q.TotalRead));
    }

    /// <summary>A corrupt record header at ring position 80, after two good messages: the byte at <paramref name="field"/>
    /// of the record becomes <paramref name="value"/>.</summary>
    [Theory]
    [InlineData(0, 7)]          // size: not a multiple of 8 (SizeAt)
    [InlineData(0, 24)]         // size: too small for a message (MessageAt)
    [InlineData(4, 9)]          // state 9
    [InlineData(5, 0)]          // tag 0
    [InlineData(6, 0x80)]       // flags
    [InlineData(8, 0x10)]       // desc_length beyond the record
    public void ACorruptRecordAfterGoodMessagesEndsTheBatchBeforeIt(int field, byte value)
    {
        foreach (bool blocking in new[] { false, true })
        {
            using var q = SharedQueue.Create(NewName("hdr"), new QueueOptions { Capacity = 4096 });
            q.WriteMany([new byte[] { 1 }, new byte[] { 2 }, new byte[] { 3 }, new byte[] { 4 }], Long);
            Poke(q, Ring + 80 + field, value);
            var buffer = new byte[256];
            var lengths = new int[8];
            int Read() => blocking ? q.ReadMany(buffer, lengths, Long) : q.TryReadMany(buffer, lengths);
            Assert.Equal(2, Read());
            Assert.Equal(new byte[] { 1, 2 }, buffer[..2]);
            Assert.Equal((2UL, 4UL), (q.TotalRead, q.TotalWritten));
            Assert.ThrowsAny<CorruptSegmentException>(() => Read());
            Assert.ThrowsAny<CorruptSegmentException>(() => Read());     // a corrupt header: nothing after it is trusted
            Assert.Equal(2UL, q.TotalRead);
        }
    }

    [Fact]
    public void ACountWithNoReadyRecordAfterGoodMessagesEndsTheBatchBeforeIt()
    {
        using var q = SharedQueue.Create(NewName("cnt"), new QueueOptions { Capacity = 4096 });
        q.WriteMany([new byte[] { 1 }, new byte[] { 2 }, new byte[40]], Long);     // records at 0, 40 and 80 (72 bytes)
        Poke(q, Ring + 80 + 4, 3);          // the third is done, but count still says 3
        var buffer = new byte[256];
        var lengths = new int[8];
        Assert.Equal(2, q.TryReadMany(buffer, lengths));
        Assert.Equal(new byte[] { 1, 2 }, buffer[..2]);
        var e = Assert.ThrowsAny<CorruptSegmentException>(() => q.TryReadMany(buffer, lengths));
        Assert.Contains("count 1", e.Message);       // the words' check (read is at tail now) or the walk's
        Assert.Equal(2UL, q.TotalRead);
    }

    [Fact]
    public void AReadyRecordWhileCountIsZeroAfterGoodMessagesEndsTheBatchBeforeIt()
    {
        using var q = SharedQueue.Create(NewName("cnt0"), new QueueOptions { Capacity = 4096 });
        q.WriteMany([new byte[] { 1 }, new byte[] { 2 }, new byte[] { 3 }], Long);
        Poke(q, 48, 2, 0, 0, 0);            // count 2 for three ready records
        var buffer = new byte[256];
        var lengths = new int[8];
        Assert.Equal(2, q.ReadMany(buffer, lengths, Long));
        Assert.Equal(new byte[] { 1, 2 }, buffer[..2]);
        var e = Assert.ThrowsAny<CorruptSegmentException>(() => q.ReadMany(buffer, lengths, Long));
        Assert.Contains("while count is 0", e.Message);
        Assert.Equal(2UL, q.TotalRead);
    }

    [Fact]
    public void ATakenRecordAtTheReadPositionIsPassedOverAsPythonDoes()
    {
        // docs/format.md section 11.3 get step 1: a taker that died between its stores of step 4 left state 2 at read.
        using var q = SharedQueue.Create(NewName("taken"), new QueueOptions { Capacity = 4096 });
        q.WriteMany([new byte[] { 1 }, new byte[] { 2 }, new byte[] { 3 }], Long);
        Poke(q, Ring + 4, 2);
        Poke(q, 48, 2, 0, 0, 0);            // count 2: the taken one is no longer ready
        var buffer = new byte[256];
        var lengths = new int[8];
        Assert.True(q.TryRead(buffer, out int length));
        Assert.Equal(new byte[] { 2 }, buffer[..length]);
        Assert.Equal(1, q.TryReadMany(buffer, lengths));
        Assert.Equal(3, buffer[0]);
        Assert.Equal(0, q.Count);
    }
}
