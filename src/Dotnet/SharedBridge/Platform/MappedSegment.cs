using System.Runtime.CompilerServices;
using Microsoft.Win32.SafeHandles;
using SharedBridge.Format;
using static SharedBridge.Format.HeaderLayout;

namespace SharedBridge.Platform;

/// <summary>
/// One mapped shared-memory object and its lifetime (docs/format.md sections 6 and 8): creates it,
/// opens it (<see cref="AttachChecks"/>), joins and leaves a last-closer segment
/// (<see cref="LastCloser"/>), retires and unlinks it by identity, and owns the descriptor, the
/// mapping (<see cref="MappedMemory"/>) and the pointer into it.
/// </summary>
/// <remarks>
/// Reference counted (<see cref="AddRef"/>, <see cref="Release"/>): every public object using the
/// segment and every held lock keeps one reference, and code reading the mapping takes one for as long
/// as it does. The last release retires and unlinks (a creator, or the last closer) and only then
/// unmaps, so a concurrent Dispose never unmaps memory a thread of this process still uses.
/// </remarks>
internal sealed unsafe class MappedSegment
{
    /// <summary>How many times opening starts over when the last closer removed a last-closer segment
    /// between shm_open and this process's shared flock (section 8).</summary>
    private const int LastCloserRetries = 3;

    /// <summary>Tests only (set by reflection in the test child): called with the name between initialization
    /// and state = ready, so that a test can kill a creator there (format.md section 8, reaping).</summary>
    private static Action<string>? BeforeReadyHook = null;

    /// <summary>Tests only (set by reflection in the test child): called with the name right after shm_open(O_EXCL)
    /// made the object, before it is sized, so that a test can signal a creator while the object is 0 bytes.</summary>
    private static Action<string>? AfterOpenHook = null;

    private readonly SafeFileHandle _fd;
    private readonly MappedMemory _mapping;
    private readonly Interop.FileStat _identity;
    private readonly LastCloser _lastCloser;
    private readonly int _creatorPid;
    private byte* _base;
    private int _refs = 1;
    private int _unlinked;

    internal string Name { get; }
    internal SegmentHeader Header { get; }
    internal bool IsCreator { get; }
    internal bool KeepOnDispose { get; }
    internal RobustMutex? Mutex { get; }

    /// <summary>Bytes mapped: data_offset + data_size of the validated header (never the whole object).</summary>
    internal long MappedSize { get; }

    private MappedSegment(string name, SafeFileHandle fd, MappedMemory mapping, Interop.FileStat identity, SegmentHeader header,
        bool isCreator, bool keep, bool joined)
    {
        Name = name;
        _fd = fd;
        _mapping = mapping;
        _identity = identity;
        _lastCloser = new LastCloser(fd, name, joined);
        Header = header;
        IsCreator = isCreator;
        KeepOnDispose = keep;
        _creatorPid = isCreator ? Interop.GetPid() : 0;
        MappedSize = (long)mapping.Length;
        _base = mapping.Base;
        if (header.LockKind == LockKind.Embedded)
            Mutex = new RobustMutex(this, _base + MutexOffset, header.LockType);
    }

    /// <summary>Run (mapped, once) just before this process removes the name: a queue unlinks the out-of-line segments of
    /// the messages still in it (docs/format.md section 11.5). Never throws.</summary>
    internal Action? BeforeRemove { get; set; }

    private void RunBeforeRemove()
    {
        try { BeforeRemove?.Invoke(); }
        catch (Exception e) when (e is ISharedBridgeException or IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            // Best effort: what is left behind is reapable (section 11.5).
        }
    }

    /// <summary>Start of the data area (valid while a reference is held).</summary>
    internal byte* Data => _base + Header.DataOffset;

    /// <summary>The object's inode (fstat when it was opened).</summary>
    internal ulong Inode => _identity.Inode;

    // ---------------------------------------------------------------- creation (section 6.1)

