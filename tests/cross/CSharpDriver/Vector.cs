using System.Text.Json;

namespace SharedBridge.CrossDriver;

/// <summary>A test vector (tests/cross/vectors/*.json): what segment to build and what it holds.</summary>
public sealed class Vector
{
    public required string Id { get; init; }
    public required string Object { get; init; }        // array | value | chararray | ndarray | lock | event | semaphore | condition | barrier

    /// <summary>The synchronization objects (docs/format.md section 10) and their kinds; their values are the data words (16, then a semaphore's or barrier's holder table).</summary>
    public static readonly IReadOnlyDictionary<string, int> SyncKinds =
        new Dictionary<string, int> { ["event"] = 4, ["semaphore"] = 5, ["condition"] = 6, ["barrier"] = 7 };

    public bool IsSync => SyncKinds.ContainsKey(Object);
    public char TypeCode { get; init; }
    public required string LockKind { get; init; }      // none | embedded | external
    public string? LockType { get; init; }              // lock | rlock (lock-only and external)
    public string? LockSegment { get; init; }           // the fixed lock-segment name of an external lock
    public string? StructName { get; init; }

    /// <summary>The type_name writers record (docs/format.md section 4.1): "type_name" when the vector
    /// gives it, else the structure's name.</summary>
    public string? TypeName { get; init; }
    /// <summary>The segment lifetime (docs/format.md section 8); default Persistent: a producer of the
    /// suite leaves its segments for consumers that start after it ended.</summary>
    public SegmentLifetime Lifetime { get; init; } = SegmentLifetime.Persistent;

    /// <summary>The vector names its lifetime (else the producer chose: host Creator, batch Persistent).</summary>
    public bool LifetimeGiven { get; init; }
    public int Length { get; init; }

    /// <summary>An n-dimensional array's shape (docs/format.md section 12), dimension 0 first; empty otherwise.</summary>
    public long[] Shape { get; init; } = [];
    public JsonElement Values { get; init; }

    /// <summary>A queue vector (docs/format.md section 11): the ring's bytes, max_messages (0x7FFFFFFF unbounded) and flavour.</summary>
    public long Capacity { get; init; }
    public int MaxMessages { get; init; }
    public string? Flavour { get; init; }

    public static Vector Load(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        JsonElement root = doc.RootElement.Clone();
        JsonElement lockSpec = root.GetProperty("lock");
        return new Vector
        {
            Id = root.GetProperty("id").GetString()!,
            Object = root.GetProperty("object").GetString()!,
            LifetimeGiven = root.TryGetProperty("lifetime", out _),
            Lifetime = root.TryGetProperty("lifetime", out var lifetime) ? lifetime.GetString() switch
            {
                "creator" => SegmentLifetime.Creator,
                "last-closer" => SegmentLifetime.LastCloser,
                "persistent" => SegmentLifetime.Persistent,
                var other => throw new FormatException($"unknown lifetime '{other}'"),
            } : SegmentLifetime.Persistent,
            TypeCode = root.TryGetProperty("typecode", out var tc) ? tc.GetString()![0] : '\0',
            LockKind = lockSpec.GetProperty("kind").GetString()!,
            LockType = lockSpec.TryGetProperty("type", out var lt) ? lt.GetString() : null,
            LockSegment = lockSpec.TryGetProperty("segment", out var ls) ? ls.GetString() : null,
            StructName = root.TryGetProperty("struct", out var st) ? st.GetProperty("name").GetString() : null,
            TypeName = root.TryGetProperty("struct", out var st2)
                ? (st2.TryGetProperty("type_name", out var tn) ? tn : st2.GetProperty("name")).GetString() : null,
            Length = root.GetProperty("object").GetString() switch
            {
                "chararray" => root.GetProperty("length").GetInt32(),
                "array" or "event" or "semaphore" or "condition" or "barrier" => root.GetProperty("values").GetArrayLength(),
                "value" => 1,
                "ndarray" => checked((int)root.GetProperty("shape").EnumerateArray().Aggregate(1L, (p, d) => p * d.GetInt64())),
                "queue" => 256 + root.GetProperty("capacity").GetInt32(),
                _ => 0,
            },
            Values = root.TryGetProperty("values", out var values) ? values : default,
            Shape = root.TryGetProperty("shape", out var shape) ? shape.EnumerateArray().Select(d => d.GetInt64()).ToArray() : [],
            Capacity = root.TryGetProperty("capacity", out var cap) ? cap.GetInt64() : 0,
            MaxMessages = root.TryGetProperty("max_messages", out var max) ? max.GetInt32() : 0,
            Flavour = root.TryGetProperty("flavour", out var fl) ? fl.GetString() : null,
        };
    }

    /// <summary>A char array's full contents: the vector's bytes (latin-1), NUL-padded to its length.</summary>
    public byte[] CharBytes()
    {
        string text = Values.GetString()!;
        var bytes = new byte[Length];
        for (int i = 0; i < text.Length; i++) bytes[i] = checked((byte)text[i]);
        return bytes;
    }

    /// <summary>The elements as JSON items (a value is a one-element list).</summary>
    public IReadOnlyList<JsonElement> Elements() =>
        Object is "array" or "ndarray" || IsSync ? Values.EnumerateArray().ToList() : [Values];

    /// <summary>Data word <paramref name="index"/> of a synchronization vector.</summary>
    public uint Word(int index) => Values[index].GetUInt32();
}
