using System.Diagnostics;
using System.Reflection;
using SharedBridge.Format;
using SharedBridge.Objects;

namespace SharedBridge.Tests;

/// <summary>Unique segment names for this test run, and /dev/shm inspection.</summary>
internal static class Names
{
    private static int s_counter;

    /// <summary>"&lt;prefix&gt;_&lt;pid&gt;-&lt;n&gt;-&lt;tag&gt;": unique per process, recognizable in /dev/shm
    /// (the prefix tells which tests made a segment that was left behind).</summary>
    internal static string Unique(string tag = "t", string prefix = "neth") =>
        $"{prefix}_{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}-{tag}";

    /// <summary>Where segments are: /dev/shm, or the directory SHAREDBRIDGE_DIR names in the run of the header and lock
    /// rules on the directory backend (docs/format.md section 1.3).</summary>
    internal static string ShmDirectory { get; } =
        Environment.GetEnvironmentVariable("SHAREDBRIDGE_DIR") is { Length: > 0 } dir ? Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)) : "/dev/shm";

    internal static string ShmPath(string name) => ShmDirectory + "/" + name;

    /// <summary>How messages show a segment name: the name, or its path when it is in a directory (docs/format.md section 1.3).</summary>
    internal static string Shown(string name) => ShmDirectory == "/dev/shm" ? name : ShmPath(name);

    internal static bool Exists(string name) => File.Exists(ShmPath(name));
}

/// <summary>The mutex of any segment with an embedded lock, the internal one of an event, a semaphore, a barrier or a
/// queue included, which SharedLock.Open refuses (docs/format.md section 10.1): tests that play a peer of the protocol
/// (writing the words with the mutex held, as a hostile or dead process would) take it through here.</summary>
internal static class InternalLock
{
    internal static SharedLock Of(string name)
    {
        var core = SharedObjectCore.Open("SharedLock", name, null, _ => null);
        try { return SharedLock.ForSegmentOf(core); }
        finally { core.Dispose(); }
    }
}

/// <summary>A child process running `dotnet exec SharedBridge.TestChild.dll COMMAND ...`. Its output is
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

    internal static Child Start(params string[] args) => StartVia([], args);

    /// <summary>Starts the child with <paramref name="environment"/> added to this process's environment.</summary>
    internal static Child StartWithEnvironment(IReadOnlyDictionary<string, string> environment, params string[] args) =>
        StartVia([], args, environment);

    /// <summary>Starts the child through <paramref name="launcher"/> (for example <c>nohup</c>, or a
    /// wrapper that reports the child's wait status): <c>launcher... dotnet exec program args...</c>.</summary>
    internal static Child StartVia(string[] launcher, params string[] args) => StartVia(launcher, args, null);

    private static Child StartVia(string[] launcher, string[] args, IReadOnlyDictionary<string, string>? environment)
    {
        Assert.True(File.Exists(ProgramPath), $"child program not built: {ProgramPath}");
        var info = new ProcessStartInfo(launcher.Length > 0 ? launcher[0] : "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        foreach (var a in launcher.Skip(1)) info.ArgumentList.Add(a);
        if (launcher.Length > 0) info.ArgumentList.Add("dotnet");
        info.ArgumentList.Add("exec");
        info.ArgumentList.Add(ProgramPath);
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) info.Environment[key] = value;
        return new Child(Process.Start(info)!);
    }

    internal int Pid => _process.Id;

    /// <summary>Writes a line to the child's stdin.</summary>
    internal void WriteLine(string line)
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    internal bool HasExited => _process.HasExited;

    internal string Stderr
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

/// <summary>Signals and the other processes' view of a child.</summary>
internal static class Signals
{
    /// <summary>Sends signal <paramref name="signal"/> (a name such as TERM) to <paramref name="pid"/>.</summary>
    internal static void Send(int pid, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-s", signal, pid.ToString()]) { UseShellExecute = false })!;
        kill.WaitForExit();
        Assert.Equal(0, kill.ExitCode);
    }

