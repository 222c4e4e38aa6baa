using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Microsoft.Win32.SafeHandles;
using SharedBridge.Format;
using static SharedBridge.Format.HeaderLayout;

namespace SharedBridge.Platform;

/// <summary>
/// One mapped shared-memory object: creates, opens, validates, maps and unlinks it, and owns the
/// descriptor, the mapping and the pointer into it. Reference counted: every public object using
/// the segment and every held lock keeps one reference; the mapping goes when the last one does.
/// </summary>
/// <remarks>
/// A last-closer segment (docs/format.md section 8) is joined by every process that creates or
/// opens it: a shared <c>flock</c> on the descriptor, held until the segment is released (dispose,
/// finalizer, process exit through <see cref="ExitCleanup"/>). Leaving tries to convert it to an
/// exclusive lock without waiting; the one that gets it is the last: it retires the segment and
/// unlinks the name. The lock is always released explicitly (<c>LOCK_UN</c>): the kernel drops a
/// flock only when the open file description's last reference goes, and a mapping is one.
/// </remarks>
internal sealed unsafe class MappedSegment
{
    /// <summary>How often attaching starts over because the object changed size under it.</summary>
    private const int MaxSizeChanges = 5;

    private readonly SafeFileHandle _fd;
    private readonly MappedMemory _mapping;
    private readonly Interop.FileStat _identity;
    private readonly int _creatorPid;
    private byte* _base;
    private int _refs = 1;
    private int _unlinked;
    private int _joined;     // 1 while this object holds the shared flock of a last-closer segment
    private int _exclusive;  // 1 while the reaper holds the exclusive flock

    internal string Name { get; }
    internal SegmentHeader Header { get; private set; } = null!;
    internal bool IsCreator { get; }
    internal bool KeepOnDispose { get; }
    internal RobustMutex? Mutex { get; private set; }

    /// <summary>Bytes mapped: data_offset + data_size of the validated header (never the whole object).</summary>
    internal long MappedSize { get; }

    private MappedSegment(string name, SafeFileHandle fd, MappedMemory mapping, Interop.FileStat identity, bool isCreator, bool keep)
    {
        Name = name;
        _fd = fd;
        _mapping = mapping;
        _identity = identity;
        IsCreator = isCreator;
        KeepOnDispose = keep;
        _creatorPid = isCreator ? Interop.GetPid() : 0;
        MappedSize = (long)mapping.Length;
        // Held until FreeMappingOnly: the mapping stays while this object hands out pointers into it.
        bool added = false;
        mapping.DangerousAddRef(ref added);
        _base = (byte*)mapping.DangerousGetHandle();
    }

    /// <summary>Start of the data area (valid while a reference is held).</summary>
    internal byte* Data => _base + Header.DataOffset;

    // ---------------------------------------------------------------- creation

