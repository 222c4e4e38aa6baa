using System.Buffers.Binary;
using System.Text;
using SharedBridge.Format;

namespace SharedBridge.Tests;

/// <summary>The bytes SharedBridge writes, checked against docs/format.md written out by hand.</summary>
public class HeaderFormatTests
{
    [Fact]
    public void Crc32IsZlibCrc32()
    {
        Assert.Equal(0xCBF43926u, Crc32.Compute("123456789"u8));
        Assert.Equal(0u, Crc32.Compute([]));
        Assert.Equal(0xE12D79E8u, Crc32.Compute("SHBRIDGE"u8)); // python3 -c "import zlib; print(hex(zlib.crc32(b'SHBRIDGE')))"
        Assert.Equal(Crc32.Compute("SHBRIDGE"u8), Crc32.Append(Crc32.Compute("SHBRI"u8), "DGE"u8));
    }

    [Fact]
    public void PointArrayHeaderIsTheSpecExampleByteForByte()
    {
        string name = Names.Unique();
        long before = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
        using var points = SharedArray<Point>.Create(name, [new Point { X = 1, Y = 2 }, new Point { X = 3, Y = 4 }]);
        byte[] file = File.ReadAllBytes(Names.ShmPath(name));
        Assert.Equal(0x280 + 32, file.Length);

        var expected = new byte[0x280];
        "SHBRIDGE"u8.CopyTo(expected);
        U16(expected, 0x008, 2);
        U16(expected, 0x00A, 1);
        U32(expected, 0x00C, 0x280);
        expected[0x010] = 1;            // array
        expected[0x011] = (byte)'T';
        U32(expected, 0x014, 16);
        U64(expected, 0x018, 2);
        U64(expected, 0x020, 0x280);
        U64(expected, 0x028, 32);
        expected[0x030] = 1;            // embedded lock
        expected[0x031] = 1;            // glibc x86_64
        U16(expected, 0x032, 40);
        U32(expected, 0x034, 0x1C0);
        expected[0x038] = 1;            // recursive
        U16(expected, 0x03A, 64);
        U32(expected, 0x03C, 2);
        U32(expected, 0x040, 0x200);
        "Point"u8.CopyTo(expected.AsSpan(0x060));
        U32(expected, 0x180, 1);        // ready
        Entry(expected, 0, "X", 'd', 0, 1, 8, -1);
        Entry(expected, 1, "Y", 'd', 8, 1, 8, -1);

        var masked = file[..0x280];
        Array.Clear(masked, 0x044, 0x058 - 0x044); // creator pid, start time, created_unix_ns
        Array.Clear(masked, 0x184, 4);             // crc
        Array.Clear(masked, 0x1C0, 0x40);          // mutex
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(masked));

