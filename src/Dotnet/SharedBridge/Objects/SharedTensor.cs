// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SharedBridge.Format;
using SharedBridge.Objects;

namespace SharedBridge;

/// <summary>
/// An n-dimensional array of <typeparamref name="T"/> in a named shared-memory segment (docs/format.md
/// section 12): its shape is in the header, so numpy, PyTorch (DLPack) and .NET tensors in every process view
/// the same memory with the same shape. Elements are in C order (row-major: the last index varies fastest,
/// <see cref="Strides"/>). Element access does not take the lock: hold <see cref="Lock()"/> around
/// read-modify-write sequences. The companion package SharedBridge.Tensors adds <c>AsTensorSpan()</c>.
/// </summary>
/// <typeparam name="T">A numeric type of docs/format.md section 3.4, <c>bool</c>, <c>Rune</c>, or a sequential struct of those.</typeparam>
public sealed unsafe class SharedTensor<T> : IDisposable where T : unmanaged
{
    private readonly SharedObjectCore _core;
    private readonly ElementType _element;
    private readonly T* _data;
    private readonly nint[] _shape;
    private readonly nint[] _strides;
    private readonly long _length;

    private static readonly string OwnerName = $"SharedTensor<{typeof(T).Name}>";

    private SharedTensor(SharedObjectCore core, ElementType element)
    {
        _core = core;
        _element = element;
        // The shape comes from the validated private copy of the header (section 6.2 step 4), never from shared memory.
        var shape = core.Header.Shape!;
        _shape = new nint[shape.Count];
        for (int k = 0; k < _shape.Length; k++) _shape[k] = checked((nint)shape[k]);
        _strides = TensorShape.Strides(_shape);
        _length = core.Header.Length;
        _data = (T*)core.Segment.Data;
    }

    /// <summary>Creates a zero-filled n-dimensional array of shape <paramref name="shape"/> (C order).</summary>
    /// <param name="name">Segment name, or null for a generated <c>sb_...</c> name.</param>
    /// <param name="shape">The dimensions, dimension 0 first: 0 to 32 of them (none: a rank-0 array of one
    /// element), each 0 or more (a 0 makes an empty array).</param>
    /// <param name="options">Lock, typecode, mode and lifetime options.</param>
    /// <exception cref="ArgumentException">More than 32 dimensions.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A negative dimension, or more data than a segment can hold.</exception>
    /// <exception cref="SegmentExistsException">The name is taken.</exception>
    /// <exception cref="UnsupportedTypeException"><typeparamref name="T"/> cannot be shared.</exception>
    [OverloadResolutionPriority(1)] // Create(name, []) is rank 0, not ambiguous with the long[] overload
    public static SharedTensor<T> Create(string? name, ReadOnlySpan<nint> shape, SegmentOptions? options = null)
    {
        var dims = new long[shape.Length];
        for (int k = 0; k < dims.Length; k++) dims[k] = shape[k];
        return CreateCore(name, dims, options);
    }

    /// <summary>Creates a zero-filled n-dimensional array of shape <paramref name="shape"/> (the overload for hosts
    /// that cannot pass a span: pythonnet, PowerShell, F# interactive).</summary>
    /// <param name="name">Segment name, or null for a generated <c>sb_...</c> name.</param>
    /// <param name="shape">The dimensions, dimension 0 first (0 to 32 of them, each 0 or more).</param>
    /// <param name="options">Lock, typecode, mode and lifetime options.</param>
    /// <exception cref="ArgumentNullException"><paramref name="shape"/> is null.</exception>
    public static SharedTensor<T> Create(string? name, long[] shape, SegmentOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        return CreateCore(name, (long[])shape.Clone(), options);
    }

    /// <summary>Creates an n-dimensional array of shape <paramref name="shape"/> holding a copy of
    /// <paramref name="initial"/> (the elements in C order), written before the segment is published: an opener
    /// never sees it zero-filled (up to 2 GiB of initial data; more is copied right after the segment is published).</summary>
    /// <param name="name">Segment name, or null for a generated <c>sb_...</c> name.</param>
    /// <param name="shape">The dimensions, dimension 0 first (0 to 32 of them, each 0 or more).</param>
    /// <param name="initial">Exactly as many elements as the shape holds, in C order.</param>
    /// <param name="options">Lock, typecode, mode and lifetime options.</param>
    /// <exception cref="ArgumentException"><paramref name="initial"/> does not hold exactly the shape's element count.</exception>
    [OverloadResolutionPriority(1)]
    public static SharedTensor<T> Create(string? name, ReadOnlySpan<nint> shape, ReadOnlySpan<T> initial, SegmentOptions? options = null)
    {
        var dims = new long[shape.Length];
        for (int k = 0; k < dims.Length; k++) dims[k] = shape[k];
        return CreateCore(name, dims, options, initial, checkInitial: true);
    }

