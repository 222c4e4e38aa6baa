namespace SharedBridge.Cli.Segments;

/// <summary>`sharedbridge ls [--all] [--prefix P] [--json]`.</summary>
public static class LsCommand
{
    private const string Help = """
        usage: sharedbridge ls [-h] [--all] [--prefix PREFIX] [--json] [--dir DIR]

        List the SharedBridge segments in /dev/shm: kind, element type, length, size, lock and its state,
        state, creator, the processes that map each one, age.

        options:
          -h, --help       show this help message and exit
          --all            also list objects that are not SharedBridge segments
          --prefix PREFIX  only names starting with PREFIX
          --json           one JSON array (docs/cli.md)
          --dir DIR        the directory backend's directory (docs/format.md section 1.3) instead of
                           /dev/shm; default: SHAREDBRIDGE_DIR
        """;

    public static int Run(string[] args)
    {
        var a = Arguments.Parse(args, ["--all", "--json"], ["--prefix", "--dir"], 0);
        if (a.Help) { Console.WriteLine(Help); return 0; }
        var infos = SegmentDirectory.List(a.Has("--all"), a.Value("--prefix"), a.Value("--dir"));
        if (a.Has("--json"))
        {
            Console.WriteLine(SegmentJson.Write(new System.Text.Json.Nodes.JsonArray(infos.Select(i => (System.Text.Json.Nodes.JsonNode?)SegmentJson.Info(i)).ToArray())));
            return 0;
        }
        var rows = new List<string[]>
        {
            new[] { "NAME", "KIND", "TYPE", "LENGTH", "SYNC", "BYTES", "LOCK", "LOCK STATE", "RECOVERIES", "STATE", "LIFETIME", "CREATOR", "MAPPED BY", "AGE" },
        };
        foreach (var i in infos)
        {
            if (i.Status != SegmentStatus.Ok)
            {
                rows.Add([i.Name, "-", "-", "-", "-", TextOutput.Text(i.Bytes), "-", "-", "-",
                    i.State is { } s ? Words.State(s) : Words.Status(i.Status), "-", "-", TextOutput.Pids(i.MappedBy), "-", i.Reason ?? ""]);
                continue;
            }
            rows.Add([i.Name, Words.Kind(i.Kind!.Value), TextOutput.TypeText(i), TextOutput.LengthText(i), TextOutput.SyncText(i), $"{i.Bytes}",
                TextOutput.LockText(i), TextOutput.LockStateText(i), TextOutput.Text(i.Recoveries), Words.State(i.State!.Value),
                Words.Lifetime(i.Lifetime!.Value), TextOutput.CreatorText(i), TextOutput.Pids(i.MappedBy), TextOutput.AgeText(i.Age!.Value)]);
        }
        Console.WriteLine(TextOutput.Table(rows));
        return 0;
    }
}

/// <summary>`sharedbridge inspect NAME [--data N] [--json]`: exit status 1 when the object is not a usable segment.</summary>
public static class InspectCommand
{
    private const string Help = """
        usage: sharedbridge inspect [-h] [--data N] [--json] name

        Show one segment: its whole decoded header, the field table as a tree, its lock's state and its first
        elements.

        positional arguments:
          name

        options:
          -h, --help  show this help message and exit
          --data N    also show the first N elements (read without the lock)
          --json      one JSON object (docs/cli.md)
          --dir DIR   the directory backend's directory (docs/format.md section 1.3) instead of
                      /dev/shm; default: SHAREDBRIDGE_DIR
        """;

    public static int Run(string[] args)
    {
        var a = Arguments.Parse(args, ["--json"], ["--data", "--dir"], 1);
        if (a.Help) { Console.WriteLine(Help); return 0; }
        string name = a.Positional(0);
        var info = SegmentDirectory.Inspect(name, a.Count("--data"), a.Value("--dir"));
        Console.WriteLine(a.Has("--json") ? SegmentJson.Write(SegmentJson.Inspect(info)) : TextOutput.Inspect(info));
        if (info.Status == SegmentStatus.Ok) return 0;
        Console.Error.WriteLine($"{Commands.Prog} inspect: {name}: {Words.Status(info.Status)}: {info.Reason}");
        return 1;
    }
}

