using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// Packed and explicit structures (docs/format.md section 4) between this .NET process and one Python process, in
/// both directions, for every kind that holds structures: Array, Value, n-dimensional arrays and queue records. The
/// writer records its real offsets; the reader rebuilds them (Python's attach(name) without a class) or checks them
/// against its type (.NET Open&lt;T&gt;, Python attach(name, cls)), refusing a type whose offsets differ. The golden
/// vectors array_packed_raw, value_packed2_locked and ndarray_packed_rank2_raw cover the same for every interpreter.
/// One Python child (the preferred interpreter) runs every case from stdin.
/// </summary>
public sealed class PackedStructTests : CrossTestBase
{
    private static readonly string Prefix = "sbp22_" + Shm.RunPrefix[3..];
    private static int s_counter;

    private static string NewName() => Prefix + Interlocked.Increment(ref s_counter).ToString("x3");

    [OneTimeTearDown]
    public void NothingLeft() =>
        Assert.That(Shm.RemoveAll(Prefix), Is.Empty, "packed-structure segments were left in /dev/shm (now removed)");

    /// <summary>A .NET binary-protocol struct: fields at 2 and 7 with gaps, 12 bytes. Its Python twin is the numpy
    /// dtype {"names": ["X", "Y"], "formats": ["&lt;i4", "&lt;f4"], "offsets": [2, 7], "itemsize": 12}.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 12)]
    public struct ExplicitPair
    {
        [FieldOffset(2)] public int X;
        [FieldOffset(7)] public float Y;
    }

    /// <summary>ctypes: class P1(Structure): _pack_ = 1; _fields_ = [("a", c_ubyte), ("b", c_int)] (5 bytes).</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct P1
    {
        public byte a;
        public int b;
    }

    /// <summary>P1 without the packing: b at 4, 8 bytes. Opening a P1 segment with it is a type mismatch.</summary>
    public struct P1Natural
    {
        public byte a;
        public int b;
    }

    /// <summary>ctypes: _pack_ = 4, c_int n, c_double x (x at 4, 12 bytes).</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    public struct P4
    {
        public int n;
        public double x;
    }

    private const string PythonSide = """
        import ctypes, json, sys
        import sharedbridge as sb
        try:
            import numpy
        except ImportError:
            numpy = None

        class P1(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("a", ctypes.c_ubyte), ("b", ctypes.c_int)]

        class P4(ctypes.Structure):
            _pack_ = 4
            _fields_ = [("n", ctypes.c_int), ("x", ctypes.c_double)]

        class Natural(ctypes.Structure):       # ExplicitPair's field names at natural offsets
            _fields_ = [("X", ctypes.c_int), ("Y", ctypes.c_float), ("pad", ctypes.c_int)]

        def offsets(cls):
            return {f[0]: getattr(cls, f[0]).offset for f in cls._fields_ if not f[0].startswith("__")}

        def pair(e):
            return [e.X, e.Y]

        keep = {}
        def say(obj):
            print(json.dumps(obj), flush=True)

        for line in sys.stdin:
            cmd, name = line.split()
            if cmd == "array":                  # .NET wrote ExplicitPair x 3: read, then write
                a = sb.attach(name)
                cls = type(a[0])
                values = [pair(e) for e in a]
                a[1].X = -5
                a[2].Y = 8.5
                try:
                    sb.attach(name, Natural)
                    mismatch = None
                except sb.TypeMismatchError as e:
                    mismatch = str(e)
                say({"size": ctypes.sizeof(cls), "offsets": offsets(cls), "values": values, "mismatch": mismatch})
                sb.close(a)
            elif cmd == "value":                # .NET wrote a locked Value of ExplicitPair
                v = sb.attach(name)
                with v.get_lock():
                    values = pair(v)
                    v.X += 1
                say({"size": ctypes.sizeof(v.get_obj()), "values": values})
                sb.close(v)
            elif cmd == "queue":                # .NET put an ExplicitPair and a P1 record; Python answers with a P4
                q = sb.attach(name)
                got = [q.get(timeout=10) for _ in range(2)]
                q.put(P4(-3, 0.25))
                say({"records": [[type(g).__name__, ctypes.sizeof(g), offsets(type(g)),
                                  [getattr(g, f) for f in offsets(type(g))]] for g in got]})
                sb.close(q)
            elif cmd == "make":                 # Python writes: a packed Array, a numpy explicit n-d array
                arr = sb.RawArray(P1, 3, name=name + "a")
                for k in range(3):
                    arr[k].a, arr[k].b = k + 200, -(k + 1) * 1000003
                keep["a"] = arr
                made = {"array": arr.name}
                if numpy is not None:
                    dt = numpy.dtype({"names": ["X", "Y"], "formats": ["<i4", "<f4"], "offsets": [2, 7], "itemsize": 12})
                    nd = sb.ndarray((2, 3), dt, name=name + "n")
                    view = nd.numpy()
                    view["X"] = numpy.arange(6).reshape(2, 3) * 7
                    view["Y"] = 1.5
                    del view
                    keep["n"] = nd
                    made["ndarray"] = nd.name
                say(made)
            elif cmd == "report":               # what .NET wrote into Python's segments
                view = keep["n"].numpy() if "n" in keep else None
                say({"array": [[e.a, e.b] for e in keep["a"]],
                     "ndarray": None if view is None else view["X"].ravel().tolist()})
                del view
            elif cmd == "exit":
                for obj in keep.values():
                    sb.close(obj)
                say("closed")
                break
        """;

