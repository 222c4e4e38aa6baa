using System.Diagnostics;

namespace SharedBridge.CrossTests.Infrastructure;

/// <summary>A Python interpreter the suite runs the Python driver with.</summary>
public sealed record Interpreter(string Label, string Executable, Version Version);

/// <summary>Every CPython 3.10+ on the machine: pyenv's $(pyenv root)/versions/3.1*/bin/python and
/// the system's /usr/bin/python3, each once (by real path), labelled "py3.12" or "py3.11-debian".</summary>
public static class Interpreters
{
    private static readonly Lazy<IReadOnlyList<Interpreter>> Found = new(Discover);

    public static IReadOnlyList<Interpreter> All => Found.Value;

    public static Interpreter ByLabel(string label) =>
        All.FirstOrDefault(i => i.Label == label) ?? throw new ArgumentException($"no interpreter labelled {label}");

    /// <summary>The interpreter for slow scenarios run once: the system's, else the newest.</summary>
    public static Interpreter Preferred => All.FirstOrDefault(i => i.Executable == "/usr/bin/python3") ?? All[^1];

    private static IReadOnlyList<Interpreter> Discover()
    {
        var candidates = new List<(string Path, bool System)>();
        string? pyenvRoot = PyenvRoot();
        if (pyenvRoot != null && Directory.Exists(Path.Combine(pyenvRoot, "versions")))
            foreach (var dir in Directory.GetDirectories(Path.Combine(pyenvRoot, "versions"), "3.1*").Order())
                candidates.Add((Path.Combine(dir, "bin", "python"), false));
        candidates.Add(("/usr/bin/python3", true));

        // One interpreter per minor version, as scripts/test-python.sh does: the system's where it has one (it has numpy),
        // else the first found; SB_ALL_INTERPRETERS=1 keeps every one (a second 3.11 doubles the matrix for that version
        // and finds nothing the first did not: the package's behaviour is fixed per minor version).
        bool all = Environment.GetEnvironmentVariable("SB_ALL_INTERPRETERS") == "1";
        candidates = candidates.OrderByDescending(c => c.System).ToList();     // the system's first (OrderBy is stable)
        var seen = new HashSet<string>();
        var minors = new HashSet<(int, int)>();
        var found = new List<Interpreter>();
        foreach (var (path, system) in candidates)
        {
            if (!File.Exists(path) || !seen.Add(RealPath(path))) continue;
            Version? version = QueryVersion(path);
            if (version == null || version < new Version(3, 10)) continue;
            if (!minors.Add((version.Major, version.Minor)) && !all) continue;
            string label = $"py{version.Major}.{version.Minor}" + (system ? SystemSuffix() : "");
            if (found.Any(i => i.Label == label)) label = $"py{version}" + (system ? SystemSuffix() : "");
            found.Add(new Interpreter(label, path, version));
        }
        return found.OrderBy(i => i.Version).ToList();
    }

    private static string SystemSuffix() => File.Exists("/etc/debian_version") ? "-debian" : "-system";

    private static string? PyenvRoot()
    {
        string? env = Environment.GetEnvironmentVariable("PYENV_ROOT");
        if (!string.IsNullOrEmpty(env)) return env;
        try
        {
            using var p = Process.Start(new ProcessStartInfo("pyenv", "root") { RedirectStandardOutput = true, RedirectStandardError = true });
            string output = p!.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            if (p.ExitCode == 0 && output.Length > 0) return output;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // no pyenv on PATH: fall back to its default location
        }
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".pyenv");
    }

    private static Version? QueryVersion(string python)
    {
        try
        {
            var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add("import sys; print('%d.%d.%d' % sys.version_info[:3])");
            using var p = Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return p.ExitCode == 0 && Version.TryParse(output, out var v) ? v : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    private static string RealPath(string path)
    {
        var info = new FileInfo(path);
        return info.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? info.FullName;
    }
}