    /// <summary>Creates an n-dimensional array of shape <paramref name="shape"/> holding a copy of
    /// <paramref name="initial"/> (in C order): the overload for hosts that cannot pass a span (pythonnet).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="shape"/> or <paramref name="initial"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="initial"/> does not hold exactly the shape's element count.</exception>
    public static SharedTensor<T> Create(string? name, long[] shape, T[] initial, SegmentOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(initial);
        return CreateCore(name, (long[])shape.Clone(), options, initial, checkInitial: true);
    }

    private static SharedTensor<T> CreateCore(string? name, long[] shape, SegmentOptions? options,
        ReadOnlySpan<T> initial = default, bool checkInitial = false)
    {
        var element = ElementType.Of<T>();
        char code = element.CodeForCreate(options?.TypeCode);
        long count = TensorShape.CheckForCreate(shape, element.Size, nameof(shape));
        if (checkInitial && initial.Length != count)
            throw new ArgumentException(
                $"{initial.Length} initial elements given for the shape {TensorShape.Text(shape)}, which holds {count}: give exactly " +
                "as many elements as the shape holds, in C order.", nameof(initial));
        // A span of bytes holds at most 2 GiB: larger initial data is copied right after creation instead.
        bool before = (long)initial.Length * element.Size <= int.MaxValue;
        var tensor = new SharedTensor<T>(SharedObjectCore.Create(OwnerName, name, SegmentKind.NDArray, code, element.Size, count,
            element.TypeName, element.Fields, options, before ? MemoryMarshal.AsBytes(initial) : default, shape), element);
        if (!before) initial.CopyTo(new Span<T>(tensor._data, initial.Length));
        return tensor;
    }

    /// <summary>Opens an existing n-dimensional array segment (made by .NET or Python), whatever its shape.</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="readyTimeout">How long to wait for a creator still initializing it (default 5 s).</param>
    /// <exception cref="SegmentNotFoundException">No such segment.</exception>
    /// <exception cref="TypeMismatchException">The segment is not an n-dimensional array, or its element type or layout is not <typeparamref name="T"/>.</exception>
    /// <exception cref="CorruptSegmentException">The header is invalid.</exception>
    /// <exception cref="SegmentNotReadyException">The creator had not finished within the timeout.</exception>
    public static SharedTensor<T> Open(string name, TimeSpan? readyTimeout = null) =>
        Open(name, OpenOptions.WithTimeout(readyTimeout));

    /// <summary>Opens an existing n-dimensional array segment with <paramref name="options"/> (ready timeout, other owners).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="options">How long to wait for the creator, and whether another user's segment is accepted.</param>
    /// <exception cref="SegmentNotFoundException">No such segment.</exception>
    /// <exception cref="SegmentAccessDeniedException">The segment belongs to another user (see <see cref="OpenOptions.AllowOtherOwner"/>) or its mode forbids access.</exception>
    /// <exception cref="TypeMismatchException">The segment is not an n-dimensional array, or its element type or layout is not <typeparamref name="T"/>.</exception>
    /// <exception cref="CorruptSegmentException">The header is invalid (<see cref="NotASharedBridgeSegmentException"/>: the name is not a SharedBridge segment).</exception>
    /// <exception cref="SegmentNotReadyException">The creator had not finished within the timeout.</exception>
    public static SharedTensor<T> Open(string name, OpenOptions options) => OpenCore(name, options, _ => null);

