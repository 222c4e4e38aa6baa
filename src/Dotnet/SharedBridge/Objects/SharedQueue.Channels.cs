using System.Threading.Channels;

namespace SharedBridge;

// System.Threading.Channels adapters (docs/format.md section 11, .NET API): a typed view of the queue for code written
// against ChannelReader<T> / ChannelWriter<T>. One factory per message family (values, arrays, bytes, strings): the
// element type is checked by the compiler (an unmanaged constraint), with no reflection (AOT-safe).
public sealed partial class SharedQueue
{
    /// <summary>A <see cref="ChannelReader{T}"/> of values (scalar or record messages, tags 3 and 4) over this queue: each
    /// read takes a message and copies its value; after <see cref="Complete"/> and the drain, <c>ReadAsync</c> throws
    /// <see cref="ChannelClosedException"/> and <c>Completion</c> finishes.</summary>
    public ChannelReader<T> AsChannelReader<T>() where T : unmanaged => new QueueChannelReader<T>(this, static m => m.GetValue<T>());

    /// <summary>A <see cref="ChannelWriter{T}"/> of values (tag 3 for the primitive types, 4 for structs); <c>Complete()</c>
    /// completes the queue (for every process).</summary>
    public ChannelWriter<T> AsChannelWriter<T>() where T : unmanaged =>
        new QueueChannelWriter<T>(this, static (q, v) => q.TryWrite(v), static (q, v, ct) => q.WriteAsync(v, ct));

    /// <summary>A channel reader of one-dimensional arrays (array messages, tag 5; any shape reads as its elements in C order).</summary>
    public ChannelReader<T[]> AsArrayChannelReader<T>() where T : unmanaged => new QueueChannelReader<T[]>(this, static m => m.ToArray<T>());

    /// <summary>A channel writer of one-dimensional arrays (array messages, tag 5).</summary>
    public ChannelWriter<T[]> AsArrayChannelWriter<T>() where T : unmanaged =>
        new QueueChannelWriter<T[]>(this, static (q, v) => q.TryWrite<T>(v, [v.LongLength]),
            static (q, v, ct) => q.WriteAsync<T>(v, new long[] { v.LongLength }, ct));

    /// <summary>A channel reader of byte arrays (bytes messages, tag 1: a copy of each).</summary>
    public ChannelReader<byte[]> AsBytesChannelReader() => new QueueChannelReader<byte[]>(this, static m => m.Data.ToArray());

    /// <summary>A channel writer of byte arrays (bytes messages, tag 1).</summary>
    public ChannelWriter<byte[]> AsBytesChannelWriter() =>
        new QueueChannelWriter<byte[]>(this, static (q, v) => q.TryWrite(v), static (q, v, ct) => q.WriteAsync(v, ct));

    /// <summary>A channel reader of strings (string messages, tag 2).</summary>
    public ChannelReader<string> AsStringChannelReader() => new QueueChannelReader<string>(this, static m => m.GetString());

    /// <summary>A channel writer of strings (string messages, tag 2).</summary>
    public ChannelWriter<string> AsStringChannelWriter() =>
        new QueueChannelWriter<string>(this, static (q, v) => q.TryWrite(v), static (q, v, ct) => q.WriteAsync(v, ct));

    private sealed class QueueChannelReader<T>(SharedQueue queue, Func<QueueMessage, T> read) : ChannelReader<T>
    {
        private readonly SharedQueue _queue = queue;

        public override bool CanCount => true;

        public override int Count => _queue.Count;

        public override Task Completion => _queue.Completion;

        public override bool TryRead(out T item)
        {
            try
            {
                if (_queue.TryRead(out var message))
                {
                    using (message) item = read(message);
                    return true;
                }
            }
            catch (QueueCompletedException) { }
            item = default!;
            return false;
        }

        public override ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken = default) =>
            new(_queue.WaitReadableAsync(cancellationToken));

        public override async ValueTask<T> ReadAsync(CancellationToken cancellationToken = default)
        {
            QueueMessage message;
            try
            {
                message = await _queue.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (QueueCompletedException e)
            {
                throw new ChannelClosedException(e.Message, e);
            }
            using (message) return read(message);
        }
    }

    private sealed class QueueChannelWriter<T>(SharedQueue queue, Func<SharedQueue, T, bool> tryWrite,
        Func<SharedQueue, T, CancellationToken, ValueTask> writeAsync) : ChannelWriter<T>
    {
        private readonly SharedQueue _queue = queue;

        /// <summary>Completes the queue (no more messages, for every process). <paramref name="error"/> cannot travel
        /// to other processes and is not kept.</summary>
        public override bool TryComplete(Exception? error = null) => _queue.TryComplete();

        public override bool TryWrite(T item)
        {
            try
            {
                return tryWrite(_queue, item);
            }
            catch (QueueCompletedException)
            {
                return false;
            }
        }

        public override ValueTask<bool> WaitToWriteAsync(CancellationToken cancellationToken = default) =>
            new(_queue.WaitWritableAsync(cancellationToken));

        public override async ValueTask WriteAsync(T item, CancellationToken cancellationToken = default)
        {
            try
            {
                await writeAsync(_queue, item, cancellationToken).ConfigureAwait(false);
            }
            catch (QueueCompletedException e)
            {
                throw new ChannelClosedException(e.Message, e);
            }
        }
    }
}