    [Test]
    public void PackedAndExplicitStructuresCrossBothWays()
    {
        using var python = DriverProcess.Start([Interpreters.Preferred.Executable, "-c", PythonSide]);
        JsonNode Ask(string command, string name)
        {
            python.WriteLine($"{command} {name}");
            return JsonNode.Parse(python.ReadLine(Quick))!;
        }

        // .NET writes an Array of an explicit struct; Python rebuilds it from the field table.
        string arrayName = NewName();
        using (var arr = SharedArray<ExplicitPair>.Create(arrayName, [new() { X = 1, Y = 0.5f }, new() { X = 2, Y = 1 }, new() { X = 3, Y = 1.5f }]))
        {
            var r = Ask("array", arrayName);
            string context = r.ToJsonString() + "\n" + python.Describe();
            Assert.Multiple(() =>
            {
                Assert.That((int)r["size"]!, Is.EqualTo(12), context);
                Assert.That((int)r["offsets"]!["X"]!, Is.EqualTo(2), context);
                Assert.That((int)r["offsets"]!["Y"]!, Is.EqualTo(7), context);
                Assert.That(r["values"]!.AsArray().Select(v => ((int)v![0]!, (float)v[1]!)), Is.EqualTo(new[] { (1, 0.5f), (2, 1f), (3, 1.5f) }), context);
                Assert.That((string?)r["mismatch"], Does.Contain("field 'X' is at byte offset 2 in the segment, at 0 in the type"), context);
                Assert.That(arr[1].X, Is.EqualTo(-5), "Python's write landed elsewhere");
                Assert.That(arr[2].Y, Is.EqualTo(8.5f), "Python's write landed elsewhere");
            });
        }

        // A locked Value.
        string valueName = NewName();
        using (var value = SharedValue<ExplicitPair>.Create(valueName, new ExplicitPair { X = 41, Y = -2 }))
        {
            var r = Ask("value", valueName);
            Assert.That((int)r["size"]!, Is.EqualTo(12), r.ToJsonString());
            Assert.That(((int)r["values"]![0]!, (float)r["values"]![1]!), Is.EqualTo((41, -2f)), r.ToJsonString());
            Assert.That(value.Value.X, Is.EqualTo(42));
        }

        // Queue records both ways.
        string queueName = NewName();
        using (var queue = SharedQueue.Create(queueName))
        {
            queue.Write(new ExplicitPair { X = 9, Y = 0.75f });
            queue.Write(new P1 { a = 255, b = int.MinValue });
            var r = Ask("queue", queueName);
            var records = r["records"]!.AsArray();
            string context = r.ToJsonString();
            Assert.That(records[0]!.ToJsonString(), Is.EqualTo("""["ExplicitPair",12,{"X":2,"Y":7},[9,0.75]]"""), context);
            Assert.That(records[1]!.ToJsonString(), Is.EqualTo($$"""["P1",5,{"a":0,"b":1},[255,{{int.MinValue}}]]"""), context);
            using var answer = queue.Read(Quick);
            Assert.That(answer.GetValue<P4>(), Is.EqualTo(new P4 { n = -3, x = 0.25 }));
        }

        // Python writes; .NET opens with its own types, whose offsets are checked.
        string baseName = NewName();
        var made = Ask("make", baseName);
        string arrayMade = (string)made["array"]!;
        using (var p1 = SharedArray<P1>.Open(arrayMade))
        {
            Assert.That(Enumerable.Range(0, 3).Select(k => (p1[k].a, p1[k].b)), Is.EqualTo(new[] { ((byte)200, -1000003), ((byte)201, -2000006), ((byte)202, -3000009) }));
            p1[0].b = 77;
            var e = Assert.Throws<TypeMismatchException>(() => SharedArray<P1Natural>.Open(arrayMade).Dispose());
            Assert.That(e!.Message, Does.Contain("5 bytes"));
            if (made["ndarray"] is { } ndName)
            {
                using var tensor = SharedTensor<ExplicitPair>.Open((string)ndName!, [2, 3]);
                Assert.That(Enumerable.Range(0, 6).Select(i => (tensor.AsSpan()[i].X, tensor.AsSpan()[i].Y)),
                            Is.EqualTo(Enumerable.Range(0, 6).Select(i => (i * 7, 1.5f))));
                tensor.AsSpan()[5].X = -1;
            }
            var report = Ask("report", baseName);
            Assert.That((int)report["array"]![0]![1]!, Is.EqualTo(77), report.ToJsonString());
            if (made["ndarray"] is not null)
                Assert.That((int)report["ndarray"]![5]!, Is.EqualTo(-1), report.ToJsonString());
            else
                Assert.Warn("numpy is not installed for the preferred interpreter: the explicit n-d array written by Python was not tested");
        }
        python.WriteLine("exit 0");
        Assert.That(python.ReadLine(Quick), Is.EqualTo("\"closed\""), python.Describe());
        Assert.That(python.WaitForExit(Quick).ExitCode, Is.Zero, python.Describe());
    }
}
