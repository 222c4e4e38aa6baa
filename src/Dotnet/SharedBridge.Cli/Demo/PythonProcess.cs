using System.Diagnostics;
using System.Text;

namespace SharedBridge.Cli.Demo;

/// <summary>A Python script run by the demo, with sharedbridge on PYTHONPATH and its output
/// captured as it comes (so a chatty child can never block on a full pipe).</summary>
public sealed class PythonProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new(), _stderr = new();

    public PythonProcess(DemoOptions o, string script, params string[] args)
    {
        if (!File.Exists(script)) throw new UsageException($"missing {script}: is --repo the SharedBridge checkout?");
        var psi = new ProcessStartInfo(o.Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(script);
        foreach (var a in args) psi.ArgumentList.Add(a);
        string? existing = Environment.GetEnvironmentVariable("PYTHONPATH");
        psi.Environment["PYTHONPATH"] = string.IsNullOrEmpty(existing) ? o.PythonPackageDir : o.PythonPackageDir + ":" + existing;
        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) => { if (e.Data != null) lock (_stdout) _stdout.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (_stderr) _stderr.AppendLine(e.Data); };
        if (!_process.Start()) throw new UsageException($"could not start {o.Python}");
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
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
