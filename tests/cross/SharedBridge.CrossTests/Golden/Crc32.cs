namespace SharedBridge.CrossTests.Golden;

/// <summary>CRC-32 of zlib / IEEE 802.3 (docs/format.md 3.3), written here again so that the
/// golden checks do not trust either implementation's checksum code.</summary>
public static class Crc32
{
    private static readonly uint[] Table = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    private static uint Update(uint crc, ReadOnlySpan<byte> part)
    {
        foreach (byte b in part) crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    /// <summary>The header checksum: identity region 0x000-0x17F plus 0x200 to header_size - 1.</summary>
    public static uint OfHeader(ReadOnlySpan<byte> header) =>
        Update(Update(0xFFFFFFFFu, header[..0x180]), header[0x200..]) ^ 0xFFFFFFFFu;
}
