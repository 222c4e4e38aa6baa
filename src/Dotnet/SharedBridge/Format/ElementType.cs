using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace SharedBridge.Format;

/// <summary>How a .NET element type is stored: typecode, size and (for structs) the field table.</summary>
internal sealed class ElementType
{
    private readonly Type[] _leafTypes;

    private ElementType(Type clrType, char typeCode, int size, string typeName, StructField[] fields, Type[] leafTypes)
    {
        ClrType = clrType;
        TypeCode = typeCode;
        Size = size;
        TypeName = typeName;
        Fields = fields;
        _leafTypes = leafTypes;
        var bools = new List<int>();
        var runes = new List<int>();
        if (typeCode == TypeCodes.Structure) CollectLeaves(-1, 0, bools, runes);
        else if (clrType == typeof(bool)) bools.Add(0);
        else if (clrType == typeof(Rune)) runes.Add(0);
        _boolOffsets = [.. bools];
        _runeOffsets = [.. runes];
    }

    // Byte offsets, inside one element, of every bool and every Rune the .NET type holds (fixed arrays
    // and arrays of structures expanded): what a copy must normalize or check (hardening rule A.6).
    private readonly int[] _boolOffsets;
    private readonly int[] _runeOffsets;

    private void CollectLeaves(int parent, int baseOffset, List<int> bools, List<int> runes)
    {
        for (int i = 0; i < Fields.Length; i++)
        {
            var f = Fields[i];
            if (f.Parent != parent) continue;
            Type leaf = TypeCodes.ScalarOf(_leafTypes[i]);
            for (int k = 0; k < f.Count; k++)
            {
                int offset = baseOffset + f.Offset + k * f.ItemSize;
                if (f.TypeCode == TypeCodes.Structure) CollectLeaves(i, offset, bools, runes);
                else if (leaf == typeof(bool)) bools.Add(offset);
                else if (leaf == typeof(Rune)) runes.Add(offset);
            }
        }
    }

    /// <summary>True when copies of this type must be fixed (bools normalized, Runes checked).</summary>
    internal bool CopiesNeedFixing => _boolOffsets.Length != 0 || _runeOffsets.Length != 0;

    /// <summary>
    /// Makes copies taken from shared memory safe to hand out by value: every bool becomes a proper
    /// true (1) or false (0) (C _Bool semantics: any non-zero byte is true), and a Rune that is not a
    /// Unicode scalar value is corrupt data (<see cref="CorruptDataException"/>, naming the segment
    /// and the element index <paramref name="firstIndex"/> + i).
    /// </summary>
    internal void FixCopies<T>(Span<T> copies, string segmentName, long firstIndex) where T : unmanaged
    {
        if (!CopiesNeedFixing) return;
        Span<byte> bytes = MemoryMarshal.AsBytes(copies);
        for (int i = 0; i < copies.Length; i++)
        {
            Span<byte> element = bytes.Slice(i * Size, Size);
            foreach (int offset in _runeOffsets)
            {
                uint value = BinaryPrimitives.ReadUInt32LittleEndian(element[offset..]);
                if (!Rune.IsValid(value))
                    throw new CorruptDataException(segmentName, firstIndex + i,
                        $"Segment \"{segmentName}\" holds corrupt data: element {firstIndex + i} " +
                        (TypeCode == TypeCodes.Structure ? $"(byte {offset} of the structure) " : "") +
                        $"is 0x{value:X}, which is not a Unicode scalar value (a 'u' element must not be a surrogate or above 0x10FFFF).");
            }
            foreach (int offset in _boolOffsets)
                element[offset] = element[offset] != 0 ? (byte)1 : (byte)0;
        }
    }

    internal Type ClrType { get; }
    internal char TypeCode { get; }
    internal int Size { get; }
    internal string TypeName { get; }
    internal StructField[] Fields { get; }

    /// <summary>The description of <typeparamref name="T"/>; throws UnsupportedTypeException when it has none.</summary>
    internal static ElementType Of<T>() where T : unmanaged => Cache<T>.Value ?? throw Cache<T>.Error!;

    private static class Cache<T> where T : unmanaged
    {
        internal static readonly ElementType? Value;
        internal static readonly UnsupportedTypeException? Error;

        static Cache()
        {
            try { Value = Describe<T>(); }
            catch (UnsupportedTypeException e) { Error = e; }
        }
    }

