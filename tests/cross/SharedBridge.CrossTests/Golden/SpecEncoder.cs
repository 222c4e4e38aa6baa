using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace SharedBridge.CrossTests.Golden;

/// <summary>A small encoder written from docs/format.md alone, independent of both
/// implementations: the header (sections 3-4) and data area (section 5) a version-1 writer produces
/// for a test vector (each kind at its own format version: sections 6.3, 10.1, 11.1, 12.1).
/// Masked fields (section 9) are left zero; state is 1 (ready).</summary>
public static class SpecEncoder
{
    private static readonly Dictionary<char, int> Sizes = new()
    {
        ['c'] = 1, ['u'] = 4, ['b'] = 1, ['B'] = 1, ['h'] = 2, ['H'] = 2, ['i'] = 4, ['I'] = 4,
        ['l'] = 8, ['L'] = 8, ['q'] = 8, ['Q'] = 8, ['f'] = 4, ['d'] = 8, ['?'] = 1,
    };

    private const int LockOffset = 0x1C0, FixedHeader = 0x200, EntrySize = 64;
    private const byte LockAbiX64 = 1;
    private const ushort MutexSizeX64 = 40;

    public sealed record Field(string Name, char TypeCode, int Offset, int Count, int ItemSize, int Parent, JsonElement Spec);

    /// <summary>A structure's size, alignment and pre-order field entries (section 4).</summary>
    public sealed record Layout(int Size, int Align, IReadOnlyList<Field> Entries);

    public static Layout StructLayout(JsonElement spec)
    {
        var entries = new List<Field>();
        var (size, align) = AddFields(spec, -1, entries);
        return new Layout(size, align, entries);
    }

    /// <summary>Natural alignment, each alignment capped at the spec's "pack" when it has one (ctypes _pack_,
    /// .NET Pack): the offsets a writer records are the real ones of its type (section 4).</summary>
    private static (int Size, int Align) AddFields(JsonElement spec, int parent, List<Field> entries)
    {
        int offset = 0, maxAlign = 1;
        int pack = spec.TryGetProperty("pack", out var p) ? p.GetInt32() : int.MaxValue;
        foreach (var f in spec.GetProperty("fields").EnumerateArray())
        {
            char tc = f.GetProperty("type").GetString()![0];
            int count = f.TryGetProperty("count", out var c) ? c.GetInt32() : 1;
            int index = entries.Count;
            entries.Add(null!);  // pre-order: this entry precedes its nested structure's entries
            int itemSize, align;
            if (tc == 'T')
                (itemSize, align) = AddFields(f.GetProperty("struct"), index, entries);
            else
                itemSize = align = Sizes[tc];
            align = Math.Min(align, pack);
            offset = AlignUp(offset, align);
            entries[index] = new Field(f.GetProperty("name").GetString()!, tc, offset, count, itemSize, parent, f);
            offset += itemSize * count;
            maxAlign = Math.Max(maxAlign, align);
        }
        return (AlignUp(offset, maxAlign), maxAlign);
    }

    private static int AlignUp(int x, int a) => (x + a - 1) / a * a;

