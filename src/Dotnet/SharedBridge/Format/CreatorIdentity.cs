namespace SharedBridge.Format;

/// <summary>
/// The header's <c>creator_pid</c> + <c>creator_start_time</c> (docs/format.md sections 3.1 and 8):
/// the start time is field 22 of <c>/proc/PID/stat</c>, and a creator is gone when no process with
/// that pid has that start time. Part of the contract, so here rather than in Platform: the public
/// <see cref="SegmentHeader.CreatorIsRunning"/> needs it, and the format layer uses no other layer.
/// </summary>
internal static class CreatorIdentity
{
    /// <summary>Field 22 of /proc/PID/stat (clock ticks after boot), 0 if unavailable.</summary>
    internal static ulong StartTimeOf(int pid) => ReadStat(pid) is { } stat ? stat.StartTime : 0;

    /// <summary>Fields 3 (state) and 22 (start time) of /proc/PID/stat, null if unreadable.</summary>
    private static (char State, ulong StartTime)? ReadStat(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
            int close = stat.LastIndexOf(')');
            if (close < 0) return null;
            string[] rest = stat[(close + 2)..].Split(' ');
            // rest[0] is field 3, so field 22 is rest[19].
            return rest.Length > 19 && rest[0].Length == 1 && ulong.TryParse(rest[19], out ulong ticks)
                ? (rest[0][0], ticks) : null;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>True when a process with <paramref name="pid"/> exists, has not ended and (when recorded,
    /// non-zero) has <paramref name="startTime"/>, so a reused pid does not count. A zombie (state Z: ended,
    /// not yet waited for by its parent) or a dead process (X) is gone (docs/format.md section 8).</summary>
    internal static bool IsRunning(int pid, ulong startTime)
    {
        if (pid <= 0) return false;
        if (ReadStat(pid) is not { } stat)
            return startTime == 0 && Directory.Exists($"/proc/{pid}"); // unreadable: the pid alone decides
        if (stat.State is 'Z' or 'X') return false;
        return startTime == 0 || stat.StartTime == startTime;
    }
}
