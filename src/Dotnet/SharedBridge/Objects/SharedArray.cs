// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using System.Collections;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SharedBridge.Format;
using SharedBridge.Objects;

namespace SharedBridge;

/// <summary>
/// A fixed-length array of <typeparamref name="T"/> in a named shared-memory segment, like Python's
/// <c>multiprocessing.Array</c> / <c>RawArray</c>. Element access does not take the lock: hold
/// <see cref="Lock()"/> around read-modify-write sequences. It is an <see cref="IReadOnlyList{T}"/> (enumeration and the
/// interface's indexer return normalized copies, like <see cref="Get"/>) and offers its elements as <see cref="Memory{T}"/>
/// (<see cref="AsMemory"/>).
/// </summary>
/// <typeparam name="T">A numeric type of docs/format.md section 3.4, <c>bool</c>, <c>Rune</c>, or a sequential struct of those.</typeparam>
public sealed unsafe class SharedArray<T> : IReadOnlyList<T>, IDisposable where T : unmanaged
{
    private readonly SharedObjectCore _core;
    private readonly ElementType _element;
    private readonly T* _data;
    private readonly int _length;
    private SharedArrayMemory<T>? _memory;

    private static readonly string OwnerName = $"SharedArray<{typeof(T).Name}>";

    private SharedArray(SharedObjectCore core, ElementType element)
    {
        _core = core;
        _element = element;
        long length = _core.Header.Length;
        if (length > Array.MaxLength) // Open refuses these first (TooLong); a created array never is
        {
            _core.Dispose();
            throw new TypeMismatchException(TooLong(_core.Name, length));
        }
        _length = (int)length;
        _data = (T*)_core.Segment.Data;
    }

    /// <summary>Creates a zero-filled array of <paramref name="length"/> elements.</summary>
    /// <param name="name">Segment name, or null for a generated <c>sb_...</c> name.</param>
    /// <param name="length">Number of elements (0 or more).</param>
    /// <param name="options">Lock, typecode, mode and lifetime options.</param>
    /// <exception cref="SegmentExistsException">The name is taken.</exception>
    /// <exception cref="UnsupportedTypeException"><typeparamref name="T"/> cannot be shared.</exception>
    public static SharedArray<T> Create(string? name, int length, SegmentOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return CreateCore(name, length, default, options);
    }

    /// <summary>Creates an array holding a copy of <paramref name="initial"/>.</summary>
    /// <param name="name">Segment name, or null for a generated <c>sb_...</c> name.</param>
    /// <param name="initial">The initial elements; their count is the array's length.</param>
    /// <param name="options">Lock, typecode, mode and lifetime options.</param>
    public static SharedArray<T> Create(string? name, ReadOnlySpan<T> initial, SegmentOptions? options = null) =>
        CreateCore(name, initial.Length, MemoryMarshal.AsBytes(initial), options);

    /// <summary>Creates an array holding a copy of <paramref name="initial"/> (the overload for hosts that
    /// cannot pass a span: pythonnet, PowerShell, F# interactive).</summary>
    /// <param name="name">Segment name, or null for a generated <c>sb_...</c> name.</param>
    /// <param name="initial">The initial elements; their count is the array's length.</param>
    /// <param name="options">Lock, typecode, mode and lifetime options.</param>
    /// <exception cref="ArgumentNullException"><paramref name="initial"/> is null.</exception>
    public static SharedArray<T> Create(string? name, T[] initial, SegmentOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(initial);
        return Create(name, new ReadOnlySpan<T>(initial), options);
    }

    private static SharedArray<T> CreateCore(string? name, int length, ReadOnlySpan<byte> initial, SegmentOptions? options)
    {
        var element = ElementType.Of<T>();
        char code = element.CodeForCreate(options?.TypeCode);
        if ((long)length * element.Size > long.MaxValue / 2)
            throw new ArgumentOutOfRangeException(nameof(length), length, "The array is too large.");
        return new SharedArray<T>(SharedObjectCore.Create(OwnerName, name, SegmentKind.Array, code, element.Size, length,
            element.TypeName, element.Fields, options, initial), element);
    }

