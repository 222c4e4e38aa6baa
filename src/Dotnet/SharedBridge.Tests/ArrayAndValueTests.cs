using System.Text;

namespace SharedBridge.Tests;

public class ArrayAndValueTests
{
    [Fact]
    public void ArrayIsZeroFilledAndSharedBetweenObjects()
    {
        string name = Names.Unique();
        using var a = SharedArray<int>.Create(name, 5);
        using var b = SharedArray<int>.Open(name);
        Assert.Equal(new int[5], b.ToArray());
        a[2] = 9;
        b[4] = -3;
        Assert.Equal([0, 0, 9, 0, -3], a.ToArray());
        Assert.Equal(5, b.Length);
        Assert.Equal(name, b.Name);
        Assert.Equal('i', b.TypeCode);
        Assert.True(b.IsSynchronized);
    }

    [Fact]
    public void InitialValuesAndSpans()
    {
        using var a = SharedArray<double>.Create(Names.Unique(), [1.5, 2.5, 3.5]);
        Assert.Equal([1.5, 2.5, 3.5], a.ToArray());
        a.AsSpan()[1] = 9.9;
        Assert.Equal(9.9, a[1]);
        ref double r = ref a[0];
        r += 1;
        Assert.Equal(2.5, a[0]);
    }

    [Fact]
    public void EmptyArrayWorks()
    {
        string name = Names.Unique();
        using var a = SharedArray<long>.Create(name, 0);
        using var b = SharedArray<long>.Open(name);
        Assert.Equal(0, b.Length);
        Assert.Empty(b.ToArray());
        Assert.Throws<IndexOutOfRangeException>(() => b[0]);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(3)]
    [InlineData(int.MinValue)]
    [InlineData(int.MaxValue)]
    public void IndexOutsideTheArrayThrows(int index)
    {
        using var a = SharedArray<short>.Create(Names.Unique(), 3);
        var e = Assert.Throws<IndexOutOfRangeException>(() => a[index]);
        Assert.Contains("length 3", e.Message);
    }

    [Fact]
    public void ValueRoundTripsAndRefWritesThrough()
    {
        string name = Names.Unique();
        using var v = SharedValue<double>.Create(name, 3.25);
        using var w = SharedValue<double>.Open(name);
        Assert.Equal(3.25, w.Value);
        w.Value = -1.0;
        Assert.Equal(-1.0, v.Value);
        using (v.Lock()) v.Ref += 10;
        Assert.Equal(9.0, w.Value);
        Assert.Equal(SegmentKind.Value, w.Header.Kind);
        Assert.Equal(1, w.Header.Length);
    }

    [Fact]
    public void RawVariantsHaveNoLock()
    {
        string name = Names.Unique();
        var raw = new SegmentOptions { Synchronized = false };
        using var a = SharedArray<int>.Create(name, 2, raw);
        using var b = SharedArray<int>.Open(name);
        Assert.False(b.IsSynchronized);
        Assert.Equal(LockKind.None, b.Header.LockKind);
        var e = Assert.Throws<InvalidOperationException>(() => b.Lock());
        Assert.Contains("not synchronized", e.Message);
        using var v = SharedValue<long>.Create(Names.Unique(), 5, raw);
        Assert.False(v.IsSynchronized);
        Assert.Throws<InvalidOperationException>(() => v.Lock());
        Assert.Equal(0, v.Header.LockSize);
    }

    [Fact]
    public void EveryScalarTypeRoundTripsThroughAnotherObject()
    {
        RoundTrip<sbyte>('b', [sbyte.MinValue, -1, sbyte.MaxValue]);
        RoundTrip<byte>('B', [0, 128, 255]);
        RoundTrip<short>('h', [short.MinValue, short.MaxValue]);
        RoundTrip<ushort>('H', [0, ushort.MaxValue]);
        RoundTrip<int>('i', [int.MinValue, int.MaxValue]);
        RoundTrip<uint>('I', [0, uint.MaxValue]);
        RoundTrip<long>('q', [long.MinValue, long.MaxValue]);
        RoundTrip<ulong>('Q', [0, ulong.MaxValue]);
        RoundTrip<float>('f', [float.Epsilon, float.MaxValue, float.NegativeInfinity]);
        RoundTrip<double>('d', [double.Epsilon, Math.PI, double.NaN]);
        RoundTrip<bool>('?', [true, false, true]);
        RoundTrip<Rune>('u', [new Rune('A'), new Rune(0x1F600), new Rune(0xE9)]);
    }

    private static void RoundTrip<T>(char code, T[] values) where T : unmanaged
    {
        string name = Names.Unique(code == '?' ? "bool" : code.ToString());
        using var a = SharedArray<T>.Create(name, values);
        using var b = SharedArray<T>.Open(name);
        Assert.Equal(code, b.TypeCode);
        Assert.Equal(values, b.ToArray());
        Assert.Equal(values.Length, b.Length);
    }

    [Fact]
    public void ExplicitTypeCodesLAndUAndC()
    {
        string name = Names.Unique();
        using (var l = SharedArray<long>.Create(name, [1L, -2L], new SegmentOptions { TypeCode = 'l' }))
        {
            Assert.Equal('l', l.TypeCode);
            Assert.Equal(8, l.Header.ElementSize); // LP64: c_long is 8 bytes
            using var again = SharedArray<long>.Open(name);
            Assert.Equal([1L, -2L], again.ToArray());
        }
        using (var L = SharedArray<ulong>.Create(name, 1, new SegmentOptions { TypeCode = 'L' }))
            Assert.Equal('L', L.TypeCode);
        using (var u = SharedArray<uint>.Create(name, [0x41u], new SegmentOptions { TypeCode = 'u' }))
        {
            using var asRune = SharedArray<Rune>.Open(name);
            Assert.Equal(new Rune('A'), asRune[0]);
        }
        using (var c = SharedArray<byte>.Create(name, "hi"u8, new SegmentOptions { TypeCode = 'c' }))
        {
            using var asChars = SharedCharArray.Open(name);
            Assert.Equal("hi"u8.ToArray(), asChars.Value);
        }
    }

    [Fact]
    public void ATypeCodeThatCannotHoldTheTypeIsAnArgumentError()
    {
        string name = Names.Unique();
        var e = Assert.Throws<ArgumentException>(() => SharedArray<int>.Create(name, 1, new SegmentOptions { TypeCode = 'd' }));
        Assert.Contains("'d'", e.Message);
        Assert.Throws<ArgumentException>(() => SharedArray<long>.Create(name, 1, new SegmentOptions { TypeCode = 'z' }));
        Assert.False(Names.Exists(name));
    }

    [Fact]
    public void EnumsAreStoredAsTheirUnderlyingType()
    {
        string name = Names.Unique();
        using var a = SharedArray<Color>.Create(name, [Color.Green, Color.Blue]);
        Assert.Equal('h', a.TypeCode);
        using var b = SharedArray<short>.Open(name);
        Assert.Equal([(short)2, (short)3], b.ToArray());
    }

    internal enum Color : short { Red = 1, Green = 2, Blue = 3 }
}
