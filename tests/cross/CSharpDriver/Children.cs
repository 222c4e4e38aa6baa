using System.Diagnostics;

namespace SharedBridge.CrossDriver;

/// <summary>Runs a scenario's children: all started at once, all awaited; their stdout is copied
/// to our stderr so that our stdout holds only the scenario's result lines.</summary>
public static class Children
{
    public static int RunAll(IReadOnlyList<IReadOnlyList<string>> commands)
    {
        var processes = new List<Process>();
        try
        {
            foreach (var argv in commands)
            {
                var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, UseShellExecute = false };
                foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a);
                var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {argv[0]}");
                p.OutputDataReceived += (_, e) => { if (e.Data != null) Console.Error.WriteLine(e.Data); };
                p.BeginOutputReadLine();
                processes.Add(p);
            }
            int status = 0;
            foreach (var (p, argv) in processes.Zip(commands))
            {
                p.WaitForExit();
                if (p.ExitCode != 0)
                {
                    Console.Error.WriteLine($"child {string.Join(' ', argv)} exited with {p.ExitCode}");
                    status = 1;
                }
            }
            return status;
        }
        finally
        {
            foreach (var p in processes)
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.Dispose();
            }
        }
    }
}
