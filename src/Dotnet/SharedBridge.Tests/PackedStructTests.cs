using System.Runtime.InteropServices;
using SharedBridge.Format;
using SharedBridge.Objects;

namespace SharedBridge.Tests;

// Packed and explicit layouts (docs/format.md section 4): the field table records the offsets the CLR
// really uses, and a reader checks them against its type. Each type here has a Python twin in
// tests/cross (ctypes _pack_ or a numpy dtype with offsets) with the same offsets and size.

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct PackedOne // ctypes: _pack_ = 1, c_char a, c_int b (5 bytes)
{
    public byte A;
    public int B;
}

[StructLayout(LayoutKind.Sequential, Pack = 2)]
public unsafe struct PackedTwo // every alignment capped at 2 (20 bytes)
{
    public bool Flag;          // 0
    public double D;           // 2
    public short H;            // 10
    public fixed uint I[2];    // 12
}

[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct PackedFour // the double at 4 (12 bytes)
{
    public int N;
    public double X;
}

public struct NaturalHoldingPacked // natural alignment around packed members
{
    public byte Tag;           // 0
    public PackedOne Inner;    // 1 (PackedOne's alignment is 1)
    public PackedFour Pt;      // 8 (PackedFour's is 4)
}

[StructLayout(LayoutKind.Explicit, Size = 12)]
public struct ExplicitPair // numpy: {"names": ["x", "y"], "offsets": [2, 7], "itemsize": 12}
{
    [FieldOffset(7)] public float Y;   // declared out of order: recorded in offset order
    [FieldOffset(2)] public int X;
}

[StructLayout(LayoutKind.Explicit)]
public struct ExplicitOverlap
{
    [FieldOffset(0)] public long Whole;
    [FieldOffset(4)] public int Upper;
}

public struct NaturalOne // PackedOne without Pack: B at 4 (8 bytes)
{
    public byte A;
    public int B;
}

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct PackedOneSwapped // PackedOne's size, B first
{
    public int B;
    public byte A;
}

public class PackedStructTests
{
    private static StructField F(string name, char code, int offset, int itemSize, int count = 1, int parent = -1) =>
        new(name, code, offset, count, itemSize, parent);

    [Fact]
    public void PackAndExplicitLayoutsAreRecordedWithTheClrOffsets()
    {
        using var one = SharedArray<PackedOne>.Create(Names.Unique("p1", "sbp22"), 3);
        Assert.Equal(5, one.Header.ElementSize);
        Assert.Equal([F("A", 'B', 0, 1), F("B", 'i', 1, 4)], one.Header.Fields);

        using var two = SharedArray<PackedTwo>.Create(Names.Unique("p2", "sbp22"), 2);
        Assert.Equal(20, two.Header.ElementSize);
        Assert.Equal([F("Flag", '?', 0, 1), F("D", 'd', 2, 8), F("H", 'h', 10, 2), F("I", 'I', 12, 4, count: 2)], two.Header.Fields);

        using var nested = SharedValue<NaturalHoldingPacked>.Create(Names.Unique("pn", "sbp22"));
        Assert.Equal(20, nested.Header.ElementSize);
        Assert.Equal([F("Tag", 'B', 0, 1), F("Inner", 'T', 1, 5), F("A", 'B', 0, 1, parent: 1), F("B", 'i', 1, 4, parent: 1),
                      F("Pt", 'T', 8, 12), F("N", 'i', 0, 4, parent: 4), F("X", 'd', 4, 8, parent: 4)], nested.Header.Fields);

        using var pair = SharedArray<ExplicitPair>.Create(Names.Unique("px", "sbp22"), 2);
        Assert.Equal(12, pair.Header.ElementSize);
        Assert.Equal([F("X", 'i', 2, 4), F("Y", 'f', 7, 4)], pair.Header.Fields);
    }

    [Fact]
    public unsafe void ValuesOfPackedStructsRoundTripThroughAnotherOpen()
    {
        string name = Names.Unique("pv", "sbp22");
        using var arr = SharedArray<PackedTwo>.Create(name, 3);
        var v = new PackedTwo { Flag = true, D = 2.5, H = -7 };
        v.I[1] = 0xDEADBEEF;
        arr[2] = v;
        using var again = SharedArray<PackedTwo>.Open(name);
        Assert.True(again[2].Flag);
        Assert.Equal(2.5, again[2].D);
        Assert.Equal(-7, again[2].H);
        Assert.Equal(0xDEADBEEFu, again[2].I[1]);
        again[0].D = -1.25; // a ref into the mapping, at an unaligned offset
        Assert.Equal(-1.25, arr[0].D);

        string pairName = Names.Unique("pe", "sbp22");
        using var pairs = SharedArray<ExplicitPair>.Create(pairName, [new ExplicitPair { X = 5, Y = 1.5f }]);
        using var pairsAgain = SharedArray<ExplicitPair>.Open(pairName);
        Assert.Equal(5, pairsAgain[0].X);
        Assert.Equal(1.5f, pairsAgain[0].Y);
    }

    [Fact]
    public void AStructWhoseOffsetsDisagreeIsATypeMismatchNamingTheField()
    {
        string name = Names.Unique("pm", "sbp22");
        using var one = SharedArray<PackedOne>.Create(name, 1);
        var bigger = Assert.Throws<TypeMismatchException>(() => SharedArray<NaturalOne>.Open(name));
        Assert.Contains("5 bytes", bigger.Message);
        Assert.Contains("field 1 is B 'i' at offset 1 (4 bytes, parent -1) in the segment but B 'i' at offset 4", bigger.Message);
        var moved = Assert.Throws<TypeMismatchException>(() => SharedArray<PackedOneSwapped>.Open(name));
        Assert.Contains("field 0 is A 'B' at offset 0", moved.Message);
        Assert.Contains("B 'i' at offset 0", moved.Message);

        string natural = Names.Unique("pn", "sbp22");
        using var nat = SharedArray<NaturalOne>.Create(natural, 1);
        Assert.Contains("8 bytes", Assert.Throws<TypeMismatchException>(() => SharedArray<PackedOne>.Open(natural)).Message);
    }

    [Fact]
    public void OverlappingExplicitFieldsAreRefusedAsAUnion()
    {
        var e = Assert.Throws<UnsupportedTypeException>(() => SharedArray<ExplicitOverlap>.Create(Names.Unique("pu", "sbp22"), 1));
        Assert.Contains("Whole and ExplicitOverlap.Upper overlap", e.Message);
        Assert.Contains("LayoutKind.Explicit", e.Message);
        Assert.Contains("overlap", Assert.Throws<UnsupportedTypeException>(() => SharedArray<Union>.Create(Names.Unique("pu", "sbp22"), 1)).Message);
    }

    [Fact]
    public void PackedRecordsTravelInQueueMessages()
    {
        var spec = MessageSpec.Value<PackedFour>();
        byte[] descriptor = new byte[spec.DescriptorLength];
        spec.WriteDescriptor(descriptor);
        var read = MessageCodec.Read(4, descriptor, 12, "sbp22_codec");
        Assert.Equal([F("N", 'i', 0, 4), F("X", 'd', 4, 8)], read.Fields);
        var value = new PackedFour { N = 3, X = -0.5 };
        byte[] data = MemoryMarshal.AsBytes(new ReadOnlySpan<PackedFour>(ref value)).ToArray();
        Assert.Equal(value, MessageCodec.GetValue<PackedFour>(read, data));
        Assert.Throws<TypeMismatchException>(() => MessageCodec.GetValue<NaturalOne>(read, data));
    }
}