    private static string TooLong(string name, long length) =>
        $"Segment \"{name}\" holds {length} elements, more than a SharedArray can index ({Array.MaxLength}); open it as a SharedSegment";

    /// <summary>Opens an existing array segment (made by .NET or Python) as an array of <typeparamref name="T"/>.</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="readyTimeout">How long to wait for a creator still initializing it (default 5 s).</param>
    /// <exception cref="SegmentNotFoundException">No such segment.</exception>
    /// <exception cref="TypeMismatchException">The segment's element type or layout is not <typeparamref name="T"/>.</exception>
    /// <exception cref="CorruptSegmentException">The header is invalid.</exception>
    /// <exception cref="SegmentNotReadyException">The creator had not finished within the timeout.</exception>
    public static SharedArray<T> Open(string name, TimeSpan? readyTimeout = null) =>
        Open(name, OpenOptions.WithTimeout(readyTimeout));

    /// <summary>Opens an existing array segment with <paramref name="options"/> (ready timeout, other owners).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="options">How long to wait for the creator, and whether another user's segment is accepted.</param>
    /// <exception cref="SegmentNotFoundException">No such segment.</exception>
    /// <exception cref="SegmentAccessDeniedException">The segment belongs to another user (see <see cref="OpenOptions.AllowOtherOwner"/>) or its mode forbids access.</exception>
    /// <exception cref="TypeMismatchException">The segment's element type or layout is not <typeparamref name="T"/>.</exception>
    /// <exception cref="CorruptSegmentException">The header is invalid (<see cref="NotASharedBridgeSegmentException"/>: the name is not a SharedBridge segment).</exception>
    /// <exception cref="SegmentNotReadyException">The creator had not finished within the timeout.</exception>
    public static SharedArray<T> Open(string name, OpenOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var element = ElementType.Of<T>();
        return new SharedArray<T>(SharedObjectCore.Open(OwnerName, name, options, header =>
            header.Kind == SegmentKind.NDArray
                ? $"it is an n-dimensional array of shape {TensorShape.Text(header.Shape!)}, not a one-dimensional array " +
                  $"(use SharedTensor<{typeof(T).Name}>.Open; its AsSpan() is the flat view, docs/format.md section 12.2)"
            : header.Kind != SegmentKind.Array
                ? $"it is {(header.Kind == SegmentKind.Event ? "an" : "a")} {header.Kind.ToString().ToLowerInvariant()} segment, not an array" +
                  (header.Kind == SegmentKind.Value ? $" (use SharedValue<{typeof(T).Name}>.Open)" : "")
                : element.Mismatch(header) ?? (header.Length > Array.MaxLength ? TooLong(name, header.Length) : null)), element);
    }

    /// <summary>The segment name.</summary>
    public string Name => _core.Name;

    /// <summary>Number of elements.</summary>
    public int Length => _length;

    /// <summary>The segment's typecode ('d', 'i', 'T', ...).</summary>
    public char TypeCode => _core.Header.TypeCode;

    /// <summary>True when the segment has a shared lock (embedded or another segment's).</summary>
    public bool IsSynchronized => _core.HasLock;

    /// <summary>True when this object created the segment (and unlinks it on Dispose unless kept).</summary>
    public bool IsOwner => _core.IsOwner;

    /// <summary>The validated private copy of the header.</summary>
    public SegmentHeader Header => _core.Header;

