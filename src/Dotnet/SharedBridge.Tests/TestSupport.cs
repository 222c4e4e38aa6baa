using System.Diagnostics;
using System.Reflection;

namespace SharedBridge.Tests;

/// <summary>Unique segment names for this test run, and /dev/shm inspection.</summary>
internal static class Names
{
    private static int s_counter;

    /// <summary>"neth_&lt;pid&gt;-&lt;n&gt;-&lt;tag&gt;": unique per process, recognizable in /dev/shm.</summary>
    internal static string Unique(string tag = "t") =>
        $"neth_{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}-{tag}";

    internal static string ShmPath(string name) => "/dev/shm/" + name;

    internal static bool Exists(string name) => File.Exists(ShmPath(name));
}

/// <summary>A child process running `dotnet exec SharedBridge.Benchmarks.dll child ...`. Its output is
/// read by dedicated threads (no async continuations that could wait for xunit's test threads).</summary>
internal sealed class Child : IDisposable
{
    private readonly Process _process;
    private readonly System.Collections.Concurrent.BlockingCollection<string> _lines = new();
    private readonly System.Text.StringBuilder _stderr = new();
    private readonly Thread _outReader, _errReader;

    private Child(Process process)
    {
        _process = process;
        _outReader = new Thread(() =>
        {
            while (_process.StandardOutput.ReadLine() is { } line) _lines.Add(line);
            _lines.CompleteAdding();
        }) { IsBackground = true };
        _errReader = new Thread(() =>
        {
            while (_process.StandardError.ReadLine() is { } line)
                lock (_stderr) _stderr.AppendLine(line);
        }) { IsBackground = true };
        _outReader.Start();
        _errReader.Start();
    }

    internal static string ProgramPath { get; } =
        typeof(Child).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "ChildProgram").Value!;

    internal static Child Start(params string[] args)
    {
        Assert.True(File.Exists(ProgramPath), $"child program not built: {ProgramPath}");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("exec");
        info.ArgumentList.Add(ProgramPath);
        info.ArgumentList.Add("child");
        foreach (var a in args) info.ArgumentList.Add(a);
        return new Child(Process.Start(info)!);
    }

    internal int Pid => _process.Id;

    private string Stderr
    {
        get { lock (_stderr) return _stderr.ToString(); }
    }

    /// <summary>The child's next stdout line.</summary>
    internal string ReadLine(int timeoutMs = 30_000)
    {
        try
        {
            if (_lines.TryTake(out var line, timeoutMs)) return line;
        }
        catch (InvalidOperationException) { /* completed: the child exited */ }
        throw new TimeoutException($"the child printed nothing within {timeoutMs} ms; stderr: {Stderr}");
    }

    /// <summary>Waits for the child's next stdout line and checks it.</summary>
    internal void ExpectLine(string expected, int timeoutMs = 30_000)
    {
        string line = ReadLine(timeoutMs);
        Assert.True(line == expected, $"child printed \"{line}\" instead of \"{expected}\"; stderr: {Stderr}");
    }

    /// <summary>SIGKILL (Process.Kill on Unix), then reap.</summary>
    internal void KillHard()
    {
        _process.Kill();
        _process.WaitForExit();
    }

    internal int WaitForExit(int timeoutMs = 60_000)
    {
        if (!_process.WaitForExit(timeoutMs))
        {
            _process.Kill();
            throw new TimeoutException("child did not exit");
        }
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
    }
}
