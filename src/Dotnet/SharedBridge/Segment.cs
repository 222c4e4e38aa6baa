using System.Collections.Concurrent;
using System.IO.MemoryMappedFiles;
using System.Runtime.CompilerServices;
using Microsoft.Win32.SafeHandles;
using static SharedBridge.HeaderLayout;

namespace SharedBridge;

/// <summary>
/// One mapped shared-memory object: creates, opens, validates, maps and unlinks it, and owns the
/// descriptor, the mapping and the pointer into it. Reference counted: every public object using
/// the segment and every held lock keeps one reference; the mapping goes when the last one does.
/// </summary>
internal sealed unsafe class Segment
{
    private static readonly ConcurrentDictionary<Segment, byte> OwnedSegments = new();
    private static int s_exitHookInstalled;

    private readonly SafeFileHandle _fd;
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly Interop.FileStat _identity;
    private byte* _base;
    private int _refs = 1;
    private int _unlinked;

    internal string Name { get; }
    internal SegmentHeader Header { get; private set; } = null!;
    internal bool IsCreator { get; }
    internal bool KeepOnDispose { get; }
    internal RobustMutex? Mutex { get; private set; }
    internal long MappedSize { get; }

    private Segment(string name, SafeFileHandle fd, long size, bool isCreator, bool keep)
    {
        Name = name;
        _fd = fd;
        IsCreator = isCreator;
        KeepOnDispose = keep;
        MappedSize = size;
        _identity = Interop.FStat(fd);
        _file = MemoryMappedFile.CreateFromFile(fd, mapName: null, size, MemoryMappedFileAccess.ReadWrite,
            HandleInheritability.None, leaveOpen: true);
        try
        {
            _view = _file.CreateViewAccessor(0, size, MemoryMappedFileAccess.ReadWrite);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p + _view.PointerOffset;
        }
        catch
        {
            _view?.Dispose();
            _file.Dispose();
            throw;
        }
    }

    /// <summary>Start of the data area (valid while a reference is held).</summary>
    internal byte* Data => _base + Header.DataOffset;

    // ---------------------------------------------------------------- creation

