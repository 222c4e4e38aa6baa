using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// N-dimensional arrays (docs/format.md section 12) shared live between a .NET process (this one, through
/// SharedTensor&lt;T&gt; and SharedBridge.Tensors' TensorSpan) and a Python process (sharedbridge.ndarray / attach:
/// as_ctypes, memoryview and, where installed, numpy): each side creates in turn, the other opens it by name, sees the
/// shape and the values, writes every element, and the creator sees the writes in place (no re-open). Cases: a 3-D
/// float tensor, a structure, rank 0 and rank 8.
/// </summary>
public sealed class NDArrayTests : CrossTestBase
{
    private static readonly string Prefix = "sbt_xnd_" + Shm.RunPrefix[3..];
    private static int s_counter;

    private static string NewName() => Prefix + Interlocked.Increment(ref s_counter).ToString("x3");

    [OneTimeTearDown]
    public void NothingLeft() =>
        Assert.That(Shm.RemoveAll(Prefix), Is.Empty, "n-dimensional array segments were left in /dev/shm (now removed)");

    /// <summary>The structure of the "struct" case: its fields in the same order, names and types as Python's Sample
    /// (docs/format.md section 4: the field table must match for a typed open).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Sample
    {
        public long id;
        public float x;
        public float y;
        public double w;
    }

    /// <summary>The Python side: "create" makes the case's array and fills element k (C order) with value(k),
    /// "attach" opens it; then it reports what it sees (JSON) and follows stdin: "negate" negates every element
    /// under the lock, "report" reports again from the same views (in place), "exit" closes.</summary>
    private const string PythonSide = """
        import ctypes, json, sys
        import sharedbridge as sb
        try:
            import numpy
        except ImportError:
            numpy = None
        mode, name, case = sys.argv[1:4]

        class Sample(ctypes.Structure):
            _fields_ = [("id", ctypes.c_int64), ("x", ctypes.c_float), ("y", ctypes.c_float), ("w", ctypes.c_double)]

        CASES = {"f3": ("f", (2, 3, 4)), "struct": (Sample, (2, 3)), "r0": ("d", ()), "r8": ("h", (2, 1, 3, 1, 2, 1, 1, 2))}
        dtype, shape = CASES[case]

        def value(k):
            if case == "f3":
                return k * 0.5 - 3
            if case == "r0":
                return 2.718281828459045
            if case == "r8":
                return k * 1000 - 12000
            return (k * 1000000007, k + 0.25, -float(k), k / 3.0)

        def plain(e):
            return [e.id, e.x, e.y, e.w] if case == "struct" else e

        def negated(e):
            return (-e.id, -e.x, -e.y, -e.w) if case == "struct" else -e

        if mode == "create":
            a = sb.ndarray(shape, dtype, name=name)
            flat = a.as_ctypes()
            for k in range(a.size):
                flat[k] = value(k)
            del flat
        else:
            a = sb.attach(name)

        def report():
            out = {"type": type(a).__name__, "shape": list(a.shape), "ndim": a.ndim, "size": a.size,
                   "typecode": a.typecode, "values": [plain(e) for e in a.as_ctypes()]}
            last = tuple(n - 1 for n in a.shape)
            if numpy is not None:
                view = a.numpy()
                out["numpy_shape"] = list(view.shape)
                out["numpy_last"] = (view[last].tolist() if case != "struct"
                                     else [view[last][f].item() for f in ("id", "x", "y", "w")])
            if case != "struct":
                view = a.memoryview()
                out["memoryview_shape"] = list(view.shape)
                out["memoryview_last"] = view[last]
            print(json.dumps(out), flush=True)

        report()
        for line in sys.stdin:
            command = line.strip()
            if command == "negate":
                with a.get_lock():
                    flat = a.as_ctypes()
                    for k in range(a.size):
                        flat[k] = negated(flat[k])
                    del flat
                print(json.dumps("negated"), flush=True)
            elif command == "report":
                report()
            elif command == "exit":
                break
        a.close()
        print(json.dumps("closed"), flush=True)
        """;

    /// <summary>One case: its element type, shape, the value of element k (C order) and how it reads in Python's
    /// JSON report.</summary>
    private sealed record Case<T>(string Id, long[] Shape, Func<long, T> Value, Func<T, T> Negate, Func<JsonNode, T> FromJson)
        where T : unmanaged
    {
        public long Count => Shape.Aggregate(1L, (p, d) => p * d);
    }

