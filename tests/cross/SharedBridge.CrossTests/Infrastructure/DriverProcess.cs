using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;

namespace SharedBridge.CrossTests.Infrastructure;

public sealed record DriverResult(IReadOnlyList<string> Argv, int ExitCode, string Stdout, string Stderr)
{
    /// <summary>Everything a failure message needs to be understood without re-running.</summary>
    public string Describe() =>
        $"`{string.Join(' ', Argv)}` exited with {ExitCode}\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>A child process of the suite, with its output captured line by line. Every one is
/// registered so that teardown can kill whatever a failed test left running.</summary>
public sealed class DriverProcess : IDisposable
{
    private static readonly ConcurrentDictionary<int, Process> Live = new();

    private readonly Process _process;
    private readonly IReadOnlyList<string> _argv;
    private readonly BlockingCollection<string> _lines = new();
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly TaskCompletionSource _stdoutClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stderrClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private DriverProcess(IReadOnlyList<string> argv, bool withPythonPath)
    {
        _argv = argv;
        var psi = new ProcessStartInfo(argv[0])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a);
        string? pythonPath = Environment.GetEnvironmentVariable("PYTHONPATH");
        if (!withPythonPath) psi.Environment.Remove("PYTHONPATH");
        else psi.Environment["PYTHONPATH"] = string.IsNullOrEmpty(pythonPath) ? Repo.PythonPackageDir : Repo.PythonPackageDir + ":" + pythonPath;
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data == null) { _lines.CompleteAdding(); _stdoutClosed.TrySetResult(); return; }
            lock (_stdout) _stdout.AppendLine(e.Data);
            _lines.Add(e.Data);
        };
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data == null) { _stderrClosed.TrySetResult(); return; }
            lock (_stderr) _stderr.AppendLine(e.Data);
        };
        _process.Start();
        Live[_process.Id] = _process;
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <param name="withPythonPath">false starts it without PYTHONPATH (no sharedbridge on it
    /// unless the program adds it itself).</param>
    public static DriverProcess Start(IReadOnlyList<string> argv, bool withPythonPath = true) => new(argv, withPythonPath);

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Describe() => new DriverResult(_argv, _process.HasExited ? _process.ExitCode : -1, Stdout, Stderr).Describe();

    private string Stdout { get { lock (_stdout) return _stdout.ToString(); } }
    private string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    /// <summary>The next stdout line; fails the test if none comes in time.</summary>
    public string ReadLine(TimeSpan timeout)
    {
        if (_lines.TryTake(out var line, timeout)) return line;
        Assert.Fail($"no output line within {timeout.TotalSeconds} s from {Describe()}");
        return "";
    }

    public void WriteLine(string line)
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    public DriverResult WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            Kill();
            Assert.Fail($"timed out after {timeout.TotalSeconds} s (killed): {Describe()}");
        }
        Task.WaitAll([_stdoutClosed.Task, _stderrClosed.Task], TimeSpan.FromSeconds(10));
        return new DriverResult(_argv, _process.ExitCode, Stdout, Stderr);
    }

    /// <summary>SIGKILL: the process gets no chance to release anything.</summary>
    public void Kill()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    public void Dispose()
    {
        Kill();
        Live.TryRemove(_process.Id, out _);
        _process.Dispose();
    }

    /// <summary>Kills every child still running (teardown after a failed test).</summary>
    public static int KillAll()
    {
        int killed = 0;
        foreach (var (id, p) in Live)
        {
            try
            {
                if (!p.HasExited) { p.Kill(entireProcessTree: true); killed++; }
            }
            catch (InvalidOperationException)
            {
                // exited between the check and the kill
            }
            Live.TryRemove(id, out _);
        }
        return killed;
    }
}
