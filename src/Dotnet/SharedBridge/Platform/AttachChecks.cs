using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using SharedBridge.Format;
using static SharedBridge.Format.HeaderLayout;

namespace SharedBridge.Platform;

/// <summary>
/// Opening an existing segment with the checks of docs/format.md section 6.2, in its order: the name
/// and <c>shm_open</c> (step 1), what the object is and who owns it (step 2), then size, magic and
/// state, polling while a creator is still initializing it (step 3), one private copy of the header
/// (step 4), validated (step 5, <see cref="HeaderCodec.Parse"/>), and only then the mapping of what the
/// copy describes (step 6). The result takes part in no lifetime yet: <see cref="MappedSegment"/> does that.
/// </summary>
internal static class AttachChecks
{
    /// <summary>How often attaching starts over because the object changed size under it (step 3).</summary>
    private const int MaxSizeChanges = 5;

    /// <summary>Step 1: validates the name and opens the object read-write; never blocks (O_NONBLOCK:
    /// a FIFO planted under the name must never block the open).</summary>
    internal static SafeFileHandle OpenDescriptor(string name)
    {
        SegmentName.ValidateKey(name);
        return SegmentBackend.Open(name, Interop.O_RDWR | Interop.O_NONBLOCK, 0, out int errno)
               ?? throw OsErrors.Open(name, errno, creating: false);
    }

    /// <summary>Step 2: the object's identity (device and inode, section 8) once it is known to be a
    /// regular file owned by this user, or by another one when <paramref name="allowOtherOwner"/>.</summary>
    internal static Interop.FileStat CheckObject(string name, SafeFileHandle fd, bool allowOtherOwner)
    {
        var identity = FStat(name, fd);
        if (!identity.IsRegularFile)
            throw HeaderCodec.NotASharedBridgeSegment(name, $"it is not a regular file ({FileTypeName(identity.Mode)})");
        if (identity.Uid != Interop.GetEUid() && !allowOtherOwner) throw OsErrors.OwnedByOther(name, identity.Uid);
        return identity;
    }

    /// <summary>Steps 3 to 6: size, magic, state (waiting up to <paramref name="timeout"/> while a creator
    /// initializes it), then the copied header's fields; maps data_offset + data_size only after validation.</summary>
    internal static (SegmentHeader Header, MappedMemory Mapping) Load(string name, SafeFileHandle fd, TimeSpan timeout)
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
                    // State 0 and a magic all zero (a creator that has sized the object but not written yet) or
                    // part of it (pread, a kernel copy and not one 8-byte load, saw the creator's store happen).
                    bool unwritten = IsUnwrittenMagic(magic) && size >= FixedSize && firstState == StateInitializing
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
                    MappedMemory.Fence();
                    if (TryLoad(name, fd, fixedCopy, size) is { } loaded) return loaded;
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

    /// <summary>True when every byte of <paramref name="magic"/> is 0 or the magic's own byte at its place
    /// (section 6.2 step 3): nothing of the creator's 8-byte store, or the part of it a copy saw.</summary>
    private static bool IsUnwrittenMagic(ReadOnlySpan<byte> magic)
    {
        for (int i = 0; i < magic.Length; i++)
            if (magic[i] != 0 && magic[i] != MagicBytes[i]) return false;
        return true;
    }

    /// <summary>Copies the whole header once (step 4), validates the copy (step 5), maps what it
    /// describes (step 6). Null when the object changed size meanwhile (the caller starts over).</summary>
    private static (SegmentHeader, MappedMemory)? TryLoad(string name, SafeFileHandle fd, byte[] fixedCopy, long size)
    {
        int headerSize = HeaderCodec.ReadHeaderSize(name, fixedCopy, size);
        var copy = new byte[headerSize];
        fixedCopy.CopyTo(copy, 0);
        if (headerSize > FixedSize && ReadAt(name, fd, copy.AsSpan(FixedSize), FixedSize) < headerSize - FixedSize)
            return null;
        var header = HeaderCodec.Parse(name, copy, size);
        long length = header.DataOffset + header.DataSize; // both bounded by the object size: no overflow
        var mapping = MappedMemory.Map(name, fd, length);
        if (FStat(name, fd).Size != size)
        {
            mapping.Dispose();
            return null;
        }
        if (DataWordsProblem(header, mapping) is { } why)
        {
            mapping.Dispose();
            throw HeaderCodec.Corrupt(name, $"its data area holds {why}, which a process wrote over it");
        }
        return (header, mapping);
    }

    /// <summary>Step 6: the immutable words of a semaphore's, a barrier's or a queue's data area (sections 10.2,
    /// 11.2), checked by every open that maps it, the untyped SharedSegment.Open included.</summary>
    private static unsafe string? DataWordsProblem(SegmentHeader header, MappedMemory mapping)
    {
        int bytes = ImmutableWords.BytesFor(header.Kind);
        if (bytes == 0 || header.DataSize < bytes) return null;   // the header's rules already bound data_size
        return ImmutableWords.Problem(header.Kind, new ReadOnlySpan<byte>(mapping.Base + header.DataOffset, bytes));
    }

    /// <summary>pread into <paramref name="buffer"/>; the number of bytes read (fewer at the end of the object).</summary>
    private static int ReadAt(string name, SafeFileHandle fd, Span<byte> buffer, long offset)
    {
        long n = Interop.PRead(fd, buffer, offset, out int errno);
        if (n < 0) throw OsErrors.Failed($"Reading the header of segment \"{name}\"", errno);
        return (int)n;
    }

    internal static Interop.FileStat FStat(string name, SafeFileHandle fd) =>
        Interop.TryFStat(fd, out int errno) ?? throw OsErrors.Failed($"fstat on segment \"{name}\"", errno);

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
}
