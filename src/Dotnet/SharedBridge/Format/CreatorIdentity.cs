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
    internal static ulong StartTimeOf(int pid)
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

    /// <summary>True when a process with <paramref name="pid"/> exists and (when recorded, non-zero)
    /// has <paramref name="startTime"/>, so a reused pid does not count.</summary>
    internal static bool IsRunning(int pid, ulong startTime)
    {
        if (pid <= 0 || !Directory.Exists($"/proc/{pid}")) return false;
        return startTime == 0 || StartTimeOf(pid) == startTime;
    }
}
