// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Objects;

namespace SharedBridge;

/// <summary>
/// The address and size of a shared object's data, with a reference that keeps this process's mapping
/// alive until the view is disposed, even after the object it came from is (the name is not kept: the
/// creator's Dispose still unlinks it). Made by <c>CreateDataView()</c> of <see cref="SharedArray{T}"/> and
/// <see cref="SharedValue{T}"/>, for foreign views of the same memory (numpy through pythonnet, native code).
/// Access through the address does not take the lock.
/// </summary>
public sealed class SharedDataView : IDisposable
{
    private readonly SharedObjectCore _core;
    private readonly nint _address;

    private SharedDataView(SharedObjectCore core, nint address, long byteLength)
    {
        _core = core;
        _address = address;
        ByteLength = byteLength;
    }

    internal static unsafe SharedDataView Of(SharedObjectCore owner, long byteLength)
    {
        owner.ThrowIfDisposed();
        var core = SharedObjectCore.Share(nameof(SharedDataView), owner.Segment);
        return new SharedDataView(core, (nint)core.Segment.Data, byteLength);
    }

    /// <summary>The segment name.</summary>
    public string Name => _core.Name;

    /// <summary>The address of the first byte of the data in this process.</summary>
    /// <exception cref="ObjectDisposedException">The view has been disposed.</exception>
    public nint Address
    {
        get
        {
            _core.ThrowIfDisposed();
            return _address;
        }
    }

    /// <summary>The size of the data in bytes.</summary>
    public long ByteLength { get; }

    /// <summary>True once disposed (the address must no longer be used).</summary>
    public bool IsDisposed => _core.IsDisposed;

    /// <summary>Releases the reference on the mapping; the memory is unmapped when nothing else uses it.</summary>
    public void Dispose() => _core.Dispose();

    /// <inheritdoc/>
    public override string ToString() => $"SharedDataView(\"{Name}\", {ByteLength} bytes)";
}
