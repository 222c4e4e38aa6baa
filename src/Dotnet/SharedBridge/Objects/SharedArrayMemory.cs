using System.Buffers;

namespace SharedBridge.Objects;

/// <summary>
/// The <see cref="MemoryManager{T}"/> behind <see cref="SharedArray{T}.AsMemory"/>: a <see cref="Memory{T}"/> over
/// the array's own mapping, with the array's lifetime rules (docs/api.md, "SharedArray as a collection and as
/// Memory"). <see cref="GetSpan"/> and <see cref="Pin"/> refuse a disposed array (ObjectDisposedException), so a
/// <c>Memory&lt;T&gt;</c> kept past Dispose never reaches unmapped memory; a pin takes a reference on the mapping, so
/// pinned memory (an I/O in flight, native code) stays mapped until the <see cref="MemoryHandle"/> is disposed, even
/// if the array is disposed meanwhile. Nothing is released by a finalizer: the mapping goes when the array and every
/// pin are gone (as MappedMemory's remarks explain, never under a span still in use).
/// </summary>
internal sealed unsafe class SharedArrayMemory<T> : MemoryManager<T> where T : unmanaged
{
    private readonly SharedObjectCore _core;
    private readonly T* _data;
    private readonly int _length;

    internal SharedArrayMemory(SharedObjectCore core, T* data, int length)
    {
        _core = core;
        _data = data;
        _length = length;
    }

    public override Span<T> GetSpan()
    {
        _core.ThrowIfDisposed();
        return new Span<T>(_data, _length);
    }

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        if ((uint)elementIndex > (uint)_length)
            throw new ArgumentOutOfRangeException(nameof(elementIndex), elementIndex, $"The index is outside \"{_core.Name}\" (length {_length}).");
        _core.ThrowIfDisposed();
        _core.Segment.AddRef();   // released by Unpin: the mapping outlives the array while pinned
        return new MemoryHandle(_data + elementIndex, default, this);
    }

    public override void Unpin() => _core.Segment.Release();

    // The array owns the mapping's lifetime; there is nothing of the manager's own to release.
    protected override void Dispose(bool disposing) { }
}
