using System.Diagnostics;
using SharedBridge.Objects;
using static SharedBridge.Format.QueueLayout;

namespace SharedBridge;

// Batches (Python's put_many / get_many): several bytes messages under one acquisition of the mutex, one notify. The
// records and their order are exactly those of as many single writes or reads (docs/format.md section 11.3); only the
// lock and the cache lines of the control words are paid once per batch instead of once per message.
public sealed unsafe partial class SharedQueue
{
    // Both only change with the mutex held: a batch is running (notify once at its end), and whether its reads moved the head.
    private bool _batch, _batchHeadMoved;

    /// <summary>Writes as many of <paramref name="messages"/> (bytes messages, in order) as fit now; returns how many (a
    /// prefix of them). Messages that go out of line are written one at a time.</summary>
    /// <exception cref="QueueCompletedException">The queue was completed (before the first message).</exception>
    public int TryWriteMany(ReadOnlySpan<ReadOnlyMemory<byte>> messages)
    {
        int written = 0;
        while (written < messages.Length)
        {
            var spec = MessageSpec.Bytes(messages[written].Length);
            if (NeedsOutOfLine(spec))
            {
                if (!TryPut(spec, messages[written].Span, null)) break;
                written++;
                continue;
            }
            int batch = PutBatch(messages[written..]);
            if (batch == 0) break;
            written += batch;
        }
        return written;
    }

    /// <summary>Writes every message of <paramref name="messages"/> in order, in batches as room allows, waiting up to
    /// <paramref name="timeout"/> (null: for ever) whenever the queue is full.</summary>
    /// <exception cref="QueueTimeoutException">Still full after the timeout: the messages before the one that did not fit were
    /// written (<see cref="QueueTimeoutException"/> does not say how many: use TryWriteMany to know).</exception>
    public void WriteMany(ReadOnlySpan<ReadOnlyMemory<byte>> messages, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        TimeSpan wait = timeout ?? Timeout.InfiniteTimeSpan;
        WaitWords.CheckTimeout(wait);
        long start = Stopwatch.GetTimestamp();
        int written = 0;
        while (written < messages.Length)
        {
            written += TryWriteMany(messages[written..]);
            if (written == messages.Length) return;
            // Full: one blocking write of the next message, then batches again.
            Write(messages[written].Span, WaitWords.Left(wait, start), cancellationToken);
            written++;
        }
    }

    /// <summary>One batch under the mutex: the inline messages at the start of <paramref name="messages"/> that fit.</summary>
    private int PutBatch(ReadOnlySpan<ReadOnlyMemory<byte>> messages)
    {
        using var scope = LockChecked();
        int n = 0;
        _batch = true;
        try
        {
            for (; n < messages.Length; n++)
            {
                var spec = MessageSpec.Bytes(messages[n].Length);
                if (NeedsOutOfLine(spec)) break;
                var result = TryPutLocked(spec, messages[n].Span, null, null);
                if (result == PutResult.Full && n == 0 && ReclaimDeadTakers()) result = TryPutLocked(spec, messages[n].Span, null, null);
                if (result == PutResult.Completed && n == 0) throw CompletedError("written to");
                if (result != PutResult.Done) break;
            }
        }
        finally
        {
            _batch = false;
            if (n > 0) _r.Notify((uint)n);
        }
        return n;
    }

    /// <summary>Copies the ready bytes or string messages, in order, into <paramref name="buffer"/> one after the other
    /// while they fit and <paramref name="lengths"/> has room (their lengths go there); returns how many (section 11.3 get,
    /// under one acquisition of the mutex). Stops before a message of another type.</summary>
    /// <exception cref="ArgumentException">The next message alone is longer than <paramref name="buffer"/> (it stays in the queue).</exception>
    /// <exception cref="QueueCompletedException">The queue was completed and every message has been read.</exception>
    public int TryReadMany(Span<byte> buffer, Span<int> lengths)
    {
        using var scope = LockChecked();
        int n = 0, used = 0;
        _batch = true;
        _batchHeadMoved = false;
        try
        {
            while (n < lengths.Length && LocateReady(out ulong position, out var record))
            {
                if (record.Tag is not ((byte)QueueMessageType.Bytes or (byte)QueueMessageType.String) || record.DescLength != 0 || record.OutOfLine)
                {
                    if (n == 0 && !record.OutOfLine)
                        throw new TypeMismatchException(
                            $"The next message of queue \"{Name}\" is of type {(QueueMessageType)record.Tag}, not bytes or a string: read it with TryRead(out QueueMessage).");
                    break;      // an out-of-line message is read alone (TryRead)
                }
                if (record.DataLength > (ulong)(buffer.Length - used))
                {
                    if (n == 0)
                        throw new ArgumentException(
                            $"The next message of queue \"{Name}\" has {record.DataLength} bytes; the buffer holds {buffer.Length}. It stays in the queue.",
                            nameof(buffer));
                    break;
                }
                int length = (int)record.DataLength;
                new ReadOnlySpan<byte>(record.DataStart, length).CopyTo(buffer[used..]);
                if (record.Tag == (byte)QueueMessageType.String && !System.Text.Unicode.Utf8.IsValid(buffer.Slice(used, length)))
                {
                    Consumed(position, record, StateDone);
                    throw CorruptRecord(position, "a string message that is not valid UTF-8");
                }
                Consumed(position, record, StateDone);
                lengths[n++] = length;
                used += length;
            }
        }
        finally
        {
            _batch = false;
            if (_batchHeadMoved) _w.Notify(WaitWords.ValueMax);
        }
        if (n == 0 && U32(Completed) != 0) throw CompletedError("read from");
        return n;
    }
}