    internal static MappedSegment Create(string? name, HeaderSpec spec, UnixFileMode mode, ReadOnlySpan<byte> initialData)
    {
        bool keep = spec.Lifetime != SegmentLifetime.Creator;
        if (name is not null) SegmentName.Validate(name);
        if (spec.TypeName.Length >= TypeNameWidth) throw new InvalidOperationException("type name too long");
        long total = spec.TotalSize;
        for (int attempt = 0; ; attempt++)
        {
            string actual = name ?? SegmentName.Generate();
            var fd = Interop.ShmOpen(SegmentName.ToOsName(actual), Interop.O_CREAT | Interop.O_EXCL | Interop.O_RDWR, (uint)mode, out int errno);
            if (fd is null)
            {
                if (errno == Interop.EEXIST && name is null && attempt < 16) continue;
                throw OpenError(actual, errno, creating: true);
            }
            try
            {
                // Joined before anything is written: nobody else can hold the lock yet (never waits).
                if (spec.Lifetime == SegmentLifetime.LastCloser && Interop.Flock(fd, Interop.LOCK_SH) != 0)
                    throw OsError($"flock on \"{actual}\" failed", System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
                return Initialize(actual, fd, spec, mode, keep, total, initialData);
            }
            catch
            {
                Interop.ShmUnlink(SegmentName.ToOsName(actual));
                fd.Dispose();
                throw;
            }
        }
    }

    /// <summary>Tests only (set by reflection in the test child): called with the name between initialization
    /// and state = ready, so that a test can kill a creator there (format.md section 8, reaping).</summary>
    private static Action<string>? BeforeReadyHook = null;

    private static MappedSegment Initialize(string name, SafeFileHandle fd, HeaderSpec spec, UnixFileMode mode, bool keep,
        long total, ReadOnlySpan<byte> initialData)
    {
        // shm_open's mode is reduced by the umask; the user asked for this exact mode.
        if (Interop.FChmod(fd, (uint)mode) != 0)
            throw OsError($"fchmod on \"{name}\" failed", System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
        if (Interop.FTruncate(fd, total) != 0)
        {
            int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            throw errno is Interop.ENOSPC or Interop.EINVAL or Interop.EFBIG
                ? new InsufficientSharedMemoryException($"Cannot size \"{name}\" to {total} bytes: {Interop.Describe(errno)}.")
                : OsError($"ftruncate on \"{name}\" failed", errno);
        }
        // Reserve the pages now: on a full /dev/shm a later first touch would be a SIGBUS, not an error.
        int rc = Interop.PosixFallocate(fd, 0, total);
        if (rc != 0)
            throw rc is Interop.ENOSPC or Interop.EFBIG
                ? new InsufficientSharedMemoryException(
                    $"Not enough shared memory for \"{name}\" ({total} bytes): /dev/shm is full or too small. Free some segments or use a smaller size.")
                : OsError($"posix_fallocate on \"{name}\" failed", rc);

        var identity = FStat(name, fd);
        var segment = new MappedSegment(name, fd, Map(name, fd, total), identity, isCreator: true, keep);
        try
        {
            var header = new Span<byte>(segment._base, spec.HeaderSize);
            HeaderCodec.WriteIdentity(header, spec, ProcessInfo.Pid, ProcessInfo.StartTime, ProcessInfo.UnixNanosecondsNow());
            if (spec.LockKind == LockKind.Embedded)
                RobustMutex.Initialize(segment._base + MutexOffset, LockAbi.RequireCurrent().MutexSize, spec.LockType);
            initialData.CopyTo(new Span<byte>(segment._base + spec.HeaderSize, (int)Math.Min(spec.DataSize, int.MaxValue)));
            BeforeReadyHook?.Invoke(name);
            *(uint*)(segment._base + HeaderCrc32Offset) = HeaderCodec.ComputeCrc(header);
            Interlocked.MemoryBarrier();
            Volatile.Write(ref *(uint*)(segment._base + StateOffset), StateReady);

            segment.Header = HeaderCodec.Parse(name, header, total);
            segment.AttachMutex();
            if (spec.Lifetime == SegmentLifetime.LastCloser) segment._joined = 1;
            segment.RegisterOwned();
            return segment;
        }
        catch
        {
            segment.FreeMappingOnly(closeDescriptor: false); // Create's handler unlinks and closes
            throw;
        }
    }

    // ---------------------------------------------------------------- opening

    /// <summary>Opens and validates segment <paramref name="name"/>, waiting up to <paramref name="readyTimeout"/>
    /// (non-negative or infinite; the caller checked it) for a creator still initializing it.</summary>
    /// <summary>Opens segment <paramref name="name"/>; a last-closer segment is joined (section 8) unless
    /// <paramref name="join"/> is false (only looking: the result takes part in no lifetime).</summary>
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
        throw new SegmentNotFoundException(name,
            $"Segment \"{name}\" was removed by its last closer while this process opened it: it is gone; create it again.");
    }

    /// <summary>How many times opening starts over when the last closer removed a last-closer segment
    /// between shm_open and this process's shared flock (docs/format.md section 8).</summary>
    private const int LastCloserRetries = 3;

    /// <summary>Takes the shared flock of a last-closer segment (polling: a closer or reaper holds the
    /// exclusive lock only for an instant), then checks the segment is still alive: the name still
    /// refers to this object and it is not retired. False when it was removed meanwhile.</summary>
    private bool Join(TimeSpan timeout)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        TimeSpan limit = timeout == Timeout.InfiniteTimeSpan || timeout > TimeSpan.FromMilliseconds(100) ? timeout : TimeSpan.FromMilliseconds(100);
        while (Interop.Flock(_fd, Interop.LOCK_SH | Interop.LOCK_NB) != 0)
        {
            int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (errno != Interop.EWOULDBLOCK) throw OsError($"flock on \"{Name}\" failed", errno);
            if (limit != Timeout.InfiniteTimeSpan && System.Diagnostics.Stopwatch.GetElapsedTime(start) >= limit)
                throw new SegmentNotReadyException(
                    $"Segment \"{Name}\" stayed locked exclusively for {limit.TotalSeconds:0.###} s: a process is removing it, or holds its flock for another reason. Retry later.");
            Thread.Sleep(1);
        }
        if (LiveState == (int)StateRetired || !IsStillNamed())
        {
            Interop.Flock(_fd, Interop.LOCK_UN);
            return false;
        }
        _joined = 1;
        ExitCleanup.Register(this);
        return true;
    }

