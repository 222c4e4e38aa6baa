using System.Globalization;
using System.Text;

namespace SharedBridge.CrossDriver;

/// <summary>Python's repr() of floats, bytes and lists, so that a C# parent prints exactly the
/// lines the Python documentation's examples print.</summary>
public static class PyRepr
{
    /// <summary>repr(float): the shortest round-trip digits, fixed notation when the decimal
    /// exponent is in (-4, 16], otherwise "d.ddde+XX" (CPython's float_repr_style 'short').</summary>
    public static string Float(double value)
    {
        if (double.IsNaN(value)) return "nan";
        if (double.IsInfinity(value)) return value > 0 ? "inf" : "-inf";
        string sign = double.IsNegative(value) ? "-" : "";
        (string digits, int decpt) = ShortestDigits(Math.Abs(value));
        if (decpt > -4 && decpt <= 16)
        {
            if (decpt <= 0) return sign + "0." + new string('0', -decpt) + digits;
            if (decpt >= digits.Length) return sign + digits + new string('0', decpt - digits.Length) + ".0";
            return sign + digits[..decpt] + "." + digits[decpt..];
        }
        string mantissa = digits.Length == 1 ? digits : digits[..1] + "." + digits[1..];
        int exponent = decpt - 1;
        return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture);
    }

    /// <summary>The shortest digits that round-trip, without leading/trailing zeros, and the
    /// position of the decimal point relative to them (value = 0.DIGITS x 10^decpt).</summary>
    private static (string Digits, int DecimalPoint) ShortestDigits(double magnitude)
    {
        if (magnitude == 0) return ("0", 1);
        string r = magnitude.ToString("R", CultureInfo.InvariantCulture);
        int exponent = 0;
        int e = r.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(r[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..e];
        }
        int dot = r.IndexOf('.');
        string intPart = dot >= 0 ? r[..dot] : r;
        string fracPart = dot >= 0 ? r[(dot + 1)..] : "";
        string all = intPart + fracPart;
        int decpt = intPart.Length + exponent;
        int lead = 0;
        while (lead < all.Length - 1 && all[lead] == '0') lead++;
        all = all[lead..];
        decpt -= lead;
        return (all.TrimEnd('0') is { Length: > 0 } t ? t : "0", decpt);
    }

    /// <summary>repr(bytes): b'...' with Python's quoting and escapes.</summary>
    public static string Bytes(ReadOnlySpan<byte> bytes)
    {
        bool hasSingle = bytes.Contains((byte)'\'');
        bool hasDouble = bytes.Contains((byte)'"');
        char quote = hasSingle && !hasDouble ? '"' : '\'';
        var sb = new StringBuilder("b").Append(quote);
        foreach (byte b in bytes)
        {
            switch (b)
            {
                case (byte)'\\': sb.Append("\\\\"); break;
                case (byte)'\t': sb.Append("\\t"); break;
                case (byte)'\n': sb.Append("\\n"); break;
                case (byte)'\r': sb.Append("\\r"); break;
                default:
                    if (b == quote) sb.Append('\\').Append(quote);
                    else if (b >= 0x20 && b < 0x7f) sb.Append((char)b);
                    else sb.Append("\\x").Append(b.ToString("x2", CultureInfo.InvariantCulture));
                    break;
            }
        }
        return sb.Append(quote).ToString();
    }

    /// <summary>repr(list) of already-repr'd items.</summary>
    public static string List(IEnumerable<string> items) => "[" + string.Join(", ", items) + "]";

    public static string Tuple(params string[] items) => "(" + string.Join(", ", items) + ")";

    public static string Int(long value) => value.ToString(CultureInfo.InvariantCulture);
}
