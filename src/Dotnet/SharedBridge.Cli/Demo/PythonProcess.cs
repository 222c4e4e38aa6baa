using System.Diagnostics;
using System.Text;

namespace SharedBridge.Cli.Demo;

/// <summary>A module of the sharedbridge package run by the demo (`python -m sharedbridge.demo.NAME`), from the
/// checkout's python/ folder on PYTHONPATH or from the package installed in the interpreter, with its output
/// captured as it comes (so a chatty child can never block on a full pipe).</summary>
public sealed class PythonProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new(), _stderr = new();

    public PythonProcess(DemoOptions o, string module, params string[] args)
    {
        var psi = Start(o, "-m", module);
        foreach (var a in args) psi.ArgumentList.Add(a);
        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) => { if (e.Data != null) lock (_stdout) _stdout.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (_stderr) _stderr.AppendLine(e.Data); };
        if (!_process.Start()) throw new UsageException($"could not start {o.Python}");
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>The start of `python ARGS...` with sharedbridge where the demo takes it from (<see cref="DemoOptions.Repo"/>).</summary>
    public static ProcessStartInfo Start(DemoOptions o, params string[] args)
    {
        var psi = new ProcessStartInfo(o.Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (o.PythonPackageDir is string dir)
        {
            string? existing = Environment.GetEnvironmentVariable("PYTHONPATH");
            psi.Environment["PYTHONPATH"] = string.IsNullOrEmpty(existing) ? dir : dir + ":" + existing;
        }
        return psi;
    }

    public bool HasExited => _process.HasExited;

    public string Stdout { get { lock (_stdout) return _stdout.ToString(); } }
    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    /// <summary>Waits for a clean exit; a process still running at the timeout is killed.
    /// Returns false (after printing why) unless it exited with status 0 in time.</summary>
    public bool Finish(TimeSpan timeout, string what)
    {
        if (!_process.WaitForExit(timeout))
        {
            _process.Kill(entireProcessTree: true);
            Console.Error.WriteLine($"{what} did not finish within {timeout.TotalSeconds} s and was killed");
            return false;
        }
        _process.WaitForExit();  // drains the asynchronous output readers
        if (_process.ExitCode == 0) return true;
        Console.Error.WriteLine($"{what} exited with status {_process.ExitCode}:\n{Stderr}");
        return false;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }
}