    /// <summary>Opens and validates without joining a last-closer segment (Open without its lifetime
    /// protocol): what tools that only look use (SegmentDirectory).</summary>
    internal static MappedSegment OpenOnce(string name, TimeSpan readyTimeout, bool allowOtherOwner)
    {
        SegmentName.Validate(name);
        // O_NONBLOCK: a FIFO planted under the name must never block the open.
        var fd = Interop.ShmOpen(SegmentName.ToOsName(name), Interop.O_RDWR | Interop.O_NONBLOCK, 0, out int errno);
        if (fd is null) throw OpenError(name, errno, creating: false);
        try
        {
            var identity = FStat(name, fd);
            if (!identity.IsRegularFile)
                throw HeaderCodec.NotASharedBridgeSegment(name, $"it is not a regular file ({FileTypeName(identity.Mode)})");
            uint me = Interop.GetEUid();
            if (identity.Uid != me && !allowOtherOwner)
                throw new SegmentAccessDeniedException(name,
                    $"Segment \"{name}\" is owned by uid {identity.Uid}, not you (uid {me}); its owner can change or resize it at any time. " +
                    "Pass AllowOtherOwner = true in OpenOptions if you trust it.");
            var segment = Attach(name, fd, identity, readyTimeout);
            return segment;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Section 6.2 with the order of checks of the hardening rules: size, magic, state, then
    /// the copied header's fields; maps data_offset + data_size only after validation.</summary>
    private static MappedSegment Attach(string name, SafeFileHandle fd, Interop.FileStat identity, TimeSpan timeout)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        int sleepMs = 1;
        int sizeChanges = 0;
        var fixedCopy = new byte[FixedSize];
        Span<byte> stateWord = stackalloc byte[4];
        while (true)
        {
            long size = FStat(name, fd).Size;
            if (size > 0 && size < MagicBytes.Length)
                throw HeaderCodec.NotASharedBridgeSegment(name, $"the object is only {size} bytes, too small to hold a SharedBridge header");
            if (size >= MagicBytes.Length)
            {
                // The state word first (acquire): a creator writes it last, so what is read after it is complete.
                uint firstState = uint.MaxValue;
                if (size >= FixedSize)
                {
                    if (ReadAt(name, fd, stateWord, StateOffset) < stateWord.Length) goto SizeChanged;
                    firstState = BinaryPrimitives.ReadUInt32LittleEndian(stateWord);
                }
                int want = (int)Math.Min(size, FixedSize);
                if (ReadAt(name, fd, fixedCopy.AsSpan(0, want), 0) < want) goto SizeChanged;
                var magic = fixedCopy.AsSpan(0, MagicBytes.Length);
                if (!magic.SequenceEqual(MagicBytes))
                {
                    // A creator that has sized the object but not written yet: all zero, state 0.
                    bool unwritten = magic.IndexOfAnyExcept((byte)0) < 0 && size >= FixedSize && firstState == StateInitializing
                                     && BinaryPrimitives.ReadUInt32LittleEndian(fixedCopy.AsSpan(StateOffset)) == StateInitializing;
                    if (!unwritten)
                        throw HeaderCodec.NotASharedBridgeSegment(name, "wrong magic: this name belongs to another program");
                }
                else if (size < FixedSize)
                {
                    throw HeaderCodec.Corrupt(name, $"the object is only {size} bytes, smaller than the {FixedSize}-byte header (truncated)");
                }
                else if (firstState != StateInitializing)
                {
                    // A too-new compat_version first: a newer writer may use states this reader does not know.
                    HeaderCodec.CheckMagicAndVersion(name, fixedCopy);
                    if (firstState is not (StateReady or StateRetired))
                        throw HeaderCodec.Corrupt(name, $"state {firstState} is not 0 (initializing), 1 (ready) or 2 (retired)");
                    Interlocked.MemoryBarrier();
                    var segment = TryLoad(name, fd, identity, fixedCopy, size);
                    if (segment is not null) return segment;
                    goto SizeChanged;
                }
            }
            if (timeout != Timeout.InfiniteTimeSpan && System.Diagnostics.Stopwatch.GetElapsedTime(start) >= timeout)
                throw new SegmentNotReadyException(
                    $"Segment \"{name}\" is still initializing after {timeout.TotalSeconds:0.###} s: its creator has not " +
                    "finished writing it (or died while doing so). Retry later, or unlink it if its creator is gone.");
            Thread.Sleep(sleepMs);
            sleepMs = Math.Min(sleepMs * 2, 10);
            continue;

        SizeChanged:
            if (++sizeChanges > MaxSizeChanges)
                throw HeaderCodec.Corrupt(name, $"the object changed size while attaching ({MaxSizeChanges} attempts); something is resizing it");
        }
    }

    /// <summary>Copies the whole header once (section 6.2 step 3), validates the copy, maps what it
    /// describes. Null when the object changed size meanwhile (the caller starts over).</summary>
    private static MappedSegment? TryLoad(string name, SafeFileHandle fd, Interop.FileStat identity, byte[] fixedCopy, long size)
    {
        int headerSize = HeaderCodec.ReadHeaderSize(name, fixedCopy, size);
        var copy = new byte[headerSize];
        fixedCopy.CopyTo(copy, 0);
        if (headerSize > FixedSize && ReadAt(name, fd, copy.AsSpan(FixedSize), FixedSize) < headerSize - FixedSize)
            return null;
        var header = HeaderCodec.Parse(name, copy, size);
        long length = header.DataOffset + header.DataSize; // both bounded by the object size: no overflow
        var mapping = Map(name, fd, length);
        if (FStat(name, fd).Size != size)
        {
            mapping.Dispose();
            return null;
        }
        var segment = new MappedSegment(name, fd, mapping, identity, isCreator: false, keep: true) { Header = header };
        segment.AttachMutex();
        return segment;
    }

    private static int ReadAt(string name, SafeFileHandle fd, Span<byte> buffer, long offset)
    {
        long n = Interop.PRead(fd, buffer, offset, out int errno);
        if (n < 0) throw OsError($"Reading the header of segment \"{name}\" failed", errno);
        return (int)n;
    }

    private static Interop.FileStat FStat(string name, SafeFileHandle fd) =>
        Interop.TryFStat(fd, out int errno) ?? throw OsError($"fstat on segment \"{name}\" failed", errno);

    private static MappedMemory Map(string name, SafeFileHandle fd, long length)
    {
        var mapping = MappedMemory.TryMap(fd, length, out int errno);
        if (mapping is not null) return mapping;
        throw errno is Interop.ENOMEM or Interop.EOVERFLOW or Interop.EFBIG
            ? new InsufficientSharedMemoryException(
                $"Cannot map segment \"{name}\" ({length} bytes): {Interop.Describe(errno)}. The process lacks address space or memory for it.")
            : OsError($"mmap of segment \"{name}\" ({length} bytes) failed", errno);
    }

    private void AttachMutex()
    {
        if (Header.LockKind == LockKind.Embedded)
            Mutex = new RobustMutex(this, _base + MutexOffset, Header.LockType);
    }

    private static string FileTypeName(uint mode) => (mode & Interop.S_IFMT) switch
    {
        0x1000 => "a FIFO",
        0x2000 => "a character device",
        0x4000 => "a directory",
        0x6000 => "a block device",
        0xA000 => "a symbolic link",
        0xC000 => "a socket",
        var type => $"file type 0x{type:X}",
    };

    internal static SharedBridgeException OsError(string what, int errno) => new($"{what}: {Interop.Describe(errno)}");

    private static Exception OpenError(string name, int errno, bool creating) => errno switch
    {
        Interop.EEXIST => new SegmentExistsException(name,
            $"A segment named \"{name}\" already exists: choose another name, open it instead, or unlink it first."),
        Interop.ENOENT => new SegmentNotFoundException(name,
            $"No segment named \"{name}\" exists (check the name, and that its creator has not disposed it)."),
        Interop.EACCES or Interop.EPERM => new SegmentAccessDeniedException(name,
            $"Permission denied {(creating ? "creating" : "opening")} segment \"{name}\": it belongs to another user or its mode forbids access."),
        // glibc's shm_open opens with O_NOFOLLOW (a symbolic link gives ELOOP) and turns EISDIR into
        // EINVAL; the name itself was validated before, so these mean "something else lives here".
        Interop.ELOOP or Interop.EISDIR or Interop.ENXIO or Interop.EINVAL when !creating => HeaderCodec.NotASharedBridgeSegment(name,
            $"it is not a regular file ({(errno == Interop.ELOOP ? "a symbolic link" : errno == Interop.ENXIO ? "a socket or device" : "a directory")})"),
        Interop.EINVAL or Interop.ENAMETOOLONG => new InvalidSegmentNameException(
            $"The system refused the segment name \"{name}\": {Interop.Describe(errno)}."),
        _ => OsError($"shm_open(\"{name}\") failed", errno),
    };

    // ---------------------------------------------------------------- by name, without mapping

    /// <summary>Removes a segment name without opening it (an explicit unlink, section 8).</summary>
    internal static void UnlinkByName(string name)
    {
        SegmentName.Validate(name);
        if (Interop.ShmUnlink(SegmentName.ToOsName(name)) != 0)
        {
            int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            throw errno switch
            {
                Interop.ENOENT => new SegmentNotFoundException(name, $"No segment named \"{name}\" exists."),
                Interop.EACCES or Interop.EPERM => new SegmentAccessDeniedException(name,
                    $"Permission denied unlinking segment \"{name}\": {Interop.Describe(errno)}."),
                _ => OsError($"shm_unlink(\"{name}\") failed", errno),
            };
        }
    }

    /// <summary>True when something exists under the name (the name is validated first).</summary>
    internal static bool Exists(string name)
    {
        SegmentName.Validate(name);
        using var fd = Interop.ShmOpen(SegmentName.ToOsName(name), Interop.O_RDONLY | Interop.O_NONBLOCK, 0, out int errno);
        return fd is not null || errno != Interop.ENOENT;
    }

    // ---------------------------------------------------------------- lock bookkeeping

    /// <summary>Pids of the other processes that map this object now (section 7.4 step 2).</summary>
    internal IReadOnlyList<int> OtherProcessesMapping() =>
        ProcessInfo.ProcessesMapping(_identity.Inode).Where(pid => pid != ProcessInfo.Pid).ToList();

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

    // ---------------------------------------------------------------- references and lifetime

    /// <summary>Takes a reference; throws if the mapping is already gone.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void AddRef()
    {
        int current = Volatile.Read(ref _refs);
        if (current <= 0 || Interlocked.CompareExchange(ref _refs, current + 1, current) != current)
            AddRefSlow();
    }

    /// <summary>Takes a reference unless the mapping is already gone.</summary>
    private bool TryAddRef()
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
        while (true)
        {
            int current = Volatile.Read(ref _refs);
            if (current <= 0)
                throw new ObjectDisposedException($"SharedBridge segment \"{Name}\"", "The segment has been disposed.");
            if (Interlocked.CompareExchange(ref _refs, current + 1, current) == current) return;
        }
    }

