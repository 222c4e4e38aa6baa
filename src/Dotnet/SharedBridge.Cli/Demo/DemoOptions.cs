using System.Globalization;

namespace SharedBridge.Cli.Demo;

/// <summary>The demo's command line: `demo [--python PATH] [--count N] [--chunk N]
/// [--python-workers N] [--csharp-workers N] [--repo DIR]`. <see cref="Repo"/> is the checkout whose
/// python/ folder gives the workers sharedbridge (--repo, else the checkout this CLI was built in), or null:
/// the sharedbridge package installed in the interpreter (the installed tool and the installed wheel).</summary>
public sealed record DemoOptions(string Python, int Count, int Chunk, int PythonWorkers, int CSharpWorkers, string? Repo)
{
    public static DemoOptions Parse(string[] args)
    {
        var values = new Dictionary<string, string>
        {
            ["--python"] = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3",
            ["--count"] = "4000000",
            ["--chunk"] = "65536",
            ["--python-workers"] = "2",
            ["--csharp-workers"] = "1",
            ["--repo"] = "",
        };
        for (int i = 0; i < args.Length; i++)
        {
            if (!values.ContainsKey(args[i]) || i + 1 >= args.Length)
                throw new UsageException($"unknown option or missing value: {args[i]} (options: {string.Join(", ", values.Keys)})");
            values[args[i]] = args[++i];
        }
        return new DemoOptions(values["--python"], Positive(values, "--count"), Positive(values, "--chunk"),
            Positive(values, "--python-workers"), Positive(values, "--csharp-workers"),
            values["--repo"].Length > 0 ? Path.GetFullPath(values["--repo"]) : FindRepo(AppContext.BaseDirectory));
    }

    private static int Positive(Dictionary<string, string> values, string option) =>
        int.TryParse(values[option], NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0
            ? n : throw new UsageException($"{option} needs a positive integer, got '{values[option]}'");

    /// <summary>The checkout this CLI was built in (SharedBridge.sln above it), or null for an installed tool,
    /// wherever the current directory is: an installed tool runs the installed package.</summary>
    private static string? FindRepo(string start)
    {
        for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SharedBridge.sln"))) return dir.FullName;
        return null;
    }

    /// <summary>The PYTHONPATH entry that gives the workers sharedbridge, or null (the installed package).</summary>
    public string? PythonPackageDir => Repo == null ? null : Path.Combine(Repo, "python");
    public int Chunks => (Count + Chunk - 1) / Chunk;
}