    /// <summary>python3 runs a wrapper that reports the child's raw wait status (a negative status is
    /// death by that signal, which .NET's ExitCode cannot tell from an exit code of 128 + signal).</summary>
    internal static string? Python { get; } = FindOnPath("python3");

    /// <summary>Prints "pid N" when the child started and "status S" (Popen.returncode) when it ended.</summary>
    internal const string StatusWrapper =
        "import subprocess, sys\n" +
        "p = subprocess.Popen(sys.argv[1:])\n" +
        "print('pid', p.pid, flush=True)\n" +
        "print('status', p.wait(), flush=True)\n";

    private static string? FindOnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, program)).FirstOrDefault(File.Exists);
}

/// <summary>A child whose end is observed exactly: killed by which signal, or exited with which code.</summary>
internal sealed class WatchedChild : IDisposable
{
    private readonly Child _child;

    private WatchedChild(Child child, int pid)
    {
        _child = child;
        Pid = pid;
    }

    /// <summary>The pid of the dotnet process itself (not of a wrapper).</summary>
    internal int Pid { get; }

    internal static WatchedChild Start(string[] launcher, params string[] args)
    {
        if (Signals.Python is { } python)
        {
            var child = Child.StartVia([python, "-c", Signals.StatusWrapper, .. launcher], args);
            string first = child.ReadLine();
            Assert.StartsWith("pid ", first);
            return new WatchedChild(child, int.Parse(first[4..]));
        }
        var direct = Child.StartVia(launcher, args);
        return new WatchedChild(direct, direct.Pid);
    }

    internal Child Child => _child;

    /// <summary>Waits for the end: -N when killed by signal N, otherwise the exit code. Without python3
    /// it falls back to .NET's ExitCode and maps 128 + N to -N.</summary>
    internal int WaitForEnd(int timeoutMs = 60_000)
    {
        if (Signals.Python is not null)
        {
            string line = _child.ReadLine(timeoutMs);
            while (!line.StartsWith("status ", StringComparison.Ordinal)) line = _child.ReadLine(timeoutMs);
            _child.WaitForExit(timeoutMs);
            return int.Parse(line[7..]);
        }
        int code = _child.WaitForExit(timeoutMs);
        return code > 128 ? -(code - 128) : code;
    }

    public void Dispose()
    {
        try { if (Signals.Python is not null && !_child.HasExited) Signals.Send(Pid, "KILL"); }
        catch (Exception) { /* already gone */ }
        _child.Dispose();
    }
}

/// <summary>Segments written byte by byte into /dev/shm (damaged or hand-made headers).</summary>
internal static class SegmentFiles
{
    /// <summary>Recomputes header_crc32 over the identity region and the field table.</summary>
    internal static void FixCrc(byte[] b)
    {
        int headerSize = (int)Math.Min(System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(0x00C)), (uint)b.Length);
        uint crc = Crc32.Compute(b.AsSpan(0, 0x180));
        if (headerSize > 0x200) crc = Crc32.Append(crc, b.AsSpan(0x200, headerSize - 0x200));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(0x184), crc);
    }

    /// <summary>The bytes of a real segment made by <paramref name="create"/> (disposed afterwards).</summary>
    internal static byte[] Of(Func<string, IDisposable> create)
    {
        string name = Names.Unique("src");
        using (create(name))
            return File.ReadAllBytes(Names.ShmPath(name));
    }

    /// <summary>Writes <paramref name="bytes"/> as a segment, runs <paramref name="use"/>, removes it;
    /// returns what <paramref name="use"/> threw, or null.</summary>
    internal static Exception? Try(byte[] bytes, Action<string> use)
    {
        string name = Names.Unique("file");
        File.WriteAllBytes(Names.ShmPath(name), bytes);
        try
        {
            use(name);
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
        finally
        {
            File.Delete(Names.ShmPath(name));
        }
    }
}
