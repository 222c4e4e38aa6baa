// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Objects;
using SharedBridge.Platform;

namespace SharedBridge;

/// <summary>
/// Any segment opened without knowing its type in advance, for tools and for segments made by
/// Python: the validated header, the raw data bytes and the lock.
/// </summary>
public sealed unsafe class SharedSegment : IDisposable
{
    private const string OwnerName = "SharedSegment";
    private readonly SharedObjectCore _core;

    private SharedSegment(SharedObjectCore core) => _core = core;

    /// <summary>Opens and validates any segment (array, value or lock, any element type).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="readyTimeout">How long to wait for a creator still initializing it (default 5 s).</param>
    public static SharedSegment Open(string name, TimeSpan? readyTimeout = null) =>
        Open(name, OpenOptions.WithTimeout(readyTimeout));

    /// <summary>Opens and validates any segment with <paramref name="options"/> (ready timeout, other owners).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="options">How long to wait for the creator, and whether another user's segment is accepted.</param>
    public static SharedSegment Open(string name, OpenOptions options) =>
        new(SharedObjectCore.Open(OwnerName, name, options ?? throw new ArgumentNullException(nameof(options)), _ => null));

    /// <summary>Reads and validates the header of segment <paramref name="name"/> without keeping it open:
    /// looking never takes part in a segment's lifetime (a last-closer segment is neither held nor removed;
    /// docs/format.md section 8). For tools (the CLI's ls and inspect). The external lock segment is not opened.</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="options">How long to wait for the creator, and whether another user's segment is accepted.</param>
    public static SegmentHeader ReadHeader(string name, OpenOptions? options = null) =>
        SharedObjectCore.ReadHeader(name, options ?? OpenOptions.Default);

    /// <summary>Removes a segment name (explicit unlink; memory stays mapped for processes using it).</summary>
    /// <exception cref="SegmentNotFoundException">No such segment.</exception>
    /// <param name="name">Segment name.</param>
    /// <param name="directory">The directory backend's directory (null: SHAREDBRIDGE_DIR, else /dev/shm; docs/format.md section 1.3).</param>
    public static void Unlink(string name, string? directory = null) =>
        MappedSegment.UnlinkByName(Format.SegmentName.Qualify(name, directory)!);

    /// <summary>True when a segment of this name exists (the name is validated first).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="directory">The directory backend's directory (null: SHAREDBRIDGE_DIR, else /dev/shm).</param>
    public static bool Exists(string name, string? directory = null) =>
        MappedSegment.Exists(Format.SegmentName.Qualify(name, directory)!);

    /// <summary>The segment name.</summary>
    public string Name => _core.Name;

    /// <summary>The validated private copy of the header.</summary>
    public SegmentHeader Header => _core.Header;

    /// <summary>The data area (data_size bytes) over shared memory. Do not use it after Dispose.</summary>
    /// <exception cref="NotSupportedException">The data area is larger than 2 GiB.</exception>
    public Span<byte> Data
    {
        get
        {
            _core.ThrowIfDisposed();
            long size = Header.DataSize;
            if (size > int.MaxValue) throw new NotSupportedException($"The data area of \"{Name}\" ({size} bytes) is too large for a Span.");
            return new Span<byte>(_core.Segment.Data, (int)size);
        }
    }

    /// <summary>The state word read now: 1 ready, 2 retired (its creator has unlinked the name since).</summary>
    public int CurrentState
    {
        get
        {
            _core.ThrowIfDisposed();
            return _core.Segment.LiveState;
        }
    }

    /// <summary>True when the segment is synchronized by a shared lock (embedded, or external and opened).</summary>
    public bool HasLock => _core.HasLock;

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

    /// <summary>
    /// Thread id (Linux tid) of the current holder of the embedded lock, 0 when it is free, read from
    /// the mutex's lock word without locking (a snapshot, for tools). Not available for external locks.
    /// </summary>
    public int LockOwnerThreadId
    {
        get
        {
            _core.ThrowIfDisposed();
            return _core.Segment.Mutex is { } mutex ? mutex.OwnerThreadId : 0;
        }
    }

    /// <summary>True when the embedded lock's holder died and nobody has recovered it yet (snapshot).</summary>
    public bool LockOwnerDied
    {
        get
        {
            _core.ThrowIfDisposed();
            return _core.Segment.Mutex is { } mutex && mutex.OwnerDied;
        }
    }

    /// <summary>Closes this view (never unlinks: an attacher only unlinks explicitly).</summary>
    public void Dispose() => _core.Dispose();
}