    internal static MappedSegment Create(string? name, HeaderSpec spec, UnixFileMode mode, ReadOnlySpan<byte> initialData)
    {
        bool keep = spec.Lifetime != SegmentLifetime.Creator;
        // name: a key, or null / "<dir>/" to generate one (SegmentName.Qualify).
        bool generated = name is null || name.EndsWith('/');
        if (!generated) SegmentName.ValidateKey(name);
        if (spec.TypeName.Length >= TypeNameWidth) throw new InvalidOperationException("type name too long");
        long total = spec.TotalSize;
        for (int attempt = 0; ; attempt++)
        {
            string actual = SegmentName.GeneratedKey(name);
            var fd = SegmentBackend.Open(actual, Interop.O_CREAT | Interop.O_EXCL | Interop.O_RDWR, (uint)mode, out int errno);
            if (fd is null)
            {
                if (errno == Interop.EEXIST && generated && attempt < 16) continue;
                throw OsErrors.Open(actual, errno, creating: true);
            }
            // From here until the object is registered (or removed), the name is this process's to remove: on any
            // failure, and on a signal or an exit meanwhile (ExitCleanup.Creating), if it is still this object
            // (docs/format.md section 8). A persistent segment is the reaper's once its creator is gone.
            Interop.FileStat? made = null;
            try
            {
                made = AttachChecks.FStat(actual, fd);
                if (spec.Lifetime != SegmentLifetime.Persistent) ExitCleanup.Creating(actual, made.Value);
                AfterOpenHook?.Invoke(actual);
                if (spec.Lifetime == SegmentLifetime.LastCloser) LastCloser.JoinNew(fd, actual);
                return Initialize(actual, fd, spec, mode, keep, total, initialData);
            }
            catch
            {
                // Only an fstat that failed leaves no identity: then the name, created an instant ago.
                if (made is { } st) ExitCleanup.UnlinkIfSame(actual, st.Device, st.Inode);
                else SegmentBackend.Unlink(actual);
                fd.Dispose();
                throw;
            }
            finally
            {
                ExitCleanup.Created(actual);
            }
        }
    }

    private static MappedSegment Initialize(string name, SafeFileHandle fd, HeaderSpec spec, UnixFileMode mode, bool keep,
        long total, ReadOnlySpan<byte> initialData)
    {
        // shm_open's mode is reduced by the umask; the user asked for this exact mode.
        if (Interop.FChmod(fd, (uint)mode) != 0) throw OsErrors.Failed($"fchmod on \"{name}\"", OsErrors.Last);
        if (Interop.FTruncate(fd, total) != 0) throw OsErrors.Size(name, OsErrors.Last, total);
        // Reserve the pages now: on a full /dev/shm a later first touch would be a SIGBUS, not an error.
        int rc = Interop.PosixFallocate(fd, 0, total);
        if (rc != 0) throw OsErrors.Reserve(name, rc, total);

        var identity = AttachChecks.FStat(name, fd);
        var mapping = MappedMemory.Map(name, fd, total);
        try
        {
            byte* start = mapping.Base;
            var header = new Span<byte>(start, spec.HeaderSize);
            HeaderCodec.WriteIdentity(header, spec, ProcessInfo.Pid, ProcessInfo.StartTime, ProcessInfo.UnixNanosecondsNow());
            if (spec.LockKind == LockKind.Embedded)
                RobustMutex.Initialize(start + MutexOffset, LockAbi.RequireCurrent().MutexSize, spec.LockType);
            initialData.CopyTo(new Span<byte>(start + spec.HeaderSize, (int)Math.Min(spec.DataSize, int.MaxValue)));
            BeforeReadyHook?.Invoke(name);
            *(uint*)(start + HeaderCrc32Offset) = HeaderCodec.ComputeCrc(header);
            MappedMemory.Fence();
            Volatile.Write(ref *(uint*)(start + StateOffset), StateReady);

            var segment = new MappedSegment(name, fd, mapping, identity, HeaderCodec.Parse(name, header, total),
                isCreator: true, keep, joined: spec.Lifetime == SegmentLifetime.LastCloser);
            segment.RegisterOwned();
            return segment;
        }
        catch
        {
            mapping.Dispose(); // Create's handler unlinks and closes
            throw;
        }
    }