    internal static Segment Create(string? name, HeaderSpec spec, UnixFileMode mode, bool keep, ReadOnlySpan<byte> initialData)
    {
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

    private static Segment Initialize(string name, SafeFileHandle fd, HeaderSpec spec, UnixFileMode mode, bool keep,
        long total, ReadOnlySpan<byte> initialData)
    {
        // shm_open's mode is reduced by the umask; the user asked for this exact mode.
        if (Interop.FChmod(fd, (uint)mode) != 0)
            throw new IOException($"fchmod on \"{name}\" failed: {Interop.Describe(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())}");
        if (Interop.FTruncate(fd, total) != 0)
        {
            int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            throw errno is Interop.ENOSPC or Interop.EINVAL or Interop.EFBIG
                ? new InsufficientSharedMemoryException($"Cannot size \"{name}\" to {total} bytes: {Interop.Describe(errno)}.")
                : new IOException($"ftruncate on \"{name}\" failed: {Interop.Describe(errno)}");
        }
        // Reserve the pages now: on a full /dev/shm a later first touch would be a SIGBUS, not an error.
        int rc = Interop.PosixFallocate(fd, 0, total);
        if (rc != 0)
            throw rc is Interop.ENOSPC or Interop.EFBIG
                ? new InsufficientSharedMemoryException(
                    $"Not enough shared memory for \"{name}\" ({total} bytes): /dev/shm is full or too small. Free some segments or use a smaller size.")
                : new IOException($"posix_fallocate on \"{name}\" failed: {Interop.Describe(rc)}");

        var segment = new Segment(name, fd, total, isCreator: true, keep);
        try
        {
            var header = new Span<byte>(segment._base, spec.HeaderSize);
            HeaderCodec.WriteIdentity(header, spec, ProcessInfo.Pid, ProcessInfo.StartTime, ProcessInfo.UnixNanosecondsNow());
            if (spec.LockKind == LockKind.Embedded)
                RobustMutex.Initialize(segment._base + HeaderLayout.Mutex, LockAbi.RequireCurrent().MutexSize, spec.LockType);
            initialData.CopyTo(new Span<byte>(segment._base + spec.HeaderSize, (int)Math.Min(spec.DataSize, int.MaxValue)));
            *(uint*)(segment._base + HeaderCrc32) = HeaderCodec.ComputeCrc(header);
            Interlocked.MemoryBarrier();
            Volatile.Write(ref *(uint*)(segment._base + State), StateReady);

            segment.Header = HeaderCodec.Parse(name, header, total);
            segment.AttachMutex();
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

    internal static Segment Open(string name, TimeSpan? readyTimeout)
    {
        SegmentName.Validate(name);
        TimeSpan timeout = readyTimeout ?? TimeSpan.FromSeconds(5);
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(readyTimeout), timeout, "The ready timeout must be non-negative.");
        var fd = Interop.ShmOpen(SegmentName.ToOsName(name), Interop.O_RDWR, 0, out int errno);
        if (fd is null) throw OpenError(name, errno, creating: false);
        Segment? segment = null;
        try
        {
            segment = MapWhenReady(name, fd, timeout);
            segment.LoadHeader();
            return segment;
        }
        catch
        {
            segment?.FreeMappingOnly(closeDescriptor: false);
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Section 6.2 step 2: wait until the object has a header and its state is not 0.</summary>
    private static Segment MapWhenReady(string name, SafeFileHandle fd, TimeSpan timeout)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        int sleepMs = 1;
        Segment? mapped = null;
        try
        {
            while (true)
            {
                long size = Interop.FStat(fd).Size;
                if (size > 0 && size < FixedSize)
                    throw HeaderCodec.Corrupt(name, $"the object is only {size} bytes, smaller than the {FixedSize}-byte header (truncated)");
                if (size >= FixedSize)
                {
                    if (mapped is not null && mapped.MappedSize != size)
                    {
                        mapped.FreeMappingOnly(closeDescriptor: false);
                        mapped = null;
                    }
                    mapped ??= new Segment(name, fd, size, isCreator: false, keep: true);
                    uint state = Volatile.Read(ref *(uint*)(mapped._base + State));
                    if (state != StateInitializing)
                    {
                        Interlocked.MemoryBarrier();
                        // The creator sizes the object once, before writing the header; a size that
                        // changed after our mapping means we must map again to see all of it.
                        if (Interop.FStat(fd).Size == size) return mapped;
                        continue;
                    }
                }
                if (timeout != Timeout.InfiniteTimeSpan && System.Diagnostics.Stopwatch.GetElapsedTime(start) >= timeout)
                    throw new SegmentNotReadyException(
                        $"Segment \"{name}\" is still initializing after {timeout.TotalSeconds:0.###} s: its creator has not " +
                        "finished writing it (or died while doing so). Retry later, or unlink it if its creator is gone.");
                Thread.Sleep(sleepMs);
                sleepMs = Math.Min(sleepMs * 2, 10);
            }
        }
        catch
        {
            mapped?.FreeMappingOnly(closeDescriptor: false);
            throw;
        }
    }

    /// <summary>Section 6.2 steps 3 and 4: copy the header once, validate the copy.</summary>
    private void LoadHeader()
    {
        var fixedCopy = new ReadOnlySpan<byte>(_base, FixedSize).ToArray();
        int headerSize = HeaderCodec.ReadHeaderSize(Name, fixedCopy, MappedSize);
        var copy = new byte[headerSize];
        fixedCopy.CopyTo(copy, 0);
        new ReadOnlySpan<byte>(_base + FixedSize, headerSize - FixedSize).CopyTo(copy.AsSpan(FixedSize));
        Header = HeaderCodec.Parse(Name, copy, MappedSize);
        AttachMutex();
    }

    private void AttachMutex()
    {
        if (Header.LockKind == LockKind.Embedded)
            Mutex = new RobustMutex(this, _base + HeaderLayout.Mutex, Header.LockType);
    }

    private static Exception OpenError(string name, int errno, bool creating) => errno switch
    {
        Interop.EEXIST => new SegmentExistsException(name,
            $"A segment named \"{name}\" already exists: choose another name, open it instead, or unlink it first."),
        Interop.ENOENT => new SegmentNotFoundException(name,
            $"No segment named \"{name}\" exists (check the name, and that its creator has not disposed it)."),
        Interop.EACCES => new UnauthorizedAccessException(
            $"Permission denied {(creating ? "creating" : "opening")} segment \"{name}\": it belongs to another user or its mode forbids access."),
        Interop.EINVAL or Interop.ENAMETOOLONG => new InvalidSegmentNameException(
            $"The system refused the segment name \"{name}\": {Interop.Describe(errno)}."),
        _ => new IOException($"shm_open(\"{name}\") failed: {Interop.Describe(errno)}"),
    };

    // ---------------------------------------------------------------- lock bookkeeping

    /// <summary>Pids of the other processes that map this object now (section 7.4 step 2).</summary>
    internal IReadOnlyList<int> OtherProcessesMapping() =>
        ProcessInfo.ProcessesMapping(_identity.Inode).Where(pid => pid != ProcessInfo.Pid).ToList();

    /// <summary>Called with the lock held after a dead-owner recovery (section 7.3 step 2).</summary>
    internal void RecordRecovery()
    {
        ulong* count = (ulong*)(_base + RecoveryCount);
        Volatile.Write(ref *count, *count + 1);
        Volatile.Write(ref *(uint*)(_base + LastRecoveredByPid), (uint)ProcessInfo.Pid);
    }

    /// <summary>The state word now (0 initializing, 1 ready, 2 retired), not the snapshot of the header.</summary>
    internal int LiveState
    {
        get
        {
            AddRef();
            try { return (int)Volatile.Read(ref *(uint*)(_base + State)); }
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
                ulong n = Volatile.Read(ref *(ulong*)(_base + RecoveryCount));
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
        if (!IsCreator || KeepOnDispose) return;
        if (Interlocked.Exchange(ref _unlinked, 1) != 0) return;
        Volatile.Write(ref *(uint*)(_base + State), StateRetired);
        UnlinkIfStillOurs(explicitCall: false);
    }

    /// <summary>Explicit unlink: removes the name now; the memory stays mapped.</summary>
    internal void Unlink()
    {
        AddRef();
        try
        {
            if (Interlocked.Exchange(ref _unlinked, 1) != 0)
                throw new SegmentNotFoundException(Name, $"Segment \"{Name}\" has already been unlinked.");
            Volatile.Write(ref *(uint*)(_base + State), StateRetired);
            UnlinkIfStillOurs(explicitCall: true);
        }
        finally { Release(); }
    }

    private void UnlinkIfStillOurs(bool explicitCall)
    {
        string osName = SegmentName.ToOsName(Name);
        // Never remove a stranger's segment that reused the name after ours was unlinked.
        using (var current = Interop.ShmOpen(osName, Interop.O_RDONLY, 0, out int errno))
        {
            bool ours = current is not null && Interop.FStat(current) is var st
                        && st.Device == _identity.Device && st.Inode == _identity.Inode;
            if (!ours)
            {
                if (explicitCall)
                    throw new SegmentNotFoundException(Name,
                        $"Segment \"{Name}\" no longer exists under that name (someone else unlinked it{(current is null ? "" : " and reused the name")}).");
                return;
            }
        }
        if (Interop.ShmUnlink(osName) != 0)
        {
            int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (explicitCall || errno != Interop.ENOENT)
                throw errno == Interop.ENOENT
                    ? new SegmentNotFoundException(Name, $"Segment \"{Name}\" no longer exists.")
                    : new IOException($"shm_unlink(\"{Name}\") failed: {Interop.Describe(errno)}");
        }
    }

    private void Free()
    {
        try { RetireAndUnlinkMapped(); }
        finally
        {
            OwnedSegments.TryRemove(this, out _);
            FreeMappingOnly();
        }
    }

    private void FreeMappingOnly(bool closeDescriptor = true)
    {
        if (_base == null) return;
        _base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
        if (closeDescriptor) _fd.Dispose();
    }

    // A creator's segments are unlinked when the process exits normally (.NET runs no finalizers
    // at exit), unless kept. Attachers are never registered.
    private void RegisterOwned()
    {
        if (KeepOnDispose) return;
        OwnedSegments.TryAdd(this, 0);
        if (Interlocked.Exchange(ref s_exitHookInstalled, 1) == 0)
            AppDomain.CurrentDomain.ProcessExit += (_, _) =>
            {
                foreach (var segment in OwnedSegments.Keys)
                {
                    try { segment.RetireAndUnlink(); }
                    catch (Exception) { /* best effort at exit */ }
                }
            };
    }
}
