using SharedBridge.Format;

namespace SharedBridge.Platform;

/// <summary>Identity of this process as recorded in headers (creator_pid, creator_start_time).</summary>
internal static class ProcessInfo
{
    internal static int Pid { get; } = Environment.ProcessId;

    /// <summary>Field 22 of /proc/self/stat (clock ticks after boot), 0 if unavailable.</summary>
    internal static ulong StartTime { get; } = CreatorIdentity.StartTimeOf(Pid);

    /// <summary>Pids whose /proc/PID/maps show a /dev/shm object (or a file in the directory backend's
    /// <paramref name="directory"/>) with this inode mapped (where readable).</summary>
    internal static IReadOnlyList<int> ProcessesMapping(ulong inode, string? directory = null) =>
        ProcessesMappingAny([inode], directory).TryGetValue(inode, out var pids) ? pids : [];

    /// <summary>Inode -> sorted pids, for the /dev/shm objects of <paramref name="inodes"/> that some
    /// process maps, in one pass over /proc (where readable).</summary>
    internal static Dictionary<ulong, List<int>> ProcessesMappingAny(IEnumerable<ulong> inodes, string? directory = null)
    {
        string where = (directory ?? "/dev/shm") + "/";
        var wanted = inodes.Distinct().ToDictionary(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var found = new Dictionary<ulong, List<int>>();
        if (wanted.Count == 0) return found;
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            var seen = new HashSet<ulong>();
            try
            {
                foreach (string line in File.ReadLines(Path.Combine(dir, "maps")))
                {
                    // address perms offset dev inode path
                    string[] parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
                    if (parts.Length == 6 && wanted.TryGetValue(parts[4], out ulong inode)
                        && parts[5].StartsWith(where, StringComparison.Ordinal) && seen.Add(inode))
                    {
                        if (!found.TryGetValue(inode, out var pids)) found[inode] = pids = [];
                        pids.Add(pid);
                    }
                }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        foreach (var pids in found.Values) pids.Sort();
        return found;
    }

    /// <summary>The pid (thread group) of thread <paramref name="tid"/>, 0 if there is no such thread.</summary>
    internal static int ProcessOfThread(int tid)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{tid}/status"))
                if (line.StartsWith("Tgid:", StringComparison.Ordinal))
                    return int.TryParse(line.AsSpan(5).Trim(), out int pid) ? pid : 0;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }

    internal static long UnixNanosecondsNow() => (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
}