    // ---------------------------------------------------------------- opening (section 6.2)

    /// <summary>Opens and validates segment <paramref name="name"/>, waiting up to <paramref name="readyTimeout"/>
    /// (non-negative or infinite; the caller checked it) for a creator still initializing it. A last-closer
    /// segment is joined (section 8) unless <paramref name="join"/> is false (only looking: the result takes
    /// part in no lifetime).</summary>
    internal static MappedSegment Open(string name, TimeSpan readyTimeout, bool allowOtherOwner, bool join = true)
    {
        for (int attempt = 0; attempt < LastCloserRetries; attempt++)
        {
            var segment = OpenOnce(name, readyTimeout, allowOtherOwner);
            if (!join || segment.Header.Lifetime != SegmentLifetime.LastCloser) return segment;
            bool joined = false;
            try { joined = segment.Join(readyTimeout); }
            finally
            {
                if (!joined) segment.Release();
            }
            if (joined) return segment;
        }
        throw OsErrors.RemovedByLastCloser(name);
    }

    /// <summary>Opens and validates without joining a last-closer segment (Open without its lifetime
    /// protocol): what tools that only look use (SegmentDirectory).</summary>
    internal static MappedSegment OpenOnce(string name, TimeSpan readyTimeout, bool allowOtherOwner)
    {
        var fd = AttachChecks.OpenDescriptor(name);
        try
        {
            var identity = AttachChecks.CheckObject(name, fd, allowOtherOwner);
            var (header, mapping) = AttachChecks.Load(name, fd, readyTimeout);
            return new MappedSegment(name, fd, mapping, identity, header, isCreator: false, keep: true, joined: false);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Joins a last-closer segment just opened; false when its last closer removed it meanwhile.</summary>
    private bool Join(TimeSpan timeout)
    {
        if (!_lastCloser.Join(timeout, stillAlive: () => LiveState != (int)StateRetired && IsStillNamed())) return false;
        ExitCleanup.Register(this);
        return true;
    }

    // ---------------------------------------------------------------- by name, without mapping

    /// <summary>Removes a segment name without opening it (an explicit unlink, section 8).</summary>
    internal static void UnlinkByName(string name)
    {
        SegmentName.ValidateKey(name);
        if (SegmentBackend.Unlink(name) != 0) throw OsErrors.Unlink(name, OsErrors.Last, byName: true);
    }

    /// <summary>The bounded poll of <see cref="WaitForName"/>: the first interval, doubled up to the last. A creator is
    /// found at most <see cref="NamePollMax"/> after it created the name; nothing is polled once the name exists.</summary>
    private static readonly TimeSpan NamePollFirst = TimeSpan.FromMilliseconds(1), NamePollMax = TimeSpan.FromMilliseconds(50);

    /// <summary>Waits up to <paramref name="wait"/> (or without limit: <see cref="Timeout.InfiniteTimeSpan"/>) for something to
    /// exist under the key (docs/api.md, "Starting a pipeline"); <see cref="SegmentNotFoundException"/> when the time is up.
    /// Opening then waits for its creator's ready state as always.</summary>
    internal static void WaitForName(string key, TimeSpan wait)
    {
        string path = SegmentName.PathOf(key);
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        var interval = NamePollFirst;
        while (Interop.TryLStat(path, out int errno) is null && errno == Interop.ENOENT)
        {
            TimeSpan left = wait == Timeout.InfiniteTimeSpan
                ? NamePollMax
                : wait - System.Diagnostics.Stopwatch.GetElapsedTime(start);
            if (left <= TimeSpan.Zero)
                throw new SegmentNotFoundException(SegmentName.BaseName(key),
                    $"No shared-memory segment named \"{key}\" appeared within {wait.TotalSeconds:0.###} s: start its creator, check " +
                    "the name (and the directory: SHAREDBRIDGE_DIR or Directory), or wait longer.");
            Thread.Sleep(left < interval ? left : interval);
            interval = interval * 2 > NamePollMax ? NamePollMax : interval * 2;
        }
    }

    /// <summary>True when something exists under the name (the name is validated first).</summary>
    internal static bool Exists(string name)
    {
        SegmentName.ValidateKey(name);
        using var fd = SegmentBackend.Open(name, Interop.O_RDONLY | Interop.O_NONBLOCK, 0, out int errno);
        return fd is not null || errno != Interop.ENOENT;
    }

    // ---------------------------------------------------------------- lock bookkeeping

    /// <summary>Pids of the other processes that map this object now (section 7.4 step 2).</summary>
    internal IReadOnlyList<int> OtherProcessesMapping() =>
        ProcessInfo.ProcessesMapping(_identity.Inode, SegmentName.DirectoryOf(Name)).Where(pid => pid != ProcessInfo.Pid).ToList();

    /// <summary>Called with the lock held after a dead-owner recovery (section 7.3 step 2).</summary>
    internal void RecordRecovery()
    {
        ulong* count = (ulong*)(_base + RecoveryCountOffset);
        Volatile.Write(ref *count, *count + 1);
        Volatile.Write(ref *(uint*)(_base + LastRecoveredByPidOffset), (uint)ProcessInfo.Pid);
    }

    /// <summary>The state word now (0 initializing, 1 ready, 2 retired), not the snapshot of the header.</summary>
    internal int LiveState
    {
        get
        {
            AddRef();
            try { return (int)Volatile.Read(ref *(uint*)(_base + StateOffset)); }
            finally { Release(); }
        }
    }

    internal long LiveRecoveryCount
    {
        get
        {
            AddRef();
            try
            {
                ulong n = Volatile.Read(ref *(ulong*)(_base + RecoveryCountOffset));
                return n > long.MaxValue ? long.MaxValue : (long)n;
            }
            finally { Release(); }
        }
    }

    // ---------------------------------------------------------------- references and lifetime (section 8)

    /// <summary>Takes a reference; throws if the mapping is already gone.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void AddRef()
    {
        int current = Volatile.Read(ref _refs);
        if (current <= 0 || Interlocked.CompareExchange(ref _refs, current + 1, current) != current)
            AddRefSlow();
    }

    /// <summary>Takes a reference unless the mapping is already gone.</summary>
    internal bool TryAddRef()
    {
        while (true)
        {
            int current = Volatile.Read(ref _refs);
            if (current <= 0) return false;
            if (Interlocked.CompareExchange(ref _refs, current + 1, current) == current) return true;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void AddRefSlow()
    {
        if (!TryAddRef())
            throw new ObjectDisposedException($"SharedBridge segment \"{Name}\"", "The segment has been disposed.");
    }

    /// <summary>Drops a reference; the last one retires/unlinks (creator, last closer) and unmaps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0) Free();
    }

    /// <summary>Creator cleanup (section 8): state = 2, then unlink the name if it is still ours.
    /// Safe to call at any time: does nothing once the mapping is gone.</summary>
    internal void RetireAndUnlink()
    {
        if (!TryAddRef()) return;
        try { RetireAndUnlinkMapped(); }
        finally { Release(); }
    }

    /// <summary>Asked when this process is about to leave a last-closer segment it holds (dispose, process end): true when
    /// the name must stay whoever else holds it, so the process only releases its lock. A reusable out-of-line data
    /// segment whose record is still ready stays for that record's consumer, who has not joined it yet and will be the last
    /// to leave (docs/format.md section 11.5: the state a killed producer leaves, which section 8's reaper keeps).</summary>
    internal Func<bool>? KeepNameOnLeave { get; set; }

    private bool MustKeepName()
    {
        try { return KeepNameOnLeave?.Invoke() == true; }
        catch (Exception e) when (e is ISharedBridgeException or ObjectDisposedException) { return true; }
    }

    /// <summary>RetireAndUnlink for callers that already keep the mapping alive.</summary>
    private void RetireAndUnlinkMapped()
    {
        if (_lastCloser.IsJoined && MustKeepName())
        {
            _lastCloser.Quit();
            return;
        }
        if (_lastCloser.Leave(whenLast: RetireAndUnlinkOnce)) return;
        if (!IsCreator || KeepOnDispose) return;
        // A fork child inherits the object but never cleans up its parent's segments.
        if (Interop.GetPid() != _creatorPid) return;
        RetireAndUnlinkOnce();
    }

    /// <summary>Retires and unlinks (if the name is still this object), once per object.</summary>
    private void RetireAndUnlinkOnce()
    {
        if (Interlocked.Exchange(ref _unlinked, 1) != 0) return;
        RunBeforeRemove();
        Retire();
        UnlinkIfStillOurs(explicitCall: false);
    }

    /// <summary>Explicit unlink: removes the name now; the memory stays mapped.</summary>
    internal void Unlink()
    {
        AddRef();
        try
        {
            _lastCloser.Quit();
            if (Interlocked.Exchange(ref _unlinked, 1) != 0)
                throw new SegmentNotFoundException(Name, $"Segment \"{Name}\" has already been unlinked.");
            RunBeforeRemove();
            Retire();
            UnlinkIfStillOurs(explicitCall: true);
        }
        finally { Release(); }
    }

    // ---------------------------------------------------------------- reuse by its producer (section 11.5)

    /// <summary>Reuse condition 2 (section 11.5): this object's shared flock converted to an exclusive one without waiting;
    /// false (the shared lock taken again, or the segment no longer joined) when another process holds it.</summary>
    internal bool TryHoldAlone() => _lastCloser.TryHoldAlone();

    /// <summary>Back to the shared flock after <see cref="TryHoldAlone"/>; false when no longer joined.</summary>
    internal bool ShareAgain() => _lastCloser.ShareAgain();

    /// <summary>True while this object holds its last-closer shared flock.</summary>
    internal bool IsJoined => _lastCloser.IsJoined;

    /// <summary>Reuse condition 3 (section 11.5): state is 1 and the name still refers to this object.</summary>
    internal bool IsReadyAndStillNamed() => LiveState == (int)StateReady && IsStillNamed();

    // ---------------------------------------------------------------- a consumer keeping a data segment mapped (section 11.5)

    /// <summary>Section 8 step 2 on this object's shared flock, keeping the descriptor and the mapping: a consumer that keeps
    /// a reusable out-of-line data segment mapped between messages holds no lock meanwhile (its producer may reuse it, a
    /// reaper may remove it). The last to leave retires the segment and removes its name (if it is still this object), as
    /// ever. True when another process still holds the segment, so that it may be joined again later
    /// (<see cref="RejoinKept"/>); false when this object was the last (or had not joined): then only closing is left.</summary>
    internal bool LeaveKeepingMapping()
    {
        if (!TryAddRef()) return false;
        try
        {
            bool last = false;
            bool joined = _lastCloser.Leave(whenLast: () =>
            {
                last = true;
                RetireAndUnlinkOnce();
            });
            return joined && !last;
        }
        catch (Exception e) when (e is ISharedBridgeException or IOException or UnauthorizedAccessException)
        {
            return false;
        }
        finally { Release(); }
    }

    /// <summary>Joins again a segment left with <see cref="LeaveKeepingMapping"/>, on the kept descriptor: section 8 step 3
    /// (the shared flock, polled up to <paramref name="timeout"/>, then the name still this object by device and inode and
    /// the state not retired). False, holding no lock, when either check fails: the segment is dead for this object, and the
    /// caller closes it and opens the name afresh. Throws <see cref="SegmentNotReadyException"/> when the lock stayed
    /// exclusive for the whole timeout (no lock held then either).</summary>
    internal bool RejoinKept(TimeSpan timeout)
    {
        if (_lastCloser.IsJoined || Header.Lifetime != SegmentLifetime.LastCloser) return false;
        return Join(timeout);
    }

    /// <summary>The object's size now (fstat of the kept descriptor); -1 when fstat fails. A consumer re-checks it before it
    /// uses a kept mapping again (section 11.5): a smaller object would fault on the mapped pages past its end.</summary>
    internal long ObjectSizeNow()
    {
        if (!TryAddRef()) return -1;
        try { return Interop.TryFStat(_fd, out _) is { } st ? st.Size : -1; }
        finally { Release(); }
    }

    /// <summary>Stores state = 2 (retired): usable by whoever still maps it, never joined again.</summary>
    private void Retire() => Volatile.Write(ref *(uint*)(_base + StateOffset), StateRetired);

    /// <summary>True when the name refers now to this object (same device and inode).</summary>
    private bool IsStillNamed() => IsStillNamed(out _);

    private bool IsStillNamed(out bool nameExists) => Names(Name, _identity.Device, _identity.Inode, out nameExists);

    /// <summary>True when the name <paramref name="key"/> refers now to the object (<paramref name="device"/>,
    /// <paramref name="inode"/>).</summary>
    internal static bool Names(string key, ulong device, ulong inode, out bool nameExists)
    {
        // lstat of the name's path (/dev/shm or the directory of section 1.3), as every language does (section 8): it opens nothing, so it needs no permission on
        // the object and follows no symbolic link.
        var current = Interop.TryLStat(SegmentName.PathOf(key), out _);
        nameExists = current is not null;
        return current is { } st && st.IsRegularFile && st.Device == device && st.Inode == inode;
    }

    private void UnlinkIfStillOurs(bool explicitCall)
    {
        // Never remove a stranger's segment that reused the name after ours was unlinked.
        if (!IsStillNamed(out bool nameExists))
        {
            if (explicitCall) throw OsErrors.NameGone(Name, nameExists);
            return;
        }
        if (SegmentBackend.Unlink(Name) != 0)
        {
            int errno = OsErrors.Last;
            if (explicitCall || errno != Interop.ENOENT) throw OsErrors.Unlink(Name, errno, byName: false);
        }
    }

    private void Free()
    {
        try { RetireAndUnlinkMapped(); }
        finally
        {
            ExitCleanup.Unregister(this);
            _lastCloser.ReleaseExclusive();
            _base = null;
            _mapping.Dispose();
            _fd.Dispose();
        }
    }

    // A creator's segments are unlinked when the process ends (normal exit, SIGTERM/SIGINT/SIGHUP,
    // unhandled exception: ExitCleanup), unless kept. Attachers are registered only for last-closer
    // segments (Join), and so are their creators: every holder runs the protocol when it ends.
    private void RegisterOwned()
    {
        if (!KeepOnDispose || _lastCloser.IsJoined) ExitCleanup.Register(this);
    }

    // ---------------------------------------------------------------- the reaper's view (section 8)

    /// <summary>The names in /dev/shm, or in the directory backend's <paramref name="directory"/>, sorted (empty if it
    /// cannot be listed).</summary>
    internal static IReadOnlyList<string> ShmNames(string? directory = null) => SegmentBackend.List(directory);

    /// <summary>Opens <paramref name="name"/> for the reaper: a SharedBridge segment this user owns,
    /// validated like an open without waiting, taking part in no lifetime protocol. Null for anything
    /// else (invalid name, not a regular file, another owner, not SharedBridge, corrupt, still
    /// initializing, too new). The caller releases it.</summary>
    internal static MappedSegment? TryOpenForReap(string name)
    {
        try
        {
            SegmentName.ValidateKey(name);
            var info = new FileInfo(SegmentName.PathOf(name));
            if (info.LinkTarget is not null || (info.Attributes & (FileAttributes.Directory | FileAttributes.Device)) != 0) return null;
            return OpenOnce(name, TimeSpan.Zero, allowOtherOwner: false);
        }
        catch (Exception e) when (e is ISharedBridgeException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>The reaper's test of a last-closer segment (<see cref="LastCloser.TryLockExclusive"/>),
    /// held until the segment is released.</summary>
    internal bool TryLockExclusive() => _lastCloser.TryLockExclusive();

    /// <summary>The reaper's removal: re-checks that the name is still this object, stores
    /// state = retired, unlinks. False when the name was replaced or is gone.</summary>
    internal bool RetireAndUnlinkForReaper()
    {
        if (!IsStillNamed()) return false;
        Retire();
        return SegmentBackend.Unlink(Name) == 0;
    }
}
