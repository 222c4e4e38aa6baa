using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SharedBridge.Format;

/// <summary>
/// Describes a .NET struct as a C structure (docs/format.md section 4): the field table in pre-order with
/// the offsets the CLR really uses, the size, and a check that the CLR lays the struct out that way.
/// <c>LayoutKind.Sequential</c> follows C alignment capped by <c>Pack</c> (natural alignment without it);
/// <c>LayoutKind.Explicit</c> takes each <c>[FieldOffset]</c>, recorded in offset order, and refuses fields
/// that overlap. Nested structs become 'T' entries; fixed buffers and [InlineArray] fields get count N.
/// </summary>
[UnconditionalSuppressMessage("Trimming", "IL2070", Justification = "Instance fields of value types are never trimmed: they define the layout.")]
[UnconditionalSuppressMessage("Trimming", "IL2075", Justification = "Instance fields of value types are never trimmed: they define the layout.")]
internal static class StructLayoutTable
{
    internal sealed record Result(StructField[] Fields, Type[] LeafTypes, int Size, string TypeName);

    private sealed record Entry(StructField Field, Type LeafType, FieldInfo[] Path);

    /// <summary>Builds and verifies the table of <typeparamref name="T"/>, or throws UnsupportedTypeException.</summary>
    internal static Result Build<T>() where T : unmanaged
    {
        Type type = typeof(T);
        string typeName = TypeNameOf(type);

        var entries = new List<Entry>();
        var (size, _) = Describe(type, parent: -1, [], entries, type, depth: 1);
        int clrSize = Unsafe.SizeOf<T>();
        if (clrSize != size)
            throw Unsupported(type, $"the CLR lays it out in {clrSize} bytes, the C layout of its fields gives {size} " +
                                    "(remove Size from [StructLayout], or reorder the fields)");
        VerifyOffsets<T>(entries);
        return new Result(entries.Select(e => e.Field).ToArray(), entries.Select(e => e.LeafType).ToArray(), size, typeName);
    }

    /// <summary>
    /// The header's type_name for a struct (hardening rule A.10), byte for byte what Python's
    /// <c>type_name_of</c> gives for a class of the same name: the simple name (<c>Inner</c> for
    /// <c>Outer.Inner</c>; a generic's arity suffix <c>`1</c> dropped), every character (Unicode code
    /// point) outside [A-Za-z0-9_] replaced by '_', cut to 31 characters, then '_' prefixed (and cut
    /// to 31 again) when it starts with a digit.
    /// </summary>
    internal static string TypeNameOf(Type type)
    {
        string name = type.Name; // the simple name: no namespace, no declaring type
        int tick = name.IndexOf('`');
        if (tick >= 0) name = name[..tick];
        var sanitized = new System.Text.StringBuilder(name.Length);
        foreach (var rune in name.EnumerateRunes())
        {
            if (sanitized.Length == HeaderLayout.TypeNameWidth - 1) break;
            int c = rune.Value;
            bool keep = c is (>= 'A' and <= 'Z') or (>= 'a' and <= 'z') or (>= '0' and <= '9') or '_';
            sanitized.Append(keep ? (char)c : '_');
        }
        string result = sanitized.ToString();
        if (result.Length > 0 && result[0] is >= '0' and <= '9')
            result = "_" + result[..Math.Min(result.Length, HeaderLayout.TypeNameWidth - 2)];
        return result.Length == 0 ? "Struct" : result;
    }

