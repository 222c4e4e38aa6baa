using System.Text;

namespace SharedBridge.Format;

/// <summary>One row of the element type table (docs/format.md section 3.4).</summary>
internal sealed record TypeCodeRow(char Code, int Size, string CtypesName, Type Canonical, Type[] Accepted);

/// <summary>The typecode table: typecode, LP64 size, ctypes name and the .NET types that map to it.</summary>
internal static class TypeCodes
{
    internal const char Structure = 'T';

    private static readonly TypeCodeRow[] Rows =
    [
        new('c', 1, "c_char", typeof(byte), [typeof(byte)]),
        new('u', 4, "c_wchar", typeof(Rune), [typeof(Rune), typeof(uint)]),
        new('b', 1, "c_byte", typeof(sbyte), [typeof(sbyte)]),
        new('B', 1, "c_ubyte", typeof(byte), [typeof(byte)]),
        new('h', 2, "c_short", typeof(short), [typeof(short)]),
        new('H', 2, "c_ushort", typeof(ushort), [typeof(ushort)]),
        new('i', 4, "c_int", typeof(int), [typeof(int)]),
        new('I', 4, "c_uint", typeof(uint), [typeof(uint)]),
        new('l', 8, "c_long", typeof(long), [typeof(long)]),
        new('L', 8, "c_ulong", typeof(ulong), [typeof(ulong)]),
        new('q', 8, "c_longlong", typeof(long), [typeof(long)]),
        new('Q', 8, "c_ulonglong", typeof(ulong), [typeof(ulong)]),
        new('f', 4, "c_float", typeof(float), [typeof(float)]),
        new('d', 8, "c_double", typeof(double), [typeof(double)]),
        new('?', 1, "c_bool", typeof(bool), [typeof(bool)]),
    ];

    // The typecode a .NET type gets when the user does not choose one ('c', 'l', 'L' and 'u'
    // for uint are only used when asked for explicitly).
    private static readonly Dictionary<Type, char> DefaultCodes = new()
    {
        [typeof(sbyte)] = 'b', [typeof(byte)] = 'B', [typeof(short)] = 'h', [typeof(ushort)] = 'H',
        [typeof(int)] = 'i', [typeof(uint)] = 'I', [typeof(long)] = 'q', [typeof(ulong)] = 'Q',
        [typeof(float)] = 'f', [typeof(double)] = 'd', [typeof(bool)] = '?', [typeof(Rune)] = 'u',
    };

    internal static TypeCodeRow? Find(char code)
    {
        foreach (var row in Rows)
            if (row.Code == code) return row;
        return null;
    }

    internal static bool IsScalarCode(char code) => Find(code) is not null;

    internal static int SizeOf(char code) => Find(code)?.Size ?? 0;

    /// <summary>The default typecode of a scalar .NET type, or null if it has none.</summary>
    internal static char? DefaultCodeFor(Type type) =>
        DefaultCodes.TryGetValue(ScalarOf(type), out char code) ? code : null;

    /// <summary>Whether a segment of typecode <paramref name="code"/> may be used as <paramref name="type"/>.</summary>
    internal static bool Accepts(char code, Type type) =>
        Find(code) is { } row && Array.IndexOf(row.Accepted, ScalarOf(type)) >= 0;

    /// <summary>Enums are stored as their underlying integer type.</summary>
    internal static Type ScalarOf(Type type) => type.IsEnum ? Enum.GetUnderlyingType(type) : type;

    /// <summary>"'d' (c_double, .NET double)" for messages.</summary>
    internal static string Describe(char code) => code switch
    {
        Structure => "'T' (structure)",
        '\0' => "none (lock-only segment)",
        _ => Find(code) is { } row ? $"'{code}' ({row.CtypesName}, .NET {row.Canonical.Name})" : $"unknown typecode 0x{(int)code:X2}",
    };

    /// <summary>Why a scalar .NET type cannot be stored, or null when it can.</summary>
    internal static string? RefusalFor(Type type)
    {
        if (type == typeof(char))
            return "C# char is a 2-byte UTF-16 unit with no typecode: use byte (or SharedCharArray) for 'c' byte strings, " +
                   "or System.Text.Rune (4 bytes) for 'u' characters";
        if (type.IsPointer || type.IsFunctionPointer || type.IsUnmanagedFunctionPointer)
            return $"{type} is a pointer: an address means nothing in another process";
        if (type == typeof(nint) || type == typeof(nuint))
            return $"{type.Name} is pointer-sized and has no typecode: use long or ulong";
        if (type.IsByRef || !type.IsValueType)
            return $"{type} is a reference: an address means nothing in another process";
        if (type == typeof(decimal) || type == typeof(Half) || type == typeof(Int128) || type == typeof(UInt128))
            return $"{type.Name} has no ctypes typecode";
        return null;
    }
}
