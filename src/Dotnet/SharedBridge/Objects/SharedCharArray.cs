// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Objects;

namespace SharedBridge;

/// <summary>
/// A byte string in shared memory (typecode 'c') with the semantics of a ctypes <c>c_char</c>
/// array: <see cref="Value"/> is the bytes up to the first NUL, <see cref="Raw"/> all of them.
/// </summary>
public sealed unsafe class SharedCharArray : IDisposable
{
    private const string OwnerName = "SharedCharArray";
    private readonly SharedObjectCore _core;
    private readonly byte* _data;
    private readonly int _length;

    private SharedCharArray(SharedObjectCore core)
    {
        _core = core;
        if (core.Header.Length > Array.MaxLength) // Open refuses these first
        {
            core.Dispose();
            throw new TypeMismatchException(TooLong(core.Name, core.Header.Length));
        }
        _length = (int)core.Header.Length;
        _data = core.Segment.Data;
    }

    /// <summary>Creates a zero-filled byte string of <paramref name="length"/> bytes.</summary>
    /// <param name="name">Segment name, or null for a generated name.</param>
    /// <param name="length">Number of bytes.</param>
    /// <param name="options">Lock, mode and lifetime options (TypeCode must be null or 'c').</param>
    public static SharedCharArray Create(string? name, int length, SegmentOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return CreateCore(name, length, default, options);
    }

    /// <summary>Creates a byte string holding <paramref name="initial"/> (its length is the array's length).</summary>
    /// <param name="name">Segment name, or null for a generated name.</param>
    /// <param name="initial">The initial bytes.</param>
    /// <param name="options">Lock, mode and lifetime options.</param>
    public static SharedCharArray Create(string? name, ReadOnlySpan<byte> initial, SegmentOptions? options = null) =>
        CreateCore(name, initial.Length, initial, options);

    private static SharedCharArray CreateCore(string? name, int length, ReadOnlySpan<byte> initial, SegmentOptions? options)
    {
        if (options?.TypeCode is { } code && code != 'c')
            throw new ArgumentException($"A SharedCharArray always has typecode 'c', not '{code}'.", nameof(options));
        return new SharedCharArray(SharedObjectCore.Create(OwnerName, name, SegmentKind.Array, 'c', 1, length, "", [], options, initial));
    }

    /// <summary>Opens an existing 'c' array segment (for example Python's <c>Array('c', ...)</c>).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="readyTimeout">How long to wait for a creator still initializing it (default 5 s).</param>
    public static SharedCharArray Open(string name, TimeSpan? readyTimeout = null) =>
        Open(name, OpenOptions.WithTimeout(readyTimeout));

    /// <summary>Opens an existing 'c' array segment with <paramref name="options"/> (ready timeout, other owners).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="options">How long to wait for the creator, and whether another user's segment is accepted.</param>
    public static SharedCharArray Open(string name, OpenOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new(SharedObjectCore.Open(OwnerName, name, options, header =>
            header.Kind != SegmentKind.Array || header.TypeCode != 'c'
                ? $"it is {(header.Kind == SegmentKind.NDArray ? "an n-dimensional array" : "a " + header.Kind.ToString().ToLowerInvariant())} of {header.TypeDescription}, not an array of 'c' (c_char)"
                : header.Length > Array.MaxLength ? TooLong(name, header.Length) : null));
    }

    private static string TooLong(string name, long length) =>
        $"Segment \"{name}\" holds {length} bytes, more than a SharedCharArray can index ({Array.MaxLength}); open it as a SharedSegment";

    /// <summary>The segment name.</summary>
    public string Name => _core.Name;

    /// <summary>Number of bytes.</summary>
    public int Length => _length;

    /// <summary>Always 'c'.</summary>
    public char TypeCode => 'c';

    /// <summary>True when the segment has a shared lock.</summary>
    public bool IsSynchronized => _core.HasLock;

    /// <summary>True when this object created the segment.</summary>
    public bool IsOwner => _core.IsOwner;

    /// <summary>The validated private copy of the header.</summary>
    public SegmentHeader Header => _core.Header;

    /// <summary>Byte <paramref name="index"/> (bounds-checked; does not take the lock).</summary>
    public byte this[int index]
    {
        get => Bytes[CheckIndex(index)];
        set => Bytes[CheckIndex(index)] = value;
    }

    private int CheckIndex(int index) => (uint)index < (uint)_length ? index
        : throw new IndexOutOfRangeException($"Index {index} is outside \"{Name}\" (length {_length}).");

    /// <summary>
    /// The bytes up to the first NUL (all bytes if there is none). Setting copies the bytes and writes
    /// a terminating NUL when room is left; the bytes after it are unchanged (ctypes semantics).
    /// </summary>
    /// <exception cref="ArgumentException">The new value is longer than the array (ctypes' ValueError).</exception>
    public byte[] Value
    {
        get
        {
            var bytes = Bytes;
            int end = bytes.IndexOf((byte)0);
            return (end < 0 ? bytes : bytes[..end]).ToArray();
        }
        set
        {
            var bytes = CopyToStart(value);
            if (value.Length < bytes.Length) bytes[value.Length] = 0;
        }
    }

    /// <summary>All bytes. Setting copies the bytes to the start; the rest is unchanged (ctypes semantics).</summary>
    /// <exception cref="ArgumentException">The new value is longer than the array.</exception>
    public byte[] Raw
    {
        get => Bytes.ToArray();
        set => CopyToStart(value);
    }

    // What setting Value and Raw share (ctypes: a too-long byte string is an error, never truncated).
    private Span<byte> CopyToStart(byte[] value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var bytes = Bytes;
        if (value.Length > bytes.Length)
            throw new ArgumentException($"byte string too long ({value.Length} bytes for an array of {bytes.Length})", nameof(value));
        value.CopyTo(bytes);
        return bytes;
    }

    /// <summary>The bytes as a span over shared memory. Do not use it after Dispose.</summary>
    public Span<byte> AsSpan() => Bytes;

    private Span<byte> Bytes
    {
        get
        {
            _core.ThrowIfDisposed();
            return new Span<byte>(_data, _length);
        }
    }

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

    /// <inheritdoc cref="SharedArray{T}.GetLock()"/>
    public SharedLock GetLock() => SharedLock.ForSegmentOf(_core);

    /// <summary>Removes the name now; the memory stays mapped.</summary>
    public void Unlink() => _core.Unlink();

    /// <summary>Closes the array; the creator also unlinks the name unless kept.</summary>
    public void Dispose() => _core.Dispose();
}
