using System.Buffers.Binary;
using SharedBridge.Format;
using static SharedBridge.Tests.HeaderFormatTests;

namespace SharedBridge.Tests;

/// <summary>
/// The header is untrusted input: every damaged header must give CorruptSegmentException (or its
/// subclass), never a crash, a hang or another exception. Each case writes a damaged copy of a real
/// segment into /dev/shm and opens it.
/// </summary>
public class CorruptHeaderTests
{
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(200);

    /// <summary>A synchronized array of 2 Points (header 0x280, with a field table) as bytes.</summary>
    private static byte[] PointSegment() =>
        SegmentFiles.Of(name => SharedArray<Point>.Create(name, [new Point { X = 1, Y = 2 }, new Point { X = 3, Y = 4 }]));

    private static byte[] DoubleSegment() => SegmentFiles.Of(name => SharedArray<double>.Create(name, [1.0, 2.0, 3.0, 4.0]));

    private static void OpenAny(string name)
    {
        using var s = SharedSegment.Open(name, Short);
        _ = s.Data.Length;
    }

    public static TheoryData<string> Cases => new(Mutations.Keys);

    private static readonly Dictionary<string, Action<byte[]>> Mutations = new()
    {
        ["magic"] = b => "XHBRIDGE"u8.CopyTo(b),
        ["version 0"] = b => U16(b, 0x008, 0),
        ["compat 0"] = b => U16(b, 0x00A, 0),
        ["version below compat"] = b => { U16(b, 0x008, 1); U16(b, 0x00A, 1); U16(b, 0x008, 0); },
        ["header_size small"] = b => U32(b, 0x00C, 0x1C0),
        ["header_size unaligned"] = b => U32(b, 0x00C, 0x290),
        ["header_size 2 MiB"] = b => U32(b, 0x00C, 2 << 20),
        ["header_size past object"] = b => U32(b, 0x00C, 0x400),
        ["header_size without table"] = b => U32(b, 0x00C, 0x200),
        ["kind 0"] = b => b[0x010] = 0,
        ["kind 4"] = b => b[0x010] = 4,
        ["kind value with 2 elements"] = b => b[0x010] = 2,
        ["kind lock with data"] = b => b[0x010] = 3,
        ["typecode z"] = b => b[0x011] = (byte)'z',
        ["typecode d for struct"] = b => b[0x011] = (byte)'d',
        ["element_size 0"] = b => U32(b, 0x014, 0),
        ["element_size 17"] = b => U32(b, 0x014, 17),
        ["element_count huge"] = b => { U64(b, 0x018, 1UL << 40); U64(b, 0x028, 16UL << 40); },
        ["element_count overflowing"] = b => { U64(b, 0x018, 1UL << 61); U64(b, 0x028, 0); },
        ["element_count max"] = b => { U64(b, 0x018, ulong.MaxValue); U64(b, 0x028, ulong.MaxValue - 15); },
        ["data_offset inside header"] = b => U64(b, 0x020, 0x1C0),
        ["data_offset unaligned"] = b => U64(b, 0x020, 0x290),
        ["data_offset huge"] = b => U64(b, 0x020, ulong.MaxValue - 63),
        ["data_size off by one"] = b => U64(b, 0x028, 33),
        ["lock_kind 4"] = b => b[0x030] = 4,
        ["lock_kind none with mutex fields"] = b => b[0x030] = 0,
        ["lock_kind external without name"] = b => { b[0x030] = 2; b[0x031] = 0; U16(b, 0x032, 0); U32(b, 0x034, 0); b[0x038] = 0; },
        ["lock_kind external bad name"] = b => { b[0x030] = 2; b[0x031] = 0; U16(b, 0x032, 0); U32(b, 0x034, 0); b[0x038] = 0; "/x"u8.CopyTo(b.AsSpan(0x080)); },
        ["lock_abi aarch64"] = b => { b[0x031] = 2; U16(b, 0x032, 48); },
        ["lock_abi 9"] = b => b[0x031] = 9,
        ["lock_size 48"] = b => U16(b, 0x032, 48),
        ["lock_offset 0x200"] = b => U32(b, 0x034, 0x200),
        ["lock_type 0"] = b => b[0x038] = 0,
        ["lock_type 3"] = b => b[0x038] = 3,
        ["lock_name with embedded lock"] = b => "other"u8.CopyTo(b.AsSpan(0x080)),
        ["lock_name without NUL"] = b => b.AsSpan(0x080, 256).Fill((byte)'a'),
        ["field_entry_size 32"] = b => U16(b, 0x03A, 32),
        ["field_count 0"] = b => U32(b, 0x03C, 0),
        ["field_count 3"] = b => U32(b, 0x03C, 3),
        ["field_count huge"] = b => U32(b, 0x03C, uint.MaxValue),
        ["field_table_offset 0x240"] = b => U32(b, 0x040, 0x240),
        ["type_name without NUL"] = b => b.AsSpan(0x060, 32).Fill((byte)'A'),
        ["type_name non-ASCII"] = b => b[0x061] = 0xC3,
        ["field name empty"] = b => b[0x200] = 0,
        ["field name digit first"] = b => b[0x200] = (byte)'1',
        ["field name without NUL"] = b => b.AsSpan(0x200, 32).Fill((byte)'x'),
        ["field typecode z"] = b => b[0x240 + 32] = (byte)'z',
        ["field count 0"] = b => U32(b, 0x240 + 40, 0),
        ["field item_size 4 for d"] = b => U32(b, 0x240 + 44, 4),
        ["field offsets not increasing"] = b => U32(b, 0x240 + 36, 0),
        ["field past the element"] = b => U32(b, 0x240 + 36, 12),
        ["field fixed array past the element"] = b => U32(b, 0x240 + 40, 2),
        ["field parent 5"] = b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(0x240 + 48), 5),
        ["field parent 0 (not a structure)"] = b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(0x240 + 48), 0),
        ["field parent -2"] = b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(0x240 + 48), -2),
        ["nested structure without fields"] = b => { b[0x240 + 32] = (byte)'T'; U32(b, 0x240 + 44, 8); },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void DamagedFieldWithValidChecksumIsCorrupt(string mutation)
    {
        byte[] bytes = PointSegment();
        Mutations[mutation](bytes);
        SegmentFiles.FixCrc(bytes);
        var e = SegmentFiles.Try(bytes, OpenAny);
        Assert.IsAssignableFrom<CorruptSegmentException>(e);
        Assert.Contains("Segment \"" + Names.Shown("neth_"), e!.Message);
    }

    [Fact]
    public void TooNewCompatVersionAsksForAnUpgrade()
    {
        byte[] bytes = DoubleSegment();
        U16(bytes, 0x008, 8);       // this library reads up to version 7
        U16(bytes, 0x00A, 8);
        SegmentFiles.FixCrc(bytes);
        var e = Assert.IsType<UnsupportedFormatVersionException>(SegmentFiles.Try(bytes, OpenAny));
        Assert.Contains("upgrade", e.Message);
    }

    [Fact]
    public void AQueueOfANewerQueueFormatAsksForAnUpgrade()
    {
        // The reader accepts compat_version up to 7, but implements the queues of QueueVersion only.
        byte[] bytes = SegmentFiles.Of(name => SharedQueue.Create(name));
        U16(bytes, 0x008, HeaderLayout.QueueVersion + 1);
        U16(bytes, 0x00A, HeaderLayout.QueueVersion + 1);
        SegmentFiles.FixCrc(bytes);
        var e = Assert.IsType<UnsupportedFormatVersionException>(SegmentFiles.Try(bytes, OpenAny));
        Assert.Contains($"a queue of format version {HeaderLayout.QueueVersion + 1}", e.Message);
        Assert.IsType<UnsupportedFormatVersionException>(SegmentFiles.Try(bytes, name => SharedQueue.Open(name).Dispose()));
    }

    [Fact]
    public void UnknownKindAsksForAnUpgrade()
    {
        byte[] bytes = DoubleSegment();
        bytes[0x010] = 10;          // kinds 1 to 9 are known (9: n-dimensional array, format version 7)
        SegmentFiles.FixCrc(bytes);
        var e = Assert.IsType<UnsupportedFormatVersionException>(SegmentFiles.Try(bytes, OpenAny));
        Assert.Contains("unknown segment kind 10: written by a newer SharedBridge, upgrade", e.Message);
    }

    [Fact]
    public void NewerWriterWithCompatibleVersionIsAccepted()
    {
        byte[] bytes = DoubleSegment();
        U16(bytes, 0x008, 7); // version 7, compat_version 1
        bytes[0x058] = 0xAA;  // reserved bytes are ignored by version-1 readers
        bytes[0x194] = 0xBB;
        SegmentFiles.FixCrc(bytes);
        Assert.Null(SegmentFiles.Try(bytes, name =>
        {
            using var a = SharedArray<double>.Open(name);
            Assert.Equal([1.0, 2.0, 3.0, 4.0], a.ToArray());
            Assert.Equal(7, a.Header.Version);
        }));
    }

    [Fact]
    public void WrongChecksumIsCorrupt()
    {
        byte[] bytes = DoubleSegment();
        bytes[0x184] ^= 1;
        Assert.Contains("checksum", Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(bytes, OpenAny)).Message);
    }

    [Fact]
    public void EveryFlippedByteOfTheCheckedRangesIsDetected()
    {
        byte[] original = PointSegment();
        var offsets = Enumerable.Range(0, 0x180).Concat(Enumerable.Range(0x200, 0x80));
        foreach (int offset in offsets)
        {
            byte[] bytes = (byte[])original.Clone();
            bytes[offset] ^= 0xFF;
            var e = SegmentFiles.Try(bytes, OpenAny);
            Assert.True(e is CorruptSegmentException, $"flipping byte 0x{offset:X3} gave {e?.GetType().Name ?? "no error"}");
        }
    }

    [Fact]
    public void EveryFlippedByteWithAFixedChecksumIsCorruptOrHarmless()
    {
        // With the checksum recomputed the reader must either accept the header (the byte was
        // reserved, informational or padding) or report it corrupt: never crash or throw anything else.
        byte[] original = PointSegment();
        var offsets = Enumerable.Range(0, 0x180).Concat(Enumerable.Range(0x200, 0x80));
        int accepted = 0;
        foreach (int offset in offsets)
        {
            byte[] bytes = (byte[])original.Clone();
            bytes[offset] ^= 0xFF;
            SegmentFiles.FixCrc(bytes);
            var e = SegmentFiles.Try(bytes, name =>
            {
                using var s = SharedSegment.Open(name, Short);
                Assert.Equal(32, s.Data.Length);
            });
            if (e is null) accepted++;
            else Assert.True(e is CorruptSegmentException, $"flipping byte 0x{offset:X3} gave {e}");
        }
        // Only the version, pid, times, reserved bytes and text padding may change harmlessly.
        Assert.InRange(accepted, 1, 0x180 + 0x80 - 60);
    }

    [Fact]
    public void CreatorLivenessUsesPidAndStartTime()
    {
        byte[] bytes = DoubleSegment();
        Assert.Null(SegmentFiles.Try(bytes, name => { using var s = SharedSegment.Open(name); Assert.True(s.Header.CreatorIsRunning()); }));
        U64(bytes, 0x048, 12345); // our pid, another start time: a reused pid
        SegmentFiles.FixCrc(bytes);
        Assert.Null(SegmentFiles.Try(bytes, name => { using var s = SharedSegment.Open(name); Assert.False(s.Header.CreatorIsRunning()); }));
        U32(bytes, 0x044, 0x3FFFFFFF); // no such process
        SegmentFiles.FixCrc(bytes);
        Assert.Null(SegmentFiles.Try(bytes, name => { using var s = SharedSegment.Open(name); Assert.False(s.Header.CreatorIsRunning()); }));
    }

    [Fact]
    public void StateOtherThanReadyOrRetiredIsCorrupt()
    {
        byte[] bytes = DoubleSegment();
        U32(bytes, 0x180, 7);
        Assert.Contains("state", Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(bytes, OpenAny)).Message);
    }

    [Fact]
    public void RetiredStateIsAccepted()
    {
        byte[] bytes = DoubleSegment();
        U32(bytes, 0x180, 2);
        Assert.Null(SegmentFiles.Try(bytes, name =>
        {
            using var a = SharedArray<double>.Open(name);
            Assert.Equal(2, a.Header.State);
        }));
    }

    [Fact]
    public void StillInitializingAfterTheTimeoutIsSegmentNotReady()
    {
        byte[] bytes = DoubleSegment();
        U32(bytes, 0x180, 0);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.IsType<SegmentNotReadyException>(SegmentFiles.Try(bytes, OpenAny));
        Assert.Contains("still initializing", e.Message);
        Assert.InRange(clock.Elapsed, Short, TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void EmptyObjectIsNotReadyYet()
    {
        Assert.IsType<SegmentNotReadyException>(SegmentFiles.Try([], OpenAny));
    }

    [Fact]
    public void OpenWaitsForTheCreatorToFinish()
    {
        byte[] bytes = DoubleSegment();
        U32(bytes, 0x180, 0);
        string name = Names.Unique("slow");
        File.WriteAllBytes(Names.ShmPath(name), bytes);
        try
        {
            var writer = new Thread(() =>
            {
                Thread.Sleep(150);
                using var f = new FileStream(Names.ShmPath(name), FileMode.Open, FileAccess.Write);
                f.Position = 0x180;
                f.Write([1, 0, 0, 0]);
            });
            writer.Start();
            var started = DateTime.UtcNow;
            using var a = SharedArray<double>.Open(name, TimeSpan.FromSeconds(10));
            Assert.True(DateTime.UtcNow - started >= TimeSpan.FromMilliseconds(100), "Open returned before the state became ready");
            Assert.Equal(4.0, a[3]);
            writer.Join();
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }

    [Theory]
    [InlineData(8)]
    [InlineData(100)]
    [InlineData(511)]
    public void ObjectSmallerThanTheHeaderIsCorrupt(int size)
    {
        byte[] bytes = DoubleSegment()[..size];
        Assert.Contains("truncated", Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(bytes, OpenAny)).Message);
    }

    [Theory]
    [InlineData(512)]
    [InlineData(512 + 8)]
    [InlineData(512 + 31)]
    public void ObjectShorterThanItsDataIsCorrupt(int size)
    {
        byte[] bytes = DoubleSegment()[..size];
        Assert.Contains("past the object size", Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(bytes, OpenAny)).Message);
    }

    [Fact]
    public void TruncatedFieldTableIsCorrupt()
    {
        byte[] bytes = PointSegment()[..0x240];
        Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(bytes, OpenAny));
    }

    [Fact]
    public void LargerObjectThanNeededIsAccepted()
    {
        byte[] bytes = DoubleSegment();
        Array.Resize(ref bytes, bytes.Length + 4096);
        Assert.Null(SegmentFiles.Try(bytes, name =>
        {
            using var a = SharedArray<double>.Open(name);
            Assert.Equal(4, a.Length);
        }));
    }

    [Fact]
    public void TypedOpenOfACorruptSegmentIsStillCorruptNotMismatch()
    {
        byte[] bytes = DoubleSegment();
        bytes[0x011] = (byte)'z';
        SegmentFiles.FixCrc(bytes);
        Assert.IsType<CorruptSegmentException>(SegmentFiles.Try(bytes, name => SharedArray<int>.Open(name).Dispose()));
    }
}
