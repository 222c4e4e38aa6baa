using System.Diagnostics;
using System.Runtime.CompilerServices;
using SharedBridge.Format;
using SharedBridge.Objects;
using static SharedBridge.Format.QueueLayout;
using static SharedBridge.Objects.WaitWords;

namespace SharedBridge;

// Batches (Python's put_many / get_many): several bytes messages under one acquisition of the mutex, one notify. The
// records and their order are exactly those of as many single writes or reads (docs/format.md section 11.3); only the
// lock, the control words (read, checked and stored once, as nobody else changes them while the mutex is held), the head's
// advance and the notify are paid once per batch instead of once per message.
public sealed unsafe partial class SharedQueue
{
    /// <summary>Writes as many of <paramref name="messages"/> (bytes messages, in order) as fit now; returns how many (a
    /// prefix of them). Messages that go out of line are written one at a time.</summary>
    /// <exception cref="QueueCompletedException">The queue was completed (before the first message).</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void WriteMany(ReadOnlySpan<ReadOnlyMemory<byte>> messages, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        TimeSpan wait = timeout ?? Timeout.InfiniteTimeSpan;
        WaitWords.CheckTimeout(wait);
        long start = Stopwatch.GetTimestamp();
        int written = 0;
        while (written < messages.Length)
        {
            if (NeedsOutOfLine(MessageSpec.Bytes(messages[written].Length)))
            {
                Write(messages[written].Span, WaitWords.Left(wait, start), cancellationToken);     // alone
                written++;
                continue;
            }
            // As many inline messages as fit under one acquisition of the mutex; when the first does not fit, wait for
            // room as Write does, then write as many as fit.
            written = PutBatchesBlocking(messages, written, wait, start, cancellationToken, out bool done);
            if (!done) throw TimeoutError(wait, "full");
        }
    }

    /// <summary>One batch under the mutex: the inline messages at the start of <paramref name="messages"/> that fit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int PutBatch(ReadOnlySpan<ReadOnlyMemory<byte>> messages)
    {
        using var scope = LockChecked();
        return PutBatchLocked(messages);
    }

    /// <summary>Section 11.3 put, steps 1 to 4 for each of the inline bytes messages at the start of
    /// <paramref name="messages"/> that fit, step 5 once for all of them (mutex held). The control words are read and
    /// checked once: nobody else changes them while the mutex is held, and the records are exactly those of as many
    /// single puts. Throws "completed" (nothing written); returns 0 when the first message does not fit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int PutBatchLocked(ReadOnlySpan<ReadOnlyMemory<byte>> messages)
    {
        Positions(out ulong head, out _, out ulong tail);
        if (U32(Completed) != 0) throw CompletedError("written to");
        uint count = U32(QueueLayout.Count);
        ulong inlineLimit = InlineLimit;
        int n = 0;
        try
        {
            for (; n < messages.Length; n++)
            {
                ReadOnlySpan<byte> data = messages[n].Span;
                ulong size = RecordHeader + Align8((ulong)data.Length);
                if (size > inlineLimit) break;      // out of line: written alone (TryWriteMany)
                ulong o = tail & _mask;
                ulong pad = o + size > _cap ? _cap - o : 0;
                if (count >= _maxMessages || _cap - (tail - head) < size + pad)
                {
                    // Full: the space of dead takers comes back before the first message only, as a single put's.
                    if (n != 0 || !ReclaimDeadTakers()) break;
                    head = U64(Head);
                    if (count >= _maxMessages || _cap - (tail - head) < size + pad) break;
                }
                byte* rec = _ring + o;
                if (pad != 0)
                {
                    *(ulong*)rec = pad | (ulong)StatePad << 32;     // size, state 4, tag 0, flags 0, reserved 0
                    rec = _ring;
                }
                WriteRecordHeader(rec, size, (byte)QueueMessageType.Bytes, 0, 0, (ulong)data.Length);
                if (data.Length != 0)
                {
                    *(ulong*)(rec + size - 8) = 0;      // the data's zero padding
                    data.CopyTo(new Span<byte>(rec + RecordHeader, data.Length));
                }
                BeforeCommitHook?.Invoke(Name);
                tail += pad + size;
                Volatile.Write(ref U64(Tail), tail);     // the commit of this message
                AfterCommitHook?.Invoke(Name);
                count++;
            }
        }
        finally
        {
            if (n > 0) CountPuts(count, (uint)n);
        }
        return n;
    }

    /// <summary>Put's step 5 for <paramref name="n"/> committed messages (mutex held): count, unfinished (saturating),
    /// puts, and one notify of R.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void CountPuts(uint count, uint n)
    {
        U32(QueueLayout.Count) = count;
        uint unfinished = U32(QueueLayout.Unfinished);
        U32(QueueLayout.Unfinished) = unfinished > uint.MaxValue - n ? uint.MaxValue : unfinished + n;
        U64(Puts) = unchecked(U64(Puts) + n);
        _r.Notify(n);
    }

    /// <summary>One batch of the inline messages from <paramref name="written"/> on (the first of them inline), waiting for
    /// room for the first as a blocking write does (section 11.3 put, step 2). Returns the new <paramref name="written"/>;
    /// false in <paramref name="done"/> when the time ran out.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int PutBatchesBlocking(ReadOnlySpan<ReadOnlyMemory<byte>> messages, int written, TimeSpan wait, long start,
        CancellationToken cancellationToken, out bool done)
    {
        done = true;
        using var scope = LockChecked();
        int k = PutBatchLocked(messages[written..]);
        if (k > 0) return written + k;
        if (Left(wait, start) == TimeSpan.Zero)
        {
            done = false;
            return written;
        }
        _w.Join();
        try
        {
            while (true)
            {
                var left = Left(wait, start);
                if (left == TimeSpan.Zero)
                {
                    done = false;
                    return written;
                }
                _w.WaitOnce(SliceOf(left), cancellationToken);
                EnsureConsistent();
                ReclaimDeadTakers();
                k = PutBatchLocked(messages[written..]);
                if (k > 0) return written + k;
            }
        }
        finally
        {
            _w.LeaveIfHeld();
        }
    }

    /// <summary>Copies the ready bytes or string messages, in order, into <paramref name="buffer"/> one after the other
    /// while they fit and <paramref name="lengths"/> has room (their lengths go there); returns how many (section 11.3 get,
    /// under one acquisition of the mutex); 0 when the queue is empty. Stops before a message of another type, and before a
    /// message that went out of line (docs/format.md section 11.5), which is copied alone when it comes first. A message
    /// that cannot be read (a string that is not valid UTF-8, a corrupt record) ends the batch before it: the messages
    /// before it are returned, and the next read reports it (no message read is ever lost to an exception).</summary>
    /// <exception cref="ArgumentException">The next message alone is longer than <paramref name="buffer"/> (it stays in the queue).</exception>
    /// <exception cref="TypeMismatchException">The next message is not bytes or a string (it stays in the queue).</exception>
    /// <exception cref="QueueCompletedException">The queue was completed and every message has been read.</exception>
    /// <exception cref="CorruptDataException">The next message is a string that is not valid UTF-8 (it is consumed, as by
    /// a single read: docs/format.md section 11.4), or the next record is corrupt (nothing is consumed).</exception>
    /// <exception cref="CorruptSegmentException">The queue's control words disagree with its records.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int TryReadMany(Span<byte> buffer, Span<int> lengths)
    {
        using var scope = LockChecked();
        int n = ReadSomeLocked(buffer, lengths);
        if (n == 0 && U32(Completed) != 0) throw CompletedError("read from");
        return n;
    }

    /// <summary>Section 11.3 get of the ready bytes and string messages at <c>read</c> that fit (mutex held): steps 1 to 4
    /// for each, with <c>read</c>, <c>count</c> and <c>gets</c> kept in locals and stored once, then step 5 (advance head,
    /// notify W) once. The control words are read and checked once: nobody else changes them while the mutex is held.
    /// A message or record that cannot be read (a string that is not UTF-8, a corrupt record or count) met after
    /// messages were consumed ends the batch before it, unconsumed: the messages consumed are returned, and the next
    /// read meets the problem first and reports it as a single get does (section 11.4). Met first, it is reported at
    /// once, exactly as by a single get.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int GetBatchLocked(Span<byte> buffer, Span<int> lengths)
    {
        Positions(out _, out ulong read, out ulong tail);
        uint count = U32(QueueLayout.Count);
        ulong startRead = read, consumedEnd = read;
        int n = 0, used = 0;
        uint reported = 0;      // 1: the first message, consumed, is a string that is not UTF-8 (thrown, n stays 0)
        try
        {
            // Once n > 0, every check of a record comes before its consumption: whatever fails leaves read at that
            // record (or at tail), after the pads and done records skipped before it, so that FinishGets stores exactly
            // the n messages consumed.
            while (n < lengths.Length)
            {
                if (read == tail)
                {
                    if (count != 0) throw Corrupt($"count {count} with no ready record");
                    break;
                }
                uint size = SizeAt(read, tail, out byte* rec);
                byte state = rec[RecState];
                if (state != StateReady)
                {
                    if (state is not (StatePad or StateDone or StateTaken)) throw CorruptRecord(read, $"state {state} at the read position (1 to 4 expected)");
                    read += size;       // step 1
                    continue;
                }
                var record = MessageAt(read, rec, size);
                if (record.Tag is not ((byte)QueueMessageType.Bytes or (byte)QueueMessageType.String) || record.DescLength != 0 || record.OutOfLine)
                {
                    if (n == 0 && !record.OutOfLine)
                        throw new TypeMismatchException(
                            $"The next message of queue \"{Name}\" is of type {(QueueMessageType)record.Tag}, not bytes or a string: read it with TryRead(out QueueMessage).");
                    break;      // an out-of-line message is read alone (ReadSomeLocked)
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
                bool notUtf8 = record.Tag == (byte)QueueMessageType.String && !System.Text.Unicode.Utf8.IsValid(buffer.Slice(used, length));
                if (n > 0 && (notUtf8 || count == 0)) break;     // left ready: the next read reports it
                // Step 4 (first in the batch, a string that is not UTF-8 is consumed all the same, then reported:
                // section 11.4).
                rec[RecState] = StateDone;
                read += size;
                if (count == 0) throw Corrupt("a ready record while count is 0");
                consumedEnd = read;
                count--;
                if (notUtf8)
                {
                    reported = 1;       // counted in gets, as a single get of it
                    throw CorruptRecord(read - size, "a string message that is not valid UTF-8");
                }
                lengths[n++] = length;
                used += length;
            }
        }
        catch (CorruptSegmentException) when (n > 0)
        {
            // A corrupt record or count met after n messages: nothing of it was consumed (read is at it, or at tail).
            // The batch ends before it and returns the n messages; the next read reports it.
        }
        finally
        {
            if (read != startRead) FinishGets(read, consumedEnd, count, (uint)n + reported);
        }
        return n;
    }

    /// <summary>The stores of get's step 4 for <paramref name="n"/> consumed messages, and step 5 (mutex held): head
    /// advances over the records consumed (up to <paramref name="consumedEnd"/>, as after the last of them), and putters
    /// are woken if it moved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void FinishGets(ulong read, ulong consumedEnd, uint count, uint n)
    {
        if (n == 0)
        {
            U64(QueueLayout.Read) = read;   // only pads and done records were skipped: no get, head stays
            return;
        }
        U64(QueueLayout.Read) = consumedEnd;
        U32(QueueLayout.Count) = count;
        U64(Gets) = unchecked(U64(Gets) + n);
        bool moved = AdvanceHead(reclaim: false);
        if (read != consumedEnd) U64(QueueLayout.Read) = read;
        if (moved) _w.Notify(ValueMax);
    }

    /// <summary>Copies up to <paramref name="lengths"/>.Length ready bytes or string messages into <paramref name="buffer"/>
    /// as <see cref="TryReadMany"/> does, waiting up to <paramref name="timeout"/> (null: for ever) for the first one (Python's
    /// <c>get_many</c>); returns how many (at least 1). The first message may be one that went out of line: it is copied
    /// alone. A message that cannot be read (a string that is not valid UTF-8, a corrupt record) ends the batch before
    /// it: the messages before it are returned, and the next read reports it.</summary>
    /// <exception cref="QueueTimeoutException">Still empty after the timeout.</exception>
    /// <exception cref="QueueCompletedException">The queue was completed and every message has been read.</exception>
    /// <exception cref="ArgumentException">The next message alone is longer than <paramref name="buffer"/>, or
    /// <paramref name="lengths"/> is empty (the message stays in the queue).</exception>
    /// <exception cref="TypeMismatchException">The next message is not bytes or a string (it stays in the queue).</exception>
    /// <exception cref="CorruptDataException">The next message is a string that is not valid UTF-8 (it is consumed, as by
    /// a single read: docs/format.md section 11.4), or the next record is corrupt (nothing is consumed).</exception>
    /// <exception cref="CorruptSegmentException">The queue's control words disagree with its records.</exception>
    /// <exception cref="OperationCanceledException">Cancelled (nothing read; the queue stays consistent).</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int ReadMany(Span<byte> buffer, Span<int> lengths, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        if (lengths.IsEmpty) throw new ArgumentException("ReadMany needs room for at least one length.", nameof(lengths));
        TimeSpan wait = timeout ?? Timeout.InfiniteTimeSpan;
        CheckTimeout(wait);
        long start = Stopwatch.GetTimestamp();
        using var scope = LockChecked();
        int n = ReadSomeLocked(buffer, lengths);
        if (n > 0) return n;
        if (U32(Completed) != 0) throw CompletedError("read from");
        if (Left(wait, start) == TimeSpan.Zero) throw TimeoutError(wait, "empty");
        _r.Join();
        try
        {
            while (true)
            {
                var left = Left(wait, start);
                if (left == TimeSpan.Zero) throw TimeoutError(wait, "empty");
                _r.WaitOnce(SliceOf(left), cancellationToken);
                EnsureConsistent();
                n = ReadSomeLocked(buffer, lengths);
                if (n > 0) return n;
                if (U32(Completed) != 0) throw CompletedError("read from");
            }
        }
        finally
        {
            _r.LeaveIfHeld();
        }
    }

    /// <summary>A batch, or the next message alone when it went out of line (mutex held); 0 when the queue is empty.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int ReadSomeLocked(Span<byte> buffer, Span<int> lengths)
    {
        int n = GetBatchLocked(buffer, lengths);
        if (n > 0 || lengths.IsEmpty || !TryCopyLocked(buffer, out int length)) return n;
        lengths[0] = length;
        return 1;
    }
}