    /// <summary>Drops a reference; the last one retires/unlinks (creator) and unmaps.</summary>
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

    /// <summary>RetireAndUnlink for callers that already keep the mapping alive.</summary>
    private void RetireAndUnlinkMapped()
    {
        if (Interlocked.Exchange(ref _joined, 0) != 0)
        {
            LeaveLastCloser();
            return;
        }
        if (!IsCreator || KeepOnDispose) return;
        // A fork child inherits the object but never cleans up its parent's segments.
        if (Interop.GetPid() != _creatorPid) return;
        if (Interlocked.Exchange(ref _unlinked, 1) != 0) return;
        Volatile.Write(ref *(uint*)(_base + StateOffset), StateRetired);
        UnlinkIfStillOurs(explicitCall: false);
    }

    /// <summary>The last-closer protocol (section 8): whoever converts its shared flock to an exclusive
    /// one without waiting is the last process holding the segment: it retires it and unlinks the
    /// name if the name is still this object. The lock is then released explicitly.</summary>
    private void LeaveLastCloser()
    {
        try
        {
            if (Interop.Flock(_fd, Interop.LOCK_EX | Interop.LOCK_NB) == 0 && Interlocked.Exchange(ref _unlinked, 1) == 0)
            {
                Volatile.Write(ref *(uint*)(_base + StateOffset), StateRetired);
                UnlinkIfStillOurs(explicitCall: false);
            }
        }
        finally
        {
            Interop.Flock(_fd, Interop.LOCK_UN);
        }
    }

