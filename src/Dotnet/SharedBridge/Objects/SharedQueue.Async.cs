using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using SharedBridge.Objects;
using SharedBridge.Format;
using static SharedBridge.Format.QueueLayout;

namespace SharedBridge;

// Asynchronous reads and writes (docs/wakeups-design.md section 6): the first attempt runs on the calling thread; when
// the operation has to wait, the process's waiter thread (AsyncWaiter) sleeps on the R or W block's seq word and runs the
// next attempt with the mutex held, taken and released on itself. A cancellation leaves the wait block (waiters back to
// what they were) with nothing taken or written.
public sealed unsafe partial class SharedQueue
{
    /// <summary>Takes the next message, waiting without occupying a thread.</summary>
    /// <exception cref="QueueCompletedException">The queue was completed and every message has been read (the task's).</exception>
    /// <exception cref="OperationCanceledException">Cancelled: nothing was taken.</exception>
    public ValueTask<QueueMessage> ReadAsync(CancellationToken cancellationToken = default) =>
        ReadAsync(Timeout.InfiniteTimeSpan, cancellationToken);

    /// <summary>Takes the next message, waiting up to <paramref name="timeout"/> without occupying a thread
    /// (<see cref="QueueTimeoutException"/> after it).</summary>
    public ValueTask<QueueMessage> ReadAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        WaitWords.CheckTimeout(timeout);
        _core.ThrowIfDisposed();
        return new ValueTask<QueueMessage>(_r.WaitAsync(timeout, cancellationToken, periodic: true, (bool expired, out QueueMessage message) =>
        {
            StepStart();
            message = TryTakeLocked()!;
            if (message is not null) return true;
            if (U32(Completed) != 0) throw CompletedError("read from");
            if (expired) throw TimeoutError(timeout, "empty");
            return false;
        }, abandon: null, () => Read(timeout, cancellationToken)));
    }

    /// <summary>Every message until the queue is completed and drained (then the sequence ends). Dispose each message.</summary>
    public async IAsyncEnumerable<QueueMessage> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (true)
        {
            QueueMessage message;
            try
            {
                message = await ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (QueueCompletedException)
            {
                yield break;
            }
            yield return message;
        }
    }

    /// <summary>Writes a bytes message, waiting for room without occupying a thread.</summary>
    public ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) =>
        PutAsync(MessageSpec.Bytes(data.Length), data, null, Timeout.InfiniteTimeSpan, cancellationToken);

    /// <summary>Writes a UTF-8 string message, waiting for room without occupying a thread.</summary>
    public ValueTask WriteAsync(string text, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(text);
        return PutAsync(MessageSpec.String(text), ReadOnlyMemory<byte>.Empty, text, Timeout.InfiniteTimeSpan,
            cancellationToken);
    }

    /// <summary>Writes one value (a scalar, tag 3, or a record, tag 4), waiting for room without occupying a thread.</summary>
    public ValueTask WriteAsync<T>(T value, CancellationToken cancellationToken = default) where T : unmanaged =>
        PutAsync(ValueSpec<T>(), new ReadOnlyMemory<T>([value]), null, Timeout.InfiniteTimeSpan, cancellationToken);

    /// <summary>Writes an n-dimensional array message (tag 5) of shape <paramref name="shape"/>, waiting for room without
    /// occupying a thread.</summary>
    public ValueTask WriteAsync<T>(ReadOnlyMemory<T> values, ReadOnlyMemory<long> shape, CancellationToken cancellationToken = default)
        where T : unmanaged =>
        PutAsync(ArraySpecOf<T>(values.Length, shape.Span), values, null, Timeout.InfiniteTimeSpan, cancellationToken);

    private ValueTask PutAsync<T>(MessageSpec spec, ReadOnlyMemory<T> values, string? text, TimeSpan timeout,
        CancellationToken cancellationToken) where T : unmanaged
    {
        WaitWords.CheckTimeout(timeout);
        _core.ThrowIfDisposed();
        OutOfLine? outOfLine = NeedsOutOfLine(spec) ? OutOfLine.Create(this, spec, MemoryMarshal.AsBytes(values.Span), text) : null;
        if (outOfLine is not null) text = null;
        Task<bool> task;
        try
        {
            task = _w.WaitAsync(timeout, cancellationToken, periodic: true, (bool expired, out bool done) =>
            {
                StepStart();
                ReadOnlySpan<byte> data = outOfLine is not null ? outOfLine.Reference : MemoryMarshal.AsBytes(values.Span);
                var result = TryPutLocked(spec, data, text, outOfLine);
                if (result == PutResult.Full && ReclaimDeadTakers()) result = TryPutLocked(spec, data, text, outOfLine);
                if (result == PutResult.Completed) throw CompletedError("written to");
                done = result == PutResult.Done;
                if (!done && expired) throw TimeoutError(timeout, "full");
                return done;
            }, abandon: null, () =>
            {
                ReadOnlySpan<byte> data = outOfLine is not null ? outOfLine.Reference : MemoryMarshal.AsBytes(values.Span);
                return PutLocked(spec, data, text, outOfLine, timeout, cancellationToken, block: true)
                    ? true : throw TimeoutError(timeout, "full");
            });
        }
        catch
        {
            outOfLine?.Finish(committed: false);
            throw;
        }
        if (outOfLine is null) return new ValueTask(task);
        return FinishOutOfLine(task, outOfLine);
    }

    /// <summary>An asynchronous step's start (mutex held): a disposed queue ends the wait (ObjectDisposedException).</summary>
    private void StepStart()
    {
        _core.ThrowIfDisposed();
        EnsureConsistent();
    }

    private static ValueTask FinishOutOfLine(Task<bool> put, OutOfLine outOfLine) =>
        new(put.ContinueWith(static (t, state) =>
        {
            ((OutOfLine)state!).Finish(committed: t.IsCompletedSuccessfully && t.Result);
            t.GetAwaiter().GetResult();     // the put's outcome: its exception or cancellation
        }, outOfLine, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default));

    /// <summary>Waits until a message is ready (true) or the queue is completed and drained (false); takes nothing.</summary>
    internal Task<bool> WaitReadableAsync(CancellationToken cancellationToken)
    {
        _core.ThrowIfDisposed();
        return _r.WaitAsync(Timeout.InfiniteTimeSpan, cancellationToken, periodic: true, (bool expired, out bool readable) =>
        {
            StepStart();
            readable = LocateReady(out _, out _);
            return readable || U32(Completed) != 0;
        }, abandon: null, () =>
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using (var scope = LockChecked())
                {
                    if (LocateReady(out _, out _)) return true;
                    if (U32(Completed) != 0) return false;
                }
                Thread.Sleep(WaitWords.Slice);
            }
        });
    }

    /// <summary>Waits until the queue is completed (false) or has room for any inline message and a free slot (true).</summary>
    internal Task<bool> WaitWritableAsync(CancellationToken cancellationToken)
    {
        _core.ThrowIfDisposed();
        return _w.WaitAsync(Timeout.InfiniteTimeSpan, cancellationToken, periodic: true, (bool expired, out bool writable) =>
        {
            StepStart();
            writable = HasRoomLocked();
            return writable || U32(Completed) != 0;
        }, abandon: null, () =>
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using (var scope = LockChecked())
                {
                    if (U32(Completed) != 0) return false;
                    if (HasRoomLocked()) return true;
                }
                Thread.Sleep(WaitWords.Slice);
            }
        });
    }

    /// <summary>Whether any message fits now (mutex held): a free slot and half the ring free (an inline record and its
    /// pad are each under a quarter of it).</summary>
    private bool HasRoomLocked()
    {
        Positions(out ulong head, out _, out ulong tail);
        if (U32(Completed) != 0) return false;
        if (U32(QueueLayout.Count) >= _maxMessages) return false;
        if (_cap - (tail - head) >= _cap / 2) return true;
        return ReclaimDeadTakers() && _cap - (U64(Tail) - U64(Head)) >= _cap / 2;
    }

    private Task? _completion;

    /// <summary>Completes when the queue is completed and drained (a channel reader's Completion).</summary>
    internal Task Completion
    {
        get
        {
            if (_completion is { } known) return known;
            var task = _r.WaitAsync(Timeout.InfiniteTimeSpan, CancellationToken.None, periodic: true, (bool expired, out bool over) =>
            {
                StepStart();
                over = U32(Completed) != 0 && !LocateReady(out _, out _);
                return over;
            }, abandon: null, () =>
            {
                while (true)
                {
                    using (var scope = LockChecked())
                        if (U32(Completed) != 0 && !LocateReady(out _, out _)) return true;
                    Thread.Sleep(WaitWords.Slice);
                }
            });
            return Interlocked.CompareExchange(ref _completion, task, null) ?? task;
        }
    }

    /// <summary><see cref="Complete"/> that says whether this call completed the queue (false: it already was).</summary>
    internal bool TryComplete()
    {
        using var scope = LockChecked();
        Positions(out _, out _, out _);
        if (U32(Completed) != 0) return false;
        U32(Completed) = 1;
        _r.Notify(WaitWords.ValueMax);
        _w.Notify(WaitWords.ValueMax);
        return true;
    }
}
