namespace SharedBridge.Format;

/// <summary>Byte offsets and sizes of docs/format.md sections 3 and 4. A name ending in <c>Offset</c> is
/// where a header field is stored (<see cref="DataOffsetOffset"/> is where data_offset is, section 3.1;
/// the field-table <c>Entry...Offset</c>s count from the start of an entry, section 4); <c>Size</c>,
/// <c>Width</c> and <c>End</c> name byte counts and limits.</summary>
internal static class HeaderLayout
{
    internal const int FixedSize = 0x200;
    internal const int MaxHeaderSize = 1 << 20;
    internal const int FieldEntrySize = 64;
    /// <summary>The newest format version this library reads (section 6.3): 7 (the n-dimensional array, kind 9,
    /// section 12). It writes version 7 for kind 9 only; version 6 for queues (whose out-of-line data segments may be
    /// reusable, section 11.5); version 4 for the
    /// synchronization kinds 4-7 (the sleepers word) and, for kinds 1-3, what version 3 writes (2).
    /// <see cref="SyncVersion"/> is the lowest compat_version of the synchronization kinds 4-7;
    /// <see cref="HolderTableVersion"/> that of semaphores and barriers with a holder table (section 10.1);
    /// <see cref="SleepersVersion"/> that of the sleepers word and its wake rule (section 10.3).</summary>
    internal const int FormatVersion = 7;
    internal const int SyncVersion = 2;
    internal const int HolderTableVersion = 3;
    internal const int SleepersVersion = 4;
    internal const int SyncWords = 16;
    internal const int MaxSlots = 1024;
    internal const int MaxKind = 9;
    /// <summary>compat_version (and version) of a queue segment this library writes (kind 8, section 11.1).</summary>
    internal const int QueueVersion = 6;
    /// <summary>The lowest compat_version of a queue (a version-5 writer's, section 6.3): read with the same rules, but its
    /// producers put only single-use (persistent) data segments in it, since its consumers may be of version 5.</summary>
    internal const int SingleUseQueueVersion = 5;
    /// <summary>compat_version (and version) of an n-dimensional array segment (kind 9, section 12.1).</summary>
    internal const int NDArrayVersion = 7;
    /// <summary>The most dimensions of an n-dimensional array (section 12.1).</summary>
    internal const int MaxNdim = 32;

    internal const int MagicOffset = 0x000;
    internal const int VersionOffset = 0x008;
    internal const int CompatVersionOffset = 0x00A;
    internal const int HeaderSizeOffset = 0x00C;
    internal const int KindOffset = 0x010;
    internal const int TypeCodeOffset = 0x011;
    internal const int FlagsOffset = 0x012;
    internal const int ElementSizeOffset = 0x014;
    internal const int ElementCountOffset = 0x018;
    internal const int DataOffsetOffset = 0x020;
    internal const int DataSizeOffset = 0x028;
    internal const int LockKindOffset = 0x030;
    internal const int LockAbiOffset = 0x031;
    internal const int LockSizeOffset = 0x032;
    internal const int LockOffsetOffset = 0x034;
    internal const int LockTypeOffset = 0x038;
    internal const int LifetimeOffset = 0x039;
    internal const int FieldEntrySizeOffset = 0x03A;
    internal const int FieldCountOffset = 0x03C;
    internal const int FieldTableOffsetOffset = 0x040;
    internal const int CreatorPidOffset = 0x044;
    internal const int CreatorStartTimeOffset = 0x048;
    internal const int CreatedUnixNsOffset = 0x050;
    /// <summary>Kind 9 only (section 12.1); reserved otherwise.</summary>
    internal const int NdimOffset = 0x058;
    /// <summary>Kind 9 only (section 12.1); reserved otherwise.</summary>
    internal const int ShapeOffsetOffset = 0x05C;
    internal const int TypeNameOffset = 0x060;
    internal const int TypeNameWidth = 32;
    internal const int LockNameOffset = 0x080;
    internal const int LockNameWidth = 256;
    internal const int IdentityEnd = 0x180;

    internal const int StateOffset = 0x180;
    internal const int HeaderCrc32Offset = 0x184;
    internal const int RecoveryCountOffset = 0x188;
    internal const int LastRecoveredByPidOffset = 0x190;

    /// <summary>Where the embedded mutex starts (lock_offset of lock_kind 1, section 7.2).</summary>
    internal const int MutexOffset = 0x1C0;

    // Field-table entry.
    internal const int EntryNameOffset = 0;
    internal const int EntryNameWidth = 32;
    internal const int EntryTypeCodeOffset = 32;
    internal const int EntryOffsetOffset = 36;
    internal const int EntryCountOffset = 40;
    internal const int EntryItemSizeOffset = 44;
    internal const int EntryParentOffset = 48;

    internal const uint StateInitializing = 0;
    internal const uint StateReady = 1;
    internal const uint StateRetired = 2;

    internal static ReadOnlySpan<byte> MagicBytes => "SHBRIDGE"u8;

    internal static long Align64(long x) => (x + 63) & ~63L;

    internal static int HeaderSizeFor(int fieldCount) => (int)Align64(FixedSize + (long)fieldCount * FieldEntrySize);

    /// <summary>Where a kind-9 shape starts: right after the field table (section 12.1).</summary>
    internal static int ShapeOffsetFor(int fieldCount) => FixedSize + fieldCount * FieldEntrySize;

    /// <summary>header_size of a kind-9 segment: align64(shape_offset + 8 * ndim) (section 12.1).</summary>
    internal static int HeaderSizeFor(int fieldCount, int ndim) => (int)Align64(ShapeOffsetFor(fieldCount) + 8L * ndim);
}