    private static ElementType Describe<T>() where T : unmanaged
    {
        Type type = typeof(T);
        if (TypeCodes.RefusalFor(type) is { } refusal)
            throw new UnsupportedTypeException($"{type.Name} cannot be stored in a shared segment: {refusal}.");
        if (TypeCodes.DefaultCodeFor(type) is { } code)
            return new ElementType(type, code, Unsafe.SizeOf<T>(), "", [], []);
        if (type.IsPrimitive || type.Assembly == typeof(object).Assembly)
            throw new UnsupportedTypeException(
                $"{type.Name} cannot be stored in a shared segment: it has no typecode (docs/format.md section 3.4). " +
                "Use one of sbyte, byte, short, ushort, int, uint, long, ulong, float, double, bool, Rune, or your own struct.");
        var table = StructLayoutTable.Build<T>();
        return new ElementType(type, TypeCodes.Structure, table.Size, table.TypeName, table.Fields, table.LeafTypes);
    }

    /// <summary>The typecode to create with: the default, or the user's choice if it accepts this type.</summary>
    internal char CodeForCreate(char? requested)
    {
        if (requested is not { } code || code == TypeCode) return TypeCode;
        if (TypeCode != TypeCodes.Structure && TypeCodes.Accepts(code, ClrType)) return code;
        throw new ArgumentException(
            $"Typecode '{code}' cannot hold {ClrType.Name}; {ClrType.Name} is stored as {TypeCodes.Describe(TypeCode)}" +
            (TypeCode == TypeCodes.Structure ? "." : " (or another typecode whose .NET type it is, docs/format.md section 3.4)."),
            "options");
    }

    /// <summary>Null when a segment with this header can be used as this type, otherwise why not.</summary>
    internal string? Mismatch(SegmentHeader header) =>
        Mismatch(header.TypeCode, header.ElementSize, header.TypeName, header.Fields, header.TypeDescription, "the segment");

    /// <summary>Null when elements of typecode <paramref name="code"/> (and, for 'T', this size, type name and
    /// field table) can be used as this type, otherwise why not; <paramref name="where"/> names the holder
    /// ("the segment", "the message") and <paramref name="description"/> its element type.</summary>
    internal string? Mismatch(char code, int elementSize, string typeName, IReadOnlyList<StructField> fields, string description, string where)
    {
        string ours = TypeCode == TypeCodes.Structure ? $"struct {ClrType.Name} ({Size} bytes)" : $"{ClrType.Name}";
        if (TypeCode != TypeCodes.Structure)
            return TypeCodes.Accepts(code, ClrType)
                ? null
                : $"it holds {description} elements, not {ours}";
        if (code != TypeCodes.Structure)
            return $"it holds {description} elements, not {ours}";
        // The first field that differs is named even when the sizes differ too: a packed structure and its
        // natural twin differ first by an offset (docs/format.md section 4, "Packed and explicit layouts").
        string? field = FieldMismatch(fields, where);
        if (elementSize != Size)
            return $"its structure {typeName} is {elementSize} bytes, {ours}" + (field is null ? "" : $"; {field}");
        if (field is not null) return field;
        if (fields.Count != Fields.Length)
            return $"its structure {typeName} has {fields.Count} field-table entries, {ClrType.Name} has {Fields.Length}";
        return null;
    }

    private string? FieldMismatch(IReadOnlyList<StructField> fields, string where)
    {
        for (int i = 0; i < Math.Min(Fields.Length, fields.Count); i++)
        {
            var theirs = fields[i];
            var mine = Fields[i];
            bool codeOk = mine.TypeCode == TypeCodes.Structure
                ? theirs.TypeCode == TypeCodes.Structure
                : TypeCodes.Accepts(theirs.TypeCode, _leafTypes[i]);
            if (!codeOk || theirs.Offset != mine.Offset || theirs.Count != mine.Count || theirs.ItemSize != mine.ItemSize
                || theirs.Parent != mine.Parent || !string.Equals(theirs.Name, mine.Name, StringComparison.OrdinalIgnoreCase))
                return $"field {i} is {Show(theirs)} in {where} but {Show(mine)} in {ClrType.Name}";
        }
        return null;
    }

    private static string Show(StructField f) =>
        $"{f.Name} '{f.TypeCode}'{(f.Count > 1 ? $"[{f.Count}]" : "")} at offset {f.Offset} ({f.ItemSize} bytes, parent {f.Parent})";
}
