namespace SharedBridge.CrossTests.Golden;

/// <summary>Byte-by-byte comparison of headers with the fields docs/format.md section 9 masks.</summary>
public static class HeaderMask
{
    private static readonly (int Start, int End, string Field)[] Masked =
    [
        (0x044, 0x048, "creator_pid"),
        (0x048, 0x050, "creator_start_time"),
        (0x050, 0x058, "created_unix_ns"),
        (0x184, 0x188, "header_crc32"),
        (0x1C0, 0x200, "mutex"),
    ];

    private static readonly (int Start, int End, string Field)[] Named =
    [
        (0x000, 0x008, "magic"), (0x008, 0x00A, "version"), (0x00A, 0x00C, "compat_version"),
        (0x00C, 0x010, "header_size"), (0x010, 0x011, "kind"), (0x011, 0x012, "typecode"), (0x012, 0x014, "flags"),
        (0x014, 0x018, "element_size"), (0x018, 0x020, "element_count"), (0x020, 0x028, "data_offset"),
        (0x028, 0x030, "data_size"), (0x030, 0x031, "lock_kind"), (0x031, 0x032, "lock_abi"),
        (0x032, 0x034, "lock_size"), (0x034, 0x038, "lock_offset"), (0x038, 0x039, "lock_type"),
        (0x03A, 0x03C, "field_entry_size"), (0x03C, 0x040, "field_count"), (0x040, 0x044, "field_table_offset"),
        (0x060, 0x080, "type_name"), (0x080, 0x180, "lock_name"), (0x180, 0x184, "state"),
        (0x188, 0x190, "recovery_count"), (0x190, 0x194, "last_recovered_by_pid"),
    ];

    public static bool IsMasked(int offset) => Masked.Any(m => offset >= m.Start && offset < m.End);

    public static string FieldAt(int offset)
    {
        if (offset >= 0x200) return $"field table entry {(offset - 0x200) / 64} byte {(offset - 0x200) % 64}";
        foreach (var (s, e, f) in Named) if (offset >= s && offset < e) return f;
        return "reserved";
    }

    /// <summary>Every unmasked difference as "0xOFF (field): expected XX, found YY", empty when equal.</summary>
    public static IReadOnlyList<string> Differences(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual)
    {
        var diffs = new List<string>();
        if (expected.Length != actual.Length) diffs.Add($"length: expected {expected.Length}, found {actual.Length}");
        int n = Math.Min(expected.Length, actual.Length);
        for (int i = 0; i < n; i++)
            if (!IsMasked(i) && expected[i] != actual[i])
                diffs.Add($"0x{i:X3} ({FieldAt(i)}): expected {expected[i]:X2}, found {actual[i]:X2}");
        return diffs;
    }
}
