using System.Text.Json;

namespace SharedBridge.CrossTests.Infrastructure;

/// <summary>A driver program: the C# one, or the Python one under a given interpreter.
/// Command is the argv prefix; the driver command and its arguments follow.</summary>
public sealed record Driver(string Label, IReadOnlyList<string> Command, bool IsPython)
{
    public const string CSharpLabel = "C#";

    public static Driver CSharp => new(CSharpLabel, [Repo.CSharpDriver], false);

    public static Driver Python(Interpreter interpreter) =>
        new(interpreter.Label, [interpreter.Executable, Repo.PythonDriver], true);

    public static Driver ByLabel(string label) =>
        label == CSharpLabel ? CSharp : Python(Interpreters.ByLabel(label));

    /// <summary>The argv prefix as the JSON list a parent's --child option takes.</summary>
    public string ChildJson => JsonSerializer.Serialize(Command);

    public IReadOnlyList<string> Argv(params string[] args) => [.. Command, .. args];

    public DriverProcess Start(params string[] args) => DriverProcess.Start(Argv(args));

    /// <summary>Runs to completion; fails the test if it takes longer than the timeout.</summary>
    public DriverResult Run(TimeSpan timeout, params string[] args)
    {
        using var process = Start(args);
        return process.WaitForExit(timeout);
    }
}
