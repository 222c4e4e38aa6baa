using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharedBridge.Cli.Segments;

/// <summary>The --json schema of docs/cli.md, the same keys and values as the Python CLI (sharedbridge/cli.py).</summary>
internal static class SegmentJson
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    internal static string Write(JsonNode? node) => node?.ToJsonString(Indented) ?? "null";

    /// <summary>One segment as `ls --json` shows it.</summary>
    internal static JsonObject Info(SegmentInfo i) => new()
    {
        ["name"] = i.Name,
        ["status"] = Words.Status(i.Status),
        ["reason"] = i.Reason,
        ["kind"] = i.Kind is { } k ? Words.Kind(k) : null,
        ["typecode"] = i.TypeCode is { } c ? Words.TypeCode(c) : null,
        ["type_name"] = i.TypeName,
        ["length"] = i.Length,
        ["shape"] = i.Shape is { } shape ? new JsonArray(shape.Select(d => (JsonNode?)d).ToArray()) : null,
        ["ndim"] = i.Ndim,
        ["bytes"] = i.Bytes,
        ["lock"] = i.Lock is { } l ? Words.Lock(l) : null,
        ["lock_name"] = i.LockName,
        ["lock_state"] = Words.LockState(i),
        ["lock_holder_pid"] = i.LockHolderPid,
        ["recoveries"] = i.Recoveries,
        ["state"] = i.State is { } s ? Words.State(s) : null,
        ["lifetime"] = i.Lifetime is { } lt ? Words.Lifetime(lt) : null,
        ["creator_pid"] = i.CreatorPid,
        ["creator_start_time"] = i.CreatorStartTime,
        ["creator_alive"] = i.CreatorAlive,
        ["created_unix_ns"] = i.CreatedUnixNanoseconds,
        ["age_seconds"] = i.Age is { } age ? Math.Round(age.TotalSeconds, 3) : null,
        ["mapped_by"] = new JsonArray(i.MappedBy.Select(p => (JsonNode?)p).ToArray()),
        ["sync"] = Sync(i),
        ["queue"] = Queue(i),
    };

    /// <summary>A queue's words (docs/format.md section 11.2).</summary>
    internal static JsonObject? Queue(SegmentInfo i) => i.Queue is not { } q ? null : new JsonObject
    {
        ["count"] = q.Count, ["capacity"] = q.Capacity, ["bytes_used"] = q.BytesUsed, ["max_messages"] = q.MaxMessages,
        ["unfinished"] = q.Unfinished, ["completed"] = q.Completed, ["puts"] = q.Puts, ["gets"] = q.Gets,
        ["flavour"] = q.Flavour switch { 0 => "Queue", 1 => "SimpleQueue", 2 => "JoinableQueue", 3 => "Pipe", _ => "corrupt" }, ["readers_waiting"] = q.ReadersWaiting, ["writers_waiting"] = q.WritersWaiting,
    };

    /// <summary>The decoded words of a synchronization segment, the keys of the Python CLI in its order.</summary>
    internal static JsonObject? Sync(SegmentInfo i)
    {
        if (i.Sync is not { } w) return null;
        var o = new JsonObject { ["waiters"] = w.Waiters };
        switch (i.Kind)
        {
            case SegmentKind.Event:
                o["flag"] = w.Flag;
                break;
            case SegmentKind.Semaphore:
                o["value"] = w.Value;
                o["max_value"] = w.MaxValue;
                o["bounded"] = w.Bounded;
                break;
            case SegmentKind.Barrier:
                o["parties"] = w.Parties;
                o["count"] = w.Count;
                o["state"] = w.BarrierState;
                break;
        }
        return o;
    }

    /// <summary>One segment as `inspect --json` shows it.</summary>
    internal static JsonObject Inspect(SegmentInfo i)
    {
        var o = Info(i);
        var h = i.Header;
        o["header"] = h is null ? null : new JsonObject
        {
            ["version"] = h.Version,
            ["compat_version"] = h.CompatVersion,
            ["header_size"] = h.HeaderSize,
            ["kind"] = (int)h.Kind,
            ["typecode"] = Words.TypeCode(h.TypeCode),
            ["element_size"] = h.ElementSize,
            ["element_count"] = h.Length,
            ["data_offset"] = h.DataOffset,
            ["data_size"] = h.DataSize,
            ["lock_kind"] = (int)h.LockKind,
            ["lock_abi"] = h.LockAbi,
            ["lock_size"] = h.LockSize,
            ["lock_offset"] = h.LockOffset,
            ["lock_type"] = (int)h.LockType,
            ["lifetime_code"] = (int)h.Lifetime,
            ["type_name"] = h.TypeName,
            ["lock_name"] = h.LockName,
            ["creator_pid"] = i.CreatorPid,
            ["creator_start_time"] = h.CreatorStartTime,
            ["created_unix_ns"] = h.CreatedUnixNanoseconds,
            ["state"] = h.State,
            ["header_crc32"] = h.HeaderCrc32,
            ["recovery_count"] = h.RecoveryCount,
            ["last_recovered_pid"] = i.LastRecoveredPid,
        };
        o["fields"] = h is null ? new JsonArray() : FieldTree(h.Fields, -1);
        o["data"] = new JsonArray(i.Elements.Select(Value).ToArray());
        return o;
    }

    /// <summary>The field table as nested nodes: name, typecode, offset, count, item_size, fields.</summary>
    internal static JsonArray FieldTree(IReadOnlyList<StructField> fields, int parent) =>
        new(fields.Select((f, index) => (f, index)).Where(x => x.f.Parent == parent).Select(x => (JsonNode?)new JsonObject
        {
            ["name"] = x.f.Name,
            ["typecode"] = x.f.TypeCode.ToString(),
            ["offset"] = x.f.Offset,
            ["count"] = x.f.Count,
            ["item_size"] = x.f.ItemSize,
            ["fields"] = FieldTree(fields, x.index),
        }).ToArray());

    /// <summary>An element decoded by SegmentDirectory.Inspect as a JSON value.</summary>
    internal static JsonNode? Value(object? v) => v switch
    {
        null => null,
        long n => n,
        ulong n => n,
        double d => d,
        bool b => b,
        string s => s,
        IReadOnlyDictionary<string, object?> d => new JsonObject(d.Select(p => KeyValuePair.Create(p.Key, Value(p.Value)))),
        IEnumerable<object?> list => new JsonArray(list.Select(Value).ToArray()),
        _ => JsonValue.Create(v.ToString()),
    };
}

