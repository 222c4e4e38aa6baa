using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SharedBridge.CrossDriver;

/// <summary>The canonical text of values, identical to cross_vectors.py's: integers in decimal,
/// floats as the hex of their IEEE bits ("nan" for NaN), bools true/false, wide characters U+XXXX,
/// byte strings "x" + hex. Both drivers compare these strings, so a mismatch reads the same in
/// either language.</summary>
public static class Canonical
{
    public static string Of(long v) => v.ToString(CultureInfo.InvariantCulture);
    public static string Of(ulong v) => v.ToString(CultureInfo.InvariantCulture);
    public static string Of(bool v) => v ? "true" : "false";
    public static string Of(System.Text.Rune v) => "U+" + v.Value.ToString("X4", CultureInfo.InvariantCulture);
    public static string Of(double v) =>
        double.IsNaN(v) ? "nan" : "d" + BitConverter.DoubleToInt64Bits(v).ToString("x16", CultureInfo.InvariantCulture);
    public static string Of(float v) =>
        float.IsNaN(v) ? "nan" : "f" + BitConverter.SingleToInt32Bits(v).ToString("x8", CultureInfo.InvariantCulture);

    /// <summary>Bytes up to the first NUL (what a c_char field reads), as "x" + hex.</summary>
    public static string CharField(ReadOnlySpan<byte> raw)
    {
        int nul = raw.IndexOf((byte)0);
        return Hex(nul >= 0 ? raw[..nul] : raw);
    }

    public static string Hex(ReadOnlySpan<byte> raw) => "x" + Convert.ToHexStringLower(raw);

    public static string Struct(params string[] fields) => "{" + string.Join(",", fields) + "}";

    /// <summary>A fixed array field (other than c_char * N): "[a,b,c]".</summary>
    public static string Items<T>(ReadOnlySpan<T> items, Func<T, string> each)
    {
        var parts = new string[items.Length];
        for (int i = 0; i < items.Length; i++) parts[i] = each(items[i]);
        return "[" + string.Join(",", parts) + "]";
    }

    // ---- JSON -> values ----

    public static double Double(JsonElement e) => e.ValueKind == JsonValueKind.String
        ? e.GetString() switch
        {
            "inf" => double.PositiveInfinity,
            "-inf" => double.NegativeInfinity,
            "nan" => double.NaN,
            var s => throw new FormatException($"unknown float literal {s}"),
        }
        : e.GetDouble();

    public static System.Text.Rune Rune(JsonElement e) => System.Text.Rune.GetRuneAt(e.GetString()!, 0);

    public static byte[] Latin1(JsonElement e) => Encoding.Latin1.GetBytes(e.GetString()!);

    public static IReadOnlyList<string> Diff(IReadOnlyList<string> expected, IReadOnlyList<string> actual)
    {
        if (expected.Count != actual.Count) return [$"length: expected {expected.Count}, found {actual.Count}"];
        var errors = new List<string>();
        for (int i = 0; i < expected.Count; i++)
            if (expected[i] != actual[i]) errors.Add($"[{i}]: expected {expected[i]}, found {actual[i]}");
        return errors;
    }
}
