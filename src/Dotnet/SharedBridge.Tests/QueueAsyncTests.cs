using System.Threading.Channels;
using static SharedBridge.Tests.QueueTests;

namespace SharedBridge.Tests;

/// <summary>SharedQueue's asynchronous reads and writes, ReadAllAsync, and the System.Threading.Channels adapters.</summary>
public class QueueAsyncTests
{
    private const int RWaiters = 4, WWaiters = 20;

    [Fact]
    public async Task ReadAsyncWaitsForAWrite()
    {
        using var q = SharedQueue.Create(NewName("ra"));
        var pending = q.ReadAsync().AsTask();
        await Task.Delay(50);
        Assert.False(pending.IsCompleted);
        Assert.Equal(1u, QueueWords.Read(q, RWaiters));
        using (var writer = SharedQueue.Open(q.Name)) await writer.WriteAsync("hi");
        using var m = await pending.WaitAsync(Long);
        Assert.Equal("hi", m.GetString());
        Assert.Equal(0u, QueueWords.Read(q, RWaiters));
    }

    [Fact]
    public async Task WriteAsyncWaitsForRoom()
    {
        using var q = SharedQueue.Create(NewName("wa"), new QueueOptions { MaxMessages = 1 });
        await q.WriteAsync(1);
        var pending = q.WriteAsync(2).AsTask();
        await Task.Delay(50);
        Assert.False(pending.IsCompleted);
        using (var m = await q.ReadAsync()) Assert.Equal(1, m.GetValue<int>());
        await pending.WaitAsync(Long);
        using (var m = await q.ReadAsync()) Assert.Equal(2, m.GetValue<int>());
        await q.WriteAsync<double>(new double[] { 1, 2, 3, 4 }, new long[] { 2, 2 });
        using (var m = await q.ReadAsync()) Assert.Equal([2L, 2L], m.Shape.ToArray());
    }

    [Fact]
    public async Task CancelledAsyncOperationsLeaveTheQueueConsistent()
    {
        using var q = SharedQueue.Create(NewName("cx"), new QueueOptions { MaxMessages = 1 });
        using (var cts = new CancellationTokenSource())
        {
            var read = q.ReadAsync(cts.Token).AsTask();
            await Task.Delay(30);
            cts.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read.WaitAsync(Long));
        }
        Assert.Equal(0u, QueueWords.Read(q, RWaiters));
        await q.WriteAsync(1);
        using (var cts = new CancellationTokenSource())
        {
            var write = q.WriteAsync(2, cts.Token).AsTask();
            await Task.Delay(30);
            cts.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => write.WaitAsync(Long));
        }
        Assert.Equal(0u, QueueWords.Read(q, WWaiters));
        Assert.Equal(1, q.Count);                    // the cancelled write wrote nothing
        using (var m = await q.ReadAsync()) Assert.Equal(1, m.GetValue<int>());
        await q.WriteAsync(3);
        using (var m = await q.ReadAsync()) Assert.Equal(3, m.GetValue<int>());
    }

    [Fact]
    public async Task CancelledOutOfLineWriteKeepsItsSegmentForReuse()
    {
        string name = NewName("cxo");
        using (var q = SharedQueue.Create(name, new QueueOptions { Capacity = 4096, MaxMessages = 1 }))
        {
            await q.WriteAsync(1);
            using var cts = new CancellationTokenSource();
            var write = q.WriteAsync(new byte[10_000], cts.Token).AsTask();
            await Task.Delay(30);
            Assert.Equal(2, Leftovers(name).Count());
            cts.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => write.WaitAsync(Long));
            Assert.Equal(1, q.Count);                   // nothing written
            // The data segment is kept for a later message of that length (section 11.5), which reuses it.
            var kept = Leftovers(name).Single(n => n != name);
            using (var m = await q.ReadAsync()) Assert.Equal(1, m.GetValue<int>());
            await q.WriteAsync(new byte[10_000]);
            Assert.Equal([name, kept], Leftovers(name).Order(StringComparer.Ordinal));
        }
        Assert.Empty(Leftovers(name));
    }

    [Fact]
    public async Task ReadAllAsyncEndsWhenCompletedAndDrained()
    {
        using var q = SharedQueue.Create(NewName("all"));
        var reading = Task.Run(async () =>
        {
            var got = new List<int>();
            using var reader = SharedQueue.Open(q.Name);
            await foreach (var m in reader.ReadAllAsync())
                using (m) got.Add(m.GetValue<int>());
            return got;
        });
        for (int i = 0; i < 100; i++) await q.WriteAsync(i);
        q.Complete();
        Assert.Equal(Enumerable.Range(0, 100), await reading.WaitAsync(Long));
        await Assert.ThrowsAsync<QueueCompletedException>(async () => await q.ReadAsync());
        await Assert.ThrowsAsync<QueueCompletedException>(async () => await q.WriteAsync(1));
    }

    [Fact]
    public async Task DisposingTheQueueEndsAPendingRead()
    {
        var q = SharedQueue.Create(NewName("disp"));
        var read = q.ReadAsync().AsTask();
        await Task.Delay(30);
        q.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => read.WaitAsync(Long));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await q.ReadAsync());
    }

    [Fact]
    public async Task ChannelsCarryTypedMessagesAndCompletion()
    {
        using var q = SharedQueue.Create(NewName("chan"));
        var writer = q.AsChannelWriter<long>();
        using var other = SharedQueue.Open(q.Name);
        var reader = other.AsChannelReader<long>();
        var consumer = Task.Run(async () =>
        {
            var got = new List<long>();
            await foreach (long v in reader.ReadAllAsync()) got.Add(v);
            return got;
        });
        for (long i = 0; i < 1000; i++) await writer.WriteAsync(i);
        Assert.True(writer.TryWrite(1000));
        writer.Complete();
        Assert.True(q.IsCompleted);
        Assert.False(writer.TryComplete());
        Assert.False(writer.TryWrite(1));
        await Assert.ThrowsAsync<ChannelClosedException>(async () => await writer.WriteAsync(1));
        Assert.Equal(Enumerable.Range(0, 1001).Select(i => (long)i), await consumer.WaitAsync(Long));
        await reader.Completion.WaitAsync(Long);
        await Assert.ThrowsAsync<ChannelClosedException>(async () => await reader.ReadAsync());
        Assert.False(reader.TryRead(out _));
        Assert.False(await reader.WaitToReadAsync());
    }

    [Fact]
    public async Task ChannelsOfStringsBytesAndArrays()
    {
        using var q = SharedQueue.Create(NewName("chan2"));
        Assert.True(await q.AsStringChannelWriter().WaitToWriteAsync());
        await q.AsStringChannelWriter().WriteAsync("s");
        await q.AsBytesChannelWriter().WriteAsync([1, 2]);
        await q.AsArrayChannelWriter<int>().WriteAsync(new[] { 3, 4, 5 });
        Assert.Equal(3, q.AsStringChannelReader().Count);
        Assert.True(await q.AsStringChannelReader().WaitToReadAsync());
        Assert.Equal("s", await q.AsStringChannelReader().ReadAsync());
        Assert.True(q.AsBytesChannelReader().TryRead(out var bytes));
        Assert.Equal(new byte[] { 1, 2 }, bytes);
        int[] array = await q.AsArrayChannelReader<int>().ReadAsync();
        Assert.Equal(new[] { 3, 4, 5 }, array);
        Assert.False(q.AsArrayChannelReader<int>().Completion.IsCompleted);
    }
}
