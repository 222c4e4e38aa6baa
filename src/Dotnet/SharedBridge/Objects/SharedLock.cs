// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Objects;
using SharedBridge.Platform;

namespace SharedBridge;

/// <summary>
/// A named robust lock shared between processes: a lock-only segment (kind 3), or the embedded lock
/// of an array/value segment. Pass it as <see cref="SegmentOptions.SharedLock"/> to synchronize
/// several segments with one lock (Python's <c>lock=lock</c>).
/// </summary>
public sealed class SharedLock : IDisposable
{
    private const string OwnerName = "SharedLock";
    private readonly SharedObjectCore _core;

    private SharedLock(SharedObjectCore core) => _core = core;

    /// <summary>Creates a lock-only segment.</summary>
    /// <param name="name">Segment name, or null for a generated name.</param>
    /// <param name="options">Mode, lifetime and lock type (RecursiveLock); Synchronized must stay true.</param>
    public static SharedLock Create(string? name = null, SegmentOptions? options = null)
    {
        if (options is not null && (!options.Synchronized || options.SharedLock is not null || options.TypeCode is not null))
            throw new ArgumentException("A SharedLock has its own embedded lock and no data: Synchronized must be true, SharedLock and TypeCode null.", nameof(options));
        return new SharedLock(SharedObjectCore.Create(OwnerName, name, SegmentKind.Lock, '\0', 0, 0, "", [], options, default));
    }

    /// <summary>Opens the lock of an existing segment: a lock-only segment (Python's <c>sharedbridge.Lock</c>/<c>RLock</c>)
    /// or the embedded lock of an array, a value, an n-dimensional array or a condition. Not the internal lock of an
    /// event, a semaphore, a barrier or a queue (docs/format.md section 10.1).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="readyTimeout">How long to wait for a creator still initializing it (default 5 s).</param>
    /// <exception cref="TypeMismatchException">The segment has no embedded lock, or it is an event, a semaphore, a barrier
    /// or a queue (the message names the Open to call).</exception>
    public static SharedLock Open(string name, TimeSpan? readyTimeout = null) =>
        Open(name, OpenOptions.WithTimeout(readyTimeout));

    /// <summary>Opens the lock of an existing segment with <paramref name="options"/> (ready timeout, other owners).</summary>
    /// <param name="name">Segment name.</param>
    /// <param name="options">How long to wait for the creator, and whether another user's segment is accepted.</param>
    /// <exception cref="TypeMismatchException">The segment has no embedded lock, or it is an event, a semaphore, a barrier
    /// or a queue (the message names the Open to call).</exception>
    public static SharedLock Open(string name, OpenOptions options) =>
        new(SharedObjectCore.Open(OwnerName, name, options ?? throw new ArgumentNullException(nameof(options)), WhyNotALock));

    /// <summary>Why a segment's lock cannot be opened as a SharedLock, or null. The mutex of an event, a semaphore,
    /// a barrier or a queue guards that object's own words (docs/format.md section 10.1): a user holding it would block
    /// every operation of the object, so it is refused as another kind, as the typed Opens refuse a lock segment.</summary>
    private static string? WhyNotALock(SegmentHeader header) => header.Kind switch
    {
        SegmentKind.Event => NotALock(header.Kind, "an", "event", "SharedEvent"),
        SegmentKind.Semaphore => NotALock(header.Kind, "a", "semaphore", "SharedSemaphore"),
        SegmentKind.Barrier => NotALock(header.Kind, "a", "barrier", "SharedBarrier"),
        SegmentKind.Queue => NotALock(header.Kind, "a", "queue", "SharedQueue"),
        _ => header.LockKind == LockKind.Embedded ? null
            : header.LockKind == LockKind.External
                ? $"it has no lock of its own: it uses the lock of \"{header.LockName}\" (open that one)"
                : "it has no shared lock",
    };

    private static string NotALock(SegmentKind kind, string article, string what, string type) =>
        $"it is {article} {what} segment (kind {(int)kind}), not a lock: its mutex guards the {what}'s own words " +
        $"(docs/format.md section 10.1); open it with {type}.Open";

    internal static SharedLock ForSegmentOf(SharedObjectCore core)
    {
        core.ThrowIfDisposed();
        var holder = core.LockHolder ?? throw new InvalidOperationException(
            $"Segment \"{core.Name}\" is not synchronized: it has no lock to share.");
        return new SharedLock(SharedObjectCore.Share(OwnerName, holder));
    }

