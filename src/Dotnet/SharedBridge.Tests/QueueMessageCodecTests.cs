using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using SharedBridge.Objects;
using Xunit.Abstractions;

namespace SharedBridge.Tests;

/// <summary>
/// The message descriptors of docs/format.md section 11.4, without a queue: what a writer puts
/// (MessageSpec) goes through a byte buffer into MessageCodec.Read and the typed accessors, exactly
/// as a record's descriptor and data do through the ring. Hostile descriptors (fixed cases and a
/// seeded mutation fuzzer) raise only CorruptDataException.
/// </summary>
public class QueueMessageCodecTests(ITestOutputHelper output)
{
    private const string Queue = "sbt_cc_queue";

    /// <summary>Writes the spec's descriptor, validates it back as a reader would.</summary>
    private static (MessageDescriptor Descriptor, byte[] Bytes) RoundTrip(MessageSpec spec)
    {
        var bytes = new byte[spec.DescriptorLength];
        spec.WriteDescriptor(bytes);
        return (MessageCodec.Read((byte)spec.Type, bytes, spec.DataLength, Queue), bytes);
    }

    private static byte[] BytesOf<T>(ReadOnlySpan<T> values) where T : unmanaged => MemoryMarshal.AsBytes(values).ToArray();

    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "").Replace("\n", ""));

    private static string ToHex(byte[] bytes) => Convert.ToHexString(bytes).ToLowerInvariant();

    // ---- round trips ----

    [Fact]
    public void BytesAndStringsHaveNoDescriptorAndComeBackAsWritten()
    {
        var (bytesMessage, bytesDescriptor) = RoundTrip(MessageSpec.Bytes(5));
        Assert.Empty(bytesDescriptor);
        Assert.Equal(QueueMessageType.Bytes, bytesMessage.Type);
        Assert.Equal(5UL, bytesMessage.DataLength);
        Assert.Empty(bytesMessage.Shape);

        string text = "grüße, 世界 🙂";
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        var (stringMessage, stringDescriptor) = RoundTrip(MessageSpec.String(utf8.Length));
        Assert.Empty(stringDescriptor);
        Assert.Equal(QueueMessageType.String, stringMessage.Type);
        Assert.Equal(text, MessageCodec.GetString(stringMessage, utf8));
        Assert.Equal("", MessageCodec.GetString(RoundTrip(MessageSpec.String(0)).Descriptor, []));
        Assert.Equal((ulong)utf8.Length, MessageSpec.String(text).DataLength);
        var surrogate = Assert.Throws<ArgumentException>(() => MessageSpec.String("ab\uD800c"));
        Assert.Contains("0xD800 at index 2", surrogate.Message);
    }

    [Fact]
    public void ScalarsOfEveryPrimitiveTypeComeBackWithTheirTypecode()
    {
        Check<sbyte>(-5, 'b');
        Check<byte>(250, 'B');
        Check<short>(-30000, 'h');
        Check<ushort>(65000, 'H');
        Check<int>(-123456, 'i');
        Check<uint>(4000000000, 'I');
        Check<long>(long.MinValue, 'q');
        Check<ulong>(ulong.MaxValue, 'Q');
        Check<float>(1.5f, 'f');
        Check<double>(-2.25, 'd');
        Check<bool>(true, '?');
        Check<Rune>(new Rune(0x1F642), 'u');

        static void Check<T>(T value, char code) where T : unmanaged
        {
            var (m, descriptor) = RoundTrip(MessageSpec.Value<T>());
            Assert.Equal(QueueMessageType.Scalar, m.Type);
            Assert.Equal(code, m.Typecode);
            Assert.Equal(new byte[] { (byte)code, 0, 0, 0, 0, 0, 0, 0 }, descriptor);
            Assert.Equal((ulong)Unsafe.SizeOf<T>(), m.DataLength);
            byte[] data = BytesOf<T>([value]);
            Assert.Equal(value, MessageCodec.GetValue<T>(m, data));
            Assert.Equal([value], MessageCodec.ToArray<T>(m, data));
            Assert.Equal(value, MessageCodec.GetSpan<T>(m, data)[0]);
        }
    }

    [Fact]
    public void RecordsOfNestedStructuresAndFixedBuffersComeBackField()
    {
        var particle = new Particle { Tag = 7, Position = new Point { X = 1.5, Y = -2 }, Id = 42, Alive = true };
        var (m, _) = RoundTrip(MessageSpec.Value<Particle>());
        Assert.Equal(QueueMessageType.Record, m.Type);
        Assert.Equal('T', m.Typecode);
        Assert.Equal("Particle", m.TypeName);
        Assert.Equal(["Tag", "Position", "X", "Y", "Id", "Alive"], m.Fields.Select(f => f.Name));
        Assert.Equal(particle, MessageCodec.GetValue<Particle>(m, BytesOf<Particle>([particle])));

        var sample = MakeSample();
        var (s, _) = RoundTrip(MessageSpec.Record<Sample>());
        var back = MessageCodec.GetValue<Sample>(s, BytesOf<Sample>([sample]));
        Assert.Equal(BytesOf<Sample>([sample]), BytesOf<Sample>([back]));
        Assert.Equal(['h', 'f', 'c', 'q'], s.Fields.Select(f => f.TypeCode));

        var polygon = new Polygon { Corners = 4 };
        polygon.Points[3] = new Point { X = 9, Y = 8 };
        var (g, _) = RoundTrip(MessageSpec.Value<Polygon>());
        Assert.Equal(new Point { X = 9, Y = 8 }, MessageCodec.GetValue<Polygon>(g, BytesOf<Polygon>([polygon])).Points[3]);
    }

    private static unsafe Sample MakeSample()
    {
        var sample = new Sample { Code = 3, When = 1234567890123 };
        sample.Values[0] = 1; sample.Values[1] = 2; sample.Values[2] = 3;
        sample.Label[0] = (byte)'a'; sample.Label[4] = (byte)'e';
        return sample;
    }

    [Fact]
    public void ArraysKeepTheirShapeAndElementsOfAnyTypeAndRank()
    {
        double[] values = [.. Enumerable.Range(0, 24).Select(i => i * 0.5)];
        var (m, _) = RoundTrip(MessageSpec.Array<double>([2, 3, 4], values.Length));
        Assert.Equal(QueueMessageType.Array, m.Type);
        Assert.Equal([2L, 3, 4], m.Shape);
        Assert.Equal(24, m.ElementCount);
        byte[] data = BytesOf<double>(values);
        Assert.Equal(values, MessageCodec.ToArray<double>(m, data));
        Assert.True(MessageCodec.GetSpan<double>(m, data).SequenceEqual(values));

        Point[] points = [new() { X = 1, Y = 2 }, new() { X = 3, Y = 4 }];
        var (p, _) = RoundTrip(MessageSpec.Array<Point>(points.Length));
        Assert.Equal('T', p.Typecode);
        Assert.Equal([2L], p.Shape);
        Assert.Equal(points, MessageCodec.ToArray<Point>(p, BytesOf<Point>(points)));

        var (empty, _) = RoundTrip(MessageSpec.Array<int>([0, 5]));
        Assert.Equal(0UL, empty.DataLength);
        Assert.Empty(MessageCodec.ToArray<int>(empty, []));

        // A 0-d array is one element: GetValue reads it.
        var (zeroD, zeroDBytes) = RoundTrip(MessageSpec.Array<long>([]));
        Assert.Equal(8, zeroDBytes.Length);
        Assert.Equal(77L, MessageCodec.GetValue<long>(zeroD, BytesOf<long>([77])));

        var (maxRank, _) = RoundTrip(MessageSpec.Array<byte>(Enumerable.Repeat(1L, 32).ToArray()));
        Assert.Equal(32, maxRank.Shape.Length);
    }

    [Fact]
    public void WritersRefuseShapesNoReaderWouldAccept()
    {
        Assert.Throws<ArgumentException>(() => MessageSpec.Array<int>(Enumerable.Repeat(1L, 33).ToArray()));
        Assert.Throws<ArgumentException>(() => MessageSpec.Array<int>([2, -1]));
        Assert.Throws<ArgumentException>(() => MessageSpec.Array<long>([1L << 31, 1L << 31]));
        var e = Assert.Throws<ArgumentException>(() => MessageSpec.Array<int>([2, 3], 5));
        Assert.Contains("6 elements", e.Message);
        Assert.Throws<ArgumentException>(() => MessageSpec.Scalar<Point>());
        Assert.Throws<ArgumentException>(() => MessageSpec.Record<int>());
        Assert.Throws<UnsupportedTypeException>(() => MessageSpec.Value<char>());
        Assert.Throws<ArgumentException>(() => MessageSpec.Value<int>().WriteDescriptor(new byte[7]));
    }

    // ---- exact bytes (docs/format.md section 11.4) ----

    private const string PointDescription =
        "02000000 10000000" +
        "506f696e74000000000000000000000000000000000000000000000000000000" + // "Point"
        "5800000000000000000000000000000000000000000000000000000000000000" + // "X"
        "64000000 00000000 01000000 08000000 ffffffff 000000000000000000000000" +
        "5900000000000000000000000000000000000000000000000000000000000000" + // "Y"
        "64000000 08000000 01000000 08000000 ffffffff 000000000000000000000000";

    public static TheoryData<string, string> FixedExamples => new()
    {
        { "scalar double", "6400000000000000" },
        { "scalar Rune", "7500000000000000" },
        { "scalar bool", "3f00000000000000" },
        { "array int (2, 3)", "6902000000000000 0200000000000000 0300000000000000" },
        { "array double ()", "6400000000000000" },
        { "record Point", PointDescription },
        { "array Point (4,)", "5401000000000000 0400000000000000" + PointDescription },
    };

    private static MessageSpec Example(string name) => name switch
    {
        "scalar double" => MessageSpec.Value<double>(),
        "scalar Rune" => MessageSpec.Value<Rune>(),
        "scalar bool" => MessageSpec.Value<bool>(),
        "array int (2, 3)" => MessageSpec.Array<int>([2, 3]),
        "array double ()" => MessageSpec.Array<double>([]),
        "record Point" => MessageSpec.Value<Point>(),
        "array Point (4,)" => MessageSpec.Array<Point>([4]),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(FixedExamples))]
    public void DescriptorBytesOfFixedExamplesAreExactly(string example, string hex)
    {
        var (_, bytes) = RoundTrip(Example(example));
        Assert.Equal(ToHex(Hex(hex)), ToHex(bytes));
    }

    [Fact]
    public void APickleDescriptorLaysOutThePickleThenEachBufferAtTheNextMultipleOf8()
    {
        // 13 pickle bytes, buffers of 5 and 16 bytes: pickle at 0, buffer 0 at 16, buffer 1 at 24, end 40.
        byte[] d = Hex("02000000 00000000 0d00000000000000 0500000000000000 1000000000000000");
        var m = MessageCodec.Read(6, d, 40, Queue);
        Assert.Equal(QueueMessageType.PythonObject, m.Type);
        Assert.Equal(13, m.PickleLength);
        Assert.Equal([5L, 16], m.BufferLengths);
        Assert.Equal([16L, 24], m.BufferOffsets);
        Assert.Equal(13, MessageCodec.Read(6, Hex("00000000 00000000 0d00000000000000"), 13, Queue).PickleLength);
        // A zero-length buffer still starts at the next multiple of 8.
        Assert.Equal([16L], MessageCodec.Read(6, Hex("01000000 00000000 0d00000000000000 0000000000000000"), 16, Queue).BufferOffsets);
    }

    [Fact]
    public void ARepeatedDescriptorIsReusedAndEveryOtherOneValidatedAgain()
    {
        byte[] point = Hex(PointDescription);
        var first = MessageCodec.Read(4, point, 16, Queue);
        Assert.Same(first, MessageCodec.Read(4, point, 16, Queue));
        byte[] overlapping = Hex(PointDescription.Replace("64000000 08000000", "64000000 04000000"));
        Assert.Throws<CorruptDataException>(() => MessageCodec.Read(4, overlapping, 16, Queue));
        Assert.Throws<CorruptDataException>(() => MessageCodec.Read(4, point, 24, Queue));
        var other = MessageCodec.Read(4, point, 16, "sbt_cc_other");
        Assert.Equal("sbt_cc_other", other.QueueName);
        Assert.Equal(Queue, MessageCodec.Read(4, point, 16, Queue).QueueName);
        Assert.Equal(new Point { X = 1, Y = 2 }, MessageCodec.GetValue<Point>(first, BytesOf<Point>([new Point { X = 1, Y = 2 }])));
        Assert.Throws<TypeMismatchException>(() => MessageCodec.GetValue<OtherPoint>(first, new byte[16]));
        Assert.Equal(default, MessageCodec.GetValue<Point>(first, new byte[16]));
    }

    // ---- type mismatches ----

    [Fact]
    public void ReadingAsAnotherTypeNamesBothTypes()
    {
        var (d, _) = RoundTrip(MessageSpec.Value<double>());
        var e = Assert.Throws<TypeMismatchException>(() => MessageCodec.GetValue<int>(d, BytesOf<double>([1.0])));
        Assert.Contains("'d'", e.Message);
        Assert.Contains("Int32", e.Message);
        Assert.Contains(Queue, e.Message);
        Assert.Throws<TypeMismatchException>(() => MessageCodec.ToArray<long>(d, BytesOf<double>([1.0])));

        var (point, _) = RoundTrip(MessageSpec.Value<Point>());
        byte[] pointData = BytesOf<Point>([new Point { X = 1, Y = 2 }]);
        var names = Assert.Throws<TypeMismatchException>(() => MessageCodec.GetValue<OtherPoint>(point, pointData));
        Assert.Contains("Lat", names.Message);
        Assert.Throws<TypeMismatchException>(() => MessageCodec.GetValue<IntPair>(point, pointData));
        Assert.Throws<TypeMismatchException>(() => MessageCodec.GetValue<double>(point, pointData));

        var (array, _) = RoundTrip(MessageSpec.Array<int>([2]));
        var shape = Assert.Throws<TypeMismatchException>(() => MessageCodec.GetValue<int>(array, BytesOf<int>([1, 2])));
        Assert.Contains("GetSpan<Int32>()", shape.Message);

        var (bytes, _) = RoundTrip(MessageSpec.Bytes(3));
        Assert.Contains("read Data", Assert.Throws<TypeMismatchException>(() => MessageCodec.GetString(bytes, "abc"u8)).Message);
        var (text, _) = RoundTrip(MessageSpec.String(3));
        Assert.Contains("GetString()", Assert.Throws<TypeMismatchException>(() => MessageCodec.GetValue<byte>(text, "abc"u8)).Message);
    }

    [Fact]
    public void TheTypedOpenEquivalencesOfSection34Apply()
    {
        Assert.Equal(-7L, MessageCodec.GetValue<long>(Scalar('l'), BytesOf<long>([-7])));
        Assert.Equal(7UL, MessageCodec.GetValue<ulong>(Scalar('L'), BytesOf<ulong>([7])));
        Assert.Equal((byte)'x', MessageCodec.GetValue<byte>(Scalar('c'), "x"u8));
        Assert.Equal(0x41U, MessageCodec.GetValue<uint>(Scalar('u'), BytesOf<uint>([0x41])));
        Assert.Equal(new Rune('A'), MessageCodec.GetValue<Rune>(Scalar('u'), BytesOf<uint>([0x41])));
        var e = Assert.Throws<TypeMismatchException>(() => MessageCodec.GetValue<ulong>(Scalar('l'), BytesOf<long>([1])));
        Assert.Contains("'l'", e.Message);
        Assert.Contains("UInt64", e.Message);
        Assert.Throws<TypeMismatchException>(() => MessageCodec.GetValue<sbyte>(Scalar('c'), "x"u8));

        static MessageDescriptor Scalar(char code) =>
            MessageCodec.Read(3, [(byte)code, 0, 0, 0, 0, 0, 0, 0], (ulong)Format.TypeCodes.SizeOf(code), Queue);
    }

    [Fact]
    public void APickledPythonObjectCanOnlyBeReadAsItsBytes()
    {
        var m = MessageCodec.Read(6, Hex("00000000 00000000 0300000000000000"), 3, Queue);
        foreach (var read in new Action[]
                 {
                     () => MessageCodec.GetValue<int>(m, "abc"u8),
                     () => MessageCodec.GetSpan<byte>(m, "abc"u8),
                     () => MessageCodec.ToArray<byte>(m, "abc"u8),
                     () => MessageCodec.GetString(m, "abc"u8),
                 })
        {
            var e = Assert.Throws<TypeMismatchException>(read);
            Assert.Contains("pickled Python object", e.Message);
            Assert.Contains("read Data for its pickle bytes", e.Message);
        }
    }

    // ---- corrupt data in the elements ----

    [Fact]
    public void InvalidUtf8AndInvalidRunesAreCorruptDataAndBoolsReadAsTrue()
    {
        var (text, _) = RoundTrip(MessageSpec.String(4));
        var e = Assert.Throws<CorruptDataException>(() => MessageCodec.GetString(text, [0x61, 0x62, 0xFF, 0x63]));
        Assert.Equal(2, e.Index);
        Assert.Equal(Queue, e.SegmentName);

        var (runes, _) = RoundTrip(MessageSpec.Array<Rune>(2));
        byte[] surrogate = BytesOf<uint>([0x41, 0xD800]);
        var r = Assert.Throws<CorruptDataException>(() => MessageCodec.ToArray<Rune>(runes, surrogate));
        Assert.Equal(1, r.Index);
        Assert.Equal(0xD800u, MessageCodec.ToArray<uint>(runes, surrogate)[1]); // uint reads 'u' raw (section 3.4)

        var (flag, _) = RoundTrip(MessageSpec.Value<bool>());
        bool value = MessageCodec.GetValue<bool>(flag, [2]);
        Assert.Equal(1, Unsafe.As<bool, byte>(ref value));
    }

    // ---- hostile descriptors ----

    public static TheoryData<string, byte, string, ulong, string> CorruptCases => new()
    {
        { "tag 0", 0, "", 0, "tag 0" },
        { "tag 7", 7, "", 0, "tag 7" },
        { "bytes with a descriptor", 1, "6400000000000000", 0, "no descriptor" },
        { "huge data_length", 1, "", 1UL << 63, "data_length" },
        { "scalar typecode T", 3, "5400000000000000", 8, "record message" },
        { "scalar unknown typecode", 3, "7a00000000000000", 8, "unknown typecode 0x7A" },
        { "scalar reserved bytes", 3, "6400000000000001", 8, "reserved" },
        { "scalar short descriptor", 3, "64000000", 8, "desc_length" },
        { "scalar wrong size", 3, "6400000000000000", 4, "data_length 4" },
        { "array ndim 33", 5, "6921000000000000" + "0100000000000000", 4, "ndim 33" },
        { "array short shape", 5, "6902000000000000 0200000000000000", 8, "desc_length" },
        { "array extra bytes", 5, "6901000000000000 0200000000000000 0000000000000000", 8, "desc_length" },
        { "array extent above 2^63", 5, "6401000000000000 0000000000000080", 0, "extent 0" },
        { "array product overflows", 5, "6402000000000000 0000000001000000 0000000001000000", 0, "larger than any array" },
        { "array bytes overflow", 5, "6401000000000000 0000000000000020", 0, "larger than any array" },
        { "array wrong data_length", 5, "6901000000000000 0300000000000000", 8, "data_length 8" },
        { "array reserved bytes", 5, "6901010000000000 0200000000000000", 8, "reserved" },
        { "record no fields", 4, "00000000 10000000" + new string('0', 64), 16, "field_count 0" },
        { "record count beyond descriptor", 4, "ffffffff" + PointDescription["02000000".Length..], 16, "field_count" },
        { "record too long", 4, PointDescription + new string('0', 128), 16, "need" },
        { "record wrong data_length", 4, PointDescription, 8, "element_size 16" },
        { "record overlapping fields", 4, PointDescription.Replace("64000000 08000000", "64000000 04000000"), 16, "overlaps" },
        { "record field beyond element", 4, PointDescription.Replace("02000000 10000000", "02000000 0c000000"), 12, "exceeds" },
        { "record bad type_name", 4, PointDescription.Replace("506f696e74", "506f2d6e74"), 16, "type_name" },
        { "record unterminated field name", 4, PointDescription.Replace("5800000000000000000000000000000000000000000000000000000000000000", new string('5', 64)), 16, "NUL" },
        { "pickle count beyond descriptor", 6, "05000000 00000000 0300000000000000", 3, "buffer lengths" },
        { "pickle reserved", 6, "00000000 01000000 0300000000000000", 3, "reserved" },
        { "pickle empty", 6, "00000000 00000000 0000000000000000", 0, "pickle_length 0" },
        { "pickle beyond data", 6, "00000000 00000000 0400000000000000", 3, "pickle_length 4" },
        { "pickle data too long", 6, "00000000 00000000 0300000000000000", 4, "data_length 4" },
        { "pickle buffer overflows", 6, "01000000 00000000 0300000000000000 ffffffffffffffff", 16, "buffer 0" },
        { "pickle buffer beyond data", 6, "01000000 00000000 0300000000000000 0800000000000000", 15, "buffer 0" },
    };

    [Theory]
    [InlineData("Y at 12", "02000000 18000000", "64000000 0c000000")]
    [InlineData("trailing padding", "02000000 18000000", "64000000 08000000")]
    public void RecordsThatAreNotNaturalAlignmentAreValid(string what, string head, string y)
    {
        // docs/format.md section 4: the writer records its real offsets (a packed or explicit layout).
        var m = MessageCodec.Read(4, Hex(PointDescription.Replace("02000000 10000000", head).Replace("64000000 08000000", y)), 24, Queue);
        Assert.True(m.Fields[1].Offset == Convert.ToInt32(y[9..11], 16), what);
    }

    [Theory]
    [MemberData(nameof(CorruptCases))]
    public void HostileDescriptorsAreCorruptDataNamingTheQueue(string what, byte tag, string descriptorHex, ulong dataLength, string problem)
    {
        var e = Assert.Throws<CorruptDataException>(() => MessageCodec.Read(tag, Hex(descriptorHex), dataLength, Queue));
        Assert.Contains($"Queue \"{Queue}\"", e.Message);
        Assert.True(e.Message.Contains(problem, StringComparison.Ordinal), $"{what}: \"{problem}\" not in: {e.Message}");
    }

    [Fact]
    public void ADescriptorLongerThanAnyOfItsTagIsRefusedBeforeItIsCopied()
    {
        byte[] huge = new byte[8 + 8 * 32 + 40 + 64 * 16376 + 8]; // the longest array descriptor, plus 8
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<CorruptDataException>(() => MessageCodec.Read(5, huge, 0, Queue));
        Assert.Contains("longer than any descriptor", e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < huge.Length / 4);
        Assert.Contains("longer than any descriptor", Assert.Throws<CorruptDataException>(() => MessageCodec.Read(3, new byte[16], 8, Queue)).Message);
    }

    /// <summary>
    /// Seeded fuzzer: valid descriptors of every tag (and their data lengths) are mutated (bit flips,
    /// interesting u8/u32/u64 values at random offsets, truncation, growth, another tag or data_length)
    /// and read; accepted ones are read with several .NET types over random data. Anything but
    /// CorruptDataException from Read, or TypeMismatchException/CorruptDataException from the accessors,
    /// fails, and so does an accepted descriptor whose sizes disagree or a read that allocates more than
    /// its input justifies. SB_FUZZ_CASES and SB_FUZZ_SEED make longer runs.
    /// </summary>
    [Fact]
    public void MutatedDescriptorsRaiseOnlyCorruptData()
    {
        int cases = int.TryParse(Environment.GetEnvironmentVariable("SB_FUZZ_CASES"), out int n) ? n : 30_000;
        int seed = int.TryParse(Environment.GetEnvironmentVariable("SB_FUZZ_SEED"), out int s) ? s : 20261207;
        var rng = new Random(seed);
        var bases = new List<(byte Tag, byte[] Descriptor, ulong DataLength)>();
        foreach (var spec in new[]
                 {
                     MessageSpec.Bytes(9), MessageSpec.String(3), MessageSpec.Value<double>(), MessageSpec.Value<bool>(),
                     MessageSpec.Value<Rune>(), MessageSpec.Value<Particle>(), MessageSpec.Value<Sample>(),
                     MessageSpec.Value<Polygon>(), MessageSpec.Array<int>([2, 3]), MessageSpec.Array<Point>([3]),
                     MessageSpec.Array<short>([]), MessageSpec.Array<byte>([0, 4]), MessageSpec.Array<Particle>([2, 1]),
                 })
        {
            var bytes = new byte[spec.DescriptorLength];
            spec.WriteDescriptor(bytes);
            bases.Add(((byte)spec.Type, bytes, spec.DataLength));
        }
        bases.Add((6, Hex("02000000 00000000 0d00000000000000 0500000000000000 1000000000000000"), 40));
        bases.Add((6, Hex("00000000 00000000 0300000000000000"), 3));

        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var failures = new List<string>();
        for (int i = 0; i < cases && failures.Count < 10; i++)
        {
            var (tag, descriptor, dataLength) = bases[rng.Next(bases.Count)];
            byte[] d = Mutate(descriptor, rng, ref tag, ref dataLength);
            string key;
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                var m = MessageCodec.Read(tag, d, dataLength, Queue);
                long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                if (allocated > 64 * 1024 + 64L * d.Length)
                    failures.Add($"case {i}: Read allocated {allocated} bytes for a {d.Length}-byte descriptor");
                key = "accepted " + m.Type;
                if (Inconsistent(m) is { } problem) failures.Add($"case {i}: accepted with {problem}: tag {tag} {ToHex(d)} data {dataLength}");
                else ReadData(m, rng, i, failures);
            }
            catch (CorruptDataException e)
            {
                Assert.Equal(Queue, e.SegmentName);
                key = "corrupt";
            }
            catch (Exception e)
            {
                key = e.GetType().Name;
                failures.Add($"case {i}: {e.GetType().Name} from tag {tag} {ToHex(d)} data {dataLength}: {e}");
            }
            outcomes[key] = outcomes.GetValueOrDefault(key) + 1;
        }
        foreach (var (key, count) in outcomes) output.WriteLine($"{key}: {count}");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.True(outcomes.Keys.Count(k => k.StartsWith("accepted", StringComparison.Ordinal)) >= 5, "the mutations rarely leave a valid descriptor");
        Assert.True(outcomes.GetValueOrDefault("corrupt") > cases / 4, "the mutations rarely break a descriptor");
    }

    private static string? Inconsistent(MessageDescriptor m)
    {
        if (m.Type == QueueMessageType.PythonObject)
        {
            long end = m.PickleLength;
            for (int b = 0; b < m.BufferLengths.Length; b++)
            {
                if (m.BufferOffsets[b] < end || m.BufferOffsets[b] % 8 != 0) return $"buffer {b} at {m.BufferOffsets[b]}";
                end = m.BufferOffsets[b] + m.BufferLengths[b];
            }
            return (ulong)end == m.DataLength ? null : $"pickle end {end}";
        }
        if ((ulong)m.ElementCount * (ulong)m.ElementSize != m.DataLength) return $"{m.ElementCount} x {m.ElementSize} bytes";
        if (m.Shape.Length > 32) return $"ndim {m.Shape.Length}";
        return null;
    }

    /// <summary>The typed accessors over random data of the accepted length: only our exceptions.</summary>
    private static void ReadData(MessageDescriptor m, Random rng, int i, List<string> failures)
    {
        if (m.DataLength > 1 << 20) return;
        var data = new byte[m.DataLength];
        rng.NextBytes(data);
        foreach (var read in new Action[]
                 {
                     () => MessageCodec.GetString(m, data),
                     () => MessageCodec.GetValue<double>(m, data),
                     () => MessageCodec.GetValue<Particle>(m, data),
                     () => MessageCodec.ToArray<int>(m, data),
                     () => MessageCodec.ToArray<Rune>(m, data),
                     () => MessageCodec.ToArray<Point>(m, data),
                     () => MessageCodec.GetSpan<byte>(m, data).ToArray(),
                 })
        {
            try { read(); }
            catch (Exception e) when (e is TypeMismatchException or CorruptDataException) { }
            catch (Exception e) { failures.Add($"case {i}: accessor threw {e}"); }
        }
    }

    private static readonly ulong[] Interesting =
        [0, 1, 2, 7, 8, 0x20, 0x21, 0x40, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1UL << 32, 1UL << 62, long.MaxValue, 1UL << 63, ulong.MaxValue];

    private static byte[] Mutate(byte[] original, Random rng, ref byte tag, ref ulong dataLength)
    {
        var d = (byte[])original.Clone();
        int mutations = 1 + rng.Next(3);
        for (int k = 0; k < mutations; k++)
        {
            switch (rng.Next(9))
            {
                case 0 when d.Length > 0:
                    d[rng.Next(d.Length)] ^= (byte)(1 << rng.Next(8));
                    break;
                case 1 when d.Length > 0:
                    d[rng.Next(d.Length)] = (byte)Interesting[rng.Next(Interesting.Length)];
                    break;
                case 2 when d.Length >= 4:
                    BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(rng.Next(d.Length / 4) * 4), (uint)Interesting[rng.Next(Interesting.Length)]);
                    break;
                case 3 when d.Length >= 8:
                    BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(rng.Next(d.Length / 8) * 8), Interesting[rng.Next(Interesting.Length)]);
                    break;
                case 4:
                    d = d[..rng.Next(d.Length + 1)];
                    break;
                case 5:
                    d = [.. d, .. new byte[8 * (1 + rng.Next(8))]];
                    break;
                case 6:
                    tag = (byte)rng.Next(8);
                    break;
                case 7:
                    dataLength = rng.Next(3) switch
                    {
                        0 => Interesting[rng.Next(Interesting.Length)],
                        1 => dataLength + (ulong)rng.Next(-8, 9),
                        _ => dataLength * 2,
                    };
                    break;
                default:
                    d[rng.Next(Math.Max(1, d.Length))..].AsSpan().Clear(); // may be empty
                    break;
            }
        }
        return d;
    }
}