    private static readonly Case<float> Float3 = new("f3", [2, 3, 4], k => k * 0.5f - 3, v => -v, j => (float)(double)j);
    private static readonly Case<double> Rank0 = new("r0", [], _ => 2.718281828459045, v => -v, j => (double)j);
    private static readonly Case<short> Rank8 = new("r8", [2, 1, 3, 1, 2, 1, 1, 2], k => (short)(k * 1000 - 12000), v => (short)-v, j => (short)(int)j);
    private static readonly Case<Sample> Struct = new("struct", [2, 3],
        k => new Sample { id = k * 1_000_000_007L, x = k + 0.25f, y = -(float)k, w = k / 3.0 },
        s => new Sample { id = -s.id, x = -s.x, y = -s.y, w = -s.w },
        j => new Sample { id = (long)j[0]!, x = (float)(double)j[1]!, y = (float)(double)j[2]!, w = (double)j[3]! });

    [TestCase("f3")]
    [TestCase("struct")]
    [TestCase("r0")]
    [TestCase("r8")]
    public void CSharpCreatesPythonSeesAndWritesInPlace(string id)
    {
        switch (id)
        {
            case "f3": CSharpCreates(Float3); break;
            case "struct": CSharpCreates(Struct); break;
            case "r0": CSharpCreates(Rank0); break;
            default: CSharpCreates(Rank8); break;
        }
    }

    [TestCase("f3")]
    [TestCase("struct")]
    [TestCase("r0")]
    [TestCase("r8")]
    public void PythonCreatesCSharpSeesAndWritesInPlace(string id)
    {
        switch (id)
        {
            case "f3": PythonCreates(Float3); break;
            case "struct": PythonCreates(Struct); break;
            case "r0": PythonCreates(Rank0); break;
            default: PythonCreates(Rank8); break;
        }
    }

    private static void CSharpCreates<T>(Case<T> c) where T : unmanaged
    {
        string name = NewName();
        using (var tensor = SharedTensor<T>.Create(name, c.Shape))
        {
            // Filled through the indexer in C order: Python's flat view must find element k where the indices say.
            long k = 0;
            foreach (long[] index in Indices(c.Shape)) tensor.Set(index, c.Value(k++));

            using var python = DriverProcess.Start([Interpreters.Preferred.Executable, "-c", PythonSide, "attach", name, c.Id]);
            AssertReport(c, Report(python), negated: false, python);

            python.WriteLine("negate");
            Assert.That(python.ReadLine(Quick), Is.EqualTo("\"negated\""), python.Describe());
            AssertValues(c, tensor, negated: true);

            // And back: C# writes through the flat span under the lock; Python's views (made once) see it.
            using (tensor.Lock(TimeSpan.FromSeconds(10)))
                for (int i = 0; i < c.Count; i++) tensor.AsSpan()[i] = c.Value(i);
            python.WriteLine("report");
            AssertReport(c, Report(python), negated: false, python);

            python.WriteLine("exit");
            Assert.That(python.ReadLine(Quick), Is.EqualTo("\"closed\""), python.Describe());
            Assert.That(python.WaitForExit(Quick).ExitCode, Is.Zero, python.Describe());
            Assert.That(Shm.Exists(name), Is.True, "Python's close of an attached array removed the creator's segment");
        }
        Assert.That(Shm.Exists(name), Is.False, "the creator's dispose left the segment");
    }

    private static void PythonCreates<T>(Case<T> c) where T : unmanaged
    {
        string name = NewName();
        using var python = DriverProcess.Start([Interpreters.Preferred.Executable, "-c", PythonSide, "create", name, c.Id]);
        AssertReport(c, Report(python), negated: false, python);
        var shape = c.Shape.Select(d => (nint)d).ToArray();
        using (var tensor = SharedTensor<T>.Open(name, shape))
        {
            Assert.That(tensor.GetShape(), Is.EqualTo(c.Shape));
            Assert.That(tensor.Rank, Is.EqualTo(c.Shape.Length));
            Assert.That(tensor.GetStrides(), Is.EqualTo(CStrides(c.Shape)));
            Assert.That(tensor.Header.Shape, Is.EqualTo(c.Shape));
            AssertValues(c, tensor, negated: false);

            using (tensor.Lock(TimeSpan.FromSeconds(10)))
                for (int i = 0; i < c.Count; i++) tensor.AsSpan()[i] = c.Negate(c.Value(i));
            python.WriteLine("report");
            AssertReport(c, Report(python), negated: true, python);

            python.WriteLine("negate");
            Assert.That(python.ReadLine(Quick), Is.EqualTo("\"negated\""), python.Describe());
            AssertValues(c, tensor, negated: false);
        }
        python.WriteLine("exit");
        Assert.That(python.ReadLine(Quick), Is.EqualTo("\"closed\""), python.Describe());
        Assert.That(python.WaitForExit(Quick).ExitCode, Is.Zero, python.Describe());
        Assert.That(Shm.Exists(name), Is.False, "the Python creator's close left the segment");
    }

