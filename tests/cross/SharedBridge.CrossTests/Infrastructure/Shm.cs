using System.Security.Cryptography;

namespace SharedBridge.CrossTests.Infrastructure;

/// <summary>Segment names for this run ("sbx" + a run id + a counter) and their cleanup. Every name
/// the suite hands out starts with RunPrefix, so teardown can find what a test left behind
/// without touching anyone else's segments.</summary>
public static class Shm
{
    public static readonly string RunPrefix = "sbx" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
    private static int _counter;

    public static string NewName() => RunPrefix + Interlocked.Increment(ref _counter).ToString("x4");

    public static string PathOf(string name) => "/dev/shm/" + name;

    public static bool Exists(string name) => File.Exists(PathOf(name));

    public static byte[] ReadAll(string name) => File.ReadAllBytes(PathOf(name));

    /// <summary>Segments of this run still in /dev/shm whose names start with prefix.</summary>
    public static IReadOnlyList<string> Leftovers(string prefix) =>
        Directory.GetFiles("/dev/shm", prefix + "*").Select(Path.GetFileName).OfType<string>().Order().ToList();

    public static void Remove(string name)
    {
        try { File.Delete(PathOf(name)); }
        catch (FileNotFoundException) { }
    }

    /// <summary>Removes every segment whose name starts with prefix; returns their names.</summary>
    public static IReadOnlyList<string> RemoveAll(string prefix)
    {
        var names = Leftovers(prefix);
        foreach (var n in names) Remove(n);
        return names;
    }

    /// <summary>Writes a segment from raw bytes, O_EXCL and mode 0600 like a creator would.</summary>
    public static void WriteNew(string name, byte[] contents)
    {
        using var fs = new FileStream(PathOf(name), new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        fs.Write(contents);
    }
}
