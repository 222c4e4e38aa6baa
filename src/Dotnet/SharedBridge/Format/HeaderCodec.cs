using System.Buffers.Binary;
using System.Text;
using static SharedBridge.Format.HeaderLayout;

namespace SharedBridge.Format;

/// <summary>What a creator puts into a header.</summary>
internal sealed record HeaderSpec(
    SegmentKind Kind,
    char TypeCode,
    int ElementSize,
    long ElementCount,
    LockKind LockKind,
    LockType LockType,
    string LockName,
    string TypeName,
    IReadOnlyList<StructField> Fields,
    SegmentLifetime Lifetime = SegmentLifetime.Creator,
    IReadOnlyList<long>? Shape = null)
{
    /// <summary>compat_version this writer records (section 6.3): 7 for the n-dimensional array (kind 9, a version-6
    /// reader must refuse it), the queue's version for queues, 4 for the synchronization kinds 4-7
    /// (a version-3 reader would not register as a sleeper, so a version-4 notifier would not wake it);
    /// for kinds 1-3 what a version-3 writer records: 2 for last-closer (a version-1 reader would not take
    /// part in its protocol), otherwise 1.</summary>
    internal int CompatVersion => Kind == SegmentKind.NDArray ? NDArrayVersion
        : Kind == SegmentKind.Queue ? QueueVersion
        : IsSync(Kind) ? SleepersVersion : HeaderCodec.CompatVersionFor(Lifetime);

    /// <summary>version this writer records: the compat_version of kinds 4-9, else 2 (a version-2 writer's bytes,
    /// section 6.3).</summary>
    internal int WriterVersion => Math.Max(2, CompatVersion);

    internal static bool HasTable(SegmentKind kind) => kind is SegmentKind.Semaphore or SegmentKind.Barrier;

    /// <summary>A kind-9 header also holds the shape after the field table (section 12.1).</summary>
    internal int HeaderSize => Kind == SegmentKind.NDArray ? HeaderSizeFor(Fields.Count, ShapeOrEmpty.Count) : HeaderSizeFor(Fields.Count);

    private IReadOnlyList<long> ShapeOrEmpty => Shape ?? [];
    internal long DataSize => checked(ElementSize * ElementCount);
    internal long TotalSize => checked(HeaderSize + DataSize);

    internal static bool IsSync(SegmentKind kind) => kind is >= SegmentKind.Event and <= SegmentKind.Barrier;
}

/// <summary>Writes headers and parses untrusted ones (docs/format.md sections 3, 4 and 6.2).</summary>
internal static class HeaderCodec
{
    /// <summary>Writes the identity region and the field table into <paramref name="header"/>
    /// (HeaderSize bytes, zero-filled). The control and lock regions are left alone.</summary>
    internal static void WriteIdentity(Span<byte> header, HeaderSpec spec, int creatorPid, ulong creatorStartTime, long createdUnixNs)
    {
        // The creator record first and the magic last (section 6.1 step 2): a reaper that sees the
        // magic of a segment still initializing finds who is creating it (section 8).
        BinaryPrimitives.WriteUInt32LittleEndian(header[CreatorPidOffset..], (uint)creatorPid);
        BinaryPrimitives.WriteUInt64LittleEndian(header[CreatorStartTimeOffset..], creatorStartTime);
        BinaryPrimitives.WriteInt64LittleEndian(header[CreatedUnixNsOffset..], createdUnixNs);
        BinaryPrimitives.WriteUInt16LittleEndian(header[VersionOffset..], (ushort)spec.WriterVersion);
        BinaryPrimitives.WriteUInt16LittleEndian(header[CompatVersionOffset..], (ushort)spec.CompatVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(header[HeaderSizeOffset..], (uint)spec.HeaderSize);
        header[KindOffset] = (byte)spec.Kind;
        header[TypeCodeOffset] = (byte)spec.TypeCode;
        BinaryPrimitives.WriteUInt32LittleEndian(header[ElementSizeOffset..], (uint)spec.ElementSize);
        BinaryPrimitives.WriteUInt64LittleEndian(header[ElementCountOffset..], (ulong)spec.ElementCount);
        BinaryPrimitives.WriteUInt64LittleEndian(header[DataOffsetOffset..], (ulong)spec.HeaderSize);
        BinaryPrimitives.WriteUInt64LittleEndian(header[DataSizeOffset..], (ulong)spec.DataSize);
        header[LockKindOffset] = (byte)spec.LockKind;
        if (spec.LockKind == LockKind.Embedded)
        {
            var abi = LockAbi.RequireCurrent();
            header[LockAbiOffset] = (byte)abi.Id;
            BinaryPrimitives.WriteUInt16LittleEndian(header[LockSizeOffset..], (ushort)abi.MutexSize);
            BinaryPrimitives.WriteUInt32LittleEndian(header[LockOffsetOffset..], MutexOffset);
            header[LockTypeOffset] = (byte)spec.LockType;
        }
        header[LifetimeOffset] = (byte)spec.Lifetime;
        if (spec.Fields.Count > 0)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(header[FieldEntrySizeOffset..], FieldEntrySize);
            BinaryPrimitives.WriteUInt32LittleEndian(header[FieldCountOffset..], (uint)spec.Fields.Count);
            BinaryPrimitives.WriteUInt32LittleEndian(header[FieldTableOffsetOffset..], FixedSize);
        }
        WriteText(header.Slice(TypeNameOffset, TypeNameWidth), spec.TypeName);
        WriteText(header.Slice(LockNameOffset, LockNameWidth), spec.LockName);
        WriteFieldEntries(header[FixedSize..], spec.Fields);
        if (spec.Kind == SegmentKind.NDArray)
        {
            // Section 12.1: ndim, shape_offset right after the field table, then ndim x u64.
            var shape = spec.Shape ?? [];
            int shapeOffset = ShapeOffsetFor(spec.Fields.Count);
            BinaryPrimitives.WriteUInt32LittleEndian(header[NdimOffset..], (uint)shape.Count);
            BinaryPrimitives.WriteUInt32LittleEndian(header[ShapeOffsetOffset..], (uint)shapeOffset);
            for (int k = 0; k < shape.Count; k++)
                BinaryPrimitives.WriteUInt64LittleEndian(header[(shapeOffset + 8 * k)..], (ulong)shape[k]);
        }
        // One aligned 8-byte store after a fence: a reader never sees half a magic (it would take the
        // name for another program's), and one that sees the magic sees the whole identity region.
        Interlocked.MemoryBarrier();
        BinaryPrimitives.WriteUInt64LittleEndian(header[MagicOffset..], BinaryPrimitives.ReadUInt64LittleEndian(MagicBytes));
    }

