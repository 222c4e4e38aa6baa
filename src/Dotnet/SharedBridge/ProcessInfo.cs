namespace SharedBridge;

/// <summary>Identity of this process as recorded in headers (creator_pid, creator_start_time).</summary>
internal static class ProcessInfo
{
    internal static int Pid { get; } = Environment.ProcessId;

    /// <summary>Field 22 of /proc/self/stat (clock ticks after boot), 0 if unavailable.</summary>
    internal static ulong StartTime { get; } = ReadStartTime(Pid);

    internal static ulong ReadStartTime(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
            int close = stat.LastIndexOf(')');
            if (close < 0) return 0;
            string[] rest = stat[(close + 2)..].Split(' ');
            // rest[0] is field 3, so field 22 is rest[19].
            return rest.Length > 19 && ulong.TryParse(rest[19], out ulong ticks) ? ticks : 0;
        }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }

    internal static long UnixNanosecondsNow() => (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
}
