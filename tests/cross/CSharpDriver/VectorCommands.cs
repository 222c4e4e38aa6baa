using System.Text.Json;

namespace SharedBridge.CrossDriver;

/// <summary>create / verify / host: a segment made from a vector, and the check of one against it.</summary>
public static class VectorCommands
{
    /// <summary>Creates the vector's segment (and its lock segment for an external lock);
    /// returns every object to keep alive, the lock segment last. keep: with the vector's lifetime;
    /// otherwise with lifetime Creator.</summary>
    public static List<IDisposable> Create(Vector vector, string name, string? lockName, bool keep)
    {
        var lifetime = keep ? vector.Lifetime : SegmentLifetime.Creator;
        var created = new List<IDisposable>();
        try
        {
            if (vector.Object == "lock")
            {
                created.Add(CreateLock(vector, name, lifetime));
                return created;
            }
            if (vector.Object == "queue")
            {
                created.Add(SharedQueue.Create(name, new QueueOptions
                {
                    Capacity = vector.Capacity,
                    MaxMessages = vector.MaxMessages == UnboundedQueue ? 0 : vector.MaxMessages,
                    Lifetime = lifetime,
                    Flavour = QueueFlavourOf(vector),
                }));
                return created;
            }
            SharedLock? sharedLock = null;
            if (vector.LockKind == "external")
            {
                sharedLock = CreateLock(vector, lockName ?? throw new ArgumentException("an external-lock vector needs --lock-name"), lifetime);
                created.Add(sharedLock);
            }
            if (vector.IsSync)
            {
                created.Insert(0, CreateSync(vector, name, sharedLock, new SegmentOptions { Lifetime = lifetime }));
                return created;
            }
            var options = new SegmentOptions
            {
                Synchronized = vector.LockKind != "none",
                SharedLock = sharedLock,
                Lifetime = lifetime,
                TypeCode = vector.Object == "chararray" || vector.TypeCode == 'T' ? null : vector.TypeCode,
            };
            created.Insert(0, vector.Object switch
            {
                "chararray" => SharedCharArray.Create(name, vector.CharBytes(), options),
                "array" => ElementKinds.For(vector).CreateArray(name, vector.Elements(), options),
                "value" => ElementKinds.For(vector).CreateValue(name, vector.Values, options),
                "ndarray" => ElementKinds.For(vector).CreateTensor(name, vector.Shape, vector.Elements(), options),
                var o => throw new NotSupportedException($"unknown vector object '{o}'"),
            });
            return created;
        }
        catch
        {
            foreach (var d in created) d.Dispose();
            throw;
        }
    }

    private const int UnboundedQueue = 0x7FFFFFFF;

    private static QueueFlavour QueueFlavourOf(Vector vector) => vector.Flavour switch
    {
        "queue" => QueueFlavour.Queue,
        "simple" => QueueFlavour.SimpleQueue,
        "joinable" => QueueFlavour.JoinableQueue,
        var f => throw new NotSupportedException($"unknown queue flavour '{f}'"),
    };

    /// <summary>A queue opened by name must show the vector's capacity, max_messages and flavour, and be empty.</summary>
    private static Result VerifyQueue(Vector vector, string name, List<string> errors)
    {
        using var q = SharedQueue.Open(name);
        var values = new List<string> { q.Flavour.ToString(), q.Capacity.ToString(), q.MaxMessages.ToString(), q.Count.ToString() };
        var expected = new List<string> { QueueFlavourOf(vector).ToString(), vector.Capacity.ToString(), vector.MaxMessages.ToString(), "0" };
        errors.AddRange(Canonical.Diff(expected, values));
        return new Result(errors.Count == 0, errors, values);
    }

    /// <summary>A synchronization segment whose words are the vector's values, made through the API.</summary>
    private static IDisposable CreateSync(Vector vector, string name, SharedLock? sharedLock, SegmentOptions options) => vector.Object switch
    {
        "event" => CreateEvent(name, vector.Word(3) == 1, options),
        "semaphore" => SharedSemaphore.Create(name, (int)vector.Word(3), vector.Word(5) == 1 ? (int)vector.Word(4) : null, options),
        "barrier" => SharedBarrier.Create(name, (int)vector.Word(3), options),
        _ => SharedCondition.Create(name, sharedLock, options),
    };

    /// <summary>An event set through the API (as Python's driver does: its words then count one set, section 10.2).</summary>
    private static SharedEvent CreateEvent(string name, bool set, SegmentOptions options)
    {
        var ev = SharedEvent.Create(name, false, options);
        if (set) ev.Set();
        return ev;
    }

    /// <summary>The data words of a synchronization segment, read under its lock (an external one included).</summary>
    private static Result VerifySync(Vector vector, string name, List<string> errors)
    {
        using var segment = SharedSegment.Open(name);
        var expected = vector.Elements().Select(e => e.GetUInt32().ToString()).ToList();
        List<string> values;
        if (!segment.TryLock(TimeSpan.FromSeconds(5), out var scope))
        {
            errors.Add("could not acquire the lock within 5 s");
            return new Result(false, errors, []);
        }
        using (scope)
            values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(segment.Data).ToArray().Select(w => w.ToString()).ToList();
        errors.AddRange(Canonical.Diff(expected, values));
        return new Result(errors.Count == 0, errors, values);
    }

    private static SharedLock CreateLock(Vector vector, string name, SegmentLifetime lifetime) =>
        SharedLock.Create(name, new SegmentOptions { Lifetime = lifetime, RecursiveLock = vector.LockType == "rlock" });

    public sealed record Result(bool Ok, IReadOnlyList<string> Errors, IReadOnlyList<string> Values);