    /// <summary>A reference to element <paramref name="index"/>; bounds-checked, does not take the lock.
    /// This is raw shared memory: a <c>bool</c> reads whatever byte another process wrote (any non-zero
    /// byte is true) and a <c>Rune</c> is not checked; <see cref="ToArray"/> and <see cref="CopyTo(Span{T})"/>
    /// return normalized bools and checked Runes.</summary>
    public ref T this[int index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            _core.ThrowIfDisposed();
            if ((uint)index >= (uint)_length) ThrowIndex(index);
            return ref _data[index];
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowIndex(int index) =>
        throw new IndexOutOfRangeException($"Index {index} is outside \"{Name}\" (length {_length}).");

    /// <summary>The elements as a span over shared memory (raw, like the indexer). Do not use it after Dispose.</summary>
    public Span<T> AsSpan()
    {
        _core.ThrowIfDisposed();
        return new Span<T>(_data, _length);
    }

    /// <summary>The elements as <see cref="Memory{T}"/> over shared memory (raw, like <see cref="AsSpan"/>), for APIs that
    /// take <c>Memory&lt;T&gt;</c> (streams, pipelines, async code). Its lifetime is the array's: after
    /// <see cref="Dispose"/>, <c>Span</c> and <c>Pin()</c> throw <see cref="ObjectDisposedException"/>, so it never
    /// reaches unmapped memory; memory pinned before Dispose stays mapped until the <see cref="System.Buffers.MemoryHandle"/>
    /// is disposed. As with <see cref="AsSpan"/>, a span taken from it must not be used after Dispose.</summary>
    /// <exception cref="ObjectDisposedException">The array has been disposed.</exception>
    public Memory<T> AsMemory()
    {
        _core.ThrowIfDisposed();
        var memory = _memory;
        if (memory is null)
        {
            memory = new SharedArrayMemory<T>(_core, _data, _length);
            memory = Interlocked.CompareExchange(ref _memory, memory, null) ?? memory;
        }
        return memory.Memory;
    }

    /// <summary>Enumerates the elements as normalized copies, like <see cref="Get"/> (does not take the lock: another
    /// process may change elements not yet reached).</summary>
    /// <exception cref="ObjectDisposedException">The array is disposed while it is enumerated.</exception>
    public IEnumerator<T> GetEnumerator()
    {
        _core.ThrowIfDisposed();
        return Enumerate();
    }

    private IEnumerator<T> Enumerate()
    {
        for (int i = 0; i < _length; i++)
            yield return Get(i);
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>The number of elements (<see cref="Length"/>).</summary>
    int IReadOnlyCollection<T>.Count => _length;

    /// <summary>Element <paramref name="index"/>, a normalized copy (<see cref="Get"/>).</summary>
    T IReadOnlyList<T>.this[int index] => Get(index);

    /// <summary>Copies the elements into a new array (does not take the lock). Bools are normalized
    /// to true/false; a Rune that is not a Unicode scalar value throws.</summary>
    /// <exception cref="CorruptDataException">A 'u' element is not a Unicode scalar value.</exception>
    public T[] ToArray()
    {
        T[] copy = AsSpan().ToArray();
        _element.FixCopies<T>(copy, Name, 0);
        return copy;
    }

    /// <summary>Copies the elements into <paramref name="destination"/> (does not take the lock), like
    /// <see cref="ToArray"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than the array.</exception>
    /// <exception cref="CorruptDataException">A 'u' element is not a Unicode scalar value.</exception>
    public void CopyTo(Span<T> destination)
    {
        var source = AsSpan();
        source.CopyTo(destination);
        _element.FixCopies(destination[..source.Length], Name, 0);
    }

    // ---- The same capabilities without spans or ref returns, for reflection-based hosts (pythonnet,
    // PowerShell, F# interactive): they can neither assign through a ref-returning indexer nor pass a span.

    /// <summary>Element <paramref name="index"/> (a copy; does not take the lock), normalized like
    /// <see cref="ToArray"/>: a bool is true/false, a Rune is checked.</summary>
    /// <exception cref="IndexOutOfRangeException"><paramref name="index"/> is outside the array.</exception>
    /// <exception cref="CorruptDataException">A 'u' element is not a Unicode scalar value.</exception>
    public T Get(int index)
    {
        T copy = this[index];
        _element.FixCopies(new Span<T>(ref copy), Name, index);
        return copy;
    }

    /// <summary>Writes <paramref name="value"/> into element <paramref name="index"/> (does not take the lock).</summary>
    /// <exception cref="IndexOutOfRangeException"><paramref name="index"/> is outside the array.</exception>
    public void Set(int index, T value) => this[index] = value;

    /// <summary>Copies all of <paramref name="source"/> into the array from element 0 (does not take the lock).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="source"/> is longer than the array.</exception>
    public void CopyFrom(T[] source)
    {
        ArgumentNullException.ThrowIfNull(source);
        CopyFrom(source, 0, 0, source.Length);
    }

    /// <summary>Copies <paramref name="count"/> elements of <paramref name="source"/> from
    /// <paramref name="sourceIndex"/> into the array from <paramref name="destinationIndex"/> (does not take the lock).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A range falls outside <paramref name="source"/> or the array.</exception>
    public void CopyFrom(T[] source, int sourceIndex, int destinationIndex, int count)
    {
        ArgumentNullException.ThrowIfNull(source);
        CheckRange(source.Length, sourceIndex, count, nameof(sourceIndex));
        CheckRange(_length, destinationIndex, count, nameof(destinationIndex));
        new ReadOnlySpan<T>(source, sourceIndex, count).CopyTo(AsSpan().Slice(destinationIndex, count));
    }

    /// <summary>Copies the elements into <paramref name="destination"/>, like <see cref="CopyTo(Span{T})"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than the array.</exception>
    /// <exception cref="CorruptDataException">A 'u' element is not a Unicode scalar value.</exception>
    public void CopyTo(T[] destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        CopyTo(new Span<T>(destination));
    }

    /// <summary>Copies <paramref name="count"/> elements from <paramref name="sourceIndex"/> into
    /// <paramref name="destination"/> at <paramref name="destinationIndex"/>, normalized like <see cref="ToArray"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A range falls outside the array or <paramref name="destination"/>.</exception>
    /// <exception cref="CorruptDataException">A 'u' element is not a Unicode scalar value.</exception>
    public void CopyTo(int sourceIndex, T[] destination, int destinationIndex, int count)
    {
        ArgumentNullException.ThrowIfNull(destination);
        CheckRange(_length, sourceIndex, count, nameof(sourceIndex));
        CheckRange(destination.Length, destinationIndex, count, nameof(destinationIndex));
        var target = new Span<T>(destination, destinationIndex, count);
        AsSpan().Slice(sourceIndex, count).CopyTo(target);
        _element.FixCopies(target, Name, sourceIndex);
    }

    private static void CheckRange(int length, int start, int count, string startName)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (start < 0 || start > length || count > length - start)
            throw new ArgumentOutOfRangeException(startName, start,
                $"The range [{start}, {(long)start + count}) does not fit in {length} elements.");
    }

    /// <summary>The address of element 0 in this process's mapping, for interop (numpy, native code). It is
    /// valid until <see cref="Dispose"/>; <see cref="CreateDataView"/> keeps it valid independently.</summary>
    public nint DataAddress
    {
        get
        {
            _core.ThrowIfDisposed();
            return (nint)_data;
        }
    }

    /// <summary>The size of the data area in bytes (<see cref="Length"/> times the element size).</summary>
    public long ByteLength => (long)_length * _element.Size;

    /// <summary>True once <see cref="Dispose"/> has run (a cheap check for hosts that cache a data view, such as
    /// <c>sharedbridge.dotnet.as_numpy</c>).</summary>
    public bool IsDisposed => _core.IsDisposed;

    /// <summary>A handle on this array's data that keeps the mapping (not the name) alive until the handle
    /// is disposed, even after this array is: what a foreign view (a numpy array) holds on to.</summary>
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

    /// <summary>Closes the array; the creator also unlinks the name unless <see cref="SegmentOptions.KeepOnDispose"/>.</summary>
    public void Dispose() => _core.Dispose();

    /// <inheritdoc/>
    public override string ToString() => $"SharedArray<{typeof(T).Name}>(\"{Name}\", {_length})";
}
