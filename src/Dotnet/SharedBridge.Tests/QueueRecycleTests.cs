using System.Buffers.Binary;

namespace SharedBridge.Tests;

/// <summary>Reusable out-of-line data segments (docs/format.md section 11.5, format version 6): the producer keeps its
/// last-closer data segments and puts them in the ring again, a consumer holds one while it uses the bytes, the reaper
/// removes only the ones nobody holds and no record references, and a version-5 queue gets single-use segments.</summary>
public class QueueRecycleTests
{
    private static int s_counter;

    private static string NewName(string tag) => $"sbt_rccs_{Environment.ProcessId}_{Interlocked.Increment(ref s_counter)}_{tag}";

    private static readonly TimeSpan Long = TimeSpan.FromSeconds(20);

    /// <summary>The out-of-line data segments of queue <paramref name="queue"/> in /dev/shm now.</summary>
    private static List<string> DataNames(string queue) =>
        QueueTests.Leftovers(queue + ".m").Order(StringComparer.Ordinal).ToList();

    private static byte[] Filled(int size, byte value)
    {
        var b = new byte[size];
        Array.Fill(b, value);
        return b;
    }

    private static bool AllEqual(ReadOnlySpan<byte> data, byte value) => data.IndexOfAnyExcept(value) < 0;

    /// <summary>The first bytes of segment <paramref name="name"/>'s file: its header (and data from 0x200 on).</summary>
    private static byte[] HeadOf(string name, int count = 0x208)
    {
        using var f = new FileStream(Names.ShmPath(name), FileMode.Open, FileAccess.Read);
        var b = new byte[count];
        f.ReadExactly(b);
        return b;
    }

    private const int LifetimeOffset = 0x039;