    /// <summary>The whole segment: header followed by the data area.</summary>
    public static byte[] Segment(JsonElement vector, string? lockName)
    {
        string obj = vector.GetProperty("object").GetString()!;
        char tc = obj == "lock" ? '\0' : vector.GetProperty("typecode").GetString()![0];
        Layout? layout = tc == 'T' ? StructLayout(vector.GetProperty("struct")) : null;
        int elementSize = obj == "lock" ? 0 : layout?.Size ?? Sizes[tc];
        long count = obj switch
        {
            "lock" => 0,
            "value" => 1,
            "chararray" => vector.GetProperty("length").GetInt64(),
            "queue" => QueueControl + vector.GetProperty("capacity").GetInt64(),   // section 11.1
            // Section 12.1: element_count is the product of the dimensions (1 for rank 0, 0 with a 0 dimension).
            "ndarray" => Shape(vector).Aggregate(1L, (p, d) => checked(p * d)),
            _ => vector.GetProperty("values").GetArrayLength(),
        };
        // Section 10.1: the synchronization kinds are format version 4 (version and compat_version).
        int syncKind = obj switch { "event" => 4, "semaphore" => 5, "condition" => 6, "barrier" => 7, _ => 0 };
        int fieldCount = layout?.Entries.Count ?? 0;
        // Section 12.1: the shape (ndim x u64) starts right after the field table, shape_offset = 0x200 +
        // field_count * field_entry_size, and header_size = align64(shape_offset + 8 * ndim).
        bool ndarray = obj == "ndarray";
        long[] shape = ndarray ? Shape(vector) : [];
        int shapeOffset = FixedHeader + fieldCount * EntrySize;
        int headerSize = AlignUp(shapeOffset + 8 * shape.Length, 64);
        long dataSize = elementSize * count;
        var seg = new byte[headerSize + dataSize];
        Span<byte> h = seg;

        "SHBRIDGE"u8.CopyTo(h);
        // lifetime (section 3.1, byte 0x039): the vector's, default persistent; compat_version 2 for
        // last-closer and the synchronization kinds (section 6.3).
        string lifetime = vector.TryGetProperty("lifetime", out var lt) ? lt.GetString()! : "persistent";
        byte lifetimeByte = lifetime switch { "creator" => 0, "last-closer" => 1, "persistent" => 2, _ => throw new FormatException(lifetime) };
        // Format version 4 (section 6.3): kinds 4 to 7 are version 4 / compat 4 (the sleepers word);
        // every other segment keeps version 2's bytes.
        // Section 11.1: a queue is format version 6 (version and compat_version; section 11.5's reusable data segments).
        bool queue = obj == "queue";
        // Section 12.1: an n-dimensional array is format version 7 (version and compat_version), whatever its lifetime.
        U16(h, 0x008, (ushort)(ndarray ? 7 : queue ? 6 : syncKind > 0 ? 4 : 2));
        U16(h, 0x00A, (ushort)(ndarray ? 7 : queue ? 6 : syncKind > 0 ? 4 : lifetimeByte == 1 ? 2 : 1));
        h[0x039] = lifetimeByte;
        U32(h, 0x00C, (uint)headerSize);
        h[0x010] = (byte)(ndarray ? 9 : queue ? 8 : syncKind > 0 ? syncKind : obj switch { "array" or "chararray" => 1, "value" => 2, _ => 3 });
        h[0x011] = (byte)tc;
        U32(h, 0x014, (uint)elementSize);
        U64(h, 0x018, (ulong)count);
        U64(h, 0x020, (ulong)headerSize);
        U64(h, 0x028, (ulong)dataSize);

        JsonElement lockSpec = vector.GetProperty("lock");
        string lockKind = lockSpec.GetProperty("kind").GetString()!;
        if (lockKind == "embedded")
        {
            h[0x030] = 1;
            h[0x031] = LockAbiX64;
            U16(h, 0x032, MutexSizeX64);
            U32(h, 0x034, LockOffset);
            // arrays and values get multiprocessing's default, an RLock; lock-only segments say which
            string type = lockSpec.TryGetProperty("type", out var t) ? t.GetString()! : "rlock";
            h[0x038] = type == "rlock" ? (byte)1 : (byte)2;
        }
        else if (lockKind == "external")
        {
            h[0x030] = 2;
            Text(h.Slice(0x080, 256), lockName ?? lockSpec.GetProperty("segment").GetString()!);
        }
        if (layout != null)
        {
            U16(h, 0x03A, EntrySize);
            U32(h, 0x03C, (uint)fieldCount);
            U32(h, 0x040, FixedHeader);
            Text(h.Slice(0x060, 32), TypeName(vector.GetProperty("struct").GetProperty("name").GetString()!));
            for (int i = 0; i < fieldCount; i++)
            {
                Field f = layout.Entries[i];
                Span<byte> e = h.Slice(FixedHeader + i * EntrySize, EntrySize);
                Text(e[..32], f.Name);
                e[32] = (byte)f.TypeCode;
                U32(e, 36, (uint)f.Offset);
                U32(e, 40, (uint)f.Count);
                U32(e, 44, (uint)f.ItemSize);
                BinaryPrimitives.WriteInt32LittleEndian(e[48..], f.Parent);
            }
        }
        if (ndarray)
        {
            U32(h, 0x058, (uint)shape.Length);     // ndim
            U32(h, 0x05C, (uint)shapeOffset);      // shape_offset
            for (int k = 0; k < shape.Length; k++) U64(h, shapeOffset + 8 * k, (ulong)shape[k]);
        }
        U32(h, 0x180, 1);  // state: ready
        U32(h, 0x184, Crc32.OfHeader(h[..headerSize]));
        WriteData(vector, obj, tc, layout, elementSize, seg.AsSpan(headerSize));
        return seg;
    }

    /// <summary>An "ndarray" vector's dimensions, dimension 0 first (section 12).</summary>
    private static long[] Shape(JsonElement vector) =>
        vector.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();

    /// <summary>The control block of a queue (section 11.2): 256 bytes before the ring.</summary>
    public const int QueueControl = 256;

