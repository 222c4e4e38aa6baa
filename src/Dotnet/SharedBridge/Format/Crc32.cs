namespace SharedBridge.Format;

/// <summary>CRC-32 of zlib / IEEE 802.3 (reflected 0xEDB88320, init and final XOR 0xFFFFFFFF);
/// System.IO.Hashing is not part of the BCL.</summary>
internal static class Crc32
{
    private static readonly uint[] Table = BuildTable();

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        return table;
    }

    /// <summary>Continues a running CRC (start with 0, like zlib.crc32).</summary>
    internal static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        uint c = ~crc;
        foreach (byte b in data)
            c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
        return ~c;
    }

    internal static uint Compute(ReadOnlySpan<byte> data) => Append(0, data);
}
