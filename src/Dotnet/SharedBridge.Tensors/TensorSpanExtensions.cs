using System.Numerics.Tensors;

namespace SharedBridge;

/// <summary>
/// <see cref="TensorSpan{T}"/> views of a <see cref="SharedTensor{T}"/>: the shared memory itself (no copy), with
/// the tensor's shape and C-order strides (docs/format.md section 12). Writes through a view are seen by every
/// process that has the tensor open, and theirs through it; nothing takes the lock. A view is valid until the
/// tensor is disposed (<see cref="SharedTensor{T}.CreateDataView"/> keeps the mapping alive longer).
/// </summary>
public static class TensorSpanExtensions
{
    /// <summary>A writable <see cref="TensorSpan{T}"/> over the tensor's shared memory, of its shape.</summary>
    /// <exception cref="ObjectDisposedException">The tensor has been disposed.</exception>
    public static unsafe TensorSpan<T> AsTensorSpan<T>(this SharedTensor<T> tensor) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return new TensorSpan<T>((T*)tensor.DataAddress, checked((nint)tensor.Length), Lengths(tensor), []);
    }

    /// <summary>A read-only <see cref="ReadOnlyTensorSpan{T}"/> over the tensor's shared memory, of its shape.</summary>
    /// <exception cref="ObjectDisposedException">The tensor has been disposed.</exception>
    public static unsafe ReadOnlyTensorSpan<T> AsReadOnlyTensorSpan<T>(this SharedTensor<T> tensor) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return new ReadOnlyTensorSpan<T>((T*)tensor.DataAddress, checked((nint)tensor.Length), Lengths(tensor), []);
    }

    /// <summary>The view's lengths. Its strides are left for TensorSpan to compute: the dense row-major strides it
    /// computes are the tensor's C order (TensorSpan writes 0 for a dimension of length 0 or 1, where the stride
    /// addresses nothing, and refuses any other stride there).</summary>
    private static ReadOnlySpan<nint> Lengths<T>(SharedTensor<T> tensor) where T : unmanaged =>
        // TensorSpan has no rank 0: a rank-0 tensor (one element) is viewed as the one-element vector [1].
        tensor.Rank == 0 ? RankZeroLengths : tensor.Shape;

    private static readonly nint[] RankZeroLengths = [1];
}