/// <summary>`sharedbridge reap [--yes] [--prefix P] [--json]`: a dry run unless --yes (SegmentReaper.Reap).</summary>
public static class ReapCommand
{
    private const string Help = """
        usage: sharedbridge reap [-h] [--yes] [--prefix PREFIX] [--json] [--dir DIR]

        Remove the SharedBridge segments that are garbage (docs/format.md section 8): a 'creator' segment whose
        creator is gone, a 'last-closer' segment that no process holds open. Persistent, version-1, corrupt,
        foreign and other users' objects are never touched. A dry run unless --yes.

        options:
          -h, --help       show this help message and exit
          --yes            really remove them
          --prefix PREFIX  only names starting with PREFIX
          --json           one JSON array (docs/cli.md)
          --dir DIR        the directory backend's directory (docs/format.md section 1.3) instead of
                           /dev/shm; default: SHAREDBRIDGE_DIR
        """;

    public static int Run(string[] args)
    {
        var a = Arguments.Parse(args, ["--yes", "--json"], ["--prefix", "--dir"], 0);
        if (a.Help) { Console.WriteLine(Help); return 0; }
        bool yes = a.Has("--yes");
        var reaped = SegmentReaper.Reap(dryRun: !yes, prefix: a.Value("--prefix"), directory: a.Value("--dir"));
        if (a.Has("--json"))
        {
            Console.WriteLine(SegmentJson.Write(new System.Text.Json.Nodes.JsonArray(reaped.Select(r => (System.Text.Json.Nodes.JsonNode?)new System.Text.Json.Nodes.JsonObject
            {
                ["name"] = r.Name, ["reason"] = r.Reason, ["removed"] = r.Removed,
                ["mapped_by"] = new System.Text.Json.Nodes.JsonArray(r.MappedBy.Select(p => (System.Text.Json.Nodes.JsonNode?)p).ToArray()),
            }).ToArray())));
            return 0;
        }
        foreach (var r in reaped)
            Console.WriteLine($"{(r.Removed ? "removed" : "would remove")} {r.Name}: {r.Reason}{TextOutput.StillMappedText(r.MappedBy, r.Removed)}");
        // The user's own filters: the suggested command removes what this run listed.
        string command = $"{Commands.Prog} reap --yes" + (a.Value("--prefix") is { } prefix ? $" --prefix {TextOutput.ShellQuote(prefix)}" : "")
            + (a.Value("--dir") is { } dir ? $" --dir {TextOutput.ShellQuote(dir)}" : "");
        Console.WriteLine(reaped.Count == 0 ? "nothing to reap"
            : yes ? $"removed {reaped.Count} segment(s)"
            : $"dry run: {reaped.Count} segment(s) would be removed; run `{command}` to remove them");
        return 0;
    }
}

/// <summary>`sharedbridge unlink NAME`.</summary>
public static class UnlinkCommand
{
    private const string Help = """
        usage: sharedbridge unlink [-h] [--dir DIR] name

        Remove the name of segment NAME from /dev/shm; processes that map it keep their memory.

        positional arguments:
          name

        options:
          -h, --help  show this help message and exit
          --dir DIR   the directory backend's directory (docs/format.md section 1.3) instead of
                      /dev/shm; default: SHAREDBRIDGE_DIR
        """;

    public static int Run(string[] args)
    {
        var a = Arguments.Parse(args, [], ["--dir"], 1);
        if (a.Help) { Console.WriteLine(Help); return 0; }
        SharedSegment.Unlink(a.Positional(0), a.Value("--dir"));
        Console.WriteLine($"unlinked {a.Positional(0)}");
        return 0;
    }
}

/// <summary>`sharedbridge reset-lock NAME` (docs/format.md section 7.4).</summary>
public static class ResetLockCommand
{
    private const string Help = """
        usage: sharedbridge reset-lock [-h] [--dir DIR] name

        Re-initialize the lock of segment NAME when it is not recoverable or corrupt (docs/format.md section
        7.4); refused while another process maps the segment. A healthy lock is left alone.

        positional arguments:
          name

        options:
          -h, --help  show this help message and exit
          --dir DIR   the directory backend's directory (docs/format.md section 1.3) instead of
                      /dev/shm; default: SHAREDBRIDGE_DIR
        """;

    public static int Run(string[] args)
    {
        var a = Arguments.Parse(args, [], ["--dir"], 1);
        if (a.Help) { Console.WriteLine(Help); return 0; }
        string name = a.Positional(0);
        Console.WriteLine(SharedLock.Reset(name, a.Value("--dir")) ? $"reset the lock of {name}" : $"the lock of {name} is healthy: nothing done");
        return 0;
    }
}
