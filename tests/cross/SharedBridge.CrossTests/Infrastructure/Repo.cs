[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace SharedBridge.CrossTests.Infrastructure;

/// <summary>Where things are: found by walking up from the test assembly to SharedBridge.sln,
/// so the suite works from any checkout location and any working directory.</summary>
public static class Repo
{
    public static readonly string Root = FindRoot();

    public static string CrossDir => Path.Combine(Root, "tests", "cross");
    public static string VectorsDir => Path.Combine(CrossDir, "vectors");
    public static string PythonPackageDir => Path.Combine(Root, "python");
    public static string PythonDriver => Path.Combine(CrossDir, "python_driver.py");

    /// <summary>The csharp-driver apphost of the same configuration as this test assembly
    /// (built through the ProjectReference with ReferenceOutputAssembly=false).</summary>
    public static string CSharpDriver => BuiltExecutable(Path.Combine(CrossDir, "CSharpDriver"), "csharp-driver");

    /// <summary>The .NET `sharedbridge` CLI (apphost sharedbridge-cli: ls, inspect, unlink, reset-lock, demo), built the same way.</summary>
    public static string Cli => BuiltExecutable(Path.Combine(Root, "src", "Dotnet", "SharedBridge.Cli"), "sharedbridge-cli");

    private static string BuiltExecutable(string projectDir, string name)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/'));
        string framework = dir.Name;
        string configuration = dir.Parent!.Name;
        string path = Path.Combine(projectDir, "bin", configuration, framework, name);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{name} is not built at {path}: run `dotnet build tests/cross/SharedBridge.CrossTests -c {configuration}`");
        return path;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SharedBridge.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no SharedBridge.sln above {AppContext.BaseDirectory}");
    }
}