    /// <summary>Opens an existing n-dimensional array segment that must have <paramref name="rank"/> dimensions.</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="rank">The number of dimensions expected (0 to 32).</param>
    /// <param name="options">Ready timeout and owner options, or null for the defaults.</param>
    /// <exception cref="TypeMismatchException">The segment has another rank (the message names both shapes), or
    /// another element type.</exception>
    public static SharedTensor<T> Open(string name, int rank, OpenOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rank, HeaderLayout.MaxNdim);
        return OpenCore(name, options ?? OpenOptions.Default, shape => shape.Count == rank
            ? null
            : $"its shape is {TensorShape.Text(shape)} (rank {shape.Count}), not of rank {rank}");
    }

    /// <summary>Opens an existing n-dimensional array segment that must have exactly the shape <paramref name="shape"/>.</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="shape">The dimensions expected, dimension 0 first.</param>
    /// <param name="options">Ready timeout and owner options, or null for the defaults.</param>
    /// <exception cref="TypeMismatchException">The segment has another shape (the message names both), or another element type.</exception>
    public static SharedTensor<T> Open(string name, ReadOnlySpan<nint> shape, OpenOptions? options = null)
    {
        var expected = new long[shape.Length];
        for (int k = 0; k < expected.Length; k++) expected[k] = shape[k];
        return OpenCore(name, options ?? OpenOptions.Default, actual => actual.SequenceEqual(expected)
            ? null
            : $"its shape is {TensorShape.Text(actual)}, not {TensorShape.Text(expected)}");
    }

    private static SharedTensor<T> OpenCore(string name, OpenOptions options, Func<IReadOnlyList<long>, string?> shapeMismatch)
    {
        ArgumentNullException.ThrowIfNull(options);
        var element = ElementType.Of<T>();
        return new SharedTensor<T>(SharedObjectCore.Open(OwnerName, name, options, header =>
            header.Kind != SegmentKind.NDArray
                ? header.Kind == SegmentKind.Array
                    ? $"it is a one-dimensional array of {header.Length} elements with no shape, not an n-dimensional array " +
                      $"(use SharedArray<{typeof(T).Name}>.Open, docs/format.md section 12.2)"
                    : $"it is a {header.Kind.ToString().ToLowerInvariant()} segment, not an n-dimensional array"
                : element.Mismatch(header) ?? shapeMismatch(header.Shape!)), element);
    }

    /// <summary>The segment name.</summary>
    public string Name => _core.Name;

    /// <summary>The dimensions, dimension 0 first (empty for rank 0).</summary>
    public ReadOnlySpan<nint> Shape => _shape;

    /// <summary>The distance, in elements, between neighbours along each dimension: C order, so the last is 1 and
    /// each other is the next one times the next dimension (docs/format.md section 12).</summary>
    public ReadOnlySpan<nint> Strides => _strides;

    /// <summary>The dimensions as an array (a copy), for hosts that cannot use spans (pythonnet).</summary>
    public long[] GetShape() => Array.ConvertAll(_shape, d => (long)d);

    /// <summary>The strides in elements as an array (a copy), for hosts that cannot use spans (pythonnet).</summary>
    public long[] GetStrides() => Array.ConvertAll(_strides, d => (long)d);

    /// <summary>The number of dimensions (0 to 32).</summary>
    public int Rank => _shape.Length;

    /// <summary>The number of elements: the product of the dimensions (1 for rank 0, 0 when a dimension is 0).</summary>
    public long Length => _length;

    /// <summary>The segment's typecode ('d', 'i', 'T', ...).</summary>
    public char TypeCode => _core.Header.TypeCode;

    /// <summary>True when the segment has a shared lock (embedded or another segment's).</summary>
    public bool IsSynchronized => _core.HasLock;

    /// <summary>True when this object created the segment (and unlinks it on Dispose unless kept).</summary>
    public bool IsOwner => _core.IsOwner;

    /// <summary>The validated private copy of the header (<see cref="SegmentHeader.Shape"/> holds the shape).</summary>
    public SegmentHeader Header => _core.Header;

    /// <summary>A reference to the element at <paramref name="indices"/> (one index per dimension, none for rank 0);
    /// bounds-checked, does not take the lock. This is raw shared memory, like <see cref="SharedArray{T}"/>'s indexer.</summary>
    /// <exception cref="ArgumentException">The number of indices is not <see cref="Rank"/>.</exception>
    /// <exception cref="IndexOutOfRangeException">An index is outside its dimension.</exception>
    public ref T this[params ReadOnlySpan<nint> indices]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref _data[Offset(indices)];
    }

    /// <summary>The flat (C-order) index of <paramref name="indices"/>, bounds-checked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint Offset(ReadOnlySpan<nint> indices)
    {
        _core.ThrowIfDisposed();
        if (indices.Length != _shape.Length) ThrowRank(indices.Length);
        nint offset = 0;
        for (int k = 0; k < indices.Length; k++)
        {
            nint i = indices[k];
            if ((nuint)i >= (nuint)_shape[k]) ThrowIndex(k, i);
            offset += i * _strides[k];
        }
        return offset;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowRank(int given) =>
        throw new ArgumentException($"{given} ind{(given == 1 ? "ex" : "ices")} given for \"{Name}\", whose shape " +
                                    $"{TensorShape.Text(_shape)} has {_shape.Length} dimension{(_shape.Length == 1 ? "" : "s")}: give one index per dimension.",
                                    "indices");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowIndex(int dimension, nint index) =>
        throw new IndexOutOfRangeException(
            $"Index {index} of dimension {dimension} is outside \"{Name}\" (shape {TensorShape.Text(_shape)}: 0 to {_shape[dimension] - 1}).");

    /// <summary>The element at <paramref name="indices"/> (a copy; does not take the lock), normalized like
    /// <see cref="ToArray"/> (a bool is true/false, a Rune is checked): for hosts that cannot use a ref indexer.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="indices"/> is null.</exception>
    public T Get(params long[] indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        nint offset = Offset(ToNative(indices));
        T copy = _data[offset];
        _element.FixCopies(new Span<T>(ref copy), Name, offset);
        return copy;
    }

    /// <summary>Writes <paramref name="value"/> at <paramref name="indices"/> (does not take the lock): for hosts that
    /// cannot use a ref indexer.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="indices"/> is null.</exception>
    public void Set(long[] indices, T value)
    {
        ArgumentNullException.ThrowIfNull(indices);
        this[ToNative(indices)] = value;
    }

    private static nint[] ToNative(long[] indices) => Array.ConvertAll(indices, i => checked((nint)i));

    /// <summary>All the elements as one flat span over shared memory, in C order (raw, like the indexer). Do not use it
    /// after Dispose.</summary>
    /// <exception cref="InvalidOperationException">More than <see cref="int.MaxValue"/> elements: a span cannot hold
    /// them (use the indexer, or <c>AsTensorSpan()</c> of SharedBridge.Tensors).</exception>
    public Span<T> AsSpan()
    {
        _core.ThrowIfDisposed();
        if (_length > int.MaxValue)
            throw new InvalidOperationException(
                $"\"{Name}\" holds {_length} elements, more than a Span can ({int.MaxValue}): use the indexer or AsTensorSpan() (SharedBridge.Tensors).");
        return new Span<T>(_data, (int)_length);
    }

    /// <summary>Copies all the elements, in C order, into a new array (does not take the lock). Bools are
    /// normalized to true/false; a Rune that is not a Unicode scalar value throws.</summary>
    /// <exception cref="CorruptDataException">A 'u' element is not a Unicode scalar value.</exception>
    public T[] ToArray()
    {
        T[] copy = AsSpan().ToArray();
        _element.FixCopies<T>(copy, Name, 0);
        return copy;
    }

    /// <summary>Copies <paramref name="source"/> (the elements in C order, exactly <see cref="Length"/> of them)
    /// into the shared memory (does not take the lock).</summary>
    /// <exception cref="ArgumentException"><paramref name="source"/> does not hold exactly <see cref="Length"/> elements.</exception>
    public void CopyFrom(ReadOnlySpan<T> source)
    {
        _core.ThrowIfDisposed();
        CheckLength(source.Length, nameof(source));
        source.CopyTo(new Span<T>(_data, source.Length));
    }

    /// <summary>Copies <paramref name="source"/> (the elements in C order, exactly <see cref="Length"/> of them)
    /// into the shared memory (does not take the lock): the overload for hosts that cannot pass a span (pythonnet).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="source"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="source"/> does not hold exactly <see cref="Length"/> elements.</exception>
    public void CopyFrom(T[] source)
    {
        ArgumentNullException.ThrowIfNull(source);
        CopyFrom(new ReadOnlySpan<T>(source));
    }

    /// <summary>Copies the elements, in C order, into <paramref name="destination"/> (exactly <see cref="Length"/>
    /// long; does not take the lock), normalized like <see cref="ToArray"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> does not hold exactly <see cref="Length"/> elements.</exception>
    /// <exception cref="CorruptDataException">A 'u' element is not a Unicode scalar value.</exception>
    public void CopyTo(Span<T> destination)
    {
        _core.ThrowIfDisposed();
        CheckLength(destination.Length, nameof(destination));
        new ReadOnlySpan<T>(_data, destination.Length).CopyTo(destination);
        _element.FixCopies(destination, Name, 0);
    }

    /// <summary>Copies the elements, in C order, into <paramref name="destination"/> (exactly <see cref="Length"/>
    /// long), like <see cref="CopyTo(Span{T})"/>: the overload for hosts that cannot pass a span (pythonnet).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="destination"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> does not hold exactly <see cref="Length"/> elements.</exception>
    public void CopyTo(T[] destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        CopyTo(new Span<T>(destination));
    }

    private void CheckLength(int given, string parameter)
    {
        if (given != _length)
            throw new ArgumentException(
                $"{given} elements given, but \"{Name}\" of shape {TensorShape.Text(_shape)} holds {_length}: the array must hold exactly " +
                "as many elements as the tensor, in C order.", parameter);
    }

    /// <summary>The address of the first element in this process's mapping, for interop (numpy, TensorSpan, native
    /// code). It is valid until <see cref="Dispose"/>; <see cref="CreateDataView"/> keeps it valid independently.</summary>
    public nint DataAddress
    {
        get
        {
            _core.ThrowIfDisposed();
            return (nint)_data;
        }
    }

    /// <summary>The size of the data area in bytes (<see cref="Length"/> times the element size).</summary>
    public long ByteLength => _core.Header.DataSize;

    /// <summary>True once <see cref="Dispose"/> has run.</summary>
    public bool IsDisposed => _core.IsDisposed;

    /// <summary>A handle on this tensor's data that keeps the mapping (not the name) alive until the handle is
    /// disposed, even after this object is: what a foreign view (a numpy array) holds on to.</summary>
    public SharedDataView CreateDataView() => SharedDataView.Of(_core, ByteLength);

    /// <inheritdoc cref="SharedLock.Lock()"/>
    public LockScope Lock() => _core.Lock();

    /// <inheritdoc cref="SharedLock.Lock(TimeSpan)"/>
    public LockScope Lock(TimeSpan timeout) => _core.Lock(timeout);

    /// <inheritdoc cref="SharedLock.TryLock(TimeSpan, out LockScope)"/>
    public bool TryLock(TimeSpan timeout, out LockScope scope) => _core.TryLock(timeout, out scope);

    /// <inheritdoc cref="SharedLock.LockUnscoped()"/>
    public LockHandle LockUnscoped() => _core.LockUnscoped();

    /// <inheritdoc cref="SharedLock.LockUnscoped(TimeSpan)"/>
    public LockHandle LockUnscoped(TimeSpan timeout) => _core.LockUnscoped(timeout);

    /// <inheritdoc cref="SharedLock.LockAsync(Action, TimeSpan?, CancellationToken)"/>
    public Task LockAsync(Action body, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        _core.LockAsync(body, timeout, cancellationToken);

    /// <inheritdoc cref="SharedLock.LockAsync{TResult}(Func{TResult}, TimeSpan?, CancellationToken)"/>
    public Task<TResult> LockAsync<TResult>(Func<TResult> body, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        _core.LockAsync(body, timeout, cancellationToken);

    /// <inheritdoc cref="SharedLock.LockRecoveries"/>
    public long LockRecoveries => _core.LockRecoveries;

    /// <summary>A <see cref="SharedLock"/> for this object's lock (its embedded lock, or the lock segment it was
    /// created with), usable as <see cref="SegmentOptions.SharedLock"/> (like Python's <c>get_lock()</c>); it keeps
    /// the mapping alive until disposed.</summary>
    /// <exception cref="InvalidOperationException">The object is not synchronized: it has no lock to share.</exception>
    public SharedLock GetLock() => SharedLock.ForSegmentOf(_core);

    /// <summary>Removes the name now; the memory stays mapped for everyone who has it open.</summary>
    /// <exception cref="SegmentNotFoundException">The name was already removed.</exception>
    public void Unlink() => _core.Unlink();

    /// <summary>Closes the tensor; the creator also unlinks the name unless <see cref="SegmentOptions.KeepOnDispose"/>.</summary>
    public void Dispose() => _core.Dispose();

    /// <inheritdoc/>
    public override string ToString() => $"SharedTensor<{typeof(T).Name}>(\"{Name}\", {TensorShape.Text(_shape)})";
}
