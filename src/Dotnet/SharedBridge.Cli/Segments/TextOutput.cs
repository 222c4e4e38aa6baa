using System.Text.Json.Nodes;

namespace SharedBridge.Cli.Segments;

/// <summary>The human-readable forms of ls and inspect, laid out like the Python CLI's.</summary>
internal static class TextOutput
{
    internal static string Table(IReadOnlyList<string[]> rows)
    {
        int columns = rows[0].Length;
        var widths = Enumerable.Range(0, columns).Select(c => rows.Where(r => c < r.Length).Max(r => r[c].Length)).ToArray();
        return string.Join('\n', rows.Select(r =>
            string.Join("  ", r.Select((cell, c) => c < columns ? cell.PadRight(widths[c]) : cell)).TrimEnd()));
    }

    internal static string Text(object? v) => v?.ToString() ?? "-";

    internal static string Pids(IReadOnlyList<int> pids) => pids.Count == 0 ? "-" : string.Join(',', pids);

    /// <summary>TYPE: the element type; "-" for a lock and the synchronization kinds (their 16 words are not
    /// data: SYNC decodes them).</summary>
    internal static string TypeText(SegmentInfo i) => i.Sync is null && i.Queue is null && i.ElementType is { Length: > 0 } t ? t : "-";

    /// <summary>LENGTH: the elements (then an n-dimensional array's shape: <c>24 [2, 3, 4]</c>); a queue's depth (its ready messages); "-" for the synchronization kinds.</summary>
    internal static string LengthText(SegmentInfo i) => i.Queue is { } q ? $"{q.Count}" : i.Shape is { } shape ? $"{i.Length} {ShapeText(shape)}"
        : i.Sync is null ? $"{i.Length}" : "-";

