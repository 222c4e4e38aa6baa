using System.Runtime.CompilerServices;
using SharedBridge.Format;
using SharedBridge.Platform;

namespace SharedBridge.Objects;

/// <summary>
/// What every public object (SharedArray, SharedValue, SharedCharArray, SharedLock, SharedSegment)
/// is made of and delegates to: its mapped segment, the lock it is synchronized with (its own or
/// another segment's), whether it owns the segment, and its disposal.
/// </summary>
internal sealed class SharedObjectCore
{
    private readonly MappedSegment? _lockSegment; // the other segment whose lock we use (lock_kind 2)
    private readonly RobustMutex? _mutex;
    private readonly string _owner;
    private int _disposed;

    private SharedObjectCore(string owner, MappedSegment segment, MappedSegment? lockSegment)
    {
        _owner = owner;
        Segment = segment;
        _lockSegment = lockSegment;
        _mutex = lockSegment?.Mutex ?? segment.Mutex;
    }

    internal MappedSegment Segment { get; }
    internal SegmentHeader Header => Segment.Header;
    /// <summary>The segment's name, as objects show it (without the directory of a directory-backend segment).</summary>
    internal string Name => SegmentName.BaseName(Segment.Name);

    /// <summary>The directory option that designates this segment's directory exactly (its own, or /dev/shm): what its
    /// companions (a queue's data segments, section 11.5) are created and opened with (docs/format.md section 1.3).</summary>
    internal string DirectoryOption => SegmentName.DirectoryOptionOf(Segment.Name);
    internal bool IsOwner => !_shared && Segment.IsCreator;
    internal bool HasLock => _mutex is not null;

    /// <summary>The mutex this object is synchronized with (its own or the external lock segment's).</summary>
    internal RobustMutex? Mutex => _mutex;
    internal bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>The segment holding the lock (this one or the external lock segment).</summary>
    internal MappedSegment? LockHolder => _lockSegment ?? (Segment.Mutex is not null ? Segment : null);

    internal static SharedObjectCore Create(string owner, string? name, SegmentKind kind, char typeCode, int elementSize,
        long count, string typeName, StructField[] fields, SegmentOptions? options, ReadOnlySpan<byte> initial,
        IReadOnlyList<long>? shape = null)
    {
        options ??= SegmentOptions.Default;
        string? key = SegmentName.Qualify(name, options.Directory);
        int mode = (int)options.Mode;
        if ((mode & ~0x1FF) != 0)
            throw new ArgumentException(
                $"Mode {Convert.ToString(mode, 8)} (octal) is not a set of permission bits: only the bits of 0777 are allowed.", nameof(options));
        if ((mode & 0x180) != 0x180)
            throw new ArgumentException(
                $"Mode {Convert.ToString(mode, 8)} (octal) does not give the owner read and write (0600): the creator must be able to use its segment.", nameof(options));
        MappedSegment? lockSegment = null;
        LockKind lockKind = LockKind.None;
        string lockName = "";
        if (options.SharedLock is { } shared)
        {
            if (!options.Synchronized)
                throw new ArgumentException("Synchronized = false and a SharedLock contradict each other: drop one.", nameof(options));
            lockSegment = shared.LockSegmentForSharing();
            lockKind = LockKind.External;
            // The header records the lock's name; readers look it up in the object's directory (section 1.3).
            string? ownerDir = key is null ? null : key.EndsWith('/') ? key[..^1] : SegmentName.DirectoryOf(key);
            string? lockDir = SegmentName.DirectoryOf(lockSegment.Name);
            if (ownerDir != lockDir)
            {
                lockSegment.Release();
                throw new ArgumentException(
                    $"The shared lock \"{SegmentName.BaseName(lockSegment.Name)}\" is in {lockDir ?? SegmentName.ShmDirectory} but the object " +
                    $"would be in {ownerDir ?? SegmentName.ShmDirectory}: an object and its external lock must be in one directory; set " +
                    "SegmentOptions.Directory to the lock's directory.", nameof(options));
            }
            lockName = SegmentName.BaseName(lockSegment.Name);
        }
        else if (options.Synchronized)
        {
            LockAbi.RequireCurrent();
            lockKind = LockKind.Embedded;
        }
        try
        {
            var spec = new HeaderSpec(kind, typeCode, elementSize, count, lockKind,
                lockKind == LockKind.Embedded ? (options.RecursiveLock ? LockType.Recursive : LockType.ErrorChecking) : LockType.None,
                lockName, typeName, fields, options.ResolveLifetime(), shape);
            var segment = MappedSegment.Create(key, spec, options.Mode, initial);
            return new SharedObjectCore(owner, segment, lockSegment);
        }
        catch
        {
            lockSegment?.Release();
            throw;
        }
    }