    /// <summary>Writes <paramref name="fields"/> as 64-byte field-table entries (section 4) at the start of
    /// <paramref name="table"/> (zero-filled): a header's table, or a queue message's struct description
    /// (section 11.4).</summary>
    internal static void WriteFieldEntries(Span<byte> table, IReadOnlyList<StructField> fields)
    {
        for (int i = 0; i < fields.Count; i++)
        {
            var f = fields[i];
            var entry = table.Slice(i * FieldEntrySize, FieldEntrySize);
            WriteText(entry[..EntryNameWidth], f.Name);
            entry[EntryTypeCodeOffset] = (byte)f.TypeCode;
            BinaryPrimitives.WriteUInt32LittleEndian(entry[EntryOffsetOffset..], (uint)f.Offset);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[EntryCountOffset..], (uint)f.Count);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[EntryItemSizeOffset..], (uint)f.ItemSize);
            BinaryPrimitives.WriteInt32LittleEndian(entry[EntryParentOffset..], f.Parent);
        }
    }

    internal static int CompatVersionFor(SegmentLifetime lifetime) => lifetime == SegmentLifetime.LastCloser ? 2 : 1;

    /// <summary>The lifetime byte (0x039) of a validated version/compat pair: reserved (ignored, so
    /// <see cref="SegmentLifetime.Creator"/>) in version 1; 0-2 from version 2 on, and last-closer
    /// only with compat_version 2 or more.</summary>
    private static SegmentLifetime ParseLifetime(string name, ReadOnlySpan<byte> h)
    {
        int version = BinaryPrimitives.ReadUInt16LittleEndian(h[VersionOffset..]);
        if (version < 2) return SegmentLifetime.Creator;
        byte value = h[LifetimeOffset];
        if (value > (byte)SegmentLifetime.Persistent)
            throw Corrupt(name, $"lifetime {value} is not 0 (creator), 1 (last-closer) or 2 (persistent)");
        var lifetime = (SegmentLifetime)value;
        int compat = BinaryPrimitives.ReadUInt16LittleEndian(h[CompatVersionOffset..]);
        if (compat < CompatVersionFor(lifetime))
            throw Corrupt(name, $"compat_version {compat} for a last-closer segment (must be 2 or more: a version-1 reader would not take part in its protocol)");
        return lifetime;
    }

    /// <summary>CRC-32 over the identity region and the field table (section 3.3).</summary>
    internal static uint ComputeCrc(ReadOnlySpan<byte> header)
    {
        uint crc = Crc32.Append(0, header[..IdentityEnd]);
        return Crc32.Append(crc, header[FixedSize..]);
    }

    internal static void WriteText(Span<byte> field, string text)
    {
        // Callers validate text (ASCII, shorter than the field) before writing.
        Encoding.ASCII.GetBytes(text, field);
    }

    /// <summary>Reads <c>header_size</c> from the private copy of the fixed header and checks its
    /// bounds, so the caller knows how many more bytes to copy.</summary>
    internal static int ReadHeaderSize(string name, ReadOnlySpan<byte> fixedHeader, long objectSize)
    {
        CheckMagicAndVersion(name, fixedHeader);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(fixedHeader[HeaderSizeOffset..]);
        if (size < FixedSize || size % 64 != 0 || size > MaxHeaderSize)
            throw Corrupt(name, $"header_size {size} is not a multiple of 64 between {FixedSize} and {MaxHeaderSize}");
        if (size > objectSize)
            throw Corrupt(name, $"header_size {size} exceeds the object size {objectSize} (truncated segment)");
        return (int)size;
    }

    internal static void CheckMagicAndVersion(string name, ReadOnlySpan<byte> h)
    {
        if (!h[..8].SequenceEqual(MagicBytes))
            throw NotASharedBridgeSegment(name, "wrong magic: this name belongs to another program");
        int version = BinaryPrimitives.ReadUInt16LittleEndian(h[VersionOffset..]);
        int compat = BinaryPrimitives.ReadUInt16LittleEndian(h[CompatVersionOffset..]);
        if (compat > FormatVersion)
            throw new UnsupportedFormatVersionException(
                $"Segment \"{name}\" needs a reader of format version {compat} or later (written by version {version}); " +
                $"this library reads version {FormatVersion}: upgrade SharedBridge.");
        if (compat == 0 || version < compat)
            throw Corrupt(name, $"version {version} / compat_version {compat} are not valid");
    }

    /// <summary>Validates every field of the private header copy (section 6.2 step 4).</summary>
    internal static SegmentHeader Parse(string name, ReadOnlySpan<byte> h, long objectSize)
    {
        CheckMagicAndVersion(name, h);
        uint state = BinaryPrimitives.ReadUInt32LittleEndian(h[StateOffset..]);
        if (state is not (StateReady or StateRetired))
            throw Corrupt(name, $"state {state} is not 1 (ready) or 2 (retired)");
        int headerSize = ReadHeaderSize(name, h, objectSize);
        if (h.Length != headerSize)
            throw new InvalidOperationException("header copy has the wrong length");
        // Section 6.2 step 5 fixes the order up to the kind: header_size, then the checksum (damaged
        // bytes say nothing about who wrote them), then the kind (an unknown one is a newer writer's,
        // whatever else its header holds); the rest in any order.
        uint storedCrc = BinaryPrimitives.ReadUInt32LittleEndian(h[HeaderCrc32Offset..]);
        uint actualCrc = ComputeCrc(h);
        if (storedCrc != actualCrc)
            throw Corrupt(name, $"header checksum mismatch (stored 0x{storedCrc:X8}, computed 0x{actualCrc:X8})");

        var kind = (SegmentKind)h[KindOffset];
        if (h[KindOffset] > MaxKind)
            throw new UnsupportedFormatVersionException(
                $"Segment \"{name}\": unknown segment kind {h[KindOffset]}: written by a newer SharedBridge, upgrade " +
                $"(this library knows kinds 1 to {MaxKind}).");
        if (h[KindOffset] == 0)
            throw Corrupt(name, "kind 0 is not a segment kind");
        // This library reads every segment of compat_version <= 7 (section 6.3), but its queues follow the queue
        // rules of QueueVersion (section 11.1): a queue of a newer queue format than 6 must not be used by this code, so it
        // asks for an upgrade like any newer format.
        int compatVersion = BinaryPrimitives.ReadUInt16LittleEndian(h[CompatVersionOffset..]);
        if (kind == SegmentKind.Queue && compatVersion > QueueVersion)
            throw new UnsupportedFormatVersionException(
                $"Segment \"{name}\" is a queue of format version {compatVersion}; this library implements queues of format version " +
                $"{QueueVersion}: upgrade SharedBridge.");
        if (HeaderSpec.IsSync(kind))
            CheckSync(name, h, kind);
        else if (kind == SegmentKind.Queue)
            CheckQueue(name, h);
        long[]? shape = kind == SegmentKind.NDArray ? ParseShape(name, h, headerSize) : null;

        char typeCode = (char)h[TypeCodeOffset];
        uint elementSize = BinaryPrimitives.ReadUInt32LittleEndian(h[ElementSizeOffset..]);
        ulong count = BinaryPrimitives.ReadUInt64LittleEndian(h[ElementCountOffset..]);
        ulong dataOffset = BinaryPrimitives.ReadUInt64LittleEndian(h[DataOffsetOffset..]);
        ulong dataSize = BinaryPrimitives.ReadUInt64LittleEndian(h[DataSizeOffset..]);

        if (kind == SegmentKind.Lock)
        {
            if (typeCode != '\0' || elementSize != 0 || count != 0)
                throw Corrupt(name, "a lock-only segment must have typecode 0, element_size 0 and element_count 0");
        }
        else if (typeCode == TypeCodes.Structure)
        {
            if (elementSize == 0) throw Corrupt(name, "structure element_size is 0");
        }
        else
        {
            int expected = TypeCodes.SizeOf(typeCode);
            if (expected == 0) throw Corrupt(name, $"unknown typecode 0x{(int)typeCode:X2}");
            if (elementSize != expected)
                throw Corrupt(name, $"element_size {elementSize} does not match typecode '{typeCode}' ({expected} bytes)");
        }
        if (elementSize > int.MaxValue)
            throw Corrupt(name, $"element_size {elementSize} is larger than the largest element this library supports ({int.MaxValue} bytes)");
        if (kind == SegmentKind.Value && count != 1)
            throw Corrupt(name, $"a value segment has element_count {count} (must be 1)");

        UInt128 product = (UInt128)elementSize * count;
        if (product != dataSize)
            throw Corrupt(name, $"data_size {dataSize} is not element_size {elementSize} x element_count {count}");
        if (dataOffset % 64 != 0 || dataOffset < (ulong)headerSize)
            throw Corrupt(name, $"data_offset {dataOffset} is not a multiple of 64 at or after header_size {headerSize}");
        if ((UInt128)dataOffset + dataSize > (ulong)objectSize)
            throw Corrupt(name, $"the data area ({dataOffset} + {dataSize} bytes) extends past the object size {objectSize} (truncated segment or bad sizes)");

        var (lockKind, lockAbi, lockSize, lockOffset, lockType, lockName) = ParseLock(name, h, kind);
        if (lockKind == LockKind.External && lockName == SegmentName.BaseName(name))
            throw Corrupt(name, "lock_name names the segment itself (an external lock must live in another segment)");
        string typeName = ReadText(name, h.Slice(TypeNameOffset, TypeNameWidth), "type_name");
        if (typeName.Length > 0 && (typeCode != TypeCodes.Structure || !IsIdentifierText(typeName, allowLeadingDigit: false)))
            throw Corrupt(name, $"type_name \"{typeName}\" is not allowed here");

        var fields = ParseFieldTable(name, h, typeCode, elementSize, headerSize);

        var lifetime = ParseLifetime(name, h);

        ulong recoveries = BinaryPrimitives.ReadUInt64LittleEndian(h[RecoveryCountOffset..]);
        long createdNs = BinaryPrimitives.ReadInt64LittleEndian(h[CreatedUnixNsOffset..]);
        return new SegmentHeader
        {
            Name = name,
            Version = BinaryPrimitives.ReadUInt16LittleEndian(h[VersionOffset..]),
            CompatVersion = BinaryPrimitives.ReadUInt16LittleEndian(h[CompatVersionOffset..]),
            HeaderSize = headerSize,
            Kind = kind,
            TypeCode = typeCode,
            ElementSize = (int)elementSize,
            Length = (long)count,
            Shape = shape,
            DataOffset = (long)dataOffset,
            DataSize = (long)dataSize,
            ObjectSize = objectSize,
            LockKind = lockKind,
            LockAbi = lockAbi,
            LockSize = lockSize,
            LockOffset = lockOffset,
            LockType = lockType,
            LockName = lockName,
            Lifetime = lifetime,
            TypeName = typeName,
            Fields = fields,
            CreatorPid = PidOrZero(BinaryPrimitives.ReadUInt32LittleEndian(h[CreatorPidOffset..])),
            RecordedCreatorPid = BinaryPrimitives.ReadUInt32LittleEndian(h[CreatorPidOffset..]),
            RecordedLastRecoveredByPid = BinaryPrimitives.ReadUInt32LittleEndian(h[LastRecoveredByPidOffset..]),
            CreatorStartTime = BinaryPrimitives.ReadUInt64LittleEndian(h[CreatorStartTimeOffset..]),
            CreatedAt = DateTimeOffset.UnixEpoch.AddTicks(createdNs / 100),
            CreatedUnixNanoseconds = createdNs,
            State = (int)state,
            HeaderCrc32 = storedCrc,
            RecoveryCount = recoveries > long.MaxValue ? long.MaxValue : (long)recoveries,
            LastRecoveredByPid = PidOrZero(BinaryPrimitives.ReadUInt32LittleEndian(h[LastRecoveredByPidOffset..])),
        };
    }

    /// <summary>A u32 pid field as an int; a value no pid can have (above int.MaxValue) reads as 0, "unknown".</summary>
    private static int PidOrZero(uint pid) => pid <= int.MaxValue ? (int)pid : 0;

    /// <summary>Deepest allowed nesting of structures: a top-level field has depth 1.</summary>
    internal const int MaxStructDepth = 16;

    private static readonly HashSet<string> CtypesReservedNames = new(StringComparer.Ordinal)
    {
        "_fields_", "_pack_", "_anonymous_", "_swappedbytes_", "_objects", "_b_base_", "_b_needsfree_",
        "_type_", "_length_", "_align_", "_layout_",
    };

    /// <summary>Field names no writer may use and every reader refuses: "__..." and the ctypes internals.</summary>
    internal static bool IsReservedFieldName(string name) =>
        name.StartsWith("__", StringComparison.Ordinal) || CtypesReservedNames.Contains(name);

    /// <summary>The header rules of the synchronization kinds (section 10.1).</summary>
    private static void CheckSync(string name, ReadOnlySpan<byte> h, SegmentKind kind)
    {
        int compat = BinaryPrimitives.ReadUInt16LittleEndian(h[CompatVersionOffset..]);
        if (compat < SyncVersion)
            throw Corrupt(name, $"kind {(int)kind} (a synchronization object) needs compat_version {SyncVersion}, not {compat}");
        if (h[TypeCodeOffset] != 'I' || BinaryPrimitives.ReadUInt32LittleEndian(h[ElementSizeOffset..]) != 4)
            throw Corrupt(name, $"kind {(int)kind} needs typecode 'I' and elements of 4 bytes");
        ulong count = BinaryPrimitives.ReadUInt64LittleEndian(h[ElementCountOffset..]);
        if (TableSlots(kind, compat, count) is null)
            throw Corrupt(name, $"kind {(int)kind} with compat_version {compat} and element_count {count}: it needs {SyncWords} words" +
                (HeaderSpec.HasTable(kind) ? $" plus 4 per holder-table entry (0 to {MaxSlots} entries) with compat_version {HolderTableVersion}" : ""));
        CheckFixedLayout(name, h, $"kind {(int)kind}");
        var lockKind = (LockKind)h[LockKindOffset];
        var lockType = (LockType)h[LockTypeOffset];
        var ownType = kind == SegmentKind.Condition ? LockType.Recursive : LockType.ErrorChecking;
        if (!((lockKind == LockKind.Embedded && lockType == ownType) || (kind == SegmentKind.Condition && lockKind == LockKind.External)))
            throw Corrupt(name, $"kind {(int)kind} with lock_kind {(int)lockKind} / lock_type {(int)lockType}");
    }

    /// <summary>Sections 10.1 and 11.1: a synchronization segment's or a queue's data_offset is header_size = 0x200 (a
    /// larger data_offset, which section 6.2 alone would allow, breaks a line of their tables).</summary>
    private static void CheckFixedLayout(string name, ReadOnlySpan<byte> h, string what)
    {
        uint headerSize = BinaryPrimitives.ReadUInt32LittleEndian(h[HeaderSizeOffset..]);
        ulong dataOffset = BinaryPrimitives.ReadUInt64LittleEndian(h[DataOffsetOffset..]);
        if (headerSize != FixedSize || dataOffset != FixedSize)
            throw Corrupt(name, $"{what} with header_size {headerSize} and data_offset {dataOffset} (both must be {FixedSize})");
    }

    /// <summary>The header rules of a queue (section 11.1): version 5 or 6 fields, a byte ring of a power-of-two capacity
    /// behind 256 bytes of control words, an embedded error-checking lock, no names, no field table, no flags.</summary>
    private static void CheckQueue(string name, ReadOnlySpan<byte> h)
    {
        int compat = BinaryPrimitives.ReadUInt16LittleEndian(h[CompatVersionOffset..]);
        if (compat < SingleUseQueueVersion)
            throw Corrupt(name, $"kind 8 (a queue) needs compat_version {SingleUseQueueVersion} or more, not {compat}");
        if (h[TypeCodeOffset] != 'B' || BinaryPrimitives.ReadUInt32LittleEndian(h[ElementSizeOffset..]) != 1)
            throw Corrupt(name, "kind 8 (a queue) needs typecode 'B' and elements of 1 byte");
        ulong count = BinaryPrimitives.ReadUInt64LittleEndian(h[ElementCountOffset..]);
        ulong capacity = count - QueueControlSize;
        if (count < QueueControlSize || !QueueCapacityIsValid(capacity))
            throw Corrupt(name, $"kind 8 (a queue) with element_count {count}: it needs {QueueControlSize} + a capacity that is a power " +
                $"of two from {MinQueueCapacity} to 2^40");
        CheckFixedLayout(name, h, "kind 8 (a queue)");
        if (h[LockKindOffset] != (byte)LockKind.Embedded || h[LockTypeOffset] != (byte)LockType.ErrorChecking)
            throw Corrupt(name, $"kind 8 (a queue) with lock_kind {h[LockKindOffset]} / lock_type {h[LockTypeOffset]} (it needs 1 / 2)");
        if (h[LockNameOffset] != 0 || h[TypeNameOffset] != 0 || BinaryPrimitives.ReadUInt32LittleEndian(h[FieldCountOffset..]) != 0
            || BinaryPrimitives.ReadUInt16LittleEndian(h[FlagsOffset..]) != 0)
            throw Corrupt(name, "kind 8 (a queue) has a lock_name, a type_name, a field table or flags (it has none)");
    }

    /// <summary>The header rules of an n-dimensional array (section 12.1), on the private copy: compat_version 7,
    /// flags 0, ndim at most 32, shape_offset right after the field table, header_size exactly
    /// align64(shape_offset + 8 * ndim), every dimension at most 2^63 - 1, the product of the non-zero dimensions
    /// times element_size at most 2^63 - 1 (checked, never wrapped), element_count the product of all dimensions.
    /// The element type, data_size, data_offset and the object size are checked by the rules every array follows
    /// (section 6.2). Returns the shape, dimension 0 first.</summary>
    private static long[] ParseShape(string name, ReadOnlySpan<byte> h, int headerSize)
    {
        int compat = BinaryPrimitives.ReadUInt16LittleEndian(h[CompatVersionOffset..]);
        if (compat < NDArrayVersion)
            throw Corrupt(name, $"kind 9 (an n-dimensional array) needs compat_version {NDArrayVersion}, not {compat}");
        ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(h[FlagsOffset..]);
        if (flags != 0)
            throw Corrupt(name, $"flags 0x{flags:X4} of an n-dimensional array (must be 0)");
        uint ndim = BinaryPrimitives.ReadUInt32LittleEndian(h[NdimOffset..]);
        if (ndim > MaxNdim)
            throw Corrupt(name, $"ndim {ndim} is above {MaxNdim}");
        uint shapeOffset = BinaryPrimitives.ReadUInt32LittleEndian(h[ShapeOffsetOffset..]);
        ulong fieldCount = BinaryPrimitives.ReadUInt32LittleEndian(h[FieldCountOffset..]);
        ulong entrySize = BinaryPrimitives.ReadUInt16LittleEndian(h[FieldEntrySizeOffset..]);
        ulong expectedOffset = FixedSize + fieldCount * entrySize; // at most 0x200 + (2^32 - 1) * 0xFFFF: no overflow
        if (shapeOffset != expectedOffset)
            throw Corrupt(name, $"shape_offset 0x{shapeOffset:X} is not 0x{expectedOffset:X} (0x200 + field_count {fieldCount} x field_entry_size {entrySize})");
        ulong expectedHeaderSize = (ulong)Align64((long)shapeOffset + 8L * ndim);
        if ((ulong)headerSize != expectedHeaderSize)
            throw Corrupt(name, $"header_size {headerSize} is not align64(shape_offset 0x{shapeOffset:X} + 8 x ndim {ndim}) = {expectedHeaderSize}");
        // shape_offset + 8 * ndim <= header_size == h.Length: the shape lies inside the private copy.
        uint elementSize = BinaryPrimitives.ReadUInt32LittleEndian(h[ElementSizeOffset..]);
        var shape = new long[ndim];
        UInt128 nonZeroProduct = Math.Max(elementSize, 1u); // element_size 0 is refused by the typecode rules
        bool empty = false;
        for (int k = 0; k < shape.Length; k++)
        {
            ulong dim = BinaryPrimitives.ReadUInt64LittleEndian(h[(int)(shapeOffset + 8 * k)..]);
            if (dim > long.MaxValue)
                throw Corrupt(name, $"dimension {k} of the shape is {dim}, above 2^63 - 1");
            shape[k] = (long)dim;
            if (dim == 0) { empty = true; continue; }
            // Both factors are below 2^64 and the running product is kept at most 2^63 - 1: no UInt128 overflow.
            nonZeroProduct *= dim;
            if (nonZeroProduct > long.MaxValue)
                throw Corrupt(name, $"the shape [{string.Join(", ", shape[..(k + 1)])}{(k + 1 < shape.Length ? ", ..." : "")}] times element_size " +
                                    $"{elementSize} exceeds 2^63 - 1 bytes");
        }
        ulong count = BinaryPrimitives.ReadUInt64LittleEndian(h[ElementCountOffset..]);
        ulong product = empty ? 0 : (ulong)(nonZeroProduct / Math.Max(elementSize, 1u));
        if (count != product)
            throw Corrupt(name, $"element_count {count} is not the product of the shape [{string.Join(", ", shape)}] ({product})");
        return shape;
    }

    internal const int QueueControlSize = 256;
    internal const ulong MinQueueCapacity = 4096, MaxQueueCapacity = 1UL << 40;

    internal static bool QueueCapacityIsValid(ulong capacity) =>
        capacity >= MinQueueCapacity && capacity <= MaxQueueCapacity && (capacity & (capacity - 1)) == 0;

    /// <summary>Entries of the holder table of a synchronization segment (section 10.1), or null when
    /// element_count is not valid for the kind and compat_version.</summary>
    internal static int? TableSlots(SegmentKind kind, int compat, ulong elementCount)
    {
        if (elementCount == SyncWords) return 0;
        if (!HeaderSpec.HasTable(kind) || compat < HolderTableVersion || elementCount < SyncWords) return null;
        ulong extra = elementCount - SyncWords;
        return extra % 4 == 0 && extra / 4 <= MaxSlots ? (int)(extra / 4) : null;
    }

    private static (LockKind, int, int, int, LockType, string) ParseLock(string name, ReadOnlySpan<byte> h, SegmentKind kind)
    {
        var lockKind = (LockKind)h[LockKindOffset];
        int abi = h[LockAbiOffset];
        int size = BinaryPrimitives.ReadUInt16LittleEndian(h[LockSizeOffset..]);
        uint offset = BinaryPrimitives.ReadUInt32LittleEndian(h[LockOffsetOffset..]);
        var type = (LockType)h[LockTypeOffset];
        string lockName = ReadText(name, h.Slice(LockNameOffset, LockNameWidth), "lock_name");

        if (lockKind is not (LockKind.None or LockKind.Embedded or LockKind.External or LockKind.ProcessLocal))
            throw Corrupt(name, $"lock_kind {h[LockKindOffset]} is not 0, 1, 2 or 3");
        if (lockKind == LockKind.Embedded)
        {
            var own = LockAbi.Current;
            if (own is null)
                throw Corrupt(name, $"the segment has an embedded lock, and this machine ({System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}) has no supported lock ABI");
            if (abi != own.Id)
                throw Corrupt(name, $"lock_abi {abi} is not this machine's ({own.Id}, {own.Description}): the lock was made on another platform");
            if (size != own.MutexSize || offset != MutexOffset)
                throw Corrupt(name, $"lock_size {size} / lock_offset 0x{offset:X} do not match lock_abi {abi} ({own.MutexSize} bytes at 0x{MutexOffset:X})");
            if (type is not (LockType.Recursive or LockType.ErrorChecking))
                throw Corrupt(name, $"lock_type {(int)type} is not 1 (recursive) or 2 (error-checking)");
            if (lockName.Length != 0)
                throw Corrupt(name, "lock_name must be empty for an embedded lock");
        }
        else
        {
            if (abi != 0 || size != 0 || offset != 0 || type != LockType.None)
                throw Corrupt(name, $"lock_kind {(int)lockKind} must have lock_abi, lock_size, lock_offset and lock_type 0");
            if (lockKind == LockKind.External)
            {
                if (SegmentName.Check(lockName) is { } problem)
                    throw Corrupt(name, $"lock_name \"{lockName}\" is not a valid segment name ({problem})");
            }
            else if (lockName.Length != 0)
                throw Corrupt(name, $"lock_name must be empty for lock_kind {(int)lockKind}");
        }
        if (kind == SegmentKind.Lock && lockKind != LockKind.Embedded)
            throw Corrupt(name, "a lock-only segment must have an embedded lock (lock_kind 1)");
        return (lockKind, abi, size, (int)offset, type, lockName);
    }

    private static StructField[] ParseFieldTable(string name, ReadOnlySpan<byte> h, char typeCode, uint elementSize, int headerSize)
    {
        int entrySize = BinaryPrimitives.ReadUInt16LittleEndian(h[FieldEntrySizeOffset..]);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(h[FieldCountOffset..]);
        uint tableOffset = BinaryPrimitives.ReadUInt32LittleEndian(h[FieldTableOffsetOffset..]);
        if (typeCode != TypeCodes.Structure)
        {
            if (count != 0 || entrySize != 0 || tableOffset != 0)
                throw Corrupt(name, "field_count, field_entry_size and field_table_offset must be 0 unless the typecode is 'T'");
            return [];
        }
        if (count == 0) throw Corrupt(name, "a structure segment has no field table");
        if (entrySize < FieldEntrySize) throw Corrupt(name, $"field_entry_size {entrySize} is smaller than {FieldEntrySize}");
        if (tableOffset != FixedSize) throw Corrupt(name, $"field_table_offset 0x{tableOffset:X} is not 0x200");
        if ((ulong)tableOffset + (ulong)count * (ulong)entrySize > (ulong)headerSize)
            throw Corrupt(name, $"the field table ({count} entries of {entrySize} bytes) does not fit in header_size {headerSize}");
        return ParseFieldEntries(h[(int)tableOffset..], (int)count, entrySize, elementSize, problem => Corrupt(name, problem));
    }

    /// <summary>Validates <paramref name="count"/> field-table entries of <paramref name="entrySize"/> bytes
    /// at the start of <paramref name="table"/> (which holds them all) for a structure of
    /// <paramref name="elementSize"/> bytes, with every rule of section 4; <paramref name="corrupt"/> makes the
    /// exception for a problem. Used for a header's table and for the struct description of a queue
    /// message (section 11.4), so both are validated alike.</summary>
    internal static StructField[] ParseFieldEntries(ReadOnlySpan<byte> table, int count, int entrySize, uint elementSize,
                                                    Func<string, Exception> corrupt)
    {
        var fields = new StructField[count];
        // Pre-order walk: the stack holds the open 'T' entries (index, size, children seen, last end,
        // names seen); its depth is the nesting depth of the next child.
        var open = new List<(int Index, long Size, int Children, long End, HashSet<string> Names)>();
        long topEnd = 0;
        int topChildren = 0;
        var topNames = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < count; i++)
        {
            var e = table.Slice(i * entrySize, FieldEntrySize);
            string where = $"field table entry {i}";
            string fieldName = ReadText(e[..EntryNameWidth], where + " name", corrupt);
            if (fieldName.Length == 0 || !IsIdentifierText(fieldName, allowLeadingDigit: false))
                throw corrupt($"{where}: name \"{fieldName}\" is not an ASCII identifier");
            if (IsReservedFieldName(fieldName))
                throw corrupt($"{where}: field name {fieldName} is reserved");
            char code = (char)e[EntryTypeCodeOffset];
            uint offset = BinaryPrimitives.ReadUInt32LittleEndian(e[EntryOffsetOffset..]);
            uint itemCount = BinaryPrimitives.ReadUInt32LittleEndian(e[EntryCountOffset..]);
            uint itemSize = BinaryPrimitives.ReadUInt32LittleEndian(e[EntryItemSizeOffset..]);
            int parent = BinaryPrimitives.ReadInt32LittleEndian(e[EntryParentOffset..]);
            if (code != TypeCodes.Structure && !TypeCodes.IsScalarCode(code))
                throw corrupt($"{where} ({fieldName}): unknown typecode 0x{(int)code:X2}");
            if (itemCount == 0) throw corrupt($"{where} ({fieldName}): count is 0");
            if (code == TypeCodes.Structure ? itemSize == 0 : itemSize != TypeCodes.SizeOf(code))
                throw corrupt($"{where} ({fieldName}): item_size {itemSize} does not match typecode '{code}'");

            // Close the nested structures this entry is not part of.
            while (open.Count > 0 && open[^1].Index != parent)
            {
                if (open[^1].Children == 0) throw corrupt($"field table entry {open[^1].Index} is a structure with no fields");
                open.RemoveAt(open.Count - 1);
            }
            if (parent != -1 && open.Count == 0)
                throw corrupt($"{where} ({fieldName}): parent {parent} is not an enclosing structure entry (entries must be in pre-order)");
            if (open.Count + 1 > MaxStructDepth)
                throw corrupt($"{where} ({fieldName}): structures nest deeper than {MaxStructDepth} levels");
            if (!(open.Count == 0 ? topNames : open[^1].Names).Add(fieldName))
                throw corrupt($"{where}: field name {fieldName} appears twice in the same structure");

            long parentSize = open.Count == 0 ? elementSize : open[^1].Size;
            long previousEnd = open.Count == 0 ? topEnd : open[^1].End;
            int previousChildren = open.Count == 0 ? topChildren : open[^1].Children;
            if (previousChildren > 0 && offset < previousEnd)
                throw corrupt($"{where} ({fieldName}): offset {offset} overlaps or precedes the previous field (offsets must increase)");
            ulong end = (ulong)offset + (ulong)itemCount * itemSize;
            if (end > (ulong)parentSize)
                throw corrupt($"{where} ({fieldName}): offset {offset} + {itemCount} x {itemSize} exceeds its parent's size {parentSize}");

            if (open.Count == 0) { topEnd = (long)end; topChildren++; }
            else open[^1] = open[^1] with { End = (long)end, Children = open[^1].Children + 1 };

            fields[i] = new StructField(fieldName, code, (int)offset, (int)itemCount, (int)itemSize, parent);
            if (code == TypeCodes.Structure) open.Add((i, itemSize, 0, 0, new HashSet<string>(StringComparer.Ordinal)));
        }
        foreach (var o in open)
            if (o.Children == 0) throw corrupt($"field table entry {o.Index} is a structure with no fields");
        return fields;
    }

    /// <summary>Reads a NUL-terminated ASCII text field; no NUL within the width is corrupt.</summary>
    private static string ReadText(string name, ReadOnlySpan<byte> field, string what) =>
        ReadText(field, what, problem => Corrupt(name, problem));

    /// <summary>Reads a NUL-terminated ASCII text field; <paramref name="corrupt"/> makes the exception.</summary>
    internal static string ReadText(ReadOnlySpan<byte> field, string what, Func<string, Exception> corrupt)
    {
        int end = field.IndexOf((byte)0);
        if (end < 0) throw corrupt($"{what} is not NUL-terminated");
        var text = field[..end];
        foreach (byte b in text)
            if (b < 0x21 || b > 0x7E) throw corrupt($"{what} holds a non-printable or non-ASCII byte 0x{b:X2}");
        return Encoding.ASCII.GetString(text);
    }

    internal static bool IsIdentifierText(string s, bool allowLeadingDigit)
    {
        if (s.Length == 0) return false;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            bool ok = c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_' || (c is >= '0' and <= '9' && (i > 0 || allowLeadingDigit));
            if (!ok) return false;
        }
        return true;
    }

    internal static CorruptSegmentException Corrupt(string name, string problem) =>
        new($"Segment \"{name}\" has a corrupt header: {problem}. It was not written by a conforming SharedBridge " +
            "(or was damaged); recreate it.");

    /// <summary>The name holds something that is not a SharedBridge segment (wrong magic, not a regular file, ...).</summary>
    internal static NotASharedBridgeSegmentException NotASharedBridgeSegment(string name, string problem) =>
        new($"Segment \"{name}\" is not a SharedBridge segment: {problem}. Choose another name; do not unlink it unless you know whose it is.");
}
