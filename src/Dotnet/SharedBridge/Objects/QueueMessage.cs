// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Objects;

namespace SharedBridge;

/// <summary>
/// A message taken from a <see cref="SharedQueue"/> (docs/format.md section 11.3, take): its bytes stay in the ring
/// (or in its out-of-line segment's mapping) and <see cref="Data"/> reads them without copying until
/// <see cref="Dispose"/> releases the record, which gives its ring space back to the writers. Dispose every message:
/// an undisposed one holds its ring space until this process ends (a process that ends or dies holding one loses
/// only that message; writers reclaim its space).
/// </summary>
public sealed unsafe partial class QueueMessage : IDisposable
{
    private readonly SharedQueue _queue;
    private readonly ulong _position;
    private readonly byte* _data;
    private readonly long _length;
    private readonly SharedQueue.HeldData? _outOfLine;
    private int _disposed;

    /// <summary>A message in the ring: the caller took a reference on the queue's mapping, released by Dispose.</summary>
    internal QueueMessage(SharedQueue queue, ulong position, MessageDescriptor descriptor, byte* data, long length)
    {
        _queue = queue;
        _position = position;
        Descriptor = descriptor;
        _data = data;
        _length = length;
        queue.HoldMapping();
    }

    /// <summary>An out-of-line message: the mapped data of its segment (held for it, section 11.5) belongs to it.</summary>
    internal QueueMessage(SharedQueue queue, ulong position, MessageDescriptor descriptor, SharedQueue.HeldData segment)
    {
        _queue = queue;
        _position = position;
        Descriptor = descriptor;
        _outOfLine = segment;
        _data = segment.Data;
        _length = segment.Length;
        queue.HoldMapping();
    }

    /// <summary>The validated descriptor (the codec's accessors read it).</summary>
    internal MessageDescriptor Descriptor { get; }

    /// <summary>The queue's name (for error messages).</summary>
    internal string QueueName => _queue.Name;

    /// <summary>The data's length in bytes.</summary>
    public long Length => _length;

    /// <summary>True when the message travelled out of line (a segment of its own, section 11.5).</summary>
    public bool IsOutOfLine => _outOfLine is not null;

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>The message's data bytes, read in place: valid until <see cref="Dispose"/>.</summary>
    /// <exception cref="ObjectDisposedException">The message was disposed.</exception>
    /// <exception cref="InvalidOperationException">The data is larger than a span can hold (2 GiB).</exception>
    public ReadOnlySpan<byte> Data
    {
        get
        {
            ThrowIfDisposed();
            if (_length > int.MaxValue)
                throw new InvalidOperationException(
                    $"This message of queue \"{_queue.Name}\" holds {_length} bytes, more than a span can (2 GiB - 1): read it with GetSpan<T>() of a larger T.");
            return new ReadOnlySpan<byte>(_data, (int)_length);
        }
    }

    /// <summary>The data's start (valid until Dispose; the codec's accessors only).</summary>
    internal byte* DataPointer
    {
        get
        {
            ThrowIfDisposed();
            return _data;
        }
    }

    internal void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed) != 0)
            throw new ObjectDisposedException(nameof(QueueMessage),
                $"This message of queue \"{_queue.Name}\" has been disposed: its bytes went back to the queue. Copy what you need before Dispose.");
    }

    /// <summary>Releases the record (section 11.3 release): its ring space goes back to the writers. Idempotent.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            _outOfLine?.Dispose();
            _queue.ReleaseTaken(_position);
        }
        finally
        {
            _queue.ReleaseMapping();
        }
    }
}