    /// <summary>Explicit unlink: removes the name now; the memory stays mapped.</summary>
    internal void Unlink()
    {
        AddRef();
        try
        {
            if (Interlocked.Exchange(ref _joined, 0) != 0) Interop.Flock(_fd, Interop.LOCK_UN);
            if (Interlocked.Exchange(ref _unlinked, 1) != 0)
                throw new SegmentNotFoundException(Name, $"Segment \"{Name}\" has already been unlinked.");
            Volatile.Write(ref *(uint*)(_base + StateOffset), StateRetired);
            UnlinkIfStillOurs(explicitCall: true);
        }
        finally { Release(); }
    }

    /// <summary>True when the name refers now to this object (same device and inode).</summary>
    /// <summary>The object's inode (fstat when it was opened).</summary>
    internal ulong Inode => _identity.Inode;

    private bool IsStillNamed() => IsStillNamed(out _);

    private bool IsStillNamed(out bool nameExists)
    {
        using var current = Interop.ShmOpen(SegmentName.ToOsName(Name), Interop.O_RDONLY | Interop.O_NONBLOCK, 0, out _);
        nameExists = current is not null;
        return current is not null && Interop.TryFStat(current, out _) is { } st
               && st.Device == _identity.Device && st.Inode == _identity.Inode;
    }