    private static void WriteData(JsonElement vector, string obj, char tc, Layout? layout, int elementSize, Span<byte> data)
    {
        if (obj == "lock") return;
        if (obj == "queue")
        {
            // Every word 0 but the immutable ones: max_messages (+128) and flavour (+132); the ring is zero.
            U32(data, 128, vector.GetProperty("max_messages").GetUInt32());
            U32(data, 132, vector.GetProperty("flavour").GetString() switch
            {
                "queue" => 0u, "simple" => 1u, "joinable" => 2u, "pipe" => 3u, var f => throw new FormatException(f),
            });
            return;
        }
        JsonElement values = vector.GetProperty("values");
        if (obj == "chararray")
        {
            Encoding.Latin1.GetBytes(values.GetString()!).CopyTo(data);
            return;
        }
        var elements = obj is "array" or "ndarray" or "event" or "semaphore" or "condition" or "barrier" ? values.EnumerateArray().ToList() : [values];
        for (int i = 0; i < elements.Count; i++)
        {
            Span<byte> slot = data.Slice(i * elementSize, elementSize);
            if (layout != null) WriteStruct(layout.Entries, -1, elements[i], slot);
            else WriteScalar(tc, elements[i], slot);
        }
    }

    private static void WriteStruct(IReadOnlyList<Field> entries, int parent, JsonElement value, Span<byte> slot)
    {
        int position = 0;
        for (int i = 0; i < entries.Count; i++)
        {
            Field f = entries[i];
            if (f.Parent != parent) continue;
            JsonElement v = value[position++];
            Span<byte> at = slot.Slice(f.Offset, f.ItemSize * f.Count);
            if (f.TypeCode == 'T') WriteStruct(entries, i, v, at);
            else if (f.TypeCode == 'c' && f.Count > 1) Encoding.Latin1.GetBytes(v.GetString()!).CopyTo(at);
            else if (f.Count > 1)
                for (int k = 0; k < f.Count; k++) WriteScalar(f.TypeCode, v[k], at.Slice(k * f.ItemSize, f.ItemSize));
            else WriteScalar(f.TypeCode, v, at);
        }
    }

    private static void WriteScalar(char tc, JsonElement v, Span<byte> at)
    {
        switch (tc)
        {
            case 'b': at[0] = (byte)v.GetSByte(); break;
            case 'B': at[0] = v.GetByte(); break;
            case 'c': at[0] = Encoding.Latin1.GetBytes(v.GetString()!)[0]; break;
            case '?': at[0] = v.GetBoolean() ? (byte)1 : (byte)0; break;
            case 'h': BinaryPrimitives.WriteInt16LittleEndian(at, v.GetInt16()); break;
            case 'H': BinaryPrimitives.WriteUInt16LittleEndian(at, v.GetUInt16()); break;
            case 'i': BinaryPrimitives.WriteInt32LittleEndian(at, v.GetInt32()); break;
            case 'I': BinaryPrimitives.WriteUInt32LittleEndian(at, v.GetUInt32()); break;
            case 'l' or 'q': BinaryPrimitives.WriteInt64LittleEndian(at, v.GetInt64()); break;
            case 'L' or 'Q': BinaryPrimitives.WriteUInt64LittleEndian(at, v.GetUInt64()); break;
            case 'f': BinaryPrimitives.WriteSingleLittleEndian(at, (float)Double(v)); break;
            case 'd': BinaryPrimitives.WriteDoubleLittleEndian(at, Double(v)); break;
            case 'u': BinaryPrimitives.WriteUInt32LittleEndian(at, (uint)Rune.GetRuneAt(v.GetString()!, 0).Value); break;
            default: throw new NotSupportedException($"typecode {tc}");
        }
    }

    private static double Double(JsonElement v) => v.ValueKind == JsonValueKind.String
        ? v.GetString() switch { "inf" => double.PositiveInfinity, "-inf" => double.NegativeInfinity, _ => double.NaN }
        : v.GetDouble();

    private static void Text(Span<byte> field, string text)
    {
        if (text.Length >= field.Length) throw new ArgumentException($"'{text}' does not fit a {field.Length}-byte text field");
        Encoding.ASCII.GetBytes(text).CopyTo(field);
    }

    private static void U16(Span<byte> s, int o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(s[o..], v);
    private static void U32(Span<byte> s, int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(s[o..], v);
    private static void U64(Span<byte> s, int o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(s[o..], v);

    /// <summary>type_name from a structure's name (section 4.1): characters outside [A-Za-z0-9_] become
    /// '_', a leading digit gets a '_' prefix, the result is cut to 31 bytes.</summary>
    public static string TypeName(string name)
    {
        var chars = name.Select(c => c is (>= 'A' and <= 'Z') or (>= 'a' and <= 'z') or (>= '0' and <= '9') or '_' ? c : '_').ToArray();
        string s = new(chars);
        if (s.Length > 0 && char.IsAsciiDigit(s[0])) s = "_" + s;
        return s.Length > 31 ? s[..31] : s;
    }
}