    /// <summary>An n-dimensional array's shape as the CLIs print it: <c>[2, 3, 4]</c>, <c>[]</c> for rank 0.</summary>
    internal static string ShapeText(IReadOnlyList<long> shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>SYNC: a synchronization object's words for people (docs/cli.md), "-" otherwise.</summary>
    internal static string SyncText(SegmentInfo i)
    {
        if (i.Queue is { } q) return QueueText(q);
        if (i.Sync is not { } w) return "-";
        string text = i.Kind switch
        {
            SegmentKind.Event => w.Flag switch { 0 => "clear", 1 => "set", var f => $"flag {f} (corrupt)" },
            SegmentKind.Semaphore => w.Bounded != 0 ? $"value {w.Value} of at most {w.MaxValue}" : $"value {w.Value}",
            SegmentKind.Barrier => $"{w.BarrierState}, {w.Count} of {w.Parties} parties waiting",
            _ => "",
        };
        if (i.Kind == SegmentKind.Barrier) return text;
        string waiting = $"{w.Waiters} waiting";
        return text.Length > 0 && w.Waiters != 0 ? $"{text}, {waiting}" : text.Length > 0 ? text : waiting;
    }

    /// <summary>A queue's depth, capacity and counts for people (SYNC column of ls, inspect).</summary>
    internal static string QueueText(QueueStatus q)
    {
        string depth = q.MaxMessages == 0x7FFFFFFF ? $"{q.Count} ready" : $"{q.Count} of {q.MaxMessages} ready";
        string text = $"{depth}, {q.BytesUsed} of {q.Capacity} bytes, {q.Puts} put, {q.Gets} got";
        if (q.Unfinished != 0) text += $", {q.Unfinished} unfinished";
        if (q.ReadersWaiting != 0) text += $", {q.ReadersWaiting} reading";
        if (q.WritersWaiting != 0) text += $", {q.WritersWaiting} writing";
        return q.Completed ? text + ", completed" : text;
    }

    /// <summary>What a reap line adds when other processes still map the segment.</summary>
    internal static string StillMappedText(IReadOnlyList<int> pids, bool removed)
    {
        if (pids.Count == 0) return "";
        string who = pids.Count == 1 ? $"pid {pids[0]}" : $"pids {Pids(pids)}";
        string them = pids.Count == 1 ? "it" : "them";
        return removed
            ? $" (still mapped by {who}: memory stays valid for {them}, the name is gone)"
            : $" (still mapped by {who}: memory would stay valid for {them}, the name would be gone)";
    }

    /// <summary>Python's shlex.quote: the word as a POSIX shell reads it back.</summary>
    internal static string ShellQuote(string s)
    {
        if (s.Length == 0) return "''";
        if (s.All(c => c < 128 && (char.IsAsciiLetterOrDigit(c) || "_@%+=:,./-".Contains(c)))) return s;
        return "'" + s.Replace("'", "'\"'\"'") + "'";
    }

    internal static string LockText(SegmentInfo i) => i.Lock == LockKind.External ? $"-> {i.LockName}" : Words.Lock(i.Lock!.Value);

    internal static string LockStateText(SegmentInfo i) => Words.LockState(i) switch
    {
        null => "-",
        "held" when i.LockHolderPid is { } pid => $"held by pid {pid}",
        "owner dead" => "owner dead: will be recovered",
        var word => word,
    };

    internal static string CreatorText(SegmentInfo i) => $"{i.CreatorPid} ({(i.CreatorAlive == true ? "alive" : "dead")})";

    internal static string AgeText(TimeSpan age)
    {
        long s = (long)age.TotalSeconds;
        if (s < 60) return $"{s}s";
        if (s < 3600) return $"{s / 60}m{s % 60:00}s";
        if (s < 86400) return $"{s / 3600}h{s % 3600 / 60:00}m";
        return $"{s / 86400}d{s % 86400 / 3600:00}h";
    }

    internal static string Inspect(SegmentInfo i)
    {
        var o = new List<string> { $"name: {i.Name}", $"status: {Words.Status(i.Status)}" };
        if (i.Status != SegmentStatus.Ok)
        {
            o.Add($"reason: {i.Reason}");
            o.Add($"bytes: {Text(i.Bytes)}");
        }
        else
        {
            o.AddRange([
                $"kind: {Words.Kind(i.Kind!.Value)}", $"element type: {TypeText(i)}",
                $"length: {LengthText(i)}", .. (i.Shape is { } shape ? (string[])[$"shape: {ShapeText(shape)}", $"ndim: {shape.Count}"] : []),
                $"sync: {SyncText(i)}", $"bytes: {i.Bytes}", $"lock: {LockText(i)}", $"lock state: {LockStateText(i)}",
                $"recoveries: {Text(i.Recoveries)}", $"state: {Words.State(i.State!.Value)}",
                $"lifetime: {Words.Lifetime(i.Lifetime!.Value)}", $"creator: {CreatorText(i)}",
                $"age: {AgeText(i.Age!.Value)}",
            ]);
        }
        o.Add($"mapped by: {Pids(i.MappedBy)}");
        if (i.Header is { } h)
        {
            o.Add("header:");
            foreach (var (key, value) in SegmentJson.Inspect(i)["header"]!.AsObject())
                o.Add(value is JsonValue v && v.TryGetValue(out string? s) ? $"  {key}: '{s}'" : $"  {key}: {value}");
            if (h.Fields.Count > 0)
            {
                o.Add($"fields of {(h.TypeName.Length > 0 ? h.TypeName : "T")}:");
                TreeLines(h.Fields, -1, 1, o);
            }
        }
        if (i.Elements.Count > 0)
        {
            o.Add($"data (first {i.Elements.Count}):");
            for (int n = 0; n < i.Elements.Count; n++) o.Add($"  [{n}] {SegmentJson.Value(i.Elements[n])?.ToJsonString() ?? "null"}");
        }
        return string.Join('\n', o);
    }

    private static void TreeLines(IReadOnlyList<StructField> fields, int parent, int depth, List<string> o)
    {
        for (int index = 0; index < fields.Count; index++)
        {
            var f = fields[index];
            if (f.Parent != parent) continue;
            string count = f.Count != 1 ? $"[{f.Count}]" : "";
            o.Add($"{new string(' ', 2 * depth)}{f.Name}{count}: '{f.TypeCode}' at offset {f.Offset}, {f.ItemSize} bytes each");
            TreeLines(fields, index, depth + 1, o);
        }
    }
}
