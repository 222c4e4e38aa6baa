using System.Diagnostics;
using static SharedBridge.Tests.QueueTests;

namespace SharedBridge.Tests;

/// <summary>SharedQueue across real processes (TestChild): exactly-once FIFO delivery, and crashes (docs/format.md
/// section 11.3: a producer killed at any point, a consumer killed holding a zero-copy message).</summary>
public class QueueProcessTests
{
    [Fact]
    public void ProducerAndConsumerProcessesDeliverEveryMessageExactlyOnce()
    {
        const int producers = 2, consumers = 2, perProducer = 30_000;
        string name = NewName("mp");
        using var q = SharedQueue.Create(name, new QueueOptions { Capacity = 16384 });
        var readers = Enumerable.Range(0, consumers).Select(_ => Child.Start("queue-consume", name)).ToList();
        var writers = Enumerable.Range(0, producers).Select(p => Child.Start("queue-produce", name, (p + 1).ToString(), perProducer.ToString())).ToList();
        // This process produces too (producer 0).
        for (long i = 0; i < perProducer; i++) q.Write(i, Long);
        foreach (var w in writers) w.ExpectLine("done", 120_000);
        q.Complete();
        ulong count = 0, sum = 0, squares = 0;
        foreach (var r in readers)
        {
            var parts = r.ReadLine(120_000).Split(' ');
            Assert.True(parts.Length == 3, $"consumer said {string.Join(' ', parts)}; stderr: {r.Stderr}");
            count += ulong.Parse(parts[0]);
            sum = unchecked(sum + ulong.Parse(parts[1]));
            squares = unchecked(squares + ulong.Parse(parts[2]));
        }
        ulong expectedSum = 0, expectedSquares = 0;
        for (long p = 0; p <= producers; p++)
            for (long i = 0; i < perProducer; i++)
            {
                ulong v = (ulong)(p * 1_000_000_000 + i);
                expectedSum = unchecked(expectedSum + v);
                expectedSquares = unchecked(expectedSquares + v * v);
            }
        Assert.Equal((ulong)((producers + 1) * perProducer), count);
        Assert.Equal(expectedSum, sum);
        Assert.Equal(expectedSquares, squares);
        Assert.Equal(count, q.TotalRead);
        foreach (var c in readers.Concat(writers))
        {
            Assert.Equal(0, c.WaitForExit());
            c.Dispose();
        }
    }

    [Fact]
    public void ProducerKilledBeforeTheCommitLeavesNothingVisible()
    {
        using var q = SharedQueue.Create(NewName("kb"), new QueueOptions { Capacity = 4096 });
        q.Write("first");
        using (var child = Child.Start("queue-die-in-put", q.Name, "before"))
        {
            child.ExpectLine("dying");
            child.KillHard();       // with the mutex held and 64 bytes written beyond tail
        }
        Assert.Equal(1, q.Count);   // takes the lock: recovered, then made consistent
        Assert.Equal(1L, q.Unfinished);
        using (var m = q.Read(Long)) Assert.Equal("first", m.GetString());
        Assert.False(q.TryRead(out _));
        for (int i = 0; i < 200; i++)       // the ring goes on over the abandoned bytes, wrapping many times
        {
            q.Write(i);
            using var m = q.Read(Long);
            Assert.Equal(i, m.GetValue<int>());
        }
        Assert.Equal(1, LiveRecoveries(q));    // recovery_count (section 7.3)
    }

    [Fact]
    public void ProducerKilledAfterTheCommitLeavesAWholeMessage()
    {
        using var q = SharedQueue.Create(NewName("ka"), new QueueOptions { Capacity = 4096 });
        using (var child = Child.Start("queue-die-in-put", q.Name, "after"))
        {
            child.ExpectLine("dying");
            child.KillHard();       // tail stored, count / unfinished / puts not
        }
        Assert.Equal(1, q.Count);
        Assert.Equal(1L, q.Unfinished);
        using (var m = q.Read(Long)) Assert.Equal(new byte[64], m.Data.ToArray());
        Assert.False(q.TryRead(out _));
        q.TaskDone();
        q.Join(TimeSpan.Zero);
    }

    [Fact]
    public void AConsumerKilledHoldingAMessageLosesOnlyItAndWritersReclaimItsSpace()
    {
        using var q = SharedQueue.Create(NewName("kc"), new QueueOptions { Capacity = 4096 });
        var payload = new byte[900];
        for (byte i = 0; i < 4; i++)
        {
            payload[0] = i;
            Assert.True(q.TryWrite(payload));
        }
        Assert.False(q.TryWrite(payload));
        using (var child = Child.Start("queue-take-and-hold", q.Name))
        {
            child.ExpectLine("taken 900");
            using (var m = q.Read(Long)) Assert.Equal(1, m.Data[0]);   // the next one; the child's stays taken
            Assert.False(q.TryWrite(payload));                          // the head stops at the child's record
            child.KillHard();
        }
        payload[0] = 4;
        q.Write(payload, Long);                                         // reclaimed: the dead taker's record is stepped over
        var rest = new List<byte>();
        while (q.TryRead(out var m)) using (m) rest.Add(m.Data[0]);
        Assert.Equal([2, 3, 4], rest);                                  // message 0 was lost with its taker, nothing else
    }

    private static long LiveRecoveries(SharedQueue q)
    {
        using var f = File.OpenRead("/dev/shm/" + q.Name);
        var b = new byte[8];
        f.Position = 0x188;
        f.ReadExactly(b);
        return BitConverter.ToInt64(b);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ThroughputOfSmallMessagesBetweenTwoProcesses(bool batches)
    {
        // Printed, never asserted (a loaded machine): 64-byte bytes messages, this process writing, a child reading; one
        // message per call (Write / TryRead into a buffer), or batches of 64 (WriteMany / TryReadMany).
        const int count = 640_000, batch = 64;
        using var q = SharedQueue.Create(NewName("tp"));
        using var child = batches ? Child.Start("queue-drain", q.Name, count.ToString(), "many") : Child.Start("queue-drain", q.Name, count.ToString());
        child.ExpectLine("ready");
        var payload = new byte[64];
        var many = Enumerable.Repeat(new ReadOnlyMemory<byte>(payload), batch).ToArray();
        long before = GC.GetAllocatedBytesForCurrentThread();
        var watch = Stopwatch.StartNew();
        if (batches)
            for (int i = 0; i < count; i += batch) q.WriteMany(many, Long);
        else
            for (int i = 0; i < count; i++) q.Write(payload, Long);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(count.ToString(), child.ReadLine(120_000));
        watch.Stop();
        Console.WriteLine($"SharedQueue C# -> C#, 64-byte messages{(batches ? $", batches of {batch}" : "")}: " +
                          $"{count / watch.Elapsed.TotalSeconds / 1e6:0.00} million/s (loaded machine; the writer allocated {allocated} bytes)");
    }
}