    /// <summary>The segment holding the lock, with one more reference for a new user (lock_kind 2).</summary>
    internal MappedSegment LockSegmentForSharing()
    {
        _core.ThrowIfDisposed();
        var segment = _core.Segment;
        segment.AddRef();
        return segment;
    }

    /// <summary>The kind of the segment that holds the lock.</summary>
    internal SegmentKind SegmentKind => _core.Header.Kind;

    /// <summary>The name of the segment that holds the lock.</summary>
    public string Name => _core.Name;

    /// <summary>True when this object created the lock segment.</summary>
    public bool IsOwner => _core.IsOwner;

    /// <summary>Recursive (RLock) or error-checking (Lock).</summary>
    public LockType LockType => _core.Header.LockType;

    /// <summary>The validated private copy of the header.</summary>
    public SegmentHeader Header => _core.Header;

    // The lock members are documented once, here. SharedArray<T>, SharedValue<T>, SharedCharArray and
    // SharedSegment have the same members with the same contract on their own lock (embedded, or the
    // SharedLock they were created with) and inherit these docs; SharedObjectCore implements them all.

    /// <summary>Acquires the lock, blocking; dispose the scope to release it (<c>using var scope = x.Lock();</c>).
    /// <see cref="LockScope.Recovered"/> tells whether the previous owner died holding it (docs/format.md section 7.3).</summary>
    /// <exception cref="InvalidOperationException">The object is not synchronized (created with <c>Synchronized = false</c>; never a SharedLock).</exception>
    /// <exception cref="LockNotRecoverableException">The lock is permanently unusable (until <see cref="Reset(string)"/>).</exception>
    /// <exception cref="LockRecursionException">The lock is not recursive and this thread already holds it.</exception>
    public LockScope Lock() => _core.Lock();

    /// <summary>Acquires the lock within <paramref name="timeout"/>, as <see cref="Lock()"/>.</summary>
    /// <exception cref="LockTimeoutException">The lock was not acquired in time.</exception>
    public LockScope Lock(TimeSpan timeout) => _core.Lock(timeout);

    /// <summary>Tries to acquire the lock within <paramref name="timeout"/>; false (and a default
    /// <paramref name="scope"/>) when it was not acquired in time.</summary>
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

    /// <summary>Dead-owner recoveries of the lock so far: the <c>recovery_count</c> of the segment that holds it,
    /// read live (docs/format.md sections 3.2 and 7.3).</summary>
    public long LockRecoveries => _core.LockRecoveries;

    /// <summary>The lock's state now (for tools: it may change as soon as it is read).</summary>
    public LockState State => _core.LockState;

    /// <summary>
    /// The operator's reset of docs/format.md section 7.4: re-initializes the lock of segment <paramref name="name"/>
    /// when it is not recoverable or its mutex bytes are corrupt. Never done implicitly.
    /// </summary>
    /// <returns>True when the mutex was re-initialized (counted as a recovery); false when it was healthy and nothing was done.</returns>
    /// <exception cref="SegmentInUseException">Another process maps the segment: a lock is never reset under its users.</exception>
    /// <exception cref="TypeMismatchException">The segment has no lock of its own (the message names its lock segment, if any).</exception>
    public static bool Reset(string name) => Reset(name, null);

    /// <summary>Re-initializes the lock of segment <paramref name="name"/> in the directory backend's
    /// <paramref name="directory"/> (null: SHAREDBRIDGE_DIR, else /dev/shm; docs/format.md section 1.3): see <see cref="Reset(string)"/>.</summary>
    public static bool Reset(string name, string? directory)
    {
        var core = SharedObjectCore.Open(OwnerName, name, new OpenOptions { Directory = directory }, header => header.LockKind == LockKind.Embedded ? null
            : header.LockKind == LockKind.External
                ? $"it uses the lock of \"{header.LockName}\": reset that one"
                : "it has no shared lock to reset");
        try { return core.ResetLock(); }
        finally { core.Dispose(); }
    }

    /// <summary>Dead-owner recoveries of this lock so far: the old name of <see cref="LockRecoveries"/>.</summary>
    [Obsolete("use LockRecoveries")]
    public long Recoveries => LockRecoveries;

    /// <summary>Removes the name now; the memory stays mapped.</summary>
    public void Unlink() => _core.Unlink();

    /// <summary>Closes the lock; the creator also unlinks the name unless kept.</summary>
    public void Dispose() => _core.Dispose();
}
