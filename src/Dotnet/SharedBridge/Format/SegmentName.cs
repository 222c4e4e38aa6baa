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

    /// <summary>The prefix (SharedBridgeSettings.NamePrefix, <c>sb_</c> by default) and 16 lowercase hex
    /// digits from a cryptographic source.</summary>
    internal static string Generate() => Prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    private static string s_prefix = InitialPrefix();

    /// <summary>The prefix of generated names (SharedBridgeSettings.NamePrefix checks what it is set to).</summary>
    internal static string Prefix
    {
        get => Volatile.Read(ref s_prefix);
        set => Volatile.Write(ref s_prefix, value);
    }

    /// <summary>SHAREDBRIDGE_NAME_PREFIX: unset "sb_"; an invalid prefix is reported (Trace warning) and the default used.</summary>
    private static string InitialPrefix()
    {
        string? text = Environment.GetEnvironmentVariable("SHAREDBRIDGE_NAME_PREFIX");
        if (text is null) return "sb_";
        if (CheckPrefix(text) is { } problem)
        {
            System.Diagnostics.Trace.TraceWarning(
                $"SharedBridge: SHAREDBRIDGE_NAME_PREFIX=\"{text}\" is not a valid name prefix ({problem}); generated names use the " +
                "default prefix \"sb_\".");
            return "sb_";
        }
        return text;
    }

    /// <summary>Null when <paramref name="prefix"/> makes valid generated names, otherwise the reason.</summary>
    internal static string? CheckPrefix(string? prefix)
    {
        if (prefix is null) return "it is null";
        if (prefix.Length > MaxLength - 16) return $"it is {prefix.Length} characters long (at most {MaxLength - 16})";
        return Check(prefix + "0") is null ? null : "use ASCII letters, digits, '_', '-' or '.', not starting with '.' or 'sem.'";
    }

    // ------------------------------------------------------------ directories (docs/format.md section 1.3)
    // Below the public API a segment is named by its key: the bare name of a POSIX shared-memory object, or the
    // absolute path <dir>/<name> of a segment of the directory backend. Keys never come from users: the public API
    // takes a name and a Directory option, and Qualify makes the key.

    internal const string ShmDirectory = "/dev/shm";
    internal const string DirectoryVariable = "SHAREDBRIDGE_DIR";

    /// <summary>The directory backend's directory that <paramref name="directory"/> (the per-object option) or else
    /// SHAREDBRIDGE_DIR names, as a full path; null for POSIX shared-memory objects (no option, no variable, or /dev/shm
    /// itself). Throws <see cref="DirectoryNotFoundException"/> when it names no directory.</summary>
    internal static string? ResolveDirectory(string? directory)
    {
        string source = "Directory";
        if (string.IsNullOrEmpty(directory))
        {
            directory = Environment.GetEnvironmentVariable(DirectoryVariable);
            source = DirectoryVariable;
        }
        if (string.IsNullOrEmpty(directory)) return null;
        string path = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        if (path == ShmDirectory) return null;
        if (!Directory.Exists(path))
            throw new DirectoryNotFoundException(
                $"The segment directory \"{path}\" ({source}) is not a directory: create it (for containers, mount one tmpfs " +
                $"volume there in every container that shares the segments), or unset {DirectoryVariable} to use /dev/shm.");
        return path;
    }

    /// <summary>The key of the segment the user calls <paramref name="name"/> in <paramref name="directory"/> (the option):
    /// the name is validated (section 1.1); null <paramref name="name"/> gives null (generate in /dev/shm) or
    /// <c>&lt;dir&gt;/</c> (generate in that directory: <see cref="GeneratedKey"/>).</summary>
    internal static string? Qualify(string? name, string? directory)
    {
        string? dir = ResolveDirectory(directory);
        if (name is not null)
        {
            Validate(name);
            return dir is null ? name : dir + "/" + name;
        }
        return dir is null ? null : dir + "/";
    }

    /// <summary>A key to create for <see cref="Qualify"/>'s result: itself, or a generated name in its directory.</summary>
    internal static string GeneratedKey(string? template) =>
        template is null ? Generate() : template.EndsWith('/') ? template + Generate() : template;

    /// <summary>True for a key of the directory backend.</summary>
    internal static bool IsPath(string key) => key.StartsWith('/');

    /// <summary>Throws <see cref="InvalidSegmentNameException"/> unless <paramref name="key"/> is a valid name or an absolute
    /// <c>&lt;dir&gt;/&lt;name&gt;</c> with a valid name.</summary>
    internal static void ValidateKey(string? key)
    {
        if (key is not null && IsPath(key))
        {
            int slash = key.LastIndexOf('/');
            Validate(key[(slash + 1)..]);
            return;
        }
        Validate(key);
    }

    /// <summary>The name part of a key (what objects show as Name).</summary>
    internal static string BaseName(string key) => key[(key.LastIndexOf('/') + 1)..];

    /// <summary>The directory of a key: null for /dev/shm.</summary>
    internal static string? DirectoryOf(string key)
    {
        int slash = key.LastIndexOf('/');
        return slash < 0 ? null : key[..slash];
    }

    /// <summary>The directory option that designates the directory of <paramref name="key"/> exactly, whatever
    /// SHAREDBRIDGE_DIR says: its directory, or /dev/shm.</summary>
    internal static string DirectoryOptionOf(string key) => DirectoryOf(key) ?? ShmDirectory;

    /// <summary>The key of segment <paramref name="name"/> in the directory of <paramref name="key"/> (a queue's data
    /// segments, an external lock: section 1.3).</summary>
    internal static string InSameDirectory(string key, string name) =>
        DirectoryOf(key) is { } dir ? dir + "/" + name : name;

    /// <summary>The file system path of a key (/dev/shm/NAME for a shared-memory object).</summary>
    internal static string PathOf(string key) => IsPath(key) ? key : ShmDirectory + "/" + key;

    internal static string ToOsName(string name) => "/" + name;

    private static string Quote(string? name) => name is null ? "null" : "\"" + name.Replace("\0", "\\0") + "\"";
}