    /// <summary>Python's typed opens of an n-dimensional array (docs/format.md section 12.2), each printed as
    /// "ok" or the exception's class and message.</summary>
    private const string PythonTypedOpens = """
        import ctypes, json, sys
        import sharedbridge as sb
        name = sys.argv[1]

        class Sample(ctypes.Structure):
            _fields_ = [("id", ctypes.c_int64), ("x", ctypes.c_float), ("y", ctypes.c_float), ("w", ctypes.c_double)]

        class Other(ctypes.Structure):
            _fields_ = [("id", ctypes.c_int64), ("u", ctypes.c_float), ("v", ctypes.c_float), ("w", ctypes.c_double)]

        def attempt(*args, **kwargs):
            try:
                a = sb.attach(name, *args, **kwargs)
            except Exception as e:
                return type(e).__name__ + ": " + str(e)
            shape = list(a.shape)
            a.close()
            return "ok " + json.dumps(shape)

        kind = sys.argv[2]
        if kind == "float":
            out = {"same": attempt("f", shape=(2, 3, 4)), "untyped": attempt(), "other type": attempt("d"),
                   "other shape": attempt("f", shape=(4, 3, 2)), "other rank": attempt("f", shape=(24,))}
        else:
            out = {"same": attempt(Sample, shape=(2, 3)), "other layout": attempt(Other), "scalar": attempt("q")}
        print(json.dumps(out), flush=True)
        """;

    /// <summary>docs/format.md section 12.2 across languages: an open that asks for another element type, structure
    /// layout, shape or rank is a type mismatch naming both (Python TypeMismatchError, .NET TypeMismatchException), and
    /// a one-dimensional array open of an n-dimensional array is one too.</summary>
    [Test]
    public void TypedOpensOfTheOtherLanguagesArrayRefuseAnotherTypeOrShape()
    {
        string name = NewName(), structName = NewName();
        using (var tensor = SharedTensor<float>.Create(name, [2, 3, 4]))
        using (var samples = SharedTensor<Sample>.Create(structName, [2, 3]))
        {
            JsonNode floats = RunPython(PythonTypedOpens, name, "float"), structs = RunPython(PythonTypedOpens, structName, "struct");
            Assert.Multiple(() =>
            {
                Assert.That((string?)floats["same"], Is.EqualTo("ok [2, 3, 4]"));
                Assert.That((string?)floats["untyped"], Is.EqualTo("ok [2, 3, 4]"));
                Assert.That((string?)floats["other type"], Does.StartWith("TypeMismatchError: "));
                Assert.That((string?)floats["other shape"], Does.StartWith("TypeMismatchError: ").And.Contain("(4, 3, 2)").And.Contain("(2, 3, 4)"));
                Assert.That((string?)floats["other rank"], Does.StartWith("TypeMismatchError: ").And.Contain("(24,)").And.Contain("(2, 3, 4)"));
                Assert.That((string?)structs["same"], Is.EqualTo("ok [2, 3]"));
                Assert.That((string?)structs["other layout"], Does.StartWith("TypeMismatchError: "));
                Assert.That((string?)structs["scalar"], Does.StartWith("TypeMismatchError: "));
            });
        }

        // The reverse: Python creates, .NET opens.
        using var python = DriverProcess.Start([Interpreters.Preferred.Executable, "-c", PythonSide, "create", name, "f3"]);
        python.ReadLine(Quick);
        Assert.Multiple(() =>
        {
            Assert.That(() => SharedTensor<double>.Open(name).Dispose(), Throws.TypeOf<TypeMismatchException>());
            Assert.That(() => SharedTensor<float>.Open(name, [4, 3, 2]).Dispose(),
                Throws.TypeOf<TypeMismatchException>().With.Message.Contain("[2, 3, 4]").And.Message.Contain("[4, 3, 2]"));
            Assert.That(() => SharedTensor<float>.Open(name, 2).Dispose(),
                Throws.TypeOf<TypeMismatchException>().With.Message.Contain("[2, 3, 4]"));
            Assert.That(() => SharedArray<float>.Open(name).Dispose(), Throws.TypeOf<TypeMismatchException>());
            Assert.That(() => SharedTensor<Sample>.Open(name).Dispose(), Throws.TypeOf<TypeMismatchException>());
            using var same = SharedTensor<float>.Open(name, 3);
            Assert.That(same.GetShape(), Is.EqualTo(new long[] { 2, 3, 4 }));
        });
        python.WriteLine("exit");
        Assert.That(python.ReadLine(Quick), Is.EqualTo("\"closed\""), python.Describe());
        Assert.That(python.WaitForExit(Quick).ExitCode, Is.Zero, python.Describe());
    }