/// <summary>The words both CLIs use for enums and states (docs/cli.md).</summary>
internal static class Words
{
    internal static string Status(SegmentStatus s) => s.ToString().ToLowerInvariant();

    internal static string Kind(SegmentKind k) => k.ToString().ToLowerInvariant();

    internal static string TypeCode(char c) => c == '\0' ? "" : c.ToString();

    internal static string Lock(LockKind k) => k switch
    {
        LockKind.None => "none",
        LockKind.Embedded => "embedded",
        LockKind.External => "external",
        _ => "process-local",
    };

    internal static string? LockState(SegmentInfo i) => i.LockProblem ?? i.LockState switch
    {
        null => null,
        SharedBridge.LockState.Free => "free",
        SharedBridge.LockState.Held => "held",
        SharedBridge.LockState.OwnerDead => "owner dead",
        SharedBridge.LockState.NotRecoverable => "not recoverable",
        _ => "corrupt",
    };

    internal static string Lifetime(SegmentLifetime l) => l switch
    {
        SegmentLifetime.Creator => "creator",
        SegmentLifetime.LastCloser => "last-closer",
        _ => "persistent",
    };

    internal static string State(int s) => s switch { 0 => "initializing", 1 => "ready", 2 => "retired", _ => "corrupt" };
}
