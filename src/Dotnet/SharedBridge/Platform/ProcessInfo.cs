using SharedBridge.Format;

namespace SharedBridge.Platform;

/// <summary>Identity of this process as recorded in headers (creator_pid, creator_start_time).</summary>
internal static class ProcessInfo
{
    internal static int Pid { get; } = Environment.ProcessId;

    /// <summary>Field 22 of /proc/self/stat (clock ticks after boot), 0 if unavailable.</summary>
    internal static ulong StartTime { get; } = CreatorIdentity.StartTimeOf(Pid);

    /// <summary>Pids whose /proc/PID/maps show a /dev/shm object with this inode mapped (where readable).</summary>
    internal static IReadOnlyList<int> ProcessesMapping(ulong inode)
    {
        string wanted = inode.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var pids = new List<int>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                foreach (string line in File.ReadLines(Path.Combine(dir, "maps")))
                {
                    // address perms offset dev inode path
                    string[] parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
                    if (parts.Length == 6 && parts[4] == wanted && parts[5].StartsWith("/dev/shm/", StringComparison.Ordinal))
                    {
                        pids.Add(pid);
                        break;
                    }
                }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        pids.Sort();
        return pids;
    }

    internal static long UnixNanosecondsNow() => (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
}
