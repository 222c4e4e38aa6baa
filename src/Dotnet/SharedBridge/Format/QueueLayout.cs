namespace SharedBridge.Format;

/// <summary>The data area of a queue segment (docs/format.md sections 11.2 and 11.3): byte offsets from data_offset,
/// the immutable words' bounds and the record header.</summary>
internal static class QueueLayout
{
    // Section 11.2: the three wait blocks (section 10.3 words: seq, waiters, signals, sleepers).
    internal const int R = 0, W = 16, J = 32;
    /// <summary>The sleepers word's index inside a queue's 4-word wait block.</summary>
    internal const int SleepersWord = 3;
    internal const int Count = 48, Unfinished = 52, Completed = 56;
    internal const int Head = 64, Read = 72, Tail = 80, Puts = 88, Gets = 96;
    internal const int MaxMessages = 128, Flavour = 132;
    /// <summary>Where the ring starts (the control area's size).</summary>
    internal const int Ring = HeaderCodec.QueueControlSize;

    internal const uint Unbounded = 0x7FFFFFFF;
    internal const uint MaxFlavour = 3;

    // Section 11.3: the record header.
    internal const int RecSize = 0, RecState = 4, RecTag = 5, RecFlags = 6, RecReserved = 7, RecDescLength = 8,
        RecTakerPid = 12, RecTakerStart = 16, RecDataLength = 24;
    internal const int RecordHeader = 32;
    internal const int PadMinimum = 8;
    internal const byte StateReady = 1, StateTaken = 2, StateDone = 3, StatePad = 4;
    internal const byte FlagOutOfLine = 1;
    internal const int MinTag = 1, MaxTag = 6;

    /// <summary>The out-of-line reference's fixed part (section 11.5): created_unix_ns, creator_pid, name_length.</summary>
    internal const int ReferenceHeader = 16;

    /// <summary>The longest queue name: its out-of-line segments are named <c>name.m</c> + 16 hex digits.</summary>
    internal const int MaxNameLength = 237;
    internal const string OutOfLineMarker = ".m";

    internal static ulong Align8(ulong n) => (n + 7) & ~7UL;

    // Section 11.5: a record's size is a u32. A message goes inline only when its record is at most InlineLimit(capacity)
    // bytes (both libraries: a quarter of the ring, so that one large message never takes most of it); no record ever
    // exceeds RecordLimit(capacity) bytes. Python: queue_layout.py inline_limit and record_limit.
    internal const ulong MaxInlineRecord = 1UL << 31;
    /// <summary>The largest multiple of 8 a u32 holds.</summary>
    internal const ulong MaxRecord = (1UL << 32) - 8;

    /// <summary>The largest inline record of a ring of <paramref name="capacity"/> bytes (section 11.5).</summary>
    internal static ulong InlineLimit(ulong capacity) => Math.Min(capacity / 4, MaxInlineRecord);

    /// <summary>The largest record of any kind of a ring of <paramref name="capacity"/> bytes (section 11.5).</summary>
    internal static ulong RecordLimit(ulong capacity) => Math.Min(capacity / 2, MaxRecord);

    /// <summary>A message record's size (section 11.3); null on overflow past any ring.</summary>
    internal static ulong? RecordSize(ulong descLength, ulong dataLength)
    {
        if (descLength > uint.MaxValue || dataLength > HeaderCodec.MaxQueueCapacity * 2) return null;
        return RecordHeader + Align8(descLength) + Align8(dataLength);
    }

    /// <summary>True when <paramref name="name"/> is an out-of-line message segment name of some queue
    /// (<c>&lt;queue&gt;.m&lt;16 lowercase hex&gt;</c>); <paramref name="queue"/> is that queue's name.</summary>
    internal static bool IsOutOfLineName(string name, out string queue)
    {
        queue = "";
        int at = name.Length - 18;
        if (at < 1 || name[at] != '.' || name[at + 1] != 'm') return false;
        for (int i = at + 2; i < name.Length; i++)
            if (name[i] is not ((>= '0' and <= '9') or (>= 'a' and <= 'f'))) return false;
        queue = name[..at];
        return true;
    }
}
