using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using SharedBridge;

namespace SharedBridge.CrossDriver;

/// <summary>The C# side of the queue scenarios (docs/format.md section 11): the same workers, arguments
/// and output as cross_queue.py (see SharedBridge.CrossTests/QueueTests.cs and cross_queue.py's
/// docstring for the canonical text of a message and the ledgers).</summary>
public static class QueueWorkers
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan Minute = TimeSpan.FromSeconds(60);

    public static int? Run(string scenario, IReadOnlyList<string> args) => scenario switch
    {
        "q-send-types" => SendTypes(args[0], args[1], args.Count > 2 ? args[2] : "all"),
        "q-recv-types" => RecvTypes(args[0], int.Parse(args[1])),
        "q-produce" => Produce(args[0], ulong.Parse(args[1]), long.Parse(args[2]), int.Parse(args[3]), args[4], args.Count > 5 ? args[5] : "one"),
        "q-consume" => Consume(args[0], args[1], int.Parse(args[2]), long.Parse(args[3]), args.Count > 4 ? args[4] : "take"),
        "q-roundtrip" => RoundTrip(args[0], int.Parse(args[1])),
        "q-complete" => CompleteQueue(args[0]),
        "q-get-each" => GetEach(int.Parse(args[0]), args.Skip(1)),
        "q-big-produce" => BigProduce(args[0], int.Parse(args[1]), int.Parse(args[2])),
        "q-big-consume" => BigConsume(args[0], int.Parse(args[1]), int.Parse(args[2])),
        _ => null,
    };

    private static void Say(object o)
    {
        Console.WriteLine(o as string ?? JsonSerializer.Serialize(o));
        Console.Out.Flush();
    }

    // ---- canonical text (cross_queue.py) ----

    private static string Widened(double v) => Canonical.Of(v);

    private interface IQueueKind
    {
        void WriteScalar(SharedQueue q, JsonElement value);
        void WriteArray(SharedQueue q, IReadOnlyList<JsonElement> values, long[] shape);
        string Expected(JsonElement value);
        string ReadScalar(QueueMessage m);
        IEnumerable<string> ReadArray(QueueMessage m);
    }

    private sealed class Kind<T>(Func<JsonElement, T> parse, Func<T, string> canon) : IQueueKind where T : unmanaged
    {
        public void WriteScalar(SharedQueue q, JsonElement value) => q.Write(parse(value), Long);

        public void WriteArray(SharedQueue q, IReadOnlyList<JsonElement> values, long[] shape) =>
            q.Write<T>((ReadOnlySpan<T>)values.Select(parse).ToArray(), (ReadOnlySpan<long>)shape, Long);

        public string Expected(JsonElement value) => canon(parse(value));
        public string ReadScalar(QueueMessage m) => canon(m.GetValue<T>());
        public IEnumerable<string> ReadArray(QueueMessage m) => m.ToArray<T>().Select(canon);
    }

    private static readonly Dictionary<char, IQueueKind> Kinds = new()
    {
        ['c'] = new Kind<byte>(e => Canonical.Latin1(e)[0], v => Canonical.Hex([v])),
        ['u'] = new Kind<Rune>(Canonical.Rune, v => Canonical.Of(v)),
        ['b'] = new Kind<sbyte>(e => e.GetSByte(), v => Canonical.Of(v)),
        ['B'] = new Kind<byte>(e => e.GetByte(), v => Canonical.Of(v)),
        ['h'] = new Kind<short>(e => e.GetInt16(), v => Canonical.Of(v)),
        ['H'] = new Kind<ushort>(e => e.GetUInt16(), v => Canonical.Of(v)),
        ['i'] = new Kind<int>(e => e.GetInt32(), v => Canonical.Of(v)),
        ['I'] = new Kind<uint>(e => e.GetUInt32(), v => Canonical.Of(v)),
        ['l'] = new Kind<long>(e => e.GetInt64(), v => Canonical.Of(v)),
        ['L'] = new Kind<ulong>(e => e.GetUInt64(), v => Canonical.Of(v)),
        ['q'] = new Kind<long>(e => e.GetInt64(), v => Canonical.Of(v)),
        ['Q'] = new Kind<ulong>(e => e.GetUInt64(), v => Canonical.Of(v)),
        ['f'] = new Kind<float>(e => (float)Canonical.Double(e), v => Widened(v)),
        ['d'] = new Kind<double>(Canonical.Double, v => Widened(v)),
        ['?'] = new Kind<bool>(e => e.GetBoolean(), v => Canonical.Of(v)),
    };

    /// <summary>Typecodes no .NET type writes (section 3.4: byte is B, long is q, ulong is Q): the C# sender skips them.</summary>
    private const string Unwritable = "clL";

    private static string ShapeText(ReadOnlySpan<long> shape) => "shape=[" + string.Join(",", shape.ToArray()) + "];";

    // ---- message types ----

    private static int SendTypes(string name, string messagesPath, string which)
    {
        using var q = SharedQueue.Open(name);
        using var doc = JsonDocument.Parse(File.ReadAllText(messagesPath));
        var sent = new List<object>();
        var skipped = new List<object>();
        foreach (var m in doc.RootElement.GetProperty("messages").EnumerateArray())
        {
            string id = m.GetProperty("id").GetString()!;
            string type = m.GetProperty("type").GetString()!;
            string? skip = null;
            string canon;
            switch (type)
            {
                case "bytes":
                {
                    var data = Convert.FromHexString(m.GetProperty("hex").GetString()!);
                    q.Write((ReadOnlySpan<byte>)data, Long);
                    canon = Canonical.Hex(data);
                    break;
                }
                case "text":
                {
                    string s = m.GetProperty("value").GetString()!;
                    q.Write(s, Long);
                    canon = "s" + Convert.ToHexStringLower(Encoding.UTF8.GetBytes(s));
                    break;
                }
                case "scalar":
                {
                    char tc = m.GetProperty("typecode").GetString()![0];
                    if (Unwritable.Contains(tc)) { skip = $"no .NET type writes a '{tc}' scalar"; canon = ""; break; }
                    Kinds[tc].WriteScalar(q, m.GetProperty("value"));
                    canon = Kinds[tc].Expected(m.GetProperty("value"));
                    break;
                }
                case "record":
                {
                    string structName = m.GetProperty("struct").GetProperty("name").GetString()!;
                    if (structName != "Mixed") throw new NotSupportedException(structName);
                    var v = Mixed.FromJson(m.GetProperty("value"));
                    q.Write(v, Long);
                    canon = v.Canonical_();
                    break;
                }
                case "array":
                {
                    char tc = m.GetProperty("typecode").GetString()![0];
                    long[] shape = m.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                    var values = m.GetProperty("values").EnumerateArray().ToList();
                    if (tc == 'T')
                    {
                        string structName = m.GetProperty("struct").GetProperty("name").GetString()!;
                        if (structName == "Point")
                        {
                            var pts = values.Select(Point.FromJson).ToArray();
                            q.Write<Point>((ReadOnlySpan<Point>)pts, (ReadOnlySpan<long>)shape, Long);
                            canon = ShapeText(shape) + string.Join(",", pts.Select(p => p.Canonical_()));
                        }
                        else
                        {
                            var ms = values.Select(Mixed.FromJson).ToArray();
                            q.Write<Mixed>((ReadOnlySpan<Mixed>)ms, (ReadOnlySpan<long>)shape, Long);
                            canon = ShapeText(shape) + string.Join(",", ms.Select(p => p.Canonical_()));
                        }
                        break;
                    }
                    if (Unwritable.Contains(tc)) { skip = $"no .NET type writes a '{tc}' array"; canon = ""; break; }
                    Kinds[tc].WriteArray(q, values, shape);
                    canon = ShapeText(shape) + string.Join(",", values.Select(Kinds[tc].Expected));
                    break;
                }
                case "pickle":
                    skip = "a Python object: only Python writes one";
                    canon = "";
                    break;
                default:
                    throw new NotSupportedException(type);
            }
            // A Python reader gets a 'u' scalar as a one-character str (docs/api.md, "Queue messages").
            string pyCanon = type == "scalar" && m.GetProperty("typecode").GetString() == "u"
                ? "s" + Convert.ToHexStringLower(Encoding.UTF8.GetBytes(m.GetProperty("value").GetString()!))
                : canon;
            if (skip is null) sent.Add(new { id, canon, py_canon = pyCanon });
            else skipped.Add(new { id, reason = skip });
        }
        Say(new { sent, skipped });
        return 0;
    }

    /// <summary>The canonical text of a message and a description of what .NET made of it.</summary>
    private static (string Canon, string Kind) Describe(QueueMessage m)
    {
        string kind = $"{m.Type}:{(m.Type is QueueMessageType.Scalar or QueueMessageType.Array ? m.Typecode : '-')}";
        switch (m.Type)
        {
            case QueueMessageType.Bytes:
                return (Canonical.Hex(m.Data), kind);
            case QueueMessageType.String:
                return ("s" + Convert.ToHexStringLower(Encoding.UTF8.GetBytes(m.GetString())), kind);
            case QueueMessageType.Scalar:
                return (Kinds[m.Typecode].ReadScalar(m), kind);
            case QueueMessageType.Record:
                return (ByLayout(m, () => m.GetValue<Point>().Canonical_(), () => m.GetValue<Mixed>().Canonical_()),
                    kind + ":" + m.TypeName);
            case QueueMessageType.Array:
            {
                string shape = ShapeText(m.Shape);
                if (m.Typecode == 'T')
                {
                    return (shape + ByLayout(m,
                        () => string.Join(",", m.ToArray<Point>().Select(x => x.Canonical_())),
                        () => string.Join(",", m.ToArray<Mixed>().Select(x => x.Canonical_()))), kind + ":" + m.TypeName);
                }
                return (shape + string.Join(",", Kinds[m.Typecode].ReadArray(m)), kind);
            }
            case QueueMessageType.PythonObject:
            {
                // The clear error of section 11.4 for a typed read, then the raw bytes.
                string error;
                try
                {
                    m.GetValue<long>();
                    error = "none";
                }
                catch (Exception e) when (e is ISharedBridgeException)
                {
                    error = e.GetType().Name + ": " + e.Message;
                }
                return ("raw:" + Convert.ToHexStringLower(m.Data), kind + ":" + error);
            }
            default:
                return ("?", kind);
        }
    }

    /// <summary>The first of the driver's structs whose layout matches the message's field table (a numpy
    /// structured dtype has no type name): the library refuses the others with TypeMismatchException.</summary>
    private static string ByLayout(QueueMessage m, params Func<string>[] readers)
    {
        foreach (var read in readers)
        {
            try
            {
                return read();
            }
            catch (TypeMismatchException)
            {
                // not this struct
            }
        }
        throw new NotSupportedException($"the C# driver has no struct with the layout of '{m.TypeName}'");
    }

    private static int RecvTypes(string name, int count)
    {
        using var q = SharedQueue.Open(name);
        var got = new List<object>();
        for (int i = 0; i < count; i++)
        {
            try
            {
                using var m = q.Read(Long);
                var (canon, kind) = Describe(m);
                got.Add(new { canon, kind });
            }
            catch (QueueTimeoutException)
            {
                got.Add(new { error = "empty" });
                break;
            }
            catch (Exception e) when (e is ISharedBridgeException)
            {
                got.Add(new { error = e.GetType().Name + ": " + e.Message });
            }
        }
        Say(new { received = got });
        return 0;
    }

    // ---- accounting ----

    /// <summary>A memory-mapped file (cross_queue.Ledger): what a process did survives its SIGKILL.</summary>
    private sealed unsafe class Ledger : IDisposable
    {
        private readonly MemoryMappedFile _file;
        private readonly MemoryMappedViewAccessor _view;
        public readonly byte* Bytes;

        public Ledger(string path, long size)
        {
            _file = MemoryMappedFile.CreateFromFile(path, FileMode.OpenOrCreate, null, size, MemoryMappedFileAccess.ReadWrite);
            _view = _file.CreateViewAccessor(0, size);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            Bytes = p + _view.PointerOffset;
        }

        public void Dispose()
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _file.Dispose();
        }
    }

    /// <summary>Puts COUNT messages; MODE one: Write each; many: WriteMany of 64 at a time (the progress ledger then
    /// moves per batch).</summary>
    private static unsafe int Produce(string name, ulong producerId, long count, int size, string progressPath, string mode)
    {
        using var q = SharedQueue.Open(name);
        using var progress = new Ledger(progressPath, 8);
        var msg = new byte[size];
        BinaryPrimitives.WriteUInt64LittleEndian(msg, producerId);
        var sw = Stopwatch.StartNew();
        if (mode == "many")
        {
            var batch = Enumerable.Range(0, 64).Select(_ => (byte[])msg.Clone()).ToArray();
            var memories = batch.Select(b => new ReadOnlyMemory<byte>(b)).ToArray();
            for (long s = 0; s < count;)
            {
                int k = (int)Math.Min(batch.Length, count - s);
                for (int i = 0; i < k; i++) BinaryPrimitives.WriteInt64LittleEndian(batch[i].AsSpan(8), s + i);
                q.WriteMany(memories.AsSpan(0, k), Minute);
                s += k;
                *(long*)progress.Bytes = s;
            }
            Say(new { produced = count, seconds = sw.Elapsed.TotalSeconds });
            return 0;
        }
        for (long s = 0; s < count; s++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(msg.AsSpan(8), s);
            q.Write((ReadOnlySpan<byte>)msg, Minute);
            *(long*)progress.Bytes = s + 1;
        }
        Say(new { produced = count, seconds = sw.Elapsed.TotalSeconds });
        return 0;
    }

    /// <summary>Gets until the queue is completed and drained or a "stop" message; MODE take: Read (zero-copy take,
    /// released on Dispose); copy: TryRead(Span) between waits; many: ReadMany of up to 64 (copies).</summary>
    private static unsafe int Consume(string name, string ledgerPath, int producers, long perProducer, string mode)
    {
        using var q = SharedQueue.Open(name);
        using var ledger = new Ledger(ledgerPath, producers * perProducer);
        var last = Enumerable.Repeat(-1L, producers).ToArray();
        long got = 0, fifo = 0, foreign = 0;
        var buffer = new byte[65536];
        var lengths = new int[64];
        var sw = Stopwatch.StartNew();

        bool Mark(ReadOnlySpan<byte> data)
        {
            if (data.SequenceEqual("stop"u8)) return false;
            got++;
            if (data.Length < 16) { foreign++; return true; }
            ulong p = BinaryPrimitives.ReadUInt64LittleEndian(data);
            ulong s = BinaryPrimitives.ReadUInt64LittleEndian(data[8..]);
            if (p >= (ulong)producers || s >= (ulong)perProducer) { foreign++; return true; }
            if ((long)s <= last[p]) fifo++;
            last[p] = (long)s;
            byte* cell = ledger.Bytes + (long)p * perProducer + (long)s;
            if (*cell < 255) (*cell)++;
            return true;
        }

        while (true)
        {
            try
            {
                if (mode == "many")
                {
                    int k = q.ReadMany(buffer, lengths, Minute);
                    bool stop = false;
                    for (int i = 0, offset = 0; i < k && !stop; offset += lengths[i], i++)
                        stop = !Mark(buffer.AsSpan(offset, lengths[i]));
                    if (stop) break;
                    continue;
                }
                if (mode == "copy" && q.TryRead(buffer, out int n))
                {
                    if (!Mark(buffer.AsSpan(0, n))) break;
                    continue;
                }
                using var m = q.Read(Minute);
                if (!Mark(m.Data)) break;
            }
            catch (QueueCompletedException)
            {
                break;
            }
            catch (QueueTimeoutException)
            {
                Say(new { stuck = got });
                return 1;
            }
        }
        Say(new { consumed = got, fifo_errors = fifo, foreign, seconds = sw.Elapsed.TotalSeconds });
        return 0;
    }

    private static int RoundTrip(string name, int ms)
    {
        using var q = SharedQueue.Open(name);
        var token = Encoding.ASCII.GetBytes($"roundtrip-{Environment.ProcessId}");
        try
        {
            q.Write((ReadOnlySpan<byte>)token, TimeSpan.FromMilliseconds(ms));
            using var m = q.Read(TimeSpan.FromMilliseconds(ms));
            Say(new { roundtrip = m.Data.SequenceEqual(token) });
            return 0;
        }
        catch (QueueTimeoutException e)
        {
            Say(new { roundtrip = false, error = e.GetType().Name });
            return 1;
        }
    }

    private static int CompleteQueue(string name)
    {
        using var q = SharedQueue.Open(name);
        q.Complete();
        Say("completed");
        return 0;
    }

    /// <summary>One read (non-blocking when MS is 0) of each fuzzed queue (cross_queue.q_get_each): one JSON line
    /// each, outcome message, empty, completed, corrupt or other:TYPE (a bug).</summary>
    private static int GetEach(int ms, IEnumerable<string> names)
    {
        foreach (var name in names)
        {
            object r;
            try
            {
                using var q = SharedQueue.Open(name);
                QueueMessage? m;
                if (ms > 0) m = q.Read(TimeSpan.FromMilliseconds(ms));
                else if (!q.TryRead(out m)) m = null;
                if (m is null) r = new { outcome = "empty", name };
                else
                {
                    using (m) r = new { outcome = "message", canon = Describe(m).Canon, name };
                }
            }
            catch (QueueTimeoutException)
            {
                r = new { outcome = "empty", name };
            }
            catch (QueueCompletedException)
            {
                r = new { outcome = "completed", name };
            }
            catch (CorruptSegmentException e)
            {
                r = new { outcome = "corrupt", message = e.Message, name };
            }
            catch (Exception e)
            {
                r = new { outcome = "other:" + e.GetType().Name, message = e.Message, name };
            }
            Say(r);
        }
        return 0;
    }

    // ---- big messages: reusable out-of-line data segments (cross_queue.py q_big_produce / q_big_consume) ----

    private static byte[] BigMessage(int seq, int size)
    {
        var m = new byte[size];
        m.AsSpan(8).Fill((byte)seq);
        BinaryPrimitives.WriteInt64LittleEndian(m, seq);
        return m;
    }

    private static HashSet<string> DataSegments(string name) =>
        Directory.EnumerateFiles("/dev/shm", name + ".m*").Select(f => Path.GetFileName(f)).ToHashSet();

    /// <summary>Writes COUNT byte arrays (shape [SIZE]) of BigMessage; after each notes the queue's data segments;
    /// prints how many distinct ones it saw.</summary>
    private static int BigProduce(string name, int count, int size)
    {
        using var q = SharedQueue.Open(name);
        var seen = new HashSet<string>();
        for (int seq = 0; seq < count; seq++)
        {
            q.Write<byte>(BigMessage(seq, size), [size], Long);
            seen.UnionWith(DataSegments(name));
        }
        Say(new { produced = count, distinct = seen.Count });
        return 0;
    }

    /// <summary>Reads COUNT big messages in order, keeping the last HOLD undisposed (zero-copy); after each read checks
    /// that every held message still has its bytes. Says how many data segments it still maps at the end ("mapped").</summary>
    private static int BigConsume(string name, int count, int hold)
    {
        using var q = SharedQueue.Open(name);
        var held = new Queue<(int Seq, QueueMessage M)>();
        int bad = 0, changed = 0;
        for (int seq = 0; seq < count; seq++)
        {
            var m = q.Read(Long);
            if (!m.Data.SequenceEqual(BigMessage(seq, m.Data.Length))) bad++;
            held.Enqueue((seq, m));
            while (held.Count > hold) held.Dequeue().M.Dispose();
            changed += held.Where(h => !h.M.Data.SequenceEqual(BigMessage(h.Seq, h.M.Data.Length))).Count();
        }
        while (held.Count > 0) held.Dequeue().M.Dispose();
        // The data segments this process still maps with every message disposed: the ones the queue object keeps mapped
        // for later messages (section 11.5), until its Dispose.
        int mapped = File.ReadLines("/proc/self/maps").Where(l => l.Contains("/dev/shm/" + name + ".m"))
            .Select(l => l[l.IndexOf("/dev/shm/", StringComparison.Ordinal)..].Split(' ')[0]).Distinct().Count();
        Say(new { consumed = count, bad, changed, mapped });
        return 0;
    }
}