    /// <summary>Appends the entries of <paramref name="type"/>; returns its C size and alignment.</summary>
    private static (int Size, int Align) Describe(Type type, int parent, FieldInfo[] path, List<Entry> entries, Type root, int depth)
    {
        bool isExplicit = type.IsExplicitLayout;
        if (!isExplicit && !type.IsLayoutSequential)
            throw Unsupported(root, $"{type.Name} does not have LayoutKind.Sequential or LayoutKind.Explicit");
        var fields = type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
                         .OrderBy(f => f.MetadataToken).ToArray();
        if (fields.Length == 0)
            throw Unsupported(root, $"{type.Name} has no fields (C has no empty structures)");
        // Pack caps every field's alignment and the struct's (0: the default, natural alignment here).
        int pack = type.StructLayoutAttribute?.Pack ?? 0;
        if (isExplicit) // the table lists a structure's fields in offset order (section 4)
            fields = fields.OrderBy(f => ExplicitOffset(f, root)).ThenBy(f => f.MetadataToken).ToArray();

        int offset = 0, align = 1, lastChildOffset = -1;
        string? previous = null;
        foreach (var field in fields)
        {
            var (itemType, count, innerField) = Shape(field, root);
            string name = FieldName(field, root);
            FieldInfo[] fieldPath = innerField is null ? [.. path, field] : [.. path, field, innerField];
            int index = entries.Count;
            int itemSize, itemAlign;
            char code;
            if (IsScalar(itemType, field, root, out char scalarCode))
            {
                code = Override(field, itemType, scalarCode, root);
                itemSize = itemAlign = TypeCodes.SizeOf(code);
                entries.Add(null!);
            }
            else
            {
                code = TypeCodes.Structure;
                // Refused before recursing: the children of this field would sit at depth + 1.
                if (depth + 1 > HeaderCodec.MaxStructDepth)
                    throw Unsupported(root, $"field {field.DeclaringType?.Name}.{field.Name} nests structures deeper than {HeaderCodec.MaxStructDepth} levels");
                entries.Add(null!); // placeholder: a 'T' entry precedes its children (pre-order)
                (itemSize, itemAlign) = Describe(itemType, index, fieldPath, entries, root, depth + 1);
            }
            if (pack > 0) itemAlign = Math.Min(itemAlign, pack);
            if (isExplicit)
            {
                int at = ExplicitOffset(field, root);
                if (at < offset) // offset is the end of the field before (offset order)
                    throw Unsupported(root, $"fields {type.Name}.{previous} and {type.Name}.{field.Name} overlap (a union); " +
                                            "the field table describes fields that never overlap (docs/format.md section 4)");
                offset = at;
            }
            else
            {
                offset = AlignUp(offset, itemAlign);
            }
            entries[index] = new Entry(new StructField(name, code, offset, count, itemSize, parent), itemType, fieldPath);
            if (offset <= lastChildOffset) throw new InvalidOperationException("offsets must increase");
            lastChildOffset = offset;
            offset += count * itemSize;
            align = Math.Max(align, itemAlign);
            previous = field.Name;
        }
        int size = Math.Max(AlignUp(offset, align), type.StructLayoutAttribute?.Size ?? 0);
        // The CLR's own size of a nested struct (the element's is checked by Build): a [StructLayout(Size)]
        // or a rule the CLR applies differently is refused here rather than recorded wrongly.
        int clrSize = RuntimeHelpers.SizeOf(type.TypeHandle);
        if (clrSize != size)
            throw Unsupported(root, $"the CLR lays {type.Name} out in {clrSize} bytes, the C layout of its fields gives {size} " +
                                    "(remove Size from [StructLayout], or reorder the fields)");
        return (size, align);
    }

    private static int ExplicitOffset(FieldInfo field, Type root) =>
        field.GetCustomAttribute<FieldOffsetAttribute>()?.Value is int at && at >= 0
            ? at
            : throw Unsupported(root, $"field {field.DeclaringType?.Name}.{field.Name} of an explicit layout has no [FieldOffset]");

