// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using System.Runtime.InteropServices;
using SharedBridge.Format;
using SharedBridge.Objects;

namespace SharedBridge;

/// <summary>
/// A single <typeparamref name="T"/> in a named shared-memory segment, like Python's
/// <c>multiprocessing.Value</c> / <c>RawValue</c>. <see cref="Value"/> and <see cref="Ref"/> do not
/// take the lock: hold <see cref="Lock()"/> around read-modify-write sequences such as <c>Value++</c>.
/// </summary>
/// <typeparam name="T">A numeric type of docs/format.md section 3.4, <c>bool</c>, <c>Rune</c>, or a sequential struct of those.</typeparam>
public sealed unsafe class SharedValue<T> : IDisposable where T : unmanaged
{
    private static readonly string OwnerName = $"SharedValue<{typeof(T).Name}>";
    private readonly SharedObjectCore _core;
    private readonly ElementType _element;
    private readonly T* _data;

    private SharedValue(SharedObjectCore core, ElementType element)
    {
        _core = core;
        _element = element;
        _data = (T*)core.Segment.Data;
    }

    /// <summary>Creates a value segment holding <paramref name="initial"/>.</summary>
    /// <param name="name">Segment name, or null for a generated <c>sb_...</c> name.</param>
    /// <param name="initial">The initial value.</param>
    /// <param name="options">Lock, typecode, mode and lifetime options.</param>
    public static SharedValue<T> Create(string? name, T initial = default, SegmentOptions? options = null)
    {
        var element = ElementType.Of<T>();
        char code = element.CodeForCreate(options?.TypeCode);
        return new SharedValue<T>(SharedObjectCore.Create(OwnerName, name, SegmentKind.Value, code, element.Size, 1,
            element.TypeName, element.Fields, options, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in initial))), element);
    }

    /// <summary>Opens an existing value segment (made by .NET or Python).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="readyTimeout">How long to wait for a creator still initializing it (default 5 s).</param>
    /// <exception cref="TypeMismatchException">The segment is not a value of type <typeparamref name="T"/>.</exception>
    public static SharedValue<T> Open(string name, TimeSpan? readyTimeout = null) =>
        Open(name, OpenOptions.WithTimeout(readyTimeout));

    /// <summary>Opens an existing value segment with <paramref name="options"/> (ready timeout, other owners).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="options">How long to wait for the creator, and whether another user's segment is accepted.</param>
    /// <exception cref="TypeMismatchException">The segment is not a value of type <typeparamref name="T"/>.</exception>
    /// <exception cref="SegmentAccessDeniedException">The segment belongs to another user (see <see cref="OpenOptions.AllowOtherOwner"/>).</exception>
    public static SharedValue<T> Open(string name, OpenOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var element = ElementType.Of<T>();
        return new SharedValue<T>(SharedObjectCore.Open(OwnerName, name, options, header =>
            header.Kind != SegmentKind.Value
                ? $"it is {header.Kind switch { SegmentKind.Array => "an array", SegmentKind.Lock => "a lock-only", SegmentKind.Event => "an event", SegmentKind.NDArray => "an n-dimensional array", var k => "a " + k.ToString().ToLowerInvariant() }} segment, not a value" +
                  (header.Kind == SegmentKind.Array ? $" (use SharedArray<{typeof(T).Name}>.Open)" : "")
                : element.Mismatch(header)), element);
    }

    /// <summary>The segment name.</summary>
    public string Name => _core.Name;

    /// <summary>The segment's typecode.</summary>
    public char TypeCode => _core.Header.TypeCode;

    /// <summary>True when the segment has a shared lock.</summary>
    public bool IsSynchronized => _core.HasLock;

    /// <summary>True when this object created the segment.</summary>
    public bool IsOwner => _core.IsOwner;

    /// <summary>The validated private copy of the header.</summary>
    public SegmentHeader Header => _core.Header;

    /// <summary>The value (a plain read or write of shared memory; does not take the lock). The getter
    /// returns a copy with bools normalized to true/false and Runes checked.</summary>
    /// <exception cref="CorruptDataException">A 'u' value is not a Unicode scalar value.</exception>
    public T Value
    {
        get
        {
            T copy = Ref;
            _element.FixCopies(new Span<T>(ref copy), Name, 0);
            return copy;
        }
        set => Ref = value;
    }

    /// <summary>A reference to the value in shared memory (does not take the lock). Raw memory: bools
    /// and Runes are not normalized or checked (<see cref="Value"/> is).</summary>
    public ref T Ref
    {
        get
        {
            _core.ThrowIfDisposed();
            return ref *_data;
        }
    }

    /// <summary>The address of the value in this process's mapping, for interop (numpy, native code);
    /// valid until <see cref="Dispose"/>, or for the life of a <see cref="CreateDataView"/> handle.</summary>
    public nint DataAddress
    {
        get
        {
            _core.ThrowIfDisposed();
            return (nint)_data;
        }
    }

    /// <summary>The size of the value in bytes.</summary>
    public long ByteLength => _element.Size;

    /// <summary>True once <see cref="Dispose"/> has run (a cheap check for hosts that cache a data view, such as
    /// <c>sharedbridge.dotnet.as_numpy</c>).</summary>
    public bool IsDisposed => _core.IsDisposed;

    /// <summary>A handle on the value's memory that keeps the mapping (not the name) alive until disposed.</summary>
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

    /// <inheritdoc cref="SharedArray{T}.GetLock()"/>
    public SharedLock GetLock() => SharedLock.ForSegmentOf(_core);

    /// <summary>Removes the name now; the memory stays mapped.</summary>
    public void Unlink() => _core.Unlink();

    /// <summary>Closes the value; the creator also unlinks the name unless kept.</summary>
    public void Dispose() => _core.Dispose();

    /// <inheritdoc/>
    public override string ToString() => $"SharedValue<{typeof(T).Name}>(\"{Name}\")";
}