    /// <summary>Opens a segment; <paramref name="verify"/> returns why the header does not fit the
    /// caller's type (TypeMismatchException), or null.</summary>
    internal static SharedObjectCore Open(string owner, string name, OpenOptions? options, Func<SegmentHeader, string?> verify)
    {
        options ??= OpenOptions.Default;
        var segment = OpenMapped(SegmentName.Qualify(name, options.Directory)!, options);
        MappedSegment? lockSegment = null;
        try
        {
            if (verify(segment.Header) is { } why)
                throw new TypeMismatchException($"Segment \"{name}\" cannot be opened as {owner}: {why}.");
            if (segment.Header.LockKind == LockKind.External)
                lockSegment = OpenLockSegment(segment, options);
            return new SharedObjectCore(owner, segment, lockSegment);
        }
        catch
        {
            lockSegment?.Release();
            segment.Release();
            throw;
        }
    }

    /// <summary>A second core on an already open segment (for example an array's GetLock()).</summary>
    internal static SharedObjectCore Share(string owner, MappedSegment segment)
    {
        segment.AddRef();
        return new SharedObjectCore(owner, segment, null, shared: true);
    }

    private SharedObjectCore(string owner, MappedSegment segment, MappedSegment? lockSegment, bool shared) : this(owner, segment, lockSegment)
    {
        _shared = shared;
    }

    private readonly bool _shared;