    private void UnlinkIfStillOurs(bool explicitCall)
    {
        string osName = SegmentName.ToOsName(Name);
        // Never remove a stranger's segment that reused the name after ours was unlinked.
        if (!IsStillNamed(out bool nameExists))
        {
            if (explicitCall)
                throw new SegmentNotFoundException(Name,
                    $"Segment \"{Name}\" no longer exists under that name (someone else unlinked it{(nameExists ? " and reused the name" : "")}).");
            return;
        }
        if (Interop.ShmUnlink(osName) != 0)
        {
            int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (explicitCall || errno != Interop.ENOENT)
                throw errno == Interop.ENOENT
                    ? new SegmentNotFoundException(Name, $"Segment \"{Name}\" no longer exists.")
                    : errno is Interop.EACCES or Interop.EPERM
                        ? new SegmentAccessDeniedException(Name, $"Permission denied unlinking segment \"{Name}\": {Interop.Describe(errno)}.")
                        : OsError($"shm_unlink(\"{Name}\") failed", errno);
        }
    }

    private void Free()
    {
        try { RetireAndUnlinkMapped(); }
        finally
        {
            ExitCleanup.Unregister(this);
            FreeMappingOnly();
        }
    }

    private void FreeMappingOnly(bool closeDescriptor = true)
    {
        if (_base == null) return;
        if (Interlocked.Exchange(ref _exclusive, 0) != 0) Interop.Flock(_fd, Interop.LOCK_UN);
        _base = null;
        _mapping.DangerousRelease();
        _mapping.Dispose();
        if (closeDescriptor) _fd.Dispose();
    }