    /// <summary>Element reads of a Python SharedNDArray of 'u' or '?' (the object's own a[i], tolist(), iteration; its
    /// as_ctypes() elements), each "ok" with the values read (characters as code points) or the exception's class.</summary>
    private const string PythonElementReads = """
        import json, sys
        import sharedbridge as sb
        a = sb.attach(sys.argv[1])

        def plain(v):
            if isinstance(v, list):
                return [plain(x) for x in v]
            return ord(v) if isinstance(v, str) else bool(v) if a.typecode == "?" else v

        def attempt(read):
            try:
                return "ok " + json.dumps(plain(read()))
            except Exception as e:
                return type(e).__name__
        out = {"a[1]": attempt(lambda: a[1]), "tolist": attempt(lambda: a.tolist()), "iter": attempt(lambda: list(a)),
               "as_ctypes": attempt(lambda: a.as_ctypes()[1])}
        a.close()
        print(json.dumps(out), flush=True)
        """;

    /// <summary>docs/format.md section 3.4 for n-dimensional arrays, both languages: a 'u' element that is not a
    /// Unicode scalar value is corrupt data for every element read (a Python element read, a .NET element getter,
    /// ToArray); raw views (numpy, memoryview, Span) are exempt. A '?' byte other than 0 or 1 reads as true.</summary>
    [TestCase(0xD800u)]
    [TestCase(0x110000u)]
    public void NonScalarCharacterInAnNDArrayIsCorruptDataInBothLanguages(uint bad)
    {
        string name = NewName();
        using var tensor = SharedTensor<System.Text.Rune>.Create(name, [3], new SegmentOptions { Synchronized = false });
        tensor[0] = new System.Text.Rune('a');
        tensor[2] = new System.Text.Rune('c');
        MemoryMarshal.Cast<System.Text.Rune, uint>(tensor.AsSpan())[1] = bad;   // a raw view: what another writer left
        Assert.Multiple(() =>
        {
            Assert.That(() => tensor.ToArray(), Throws.TypeOf<CorruptDataException>(), ".NET ToArray");
            Assert.That(() => tensor.Get(1), Throws.TypeOf<CorruptDataException>(), ".NET Get");
        });
        JsonNode python = RunPython(PythonElementReads, name);
        Assert.Multiple(() =>
        {
            foreach (string read in new[] { "a[1]", "tolist", "iter" })
                Assert.That((string?)python[read], Is.EqualTo("CorruptDataError"),
                    $"Python SharedNDArray {read} of a 'u' element holding 0x{bad:X} (format.md 3.4: a Python element read " +
                    "MUST raise a corrupt-data error; .NET's SharedTensor<Rune> does): " + python.ToJsonString());
        });
    }

    [Test]
    public void BoolByteOtherThanOneReadsAsTrueInBothLanguages()
    {
        string name = NewName();
        using var tensor = SharedTensor<bool>.Create(name, [3], new SegmentOptions { Synchronized = false });
        MemoryMarshal.AsBytes(tensor.AsSpan())[1] = 2;
        Assert.That(tensor.ToArray(), Is.EqualTo(new[] { false, true, false }));
        JsonNode python = RunPython(PythonElementReads, name);
        foreach (string read in new[] { "tolist", "iter" })
            Assert.That((string?)python[read], Is.EqualTo("ok [false, true, false]"), python.ToJsonString());
        Assert.That((string?)python["a[1]"], Is.EqualTo("ok true"), python.ToJsonString());
    }