    /// <summary>The options resolved to what the mapping layer takes (the key is checked first, as ever).</summary>
    private static MappedSegment OpenMapped(string key, OpenOptions options, bool join = true)
    {
        SegmentName.ValidateKey(key);
        TimeSpan timeout = options.ReadyTimeout ?? TimeSpan.FromSeconds(5);
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(options), timeout, "The ready timeout must be non-negative.");
        if (options.WaitForName is { } wait)
        {
            if (wait < TimeSpan.Zero && wait != Timeout.InfiniteTimeSpan)
                throw new ArgumentOutOfRangeException(nameof(options), wait, "WaitForName must be non-negative (or infinite).");
            MappedSegment.WaitForName(key, wait);
        }
        return MappedSegment.Open(key, timeout, options.AllowOtherOwner, join);
    }

    /// <summary>The validated header of <paramref name="name"/>, opened without joining its lifetime.</summary>
    internal static SegmentHeader ReadHeader(string name, OpenOptions options)
    {
        var segment = OpenMapped(SegmentName.Qualify(name, options.Directory)!, options, join: false);
        try { return segment.Header; }
        finally { segment.Release(); }
    }

    private static MappedSegment OpenLockSegment(MappedSegment owner, OpenOptions options)
    {
        var header = owner.Header;
        MappedSegment lockSegment;
        try
        {
            // In the directory of the segment that names it (docs/format.md section 1.3); never waits for its name.
            lockSegment = OpenMapped(SegmentName.InSameDirectory(owner.Name, header.LockName),
                options.WaitForName is null ? options : new OpenOptions(options.ReadyTimeout, options.AllowOtherOwner));
        }
        catch (CorruptSegmentException e)
        {
            throw new CorruptSegmentException(
                $"Segment \"{header.Name}\" is synchronized by the lock of segment \"{header.LockName}\", which cannot serve as its lock: {e.Message}", e);
        }
        catch (SegmentNotFoundException)
        {
            throw new SegmentNotFoundException(header.LockName,
                $"Segment \"{header.Name}\" is synchronized by the lock of segment \"{header.LockName}\", which no longer exists: " +
                "keep the lock's creator alive while the segments that use it are in use.");
        }
        if (lockSegment.Mutex is null)
        {
            var lockKind = lockSegment.Header.LockKind;
            lockSegment.Release();
            throw new CorruptSegmentException(
                $"Segment \"{header.Name}\" names \"{header.LockName}\" as its lock, but that segment has no embedded lock " +
                $"(its lock_kind is {(int)lockKind}, {lockKind}; an external lock must have lock_kind 1): the two segments do not belong together.");
        }
        if (header.Kind == SegmentKind.Condition && !CanLockACondition(lockSegment.Header.Kind))
        {
            var kind = lockSegment.Header.Kind;
            lockSegment.Release();
            throw new CorruptSegmentException(
                $"Segment \"{header.Name}\" is a condition on the lock of \"{header.LockName}\", which is {kind} (kind {(int)kind}): " +
                "that mutex guards the object's own words, so a condition may not use it (docs/format.md section 10.1); recreate the condition on a lock, an array or a value.");
        }
        return lockSegment;
    }

    /// <summary>Section 10.1: the lock segment of a condition with lock_kind 2 is a lock-only segment, an array, a value,
    /// an n-dimensional array or a condition: never an event, a semaphore, a barrier or a queue, whose mutex guards that
    /// object's own words (a condition's user holding it would block the object, and a wait would release it).</summary>
    internal static bool CanLockACondition(SegmentKind kind) =>
        kind is not (SegmentKind.Event or SegmentKind.Semaphore or SegmentKind.Barrier or SegmentKind.Queue);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ThrowIfDisposed()
    {
        if (_disposed != 0) ThrowDisposed();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowDisposed() => throw new ObjectDisposedException(_owner, $"\"{Name}\" has been disposed.");

    /// <summary>The mutex to lock: usage errors (disposed, no lock) throw here, before any wait.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private RobustMutex LockableMutex()
    {
        ThrowIfDisposed();
        return _mutex ?? ThrowNoLock();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal LockScope Lock()
    {
        var mutex = LockableMutex();
        bool recovered = mutex.Lock();
        return new LockScope(mutex, recovered);
    }

    internal LockScope Lock(TimeSpan timeout)
    {
        if (TryLock(timeout, out var scope)) return scope;
        throw LockTimeout(timeout);
    }

    internal bool TryLock(TimeSpan timeout, out LockScope scope)
    {
        var mutex = LockableMutex();
        bool acquired = mutex.TryLock(timeout, out bool recovered);
        scope = acquired ? new LockScope(mutex, recovered) : default;
        return acquired;
    }

    private LockTimeoutException LockTimeout(TimeSpan timeout) => new(
        $"The lock of \"{LockHolder?.Name}\" (used by \"{Name}\") was not acquired within {timeout.TotalMilliseconds:0.###} ms: " +
        "another thread or process holds it. Retry, or increase the timeout.");

    /// <summary>The lock as a thread-affine heap object (README.md, "Locks and async code").</summary>
    internal LockHandle LockUnscoped()
    {
        var mutex = LockableMutex();
        bool recovered = mutex.Lock();
        return new LockHandle(mutex, recovered);
    }

    internal LockHandle LockUnscoped(TimeSpan timeout)
    {
        var mutex = LockableMutex();
        if (!mutex.TryLock(timeout, out bool recovered)) throw LockTimeout(timeout);
        return new LockHandle(mutex, recovered);
    }

    internal Task LockAsync(Action body, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(body);
        return LockAsync<bool>(() => { body(); return true; }, timeout, cancellationToken);
    }

    /// <summary>
    /// Runs <paramref name="body"/> with the lock held, start to finish on one thread, never across an await:
    /// when the lock is free, at once on the calling thread (the task is complete when this returns);
    /// otherwise on a dedicated thread that waits for the lock (no thread-pool thread is blocked), so the
    /// caller can await it. Usage errors (null body, bad timeout, disposed, no lock) throw here; the lock's
    /// own outcomes (timeout, cancellation, corrupt lock, the body's exception) are the task's.
    /// </summary>
    internal Task<T> LockAsync<T>(Func<T> body, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(body);
        TimeSpan wait = timeout ?? Timeout.InfiniteTimeSpan;
        if (wait < TimeSpan.Zero && wait != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), wait, "The timeout must be non-negative, Timeout.InfiniteTimeSpan or null.");
        var mutex = LockableMutex();
        if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<T>(cancellationToken);

        bool acquired;
        try { acquired = mutex.TryLock(TimeSpan.Zero, out _); }
        catch (Exception e) { return Task.FromException<T>(e); }
        if (acquired) return RunHeld(mutex, body, cancellationToken, out var result) is { } failed ? failed : Task.FromResult(result);
        if (wait == TimeSpan.Zero) return Task.FromException<T>(LockTimeout(wait));

        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                if (!mutex.TryLock(wait, cancellationToken, out _))
                {
                    done.SetException(LockTimeout(wait));
                    return;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                done.SetCanceled(cancellationToken);
                return;
            }
            catch (Exception e)
            {
                done.SetException(e);
                return;
            }
            if (RunHeld(mutex, body, cancellationToken, out var value) is { } failed)
                done.SetFromTask(failed);
            else
                done.SetResult(value);
        })
        {
            IsBackground = true,
            Name = "SharedBridge LockAsync",
        };
        thread.Start();
        return done.Task;
    }

    /// <summary>Runs the body while this thread holds <paramref name="mutex"/> and releases it on this thread;
    /// null when the body returned, else the faulted or canceled task that reports what went wrong.</summary>
    private static Task<T>? RunHeld<T>(RobustMutex mutex, Func<T> body, CancellationToken cancellationToken, out T result)
    {
        result = default!;
        try
        {
            try { result = body(); }
            finally { mutex.Unlock(); }
            return null;
        }
        catch (OperationCanceledException e) when (e.CancellationToken == cancellationToken && cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<T>(cancellationToken);
        }
        catch (Exception e)
        {
            return Task.FromException<T>(e);
        }
    }

    internal long LockRecoveries
    {
        get
        {
            ThrowIfDisposed();
            return LockHolder?.LiveRecoveryCount ?? 0;
        }
    }

    internal LockState LockState
    {
        get
        {
            ThrowIfDisposed();
            var holder = LockHolder ?? throw NoLockError();
            holder.AddRef();
            try { return _mutex!.State; }
            finally { holder.Release(); }
        }
    }

    /// <summary>Section 7.4: the operator's reset of this segment's own embedded lock.</summary>
    internal bool ResetLock()
    {
        ThrowIfDisposed();
        var others = Segment.OtherProcessesMapping();
        if (others.Count > 0)
            throw new SegmentInUseException(
                $"Segment \"{Name}\" is mapped by process(es) {string.Join(", ", others)}: a lock is never reset under its users; stop them first.",
                others);
        if (LockState is not (LockState.NotRecoverable or LockState.Corrupt)) return false;
        Segment.AddRef();
        try { _mutex!.Reset(Header.LockSize); }
        finally { Segment.Release(); }
        return true;
    }

    /// <summary>The error of locking an object without a shared lock (lock_kind 0).</summary>
    private InvalidOperationException NoLockError() => new(
        $"Segment \"{Name}\" is not synchronized (lock_kind {(int)Header.LockKind}, {Header.LockKind}): it has no shared lock. " +
        "Create it with Synchronized = true (the default) or with a SharedLock.");

    /// <summary>Throws <see cref="NoLockError"/>; typed as a mutex so that it fits after <c>??</c>, and
    /// never inlined so that the lock's fast path stays small.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private RobustMutex ThrowNoLock() => throw NoLockError();

    internal void Unlink()
    {
        ThrowIfDisposed();
        Segment.Unlink();
    }

    internal void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        // The creator's name goes at once; the mapping goes when no lock is held any more.
        if (!_shared) Segment.RetireAndUnlink();
        Segment.Release();
        _lockSegment?.Release();
    }
}
