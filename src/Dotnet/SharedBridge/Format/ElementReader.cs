using System.Buffers.Binary;

namespace SharedBridge.Format;

/// <summary>
/// Decodes the first elements of a data area into plain values for tools (<c>sharedbridge inspect --data</c>),
/// driven by the validated header: long for signed integers, ulong for unsigned ones, double for 'f' and 'd'
/// (NaN and the infinities as "NaN", "Infinity", "-Infinity"), bool for '?', a one-character string for a 'u'
/// Unicode scalar value (the number otherwise), the byte value for 'c', an ordered dictionary per structure and
/// a list per field array. The same values as Python's sharedbridge.inspect_segment.
/// </summary>
internal static class ElementReader
{
    internal static IReadOnlyList<object?> Read(SegmentHeader h, ReadOnlySpan<byte> data, int count)
    {
        long n = Math.Min(count, h.Length);
        var values = new List<object?>();
        for (int i = 0; i < n; i++)
        {
            var element = data.Slice(i * h.ElementSize, h.ElementSize);
            values.Add(h.TypeCode == TypeCodes.Structure ? Structure(element, h.Fields, -1) : Item(element, h.TypeCode));
        }
        return values;
    }

    private static Dictionary<string, object?> Structure(ReadOnlySpan<byte> raw, IReadOnlyList<StructField> fields, int parent)
    {
        var value = new Dictionary<string, object?>();
        for (int index = 0; index < fields.Count; index++)
        {
            var f = fields[index];
            if (f.Parent != parent) continue;
            var items = new List<object?>(f.Count);
            for (int k = 0; k < f.Count; k++)
            {
                var item = raw.Slice(f.Offset + k * f.ItemSize, f.ItemSize);
                items.Add(f.TypeCode == TypeCodes.Structure ? Structure(item, fields, index) : Item(item, f.TypeCode));
            }
            value[f.Name] = f.Count == 1 ? items[0] : items;
        }
        return value;
    }

    private static object? Item(ReadOnlySpan<byte> b, char code) => code switch
    {
        'b' => (long)(sbyte)b[0],
        'B' or 'c' => (long)b[0],
        'h' => (long)BinaryPrimitives.ReadInt16LittleEndian(b),
        'H' => (ulong)BinaryPrimitives.ReadUInt16LittleEndian(b),
        'i' => (long)BinaryPrimitives.ReadInt32LittleEndian(b),
        'I' => (ulong)BinaryPrimitives.ReadUInt32LittleEndian(b),
        'l' or 'q' => BinaryPrimitives.ReadInt64LittleEndian(b),
        'L' or 'Q' => BinaryPrimitives.ReadUInt64LittleEndian(b),
        'f' => Number(BinaryPrimitives.ReadSingleLittleEndian(b)),
        'd' => Number(BinaryPrimitives.ReadDoubleLittleEndian(b)),
        '?' => b[0] != 0,
        'u' => BinaryPrimitives.ReadUInt32LittleEndian(b) is var u && System.Text.Rune.IsValid(u)
            ? new System.Text.Rune(u).ToString() : (ulong)u,
        _ => null,
    };

    private static object Number(double v) =>
        double.IsNaN(v) ? "NaN" : double.IsPositiveInfinity(v) ? "Infinity" : double.IsNegativeInfinity(v) ? "-Infinity" : v;
}