        uint crc = Crc32.Append(Crc32.Compute(file.AsSpan(0, 0x180)), file.AsSpan(0x200, 0x80));
        Assert.Equal(crc, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(0x184)));
        Assert.Equal((uint)Environment.ProcessId, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(0x044)));
        Assert.Equal(ProcStartTime(), BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(0x048)));
        long created = BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(0x050));
        Assert.InRange(created, before, before + 60_000_000_000L);
        Assert.Equal([1.0, 2.0, 3.0, 4.0], MemoryMarshalDoubles(file.AsSpan(0x280)));
    }

    [Fact]
    public void LockOnlyAndRawHeadersFollowTheSpec()
    {
        string lockName = Names.Unique();
        using (var l = SharedLock.Create(lockName, new SegmentOptions { RecursiveLock = false }))
        {
            byte[] b = File.ReadAllBytes(Names.ShmPath(lockName));
            Assert.Equal(512, b.Length);
            Assert.Equal(3, b[0x010]);
            Assert.Equal(0, b[0x011]);
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(0x014)));
            Assert.Equal(0ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x018)));
            Assert.Equal(512ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x020)));
            Assert.Equal(1, b[0x030]);
            Assert.Equal(2, b[0x038]); // error-checking, like Python's Lock()
            Assert.Equal(LockType.ErrorChecking, l.LockType);
        }
        string rawName = Names.Unique();
        using (SharedArray<int>.Create(rawName, [1, 2, 3], new SegmentOptions { Synchronized = false }))
        {
            byte[] b = File.ReadAllBytes(Names.ShmPath(rawName));
            Assert.Equal(512 + 12, b.Length);
            Assert.All(b[0x030..0x03A], x => Assert.Equal(0, x));   // lock fields all zero
            Assert.All(b[0x1C0..0x200], x => Assert.Equal(0, x));   // no mutex initialized
            Assert.Equal((byte)'i', b[0x011]);
            Assert.Equal(12ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x028)));
        }
    }

    [Fact]
    public void ExternalLockNamesTheLockSegment()
    {
        using var shared = SharedLock.Create(Names.Unique());
        string name = Names.Unique();
        using var a = SharedArray<double>.Create(name, 1, new SegmentOptions { SharedLock = shared });
        byte[] b = File.ReadAllBytes(Names.ShmPath(name));
        Assert.Equal(2, b[0x030]);
        Assert.All(b[0x031..0x03A], x => Assert.Equal(0, x));
        Assert.Equal(shared.Name, Encoding.ASCII.GetString(b, 0x080, shared.Name.Length));
        Assert.Equal(0, b[0x080 + shared.Name.Length]);
        Assert.Equal(LockKind.External, a.Header.LockKind);
        Assert.Equal(shared.Name, a.Header.LockName);
    }

    [Fact]
    public void OpenedHeaderReportsEveryField()
    {
        string name = Names.Unique();
        using var a = SharedArray<long>.Create(name, 3, new SegmentOptions { TypeCode = 'l' });
        using var s = SharedSegment.Open(name);
        var h = s.Header;
        Assert.Equal((2, 1, 512), (h.Version, h.CompatVersion, h.HeaderSize));
        Assert.Equal((SegmentKind.Array, 'l', 8, 3L), (h.Kind, h.TypeCode, h.ElementSize, h.Length));
        Assert.Equal((512L, 24L), (h.DataOffset, h.DataSize));
        Assert.Equal((LockKind.Embedded, 1, 40, 0x1C0, LockType.Recursive), (h.LockKind, h.LockAbi, h.LockSize, h.LockOffset, h.LockType));
        Assert.Equal(Environment.ProcessId, h.CreatorPid);
        Assert.Equal(ProcStartTime(), h.CreatorStartTime);
        Assert.InRange(h.CreatedAt, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddSeconds(1));
        Assert.Equal(1, h.State);
        Assert.Equal(0, h.RecoveryCount);
        Assert.Empty(h.Fields);
        Assert.True(s.HasLock);
        Assert.Equal(24, s.Data.Length);
    }

    private static ulong ProcStartTime()
    {
        string stat = File.ReadAllText("/proc/self/stat");
        return ulong.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[19]);
    }

    private static double[] MemoryMarshalDoubles(ReadOnlySpan<byte> bytes)
    {
        var result = new double[bytes.Length / 8];
        for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadDoubleLittleEndian(bytes[(i * 8)..]);
        return result;
    }

    internal static void U16(byte[] b, int o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(o), v);
    internal static void U32(byte[] b, int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(o), v);
    internal static void U64(byte[] b, int o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(o), v);

    private static void Entry(byte[] b, int index, string name, char code, uint offset, uint count, uint itemSize, int parent)
    {
        int e = 0x200 + index * 64;
        Encoding.ASCII.GetBytes(name).CopyTo(b, e);
        b[e + 32] = (byte)code;
        U32(b, e + 36, offset);
        U32(b, e + 40, count);
        U32(b, e + 44, itemSize);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(e + 48), parent);
    }
}