    /// <summary>Runs a Python script to its end; its last stdout line as JSON.</summary>
    private static JsonNode RunPython(string script, params string[] args)
    {
        using var python = DriverProcess.Start([Interpreters.Preferred.Executable, "-c", script, .. args]);
        DriverResult r = python.WaitForExit(Quick);
        Assert.That(r.ExitCode, Is.Zero, r.Describe());
        return JsonNode.Parse(r.Stdout.TrimEnd('\n').Split('\n')[^1])!;
    }

    private static JsonNode Report(DriverProcess python) => JsonNode.Parse(python.ReadLine(Quick))!;

    /// <summary>What Python reports: a SharedNDArray of the shape (object, numpy, memoryview), every element in C order,
    /// and the last element by multi-index equal to the last of the flat view.</summary>
    private static void AssertReport<T>(Case<T> c, JsonNode report, bool negated, DriverProcess python) where T : unmanaged
    {
        string context = report.ToJsonString() + "\n" + python.Describe();
        T Expected(long k) => negated ? c.Negate(c.Value(k)) : c.Value(k);
        Assert.Multiple(() =>
        {
            Assert.That((string?)report["type"], Is.EqualTo("SharedNDArray"), context);
            Assert.That(report["shape"]!.AsArray().Select(d => (long)d!), Is.EqualTo(c.Shape), context);
            Assert.That((int)report["ndim"]!, Is.EqualTo(c.Shape.Length), context);
            Assert.That((long)report["size"]!, Is.EqualTo(c.Count), context);
            Assert.That(report["values"]!.AsArray().Select(v => c.FromJson(v!)), Is.EqualTo(Enumerable.Range(0, (int)c.Count).Select(k => Expected(k))), context);
            if (report["numpy_shape"] is { } numpyShape)
            {
                Assert.That(numpyShape.AsArray().Select(d => (long)d!), Is.EqualTo(c.Shape), context);
                Assert.That(c.FromJson(report["numpy_last"]!), Is.EqualTo(Expected(c.Count - 1)), context);
            }
            if (report["memoryview_shape"] is { } viewShape)
            {
                Assert.That(viewShape.AsArray().Select(d => (long)d!), Is.EqualTo(c.Shape), context);
                Assert.That(c.FromJson(report["memoryview_last"]!), Is.EqualTo(Expected(c.Count - 1)), context);
            }
        });
    }

    /// <summary>Every element as .NET sees it: the flat span, the indexer by indices and the TensorSpan view
    /// (SharedBridge.Tensors) must all agree with value(k), k the C-order position.</summary>
    private static void AssertValues<T>(Case<T> c, SharedTensor<T> tensor, bool negated) where T : unmanaged
    {
        T Expected(long k) => negated ? c.Negate(c.Value(k)) : c.Value(k);
        Assert.That(tensor.ToArray(), Is.EqualTo(Enumerable.Range(0, (int)c.Count).Select(k => Expected(k))), "the flat view");
        TensorSpan<T> span = tensor.AsTensorSpan();
        long k = 0;
        foreach (long[] index in Indices(c.Shape))
        {
            Assert.That(tensor.Get(index), Is.EqualTo(Expected(k)), $"the indexer at [{string.Join(",", index)}]");
            nint[] native = index.Length == 0 ? [0] : index.Select(i => (nint)i).ToArray();   // TensorSpan views rank 0 as [1]
            Assert.That(span[native], Is.EqualTo(Expected(k)), $"the TensorSpan at [{string.Join(",", index)}]");
            k++;
        }
        Assert.That(k, Is.EqualTo(c.Count));
    }

    /// <summary>Every multi-index of the shape in C order (the last index fastest); one empty index for rank 0.</summary>
    private static IEnumerable<long[]> Indices(long[] shape)
    {
        if (shape.Any(d => d == 0)) yield break;
        var index = new long[shape.Length];
        while (true)
        {
            yield return (long[])index.Clone();
            int k = shape.Length - 1;
            while (k >= 0 && ++index[k] == shape[k]) index[k--] = 0;
            if (k < 0) yield break;
        }
    }

    private static long[] CStrides(long[] shape)
    {
        var strides = new long[shape.Length];
        long step = 1;
        for (int k = shape.Length - 1; k >= 0; k--)
        {
            strides[k] = step;
            step *= shape[k];
        }
        return strides;
    }
}