    [Fact]
    public void AHeldMessageKeepsItsBytesWhileTheProducerWritesMoreOfTheSameSize()
    {
        string name = NewName("held");
        const int size = 64 * 1024;
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096 }))
        using (var consumer = SharedQueue.Open(name))
        {
            q.Write(Filled(size, 100));
            var held = consumer.Read(Long);
            Assert.True(held.IsOutOfLine);
            string heldName = Assert.Single(DataNames(name));
            Assert.Equal((byte)SegmentLifetime.LastCloser, HeadOf(heldName)[LifetimeOffset]);
            for (byte i = 1; i <= 10; i++)
            {
                q.Write(Filled(size, i));
                // The held message's segment, at most 16 kept by the producer (none reusable while the taken message
                // holds the head back), and the one just written.
                Assert.InRange(DataNames(name).Count, 1, 18);
                using var m = consumer.Read(Long);
                Assert.True(AllEqual(m.Data, i), $"message {i} changed");
                Assert.True(AllEqual(held.Data, 100), $"the held message changed after write {i}");
            }
            Assert.True(AllEqual(held.Data, 100));
            Assert.Contains(heldName, DataNames(name));      // held: its consumer keeps it (it does not remove the name)
            held.Dispose();
            // Nothing in flight now: the next messages go through segments the producer already has (it made no new one).
            var before = DataNames(name).ToHashSet();
            var seen = new HashSet<string>();
            for (byte i = 11; i <= 20; i++)
            {
                q.Write(Filled(size, i));
                seen.UnionWith(DataNames(name));
                using var m = consumer.Read(Long);
                Assert.True(AllEqual(m.Data, i));
            }
            Assert.Empty(seen.Except(before));
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }

    /// <summary>A producer ahead of its consumer has as many segments in flight as messages: it keeps up to 16 for reuse,
    /// and never more than 128 MiB of data (the newest always), so that huge messages pin no memory nobody reuses.</summary>
    [Fact]
    public void TheProducerKeepsSixteenSegmentsAndAtMost128MiB()
    {
        string name = NewName("bound");
        const int mib = 1 << 20, big = 48 * mib;
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 1 << 16 }))
        using (var consumer = SharedQueue.Open(name))
        {
            for (int i = 0; i < 20; i++) q.Write(Filled(mib + 4096 * i, (byte)i));      // 20 lengths: none reused
            for (int i = 0; i < 20; i++)
            {
                using var m = consumer.Read(Long);
                Assert.Equal(mib + 4096 * i, m.Data.Length);
                Assert.True(AllEqual(m.Data, (byte)i));
            }
            Assert.Equal(16, DataNames(name).Count);                // the 4 oldest were left (and removed)
            for (int i = 0; i < 3; i++)                             // 3 x 48 MiB: more than 128 MiB
            {
                q.Write(Filled(big + 4096 * i, 7));
                using var m = consumer.Read(Long);
                Assert.Equal(big + 4096 * i, m.Data.Length);
            }
            var kept = DataNames(name);
            Assert.Equal(2, kept.Count);                            // 96 MiB kept; the first 48 MiB and the small ones left
            Assert.All(kept, n => Assert.True(new FileInfo(Names.ShmPath(n)).Length > big));
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }

    [Fact]
    public void ASteadyStreamOfLargeMessagesReusesAFewSegments()
    {
        string name = NewName("steady");
        const int size = 4 << 20, count = 200;
        var data = new byte[size];
        var seen = new Dictionary<string, int>();
        int most = 0;
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 1 << 16 }))
        using (var consumer = SharedQueue.Open(name))
        {
            q.Write(Filled(size, 0));      // one message ahead of the reader all along
            for (int i = 1; i <= count; i++)
            {
                BinaryPrimitives.WriteInt32LittleEndian(data, i);
                data[size - 1] = (byte)i;
                if (i < count) q.Write(data);
                var names = DataNames(name);
                most = Math.Max(most, names.Count);
                foreach (string n in names) seen[n] = seen.GetValueOrDefault(n) + 1;
                using var m = consumer.Read(Long);
                Assert.Equal(size, m.Data.Length);
                Assert.Equal(i - 1, BinaryPrimitives.ReadInt32LittleEndian(m.Data));
                Assert.Equal((byte)(i - 1), m.Data[size - 1]);
            }
            Assert.False(consumer.TryRead(out _));
        }
        Assert.InRange(most, 1, 5);
        Assert.InRange(seen.Count, 1, 5);                       // 200 messages, a handful of segments
        Assert.Contains(seen.Values, v => v > 1);               // the same name seen again: reused
        Assert.Empty(QueueTests.Leftovers(name));
    }

    [Fact]
    public void ReapRemovesAKilledProducersKeptSegmentsButNotOneAReadyRecordReferences()
    {
        string name = NewName("reap");
        const int size = 8192;
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096 }))
        {
            using (var producer = Child.Start("queue-write-sized", name, size.ToString()))
            {
                for (int i = 1; i <= 3; i++)
                {
                    producer.WriteLine($"w {i}");
                    producer.ExpectLine("written");
                }
                var three = DataNames(name);
                Assert.Equal(3, three.Count);                   // none read yet: none reusable
                for (byte i = 1; i <= 3; i++)
                    using (var m = q.Read(Long)) Assert.True(AllEqual(m.Data, i));
                Assert.Equal(three, DataNames(name));           // kept by the producer, not removed by the consumer
                producer.WriteLine("w 9");
                producer.ExpectLine("written");
                Assert.Equal(three, DataNames(name));           // reused one of them
                producer.KillHard();
            }
            var reaped = SegmentReaper.Reap(prefix: name);
            Assert.Equal(2, reaped.Count);
            Assert.All(reaped, r =>
            {
                Assert.True(r.Removed);
                Assert.Contains("no record references, and nobody holds", r.Reason);
            });
            string referenced = Assert.Single(DataNames(name));
            Assert.Empty(SegmentReaper.Reap(prefix: name));    // the ready record keeps it for its consumer
            using (var m = q.Read(Long))
            {
                Assert.True(AllEqual(m.Data, 9));
                Assert.Equal(size, m.Data.Length);
            }
            Assert.False(Names.Exists(referenced));             // its consumer was the last to leave: it removed the name
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }

    [Theory]
    [InlineData("dispose")]     // the producer disposes its queue object
    [InlineData("exit")]        // the producer's process ends without disposing it (the exit's cleanup)
    public void AProducerThatGoesRemovesWhatItKeptButNotASegmentAReadyRecordReferences(string how)
    {
        string name = NewName("go" + how);
        const int size = 8192;
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096 }))
        {
            using (var producer = Child.Start("queue-write-sized", name, size.ToString()))
            {
                for (int i = 1; i <= 3; i++)
                {
                    producer.WriteLine($"w {i}");
                    producer.ExpectLine("written");
                }
                for (byte i = 1; i <= 2; i++)
                    using (var m = q.Read(Long)) Assert.True(AllEqual(m.Data, i));
                Assert.Equal(3, DataNames(name).Count);
                producer.WriteLine(how);
                Assert.Equal(0, producer.WaitForExit());
            }
            string ready = Assert.Single(DataNames(name));      // the read ones went with their producer
            using (var m = q.Read(Long)) Assert.True(AllEqual(m.Data, 3));
            Assert.False(Names.Exists(ready));                  // its consumer was the last to leave
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }

    [Fact]
    public void AProducerReusesTheSegmentOfAConsumerKilledWhileHoldingIt()
    {
        string name = NewName("ckill");
        const int size = 8192;
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096, MaxMessages = 1 }))
        using (var consumer = SharedQueue.Open(name))
        {
            q.Write(Filled(size, 1));
            string first = Assert.Single(DataNames(name));
            using (var child = Child.Start("queue-take-and-hold", name))
            {
                child.ExpectLine($"taken {size}");
                child.KillHard();
            }
            q.Write(Filled(size, 2));                           // head is still before the dead taker's record: a new segment
            Assert.Equal(2, DataNames(name).Count);
            // Full (max_messages 1): the put reclaims the dead taker's record; its segment stays, held by the producer.
            Assert.False(q.TryWrite(Filled(size, 3)));
            Assert.Contains(first, DataNames(name));
            using (var m = consumer.Read(Long)) Assert.True(AllEqual(m.Data, 2));
            var before = DataNames(name);
            q.Write(Filled(size, 4));
            Assert.Equal(before, DataNames(name));              // no new segment
            Assert.Equal(4, HeadOf(first)[0x200]);              // the dead consumer's segment carries the new message
            using (var m = consumer.Read(Long)) Assert.True(AllEqual(m.Data, 4));
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }

    [Fact]
    public void AVersion5QueueGetsSingleUseDataSegments()
    {
        string name = NewName("v5");
        const int size = 8192;
        using (var creator = SharedQueue.Create(name, new QueueOptions { Capacity = 4096 }))
        {
            // What a version-5 writer wrote: version = compat_version = 5 (section 6.3), the same bytes otherwise.
            using (var f = new FileStream(Names.ShmPath(name), FileMode.Open, FileAccess.ReadWrite))
            {
                var header = new byte[0x200];
                f.ReadExactly(header);
                BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(0x008), 5);
                BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(0x00A), 5);
                SegmentFiles.FixCrc(header);
                f.Position = 0;
                f.Write(header, 0, 0x188);
            }
            using var producer = SharedQueue.Open(name);
            Assert.Equal((5, 5), (producer.Header.Version, producer.Header.CompatVersion));
            for (byte i = 1; i <= 3; i++)
            {
                producer.Write(Filled(size, i));
                string data = Assert.Single(DataNames(name));
                Assert.Equal((byte)SegmentLifetime.Persistent, HeadOf(data)[LifetimeOffset]);
                using (var m = producer.Read(Long)) Assert.True(AllEqual(m.Data, i));
                Assert.Empty(DataNames(name));                  // single-use: its consumer removed it
            }
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }

    [Fact]
    public void ADataSegmentOfAnotherLifetimeIsCorruptDataAndTheQueueGoesOn()
    {
        string name = NewName("lt");
        const int size = 8192;
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096 }))
        using (var consumer = SharedQueue.Open(name))
        {
            q.Write(Filled(size, 1));
            string data = Assert.Single(DataNames(name));
            // A peer rewrote its lifetime to creator (0): only last-closer and persistent are data segments (section 11.5).
            using (var f = new FileStream(Names.ShmPath(data), FileMode.Open, FileAccess.ReadWrite))
            {
                var header = new byte[0x200];
                f.ReadExactly(header);
                header[LifetimeOffset] = (byte)SegmentLifetime.Creator;
                SegmentFiles.FixCrc(header);
                f.Position = 0;
                f.Write(header, 0, 0x188);
            }
            var e = Assert.Throws<CorruptDataException>(() => consumer.Read(Long));
            Assert.Contains("lifetime", e.Message);
            q.Write("next");
            using (var m = consumer.Read(Long)) Assert.Equal("next", m.GetString());
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }

    [Fact]
    public void CopyingReadsLeaveTheSegmentAtOnceAndDisposeLeavesNothing()
    {
        string name = NewName("copy");
        const int size = 8192;
        var buffer = new byte[size];
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096 }))
        {
            for (byte i = 1; i <= 5; i++)
            {
                q.Write(Filled(size, i));
                Assert.True(q.TryRead(buffer, out int written));
                Assert.Equal(size, written);
                Assert.True(AllEqual(buffer, i));
                Assert.Single(DataNames(name));                 // one segment, reused after each copy
            }
            q.Write(Filled(size, 7));                           // still ready when the queue goes
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }

    // ---- a consumer keeps the reusable segments it meets mapped (section 11.5; Python's MappedCache) ----

    /// <summary>The mappings (/proc/self/maps) and descriptors (/proc/self/fd) of queue <paramref name="queue"/>'s data
    /// segments in this process, by name. A SharedQueue holds one of each per segment it keeps: its producer's pool and,
    /// as a consumer, the ones it keeps mapped; nothing else once its messages are disposed.</summary>
    private static Dictionary<string, int> HeldHere(string queue)
    {
        string prefix = Names.ShmPath(queue) + ".m";
        var found = new Dictionary<string, int>();
        void Count(string target)
        {
            string n = Path.GetFileName(target.Split(' ')[0]);
            found[n] = found.GetValueOrDefault(n) + 1;
        }
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            int at = line.IndexOf(prefix, StringComparison.Ordinal);
            if (at >= 0) Count(line[at..]);
        }
        foreach (string fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target = null;
            try { target = new FileInfo(fd).LinkTarget; }
            catch (IOException) { }
            if (target is not null && target.StartsWith(prefix, StringComparison.Ordinal)) Count(target);
        }
        return found;
    }

    private static int HeldCount(string queue) => HeldHere(queue).Values.Sum();

    /// <summary>A message of <paramref name="size"/> bytes that says which one it is: its number, then bytes that depend on it.</summary>
    private static byte[] Numbered(int size, int seq)
    {
        var b = new byte[size];
        for (int k = 8; k < size; k += 4096) b[k] = (byte)(seq * 7 + k / 4096);
        b.AsSpan(size - 8).Fill((byte)~seq);
        BinaryPrimitives.WriteInt32LittleEndian(b, seq);
        return b;
    }

    [Theory]
    [InlineData("take")]        // Read: a QueueMessage that maps the bytes
    [InlineData("copy")]        // TryRead(Span): copied out while held
    public void AConsumerKeepsTheReusedSegmentsMappedAndEveryMessageArrivesIntact(string how)
    {
        string name = NewName("keep" + how);
        const int size = (1 << 20) + 8, count = 60;
        var buffer = new byte[size];
        var seen = new HashSet<string>();
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 1 << 16 }))
        {
            using (var consumer = SharedQueue.Open(name))
            {
                q.Write(Numbered(size, 0));     // one ahead of the reader all along: the producer rotates through a few
                for (int i = 0; i < count; i++)
                {
                    if (i + 1 < count) q.Write(Numbered(size, i + 1));
                    var expected = Numbered(size, i);
                    if (how == "take")
                    {
                        using var m = consumer.Read(Long);
                        Assert.True(m.IsOutOfLine);
                        Assert.True(m.Data.SequenceEqual(expected), $"message {i} is not what was written");
                    }
                    else
                    {
                        Assert.True(consumer.TryRead(buffer, out int written));
                        Assert.Equal(size, written);
                        Assert.True(buffer.AsSpan().SequenceEqual(expected), $"message {i} is not what was written");
                    }
                    var pooled = DataNames(name);
                    seen.UnionWith(pooled);
                    // Kept mapped between messages (but not locked: the producer reused them all along): a mapping and a
                    // descriptor for each, besides the producer's own.
                    var kept = consumer.MappedDataSegmentNames;
                    Assert.InRange(kept.Count, 1, SharedQueue.MappedCacheSize);
                    Assert.Subset(pooled.ToHashSet(), kept.ToHashSet());
                    Assert.Equal(2 * (pooled.Count + kept.Count), HeldCount(name));
                }
                Assert.InRange(seen.Count, 1, 5);                           // reused: a handful of segments for 60 messages
                Assert.Equal(seen.Count, consumer.MappedDataSegmentNames.Count);
            }
            // The consumer's Dispose leaves nothing mapped, open or locked: only the producer's own are left, and it is now
            // the last to leave them all.
            Assert.Equal(seen.Order(StringComparer.Ordinal), DataNames(name));
            Assert.Equal(2 * seen.Count, HeldCount(name));
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }

    [Fact]
    public void AConsumerKeepsTheSegmentsOfAProducerInAnotherProcessWhichRemovesThemWhenItGoes()
    {
        string name = NewName("keepx");
        const int size = 1 << 20;
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 1 << 16 }))
        {
            using (var producer = Child.Start("queue-write-sized", name, size.ToString()))
            {
                for (int i = 1; i <= 40; i++)
                {
                    producer.WriteLine($"w {i}");
                    producer.ExpectLine("written");
                    using (var m = q.Read(Long)) Assert.True(AllEqual(m.Data, (byte)i), $"message {i} changed");
                    Assert.Equal(q.MappedDataSegmentNames.Order(StringComparer.Ordinal), HeldHere(name).Keys.Order(StringComparer.Ordinal));
                }
                string kept = Assert.Single(q.MappedDataSegmentNames);     // one message at a time: one segment, reused
                Assert.Equal(2, HeldHere(name)[kept]);                      // its mapping and its descriptor
                producer.WriteLine("dispose");
                Assert.Equal(0, producer.WaitForExit());
            }
            // The producer was the last to leave (the consumer holds no lock between messages): it removed the segment.
            Assert.Empty(DataNames(name));
            q.Write(Filled(size, 99));      // a new segment of this process; the dead one's mapping is dropped in time
            using (var m = q.Read(Long)) Assert.True(AllEqual(m.Data, 99));
        }
        Assert.Empty(HeldHere(name));
        Assert.Empty(QueueTests.Leftovers(name));
    }

    /// <summary>Between two messages that reference the same data segment, its name was removed and made again by someone
    /// else. The kept mapping is never read as the new object: the message gets what an uncached open gets, the new
    /// object's bytes when it is a copy that matches the reference, corrupt data when it is another object.</summary>
    [Theory]
    [InlineData("copy")]        // a byte copy of the segment (the same header words), other data bytes
    [InlineData("other")]       // another segment under that name (another created_unix_ns)
    [InlineData("retired")]     // not replaced but retired (state 2), as a last closer leaves it
    public void ADataSegmentReplacedOrRetiredBetweenTwoMessagesIsOpenedAfresh(string how)
    {
        string name = NewName("swap" + how);
        const int size = (1 << 20) + 8;
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 1 << 16 }))
        using (var consumer = SharedQueue.Open(name))
        {
            q.Write(Filled(size, 1));
            using (var m = consumer.Read(Long)) Assert.True(AllEqual(m.Data, 1));
            string data = Assert.Single(DataNames(name));
            Assert.Equal([data], consumer.MappedDataSegmentNames);
            q.Write(Filled(size, 2));                           // reused: the record references the same name again
            Assert.Equal([data], DataNames(name));
            string path = Names.ShmPath(data);
            SharedArray<byte>? stranger = null;
            try
            {
                switch (how)
                {
                    case "copy":
                    {
                        var bytes = File.ReadAllBytes(path);
                        File.Delete(path);
                        bytes.AsSpan(0x200, size).Fill(0xEE);
                        using var f = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
                        f.Write(bytes);
                        break;
                    }
                    case "other":
                        File.Delete(path);
                        stranger = SharedArray<byte>.Create(data, size);
                        break;
                    default:
                        using (var f = new FileStream(path, FileMode.Open, FileAccess.Write))
                        {
                            f.Position = 0x180;                 // state (docs/format.md section 3.2)
                            f.Write([2, 0, 0, 0]);
                        }
                        break;
                }
                if (how == "copy")
                {
                    using var m = consumer.Read(Long);
                    Assert.True(AllEqual(m.Data, 0xEE), "the old object's kept mapping was read for the new object");
                }
                else
                {
                    var e = Assert.Throws<CorruptDataException>(() => consumer.Read(Long));
                    Assert.Contains(how == "other" ? "is another object" : "which is gone", e.Message);
                }
                // The old object's kept mapping is closed (a copy read afresh was left by its last closer, this consumer).
                Assert.DoesNotContain(data, consumer.MappedDataSegmentNames);
                // The queue goes on, through a segment the producer can still reuse or a new one.
                q.Write(Filled(size, 3));
                using (var m = consumer.Read(Long)) Assert.True(AllEqual(m.Data, 3));
            }
            finally
            {
                stranger?.Dispose();
            }
        }
        Assert.Empty(HeldHere(name));
        Assert.Empty(QueueTests.Leftovers(name));
    }

    [Fact]
    public void AMessageHeldPastTheConsumersDisposeKeepsItsBytesAndThenLeavesNothing()
    {
        string name = NewName("keephold");
        const int size = 1 << 20;
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 1 << 16 }))
        {
            var consumer = SharedQueue.Open(name);
            q.Write(Filled(size, 1));
            using (var m = consumer.Read(Long)) Assert.True(AllEqual(m.Data, 1));
            q.Write(Filled(size, 2));
            var held = consumer.Read(Long);
            consumer.Dispose();
            Assert.True(AllEqual(held.Data, 2));
            Assert.Equal(2 * DataNames(name).Count + 2, HeldCount(name));  // the producer's, and the held message's
            held.Dispose();
            Assert.Equal(2 * DataNames(name).Count, HeldCount(name));      // the producer's only
        }
        Assert.Empty(QueueTests.Leftovers(name));
    }
}