    /// <summary>Item type and count: fixed buffers and [InlineArray] structs are arrays of their element.</summary>
    private static (Type ItemType, int Count, FieldInfo? Inner) Shape(FieldInfo field, Type root)
    {
        if (field.GetCustomAttribute<FixedBufferAttribute>() is { } fixedBuffer)
            return (fixedBuffer.ElementType, fixedBuffer.Length, field.FieldType.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)[0]);
        if (field.FieldType.GetCustomAttribute<InlineArrayAttribute>() is { } inline)
        {
            var inner = field.FieldType.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic);
            if (inner.Length != 1) throw Unsupported(root, $"inline array {field.FieldType.Name} must have exactly one field");
            return (inner[0].FieldType, inline.Length, inner[0]);
        }
        return (field.FieldType, 1, null);
    }

    private static bool IsScalar(Type type, FieldInfo field, Type root, out char code)
    {
        if (TypeCodes.RefusalFor(type) is { } refusal)
            throw Unsupported(root, $"field {field.DeclaringType?.Name}.{field.Name}: {refusal}");
        if (TypeCodes.DefaultCodeFor(type) is { } c)
        {
            code = c;
            return true;
        }
        if (type.IsPrimitive || type.Assembly == typeof(object).Assembly)
            throw Unsupported(root, $"field {field.DeclaringType?.Name}.{field.Name} has type {type.Name}, which has no typecode");
        code = TypeCodes.Structure;
        return false;
    }

    /// <summary>[SharedTypeCode('c')] and friends choose a non-default typecode for a field.</summary>
    private static char Override(FieldInfo field, Type itemType, char code, Type root)
    {
        if (field.GetCustomAttribute<SharedTypeCodeAttribute>() is not { } attr) return code;
        if (!TypeCodes.Accepts(attr.TypeCode, itemType))
            throw Unsupported(root, $"field {field.Name}: typecode '{attr.TypeCode}' cannot hold {itemType.Name}");
        return attr.TypeCode;
    }

    /// <summary>Auto-property backing fields (&lt;X&gt;k__BackingField) are recorded as X.</summary>
    private static string FieldName(FieldInfo field, Type root)
    {
        string name = field.Name;
        if (name.StartsWith('<') && name.IndexOf('>') is > 1 and var close) name = name[1..close];
        if (name.Length >= HeaderLayout.EntryNameWidth || !HeaderCodec.IsIdentifierText(name, allowLeadingDigit: false))
            throw Unsupported(root, $"field name \"{name}\" must be an ASCII identifier of at most 31 characters");
        if (HeaderCodec.IsReservedFieldName(name))
            throw Unsupported(root, $"field name {name} is reserved (names starting with \"__\" and the ctypes internals such as _fields_ cannot be shared)");
        return name;
    }

    /// <summary>Writes a marker into each leaf field of a boxed T through reflection and checks that it
    /// lands at the offset the table claims, so a table never disagrees with the real layout.</summary>
    private static void VerifyOffsets<T>(List<Entry> entries) where T : unmanaged
    {
        var absolute = new int[entries.Count];
        for (int i = 0; i < entries.Count; i++)
        {
            var f = entries[i].Field;
            absolute[i] = f.Offset + (f.Parent >= 0 ? absolute[f.Parent] : 0);
            if (f.TypeCode == TypeCodes.Structure) continue;
            object box = default(T);
            SetPath(box, entries[i].Path, 0, Marker(entries[i].LeafType));
            var bytes = MemoryMarshal.AsBytes(new ReadOnlySpan<T>(ref Unsafe.Unbox<T>(box)));
            int actual = bytes.IndexOfAnyExcept((byte)0);
            if (actual != absolute[i])
                throw Unsupported(typeof(T), $"the CLR places field {f.Name} at byte {actual}, the C layout of its fields at {absolute[i]}");
        }
    }

    private static void SetPath(object box, FieldInfo[] path, int depth, object value)
    {
        if (depth == path.Length - 1)
        {
            path[depth].SetValue(box, value);
            return;
        }
        object inner = path[depth].GetValue(box)!;
        SetPath(inner, path, depth + 1, value);
        path[depth].SetValue(box, inner);
    }

    /// <summary>A value of the leaf type whose lowest (first, little-endian) byte is non-zero.</summary>
    private static object Marker(Type type)
    {
        Type scalar = TypeCodes.ScalarOf(type);
        object value = scalar switch
        {
            _ when scalar == typeof(bool) => true,
            _ when scalar == typeof(float) => BitConverter.Int32BitsToSingle(0x3F800001),
            _ when scalar == typeof(double) => BitConverter.Int64BitsToDouble(0x3FF0000000000001),
            _ when scalar == typeof(System.Text.Rune) => new System.Text.Rune('A'),
            _ => Convert.ChangeType(1, scalar),
        };
        return type.IsEnum ? Enum.ToObject(type, value) : value;
    }

    private static int AlignUp(int x, int a) => (x + a - 1) / a * a;

    private static UnsupportedTypeException Unsupported(Type type, string problem) =>
        new($"{type.Name} cannot be stored in a shared segment: {problem}. Use a [StructLayout(LayoutKind.Sequential)] " +
            "struct (any Pack) or a [StructLayout(LayoutKind.Explicit)] struct without overlapping fields, of the numeric " +
            "types of docs/format.md section 3.4, nested structs and fixed buffers.");
}
