using System.Runtime.InteropServices;
using System.Text.Json;

namespace SharedBridge.CrossDriver;

// Field names are lower case on purpose: they are written into the segment's field table, and the
// golden vectors (made from the Python declarations) hold the Python names byte for byte.

/// <summary>The multiprocessing documentation's Point: _fields_ = [('x', c_double), ('y', c_double)].</summary>
[StructLayout(LayoutKind.Sequential)]
public struct Point
{
    public double x;
    public double y;

    public Point(double x, double y) { this.x = x; this.y = y; }

    public static Point FromJson(JsonElement e) => new(Canonical.Double(e[0]), Canonical.Double(e[1]));

    public readonly string Canonical_() => Canonical.Struct(Canonical.Of(x), Canonical.Of(y));
}

/// <summary>A structure with one field of most kinds: bool, signed byte, ushort, int, double,
/// c_char * 6, float, a nested Point, long long and c_short * 3 (64 bytes, natural alignment),
/// matching tests/cross/vectors' "Mixed".</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct Mixed
{
    public bool flag;
    public sbyte small;
    public ushort code;
    public int count;
    public double ratio;
    [SharedTypeCode('c')] public fixed byte tag[6];  // c_char * 6, not c_ubyte * 6
    public float weight;
    public Point pos;
    public long total;
    public fixed short ints[3];

    public static Mixed FromJson(JsonElement e)
    {
        var m = new Mixed
        {
            flag = e[0].GetBoolean(),
            small = e[1].GetSByte(),
            code = e[2].GetUInt16(),
            count = e[3].GetInt32(),
            ratio = Canonical.Double(e[4]),
            weight = (float)Canonical.Double(e[6]),
            pos = Point.FromJson(e[7]),
            total = e[8].GetInt64(),
        };
        byte[] tagBytes = Canonical.Latin1(e[5]);
        if (tagBytes.Length > 6) throw new ArgumentException("Mixed.tag holds at most 6 bytes");
        for (int i = 0; i < tagBytes.Length; i++) m.tag[i] = tagBytes[i];
        for (int i = 0; i < 3; i++) m.ints[i] = e[9][i].GetInt16();
        return m;
    }

    public readonly string Canonical_()
    {
        fixed (byte* t = tag)
        fixed (short* n = ints)
        {
            return Canonical.Struct(Canonical.Of(flag), Canonical.Of(small), Canonical.Of(code), Canonical.Of(count),
                Canonical.Of(ratio), Canonical.CharField(new ReadOnlySpan<byte>(t, 6)), Canonical.Of(weight),
                pos.Canonical_(), Canonical.Of(total), Canonical.Items(new ReadOnlySpan<short>(n, 3), v => Canonical.Of(v)));
        }
    }
}

/// <summary>A structure whose name is longer than type_name's 31 bytes: every writer derives the same
/// type_name from it (docs/format.md section 4.1), "SensorReadingWithAnUnreasonably".</summary>
[StructLayout(LayoutKind.Sequential)]
public struct SensorReadingWithAnUnreasonablyLongName
{
    public long t;
    public double v;

    public static SensorReadingWithAnUnreasonablyLongName FromJson(JsonElement e) => new() { t = e[0].GetInt64(), v = Canonical.Double(e[1]) };

    public readonly string Canonical_() => Canonical.Struct(Canonical.Of(t), Canonical.Of(v));
}

/// <summary>tests/cross/vectors' "Packed" (ctypes <c>_pack_ = 1</c>): an int, a double, a ushort and a nested Point
/// at unaligned offsets 1, 5, 13 and 15, 39 bytes (docs/format.md section 4: the real offsets are recorded).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct Packed
{
    public bool flag;
    public int count;
    public double ratio;
    public ushort code;
    public Point pos;
    public long total;

    public static Packed FromJson(JsonElement e) => new()
    {
        flag = e[0].GetBoolean(),
        count = e[1].GetInt32(),
        ratio = Canonical.Double(e[2]),
        code = e[3].GetUInt16(),
        pos = Point.FromJson(e[4]),
        total = e[5].GetInt64(),
    };

    public readonly string Canonical_() => Canonical.Struct(Canonical.Of(flag), Canonical.Of(count), Canonical.Of(ratio),
        Canonical.Of(code), pos.Canonical_(), Canonical.Of(total));
}

/// <summary>tests/cross/vectors' "Packed2" (ctypes <c>_pack_ = 2</c>): every alignment capped at 2, a double at 2, a
/// wchar at 10 and c_short * 3 at 14, 20 bytes.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 2)]
public unsafe struct Packed2
{
    public sbyte small;
    public double value;
    public System.Text.Rune ch;
    public fixed short ints[3];

    public static Packed2 FromJson(JsonElement e)
    {
        var p = new Packed2 { small = e[0].GetSByte(), value = Canonical.Double(e[1]), ch = Canonical.Rune(e[2]) };
        for (int i = 0; i < 3; i++) p.ints[i] = e[3][i].GetInt16();
        return p;
    }

    public readonly string Canonical_()
    {
        fixed (short* n = ints)
            return Canonical.Struct(Canonical.Of(small), Canonical.Of(value), Canonical.Of(ch),
                Canonical.Items(new ReadOnlySpan<short>(n, 3), v => Canonical.Of(v)));
    }
}