    public static Result Verify(Vector vector, string name, string? lockName)
    {
        var errors = new List<string>();
        // A last-closer segment nobody else holds is removed by the first open that is disposed:
        // hold it for the whole check (the last dispose, at the end, then removes it).
        using var hold = vector.Lifetime == SegmentLifetime.LastCloser ? SharedSegment.Open(name) : null;
        CheckHeader(vector, name, lockName, errors);
        if (vector.Object == "lock")
        {
            CheckLockOnly(vector, name, errors);
            return new Result(errors.Count == 0, errors, []);
        }
        if (vector.IsSync) return VerifySync(vector, name, errors);
        if (vector.Object == "queue") return VerifyQueue(vector, name, errors);
        var expected = vector.Object == "chararray"
            ? [Canonical.Hex(vector.CharBytes())]
            : vector.Elements().Select(ElementKinds.For(vector).Canonical).ToList();
        if (vector.Object == "ndarray") expected.Insert(0, "shape=[" + string.Join(",", vector.Shape) + "]");
        using ReadBack read = Open(vector, name);
        errors.AddRange(Canonical.Diff(expected, read.Values));
        if (vector.LockKind != "none" && !read.TryLockOnce(TimeSpan.FromSeconds(5)))
            errors.Add("could not acquire the lock within 5 s");
        return new Result(errors.Count == 0, errors, read.Values);
    }

    private static ReadBack Open(Vector vector, string name)
    {
        if (vector.Object == "chararray")
        {
            var chars = SharedCharArray.Open(name);
            return new ReadBack(chars, [Canonical.Hex(chars.Raw)], timeout =>
            {
                if (!chars.TryLock(timeout, out var scope)) return false;
                scope.Dispose();
                return true;
            });
        }
        var kind = ElementKinds.For(vector);
        return vector.Object switch { "array" => kind.OpenArray(name), "ndarray" => kind.OpenTensor(name), _ => kind.OpenValue(name) };
    }

    /// <summary>What the untyped open reports must match the vector.</summary>
    private static void CheckHeader(Vector vector, string name, string? lockName, List<string> errors)
    {
        using var segment = SharedSegment.Open(name);
        SegmentHeader h = segment.Header;
        int kind = vector.IsSync ? Vector.SyncKinds[vector.Object] : vector.Object switch { "array" or "chararray" => 1, "value" => 2, "queue" => 8, "ndarray" => 9, _ => 3 };
        Expect(errors, "kind", kind, Convert.ToInt32(h.Kind));
        if (vector.Object != "lock")
        {
            Expect(errors, "typecode", vector.TypeCode, h.TypeCode);
            Expect(errors, "length", (long)vector.Length, h.Length);
            Expect(errors, "type name", vector.TypeName ?? "", h.TypeName ?? "");
        }
        int lockKind = vector.LockKind switch { "none" => 0, "embedded" => 1, _ => 2 };
        Expect(errors, "lock kind", lockKind, Convert.ToInt32(h.LockKind));
        if (vector.LockKind == "external") Expect(errors, "lock name", lockName ?? "", h.LockName ?? "");
        if (vector.LifetimeGiven) Expect(errors, "lifetime", vector.Lifetime, h.Lifetime);
        if (vector.Object == "ndarray")
            Expect(errors, "shape", "[" + string.Join(",", vector.Shape) + "]", h.Shape is null ? "(none)" : "[" + string.Join(",", h.Shape) + "]");
    }

    /// <summary>A Lock refuses a second acquire by its holder; an RLock grants it.</summary>
    private static void CheckLockOnly(Vector vector, string name, List<string> errors)
    {
        using var sharedLock = SharedLock.Open(name);
        bool recursive = vector.LockType == "rlock";
        using (sharedLock.Lock(TimeSpan.FromSeconds(5)))
        {
            bool again;
            try
            {
                again = sharedLock.TryLock(TimeSpan.Zero, out var inner);
                if (again) inner.Dispose();
            }
            catch (LockRecursionException) when (!recursive)
            {
                again = false;  // the error-checking lock reports the self-deadlock as an error
            }
            if (again != recursive) errors.Add($"second acquire by the holder returned {again}, expected {recursive}");
        }
    }

    private static void Expect<T>(List<string> errors, string what, T expected, T actual)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual)) errors.Add($"{what}: expected {expected}, found {actual}");
    }

    // ---- the commands ----

    public static int CreateCommand(Vector vector, string name, string? lockName)
    {
        foreach (var d in Create(vector, name, lockName, keep: true)) d.Dispose();
        Json.Emit(new { created = name, @lock = lockName });
        return 0;
    }

    public static int VerifyCommand(Vector vector, string name, string? lockName)
    {
        Result r = Verify(vector, name, lockName);
        Json.Emit(new { ok = r.Ok, errors = r.Errors, values = r.Values });
        return r.Ok ? 0 : 1;
    }

    /// <summary>Creates the segment and keeps it while stdin says "verify"; "exit" (or EOF) disposes it.</summary>
    public static int HostCommand(Vector vector, string name, string? lockName)
    {
        var objects = Create(vector, name, lockName, keep: false);
        Json.Emit(new { ready = name });
        string? line;
        while ((line = Console.In.ReadLine()) != null && line.Trim() != "exit")
        {
            if (line.Trim() != "verify") continue;
            Result r = Verify(vector, name, lockName);
            Json.Emit(new { ok = r.Ok, errors = r.Errors, values = r.Values, exists = File.Exists("/dev/shm/" + name) });
        }
        foreach (var d in objects) d.Dispose();
        Json.Emit(new { closed = name });
        return 0;
    }
}

public static class Json
{
    public static void Emit(object payload)
    {
        Console.Out.WriteLine(JsonSerializer.Serialize(payload));
        Console.Out.Flush();
    }
}
