namespace SharedBridge.Format;

/// <summary>Byte offsets and sizes of docs/format.md sections 3 and 4.</summary>
internal static class HeaderLayout
{
    internal const int FixedSize = 0x200;
    internal const int MaxHeaderSize = 1 << 20;
    internal const int FieldEntrySize = 64;
    /// <summary>The newest format version this library reads (section 6.3); it writes version 3 only for
    /// semaphores and barriers, whose layout version 3 changed, and 2 for the rest.
    /// <see cref="SyncVersion"/> is the lowest compat_version of the synchronization kinds 4-7;
    /// <see cref="HolderTableVersion"/> that of semaphores and barriers with a holder table (section 10.1).</summary>
    internal const int FormatVersion = 3;
    internal const int SyncVersion = 2;
    internal const int HolderTableVersion = 3;
    internal const int SyncWords = 16;
    internal const int MaxSlots = 1024;
    internal const int MaxKind = 7;

    internal const int Magic = 0x000;
    internal const int Version = 0x008;
    internal const int CompatVersion = 0x00A;
    internal const int HeaderSize = 0x00C;
    internal const int Kind = 0x010;
    internal const int TypeCode = 0x011;
    internal const int Flags = 0x012;
    internal const int ElementSize = 0x014;
    internal const int ElementCount = 0x018;
    internal const int DataOffset = 0x020;
    internal const int DataSize = 0x028;
    internal const int LockKind = 0x030;
    internal const int LockAbi = 0x031;
    internal const int LockSize = 0x032;
    internal const int LockOffset = 0x034;
    internal const int LockType = 0x038;
    internal const int Lifetime = 0x039;
    internal const int FieldEntrySizeField = 0x03A;
    internal const int FieldCount = 0x03C;
    internal const int FieldTableOffset = 0x040;
    internal const int CreatorPid = 0x044;
    internal const int CreatorStartTime = 0x048;
    internal const int CreatedUnixNs = 0x050;
    internal const int TypeName = 0x060;
    internal const int TypeNameWidth = 32;
    internal const int LockName = 0x080;
    internal const int LockNameWidth = 256;
    internal const int IdentityEnd = 0x180;

    internal const int State = 0x180;
    internal const int HeaderCrc32 = 0x184;
    internal const int RecoveryCount = 0x188;
    internal const int LastRecoveredByPid = 0x190;

    internal const int Mutex = 0x1C0;

    // Field-table entry.
    internal const int EntryName = 0;
    internal const int EntryNameWidth = 32;
    internal const int EntryTypeCode = 32;
    internal const int EntryOffset = 36;
    internal const int EntryCount = 40;
    internal const int EntryItemSize = 44;
    internal const int EntryParent = 48;

    internal const uint StateInitializing = 0;
    internal const uint StateReady = 1;
    internal const uint StateRetired = 2;

    internal static ReadOnlySpan<byte> MagicBytes => "SHBRIDGE"u8;

    internal static long Align64(long x) => (x + 63) & ~63L;

    internal static int HeaderSizeFor(int fieldCount) => (int)Align64(FixedSize + (long)fieldCount * FieldEntrySize);
}
