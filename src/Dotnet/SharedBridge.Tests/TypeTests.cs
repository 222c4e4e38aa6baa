using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace SharedBridge.Tests;

public struct Point
{
    public double X;
    public double Y;
}

public struct OtherPoint // same size and typecodes as Point, other field names
{
    public double Lat;
    public double Lon;
}

public struct IntPair
{
    public int A;
    public int B;
}

public struct Particle
{
    public byte Tag;          // 0, then 7 bytes of padding
    public Point Position;    // nested: a 'T' entry followed by its fields
    public int Id;            // 24
    public bool Alive;        // 28
}

public unsafe struct Sample
{
    public short Code;
    public fixed float Values[3];        // count 3
    [SharedTypeCode('c')] public fixed byte Label[5];   // c_char * 5
    public long When;
}

[InlineArray(4)]
public struct Four
{
    private Point _element;
}

public struct Polygon
{
    public int Corners;
    public Four Points;       // 'T' with count 4
}

public record struct Measurement(float Value, int Unit); // backing fields become "Value" and "Unit"

[StructLayout(LayoutKind.Explicit)]
public struct Union
{
    [FieldOffset(0)] public int I;
    [FieldOffset(0)] public float F;
}

public struct WithChar
{
    public int A;
    public char C;
}

public struct WithPointerSized
{
    public nint Address;
}

public unsafe struct WithPointer
{
    public int Count;
    public double* Items;
}

public unsafe struct WithFunctionPointer
{
    public delegate* unmanaged<int, int> Callback;
}

public struct WithDecimal
{
    public decimal Amount;
}

public class TypeTests
{
    [Fact]
    public void OpeningWithAnotherTypeIsTypeMismatchNamingBoth()
    {
        string name = Names.Unique();
        using var d = SharedArray<double>.Create(name, 2);
        var e = Assert.Throws<TypeMismatchException>(() => SharedArray<int>.Open(name));
        Assert.Contains("'d'", e.Message);
        Assert.Contains("Int32", e.Message);
        Assert.Throws<TypeMismatchException>(() => SharedArray<long>.Open(name));
        Assert.Throws<TypeMismatchException>(() => SharedArray<Point>.Open(name));
        Assert.Throws<TypeMismatchException>(() => SharedCharArray.Open(name));
    }

    [Fact]
    public void ArraysAndValuesDoNotOpenAsEachOther()
    {
        string array = Names.Unique(), value = Names.Unique();
        using var a = SharedArray<int>.Create(array, 1);
        using var v = SharedValue<int>.Create(value, 1);
        Assert.Contains("SharedValue", Assert.Throws<TypeMismatchException>(() => SharedArray<int>.Open(value)).Message);
        Assert.Contains("SharedArray", Assert.Throws<TypeMismatchException>(() => SharedValue<int>.Open(array)).Message);
    }

    [Fact]
    public void CSharpCharIsRefusedWithAHint()
    {
        var e = Assert.Throws<UnsupportedTypeException>(() => SharedArray<char>.Create(Names.Unique(), 1));
        Assert.Contains("SharedCharArray", e.Message);
        Assert.Contains("Rune", e.Message);
        Assert.Throws<UnsupportedTypeException>(() => SharedValue<char>.Create(Names.Unique(), 'x'));
        Assert.Throws<UnsupportedTypeException>(() => SharedArray<char>.Open(Names.Unique()));
    }

    [Fact]
    public void PointerSizedAndTypesWithoutTypecodeAreRefused()
    {
        Assert.Contains("pointer-sized", Assert.Throws<UnsupportedTypeException>(() => SharedArray<nint>.Create(Names.Unique(), 1)).Message);
        Assert.Throws<UnsupportedTypeException>(() => SharedArray<nuint>.Create(Names.Unique(), 1));
        Assert.Throws<UnsupportedTypeException>(() => SharedArray<decimal>.Create(Names.Unique(), 1));
        Assert.Throws<UnsupportedTypeException>(() => SharedArray<Half>.Create(Names.Unique(), 1));
        Assert.Throws<UnsupportedTypeException>(() => SharedArray<DateTime>.Create(Names.Unique(), 1));
        Assert.Throws<UnsupportedTypeException>(() => SharedArray<Guid>.Create(Names.Unique(), 1));
    }

    [Fact]
    public void StructsThatCannotMatchACStructAreRefused()
    {
        Assert.Contains("overlap", Assert.Throws<UnsupportedTypeException>(() => SharedArray<Union>.Create(Names.Unique(), 1)).Message);
        Assert.Contains("char", Assert.Throws<UnsupportedTypeException>(() => SharedArray<WithChar>.Create(Names.Unique(), 1)).Message);
        Assert.Throws<UnsupportedTypeException>(() => SharedArray<WithPointerSized>.Create(Names.Unique(), 1));
        var pointer = Assert.Throws<UnsupportedTypeException>(() => SharedArray<WithPointer>.Create(Names.Unique(), 1));
        Assert.Contains("pointer", pointer.Message);
        Assert.Contains("Items", pointer.Message);
        Assert.Contains("pointer", Assert.Throws<UnsupportedTypeException>(() => SharedValue<WithFunctionPointer>.Create(Names.Unique())).Message);
        Assert.Throws<UnsupportedTypeException>(() => SharedArray<WithDecimal>.Create(Names.Unique(), 1));
    }