    // A creator's segments are unlinked when the process ends (normal exit, SIGTERM/SIGINT/SIGHUP,
    // unhandled exception: ExitCleanup), unless kept. Attachers are registered only for last-closer
    // segments (Join), and so are their creators: every holder runs the protocol when it ends.
    private void RegisterOwned()
    {
        if (!KeepOnDispose || _joined != 0) ExitCleanup.Register(this);
    }

    // ---------------------------------------------------------------- the reaper's view (section 8)

    /// <summary>The names in /dev/shm, sorted (empty if it cannot be listed).</summary>
    internal static IReadOnlyList<string> ShmNames()
    {
        try
        {
            var names = Directory.EnumerateFileSystemEntries("/dev/shm").Select(Path.GetFileName).OfType<string>().ToList();
            names.Sort(StringComparer.Ordinal);
            return names;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }

    /// <summary>Opens <paramref name="name"/> for the reaper: a SharedBridge segment this user owns,
    /// validated like an open without waiting, taking part in no lifetime protocol. Null for anything
    /// else (invalid name, not a regular file, another owner, not SharedBridge, corrupt, still
    /// initializing, too new). The caller releases it.</summary>
    internal static MappedSegment? TryOpenForReap(string name)
    {
        try
        {
            SegmentName.Validate(name);
            var info = new FileInfo("/dev/shm/" + name);
            if (info.LinkTarget is not null || (info.Attributes & (FileAttributes.Directory | FileAttributes.Device)) != 0) return null;
            var fd = Interop.ShmOpen(SegmentName.ToOsName(name), Interop.O_RDWR | Interop.O_NONBLOCK, 0, out _);
            if (fd is null) return null;
            try
            {
                var identity = FStat(name, fd);
                if (!identity.IsRegularFile || identity.Uid != Interop.GetEUid())
                {
                    fd.Dispose();
                    return null;
                }
                return Attach(name, fd, identity, TimeSpan.Zero);
            }
            catch
            {
                fd.Dispose();
                throw;
            }
        }
        catch (Exception e) when (e is SharedBridgeException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>The reaper's test of a last-closer segment: true when it got the exclusive flock
    /// without waiting, so that no other process holds the segment open (held until released).</summary>
    internal bool TryLockExclusive()
    {
        if (Interop.Flock(_fd, Interop.LOCK_EX | Interop.LOCK_NB) != 0) return false;
        _exclusive = 1;
        return true;
    }

    /// <summary>The reaper's removal: re-checks that the name is still this object, stores
    /// state = retired, unlinks. False when the name was replaced or is gone.</summary>
    internal bool RetireAndUnlinkForReaper()
    {
        if (!IsStillNamed()) return false;
        Volatile.Write(ref *(uint*)(_base + StateOffset), StateRetired);
        return Interop.ShmUnlink(SegmentName.ToOsName(Name)) == 0;
    }
}
