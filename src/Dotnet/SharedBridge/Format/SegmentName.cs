using System.Security.Cryptography;

namespace SharedBridge.Format;

/// <summary>Name rules of docs/format.md section 1.1 and generated names.</summary>
internal static class SegmentName
{
    internal const int MaxLength = 255;

    /// <summary>Throws <see cref="InvalidSegmentNameException"/> unless <paramref name="name"/> is valid.</summary>
    internal static void Validate(string? name)
    {
        string? problem = Check(name);
        if (problem is not null)
            throw new InvalidSegmentNameException(
                $"Invalid segment name {Quote(name)}: {problem}. Use 1 to 255 ASCII letters, digits, '_', '-' or '.', " +
                "not starting with '.' or 'sem.', and no leading '/'.");
    }

    /// <summary>Null when valid, otherwise the reason.</summary>
    internal static string? Check(string? name)
    {
        if (string.IsNullOrEmpty(name)) return "the name is empty";
        if (name.Length > MaxLength) return $"it is {name.Length} characters long (at most {MaxLength})";
        foreach (char c in name)
            if (!IsNameChar(c))
                return c == '/' ? "it contains '/' (give the name without a leading slash)" : $"it contains the character U+{(int)c:X4}";
        if (name[0] == '.') return "it starts with '.'";
        if (name.StartsWith("sem.", StringComparison.Ordinal)) return "the prefix 'sem.' is reserved for named semaphores";
        return null;
    }

    internal static bool IsNameChar(char c) =>
        c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_' or '-' or '.';

    /// <summary><c>sb_</c> and 16 lowercase hex digits from a cryptographic source.</summary>
    internal static string Generate() => "sb_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    internal static string ToOsName(string name) => "/" + name;

    private static string Quote(string? name) => name is null ? "null" : "\"" + name.Replace("\0", "\\0") + "\"";
}
