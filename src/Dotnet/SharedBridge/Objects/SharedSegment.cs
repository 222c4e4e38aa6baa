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
    public static void Unlink(string name) => MappedSegment.UnlinkByName(name);

    /// <summary>True when a segment of this name exists (the name is validated first).</summary>
    public static bool Exists(string name) => MappedSegment.Exists(name);

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

    /// <summary>Acquires the segment's shared lock, blocking.</summary>
    public LockScope Lock() => _core.Lock();

    /// <summary>Acquires the lock within <paramref name="timeout"/>.</summary>
    /// <exception cref="LockTimeoutException">The lock was not acquired in time.</exception>
    public LockScope Lock(TimeSpan timeout) => _core.Lock(timeout);

    /// <summary>Tries to acquire the lock within <paramref name="timeout"/>.</summary>
    public bool TryLock(TimeSpan timeout, out LockScope scope) => _core.TryLock(timeout, out scope);

    /// <summary>Acquires the lock as a heap object, blocking: for code that cannot use a <see cref="LockScope"/>
    /// (released in another method, held by an object, Python's <c>with</c> through pythonnet). Thread-affine:
    /// dispose it on this thread; never hold it across an <c>await</c> (use <see cref="LockAsync(Action, TimeSpan?, CancellationToken)"/>).</summary>
    public LockHandle LockUnscoped() => _core.LockUnscoped();

    /// <summary>As <see cref="LockUnscoped()"/>, waiting at most <paramref name="timeout"/>.</summary>
    /// <exception cref="LockTimeoutException">The lock was not acquired in time.</exception>
    public LockHandle LockUnscoped(TimeSpan timeout) => _core.LockUnscoped(timeout);

    /// <summary>
    /// Runs <paramref name="body"/> with the lock held, on one thread from start to finish (never across an
    /// <c>await</c>): at once on the calling thread when the lock is free, else on a dedicated thread once it
    /// is acquired. The lock is released when the body returns or throws.
    /// </summary>
    /// <param name="body">The critical section: synchronous code (it must not block on async work).</param>
    /// <param name="timeout">How long to wait for the lock; null waits until it is free.</param>
    /// <param name="cancellationToken">Cancels the wait for the lock (not a body already running).</param>
    /// <returns>A task that completes when the body has run and the lock is released; it fails with
    /// <see cref="LockTimeoutException"/> on timeout, is canceled on cancellation, and carries the body's exception.</returns>
    public Task LockAsync(Action body, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        _core.LockAsync(body, timeout, cancellationToken);

    /// <summary>As <see cref="LockAsync(Action, TimeSpan?, CancellationToken)"/>, returning the body's result.</summary>
    public Task<TResult> LockAsync<TResult>(Func<TResult> body, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        _core.LockAsync(body, timeout, cancellationToken);

    /// <summary>Dead-owner recoveries of the lock so far (live).</summary>
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