    [Fact]
    public void PointIsRecordedAsInTheSpecExample()
    {
        string name = Names.Unique();
        using var points = SharedArray<Point>.Create(name, [new Point { X = 1, Y = 2 }, new Point { X = 3, Y = 4 }]);
        var h = points.Header;
        Assert.Equal('T', h.TypeCode);
        Assert.Equal(16, h.ElementSize);
        Assert.Equal("Point", h.TypeName);
        Assert.Equal(0x280, h.HeaderSize);
        Assert.Equal([new StructField("X", 'd', 0, 1, 8, -1), new StructField("Y", 'd', 8, 1, 8, -1)], h.Fields);
        using var again = SharedArray<Point>.Open(name);
        Assert.Equal(3, again[1].X);
        again[0].Y = 20;
        Assert.Equal(20, points[0].Y);
    }

    [Fact]
    public void NestedStructsAreTEntriesInPreOrder()
    {
        string name = Names.Unique();
        using var a = SharedArray<Particle>.Create(name, 2);
        Assert.Equal(32, a.Header.ElementSize);
        Assert.Equal(
        [
            new StructField("Tag", 'B', 0, 1, 1, -1),
            new StructField("Position", 'T', 8, 1, 16, -1),
            new StructField("X", 'd', 0, 1, 8, 1),
            new StructField("Y", 'd', 8, 1, 8, 1),
            new StructField("Id", 'i', 24, 1, 4, -1),
            new StructField("Alive", '?', 28, 1, 1, -1),
        ], a.Header.Fields);
        a[1].Position.Y = 2.5;
        a[1].Alive = true;
        using var b = SharedArray<Particle>.Open(name);
        Assert.Equal(2.5, b[1].Position.Y);
        Assert.True(b[1].Alive);
    }

    [Fact]
    public unsafe void FixedBuffersAreCountedFieldsAndSharedTypeCodeChoosesC()
    {
        string name = Names.Unique();
        using var a = SharedArray<Sample>.Create(name, 1);
        Assert.Equal(
        [
            new StructField("Code", 'h', 0, 1, 2, -1),
            new StructField("Values", 'f', 4, 3, 4, -1),
            new StructField("Label", 'c', 16, 5, 1, -1),
            new StructField("When", 'q', 24, 1, 8, -1),
        ], a.Header.Fields);
        Assert.Equal(32, a.Header.ElementSize);
        a[0].Values[2] = 1.25f;
        using var b = SharedArray<Sample>.Open(name);
        Assert.Equal(1.25f, b[0].Values[2]);
    }

    [Fact]
    public void InlineArraysOfStructsAreCountedTEntries()
    {
        using var a = SharedArray<Polygon>.Create(Names.Unique(), 1);
        Assert.Equal(
        [
            new StructField("Corners", 'i', 0, 1, 4, -1),
            new StructField("Points", 'T', 8, 4, 16, -1),
            new StructField("X", 'd', 0, 1, 8, 1),
            new StructField("Y", 'd', 8, 1, 8, 1),
        ], a.Header.Fields);
        Assert.Equal(72, a.Header.ElementSize);
        a[0].Points[3].X = 7;
        Assert.Equal(7, a.AsSpan()[0].Points[3].X);
    }

    [Fact]
    public void RecordStructBackingFieldsUseThePropertyNames()
    {
        using var a = SharedValue<Measurement>.Create(Names.Unique(), new Measurement(1.5f, 3));
        Assert.Equal(["Value", "Unit"], a.Header.Fields.Select(f => f.Name));
        Assert.Equal("Measurement", a.Header.TypeName);
        Assert.Equal(new Measurement(1.5f, 3), a.Value);
    }

    [Fact]
    public void LayoutIsVerifiedOnOpenAndNamesCompareCaseInsensitively()
    {
        string name = Names.Unique();
        using var points = SharedArray<Point>.Create(name, 1);
        var e = Assert.Throws<TypeMismatchException>(() => SharedArray<OtherPoint>.Open(name));
        Assert.Contains("Lat", e.Message);
        Assert.Throws<TypeMismatchException>(() => SharedArray<IntPair>.Open(name));
        Assert.Throws<TypeMismatchException>(() => SharedArray<double>.Open(name));
        using var lower = SharedArray<LowerPoint>.Open(name); // "x"/"y" match "X"/"Y"
        Assert.Equal(1, lower.Length);
    }

    public struct LowerPoint
    {
        public double x;
        public double y;
    }
}
