using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// The two `sharedbridge` CLIs (the .NET tool and `python -m sharedbridge`, docs/cli.md) as real processes:
/// every verb of each against segments made by the other language (live makers, dead makers, corrupt mutexes,
/// the invalid vectors), and the same --json (keys and values, except age_seconds and reason), the same table
/// and the same exit codes from both.
/// </summary>
[NonParallelizable]
public sealed partial class CliTests : CrossTestBase
{
    private const string CSharp = "C#", Python = "Python";
    /// <summary>Keys whose values legitimately differ between the two CLIs (docs/cli.md).</summary>
    private static readonly string[] Differing = ["age_seconds", "reason"];
    private static int s_counter;

    private readonly List<string> _prefixes = [];

    private string NewPrefix()
    {
        _prefixes.Add($"sbcli_x{Environment.ProcessId}_{Interlocked.Increment(ref s_counter)}_");
        return _prefixes[^1];
    }

    private string NewReapPrefix()
    {
        _prefixes.Add($"sbreap_x{Environment.ProcessId}_{Interlocked.Increment(ref s_counter)}_");
        return _prefixes[^1];
    }

    [TearDown]
    public void RemoveSegments()
    {
        foreach (string prefix in _prefixes) Shm.RemoveAll(prefix);
        _prefixes.Clear();
    }

    private static DriverResult Cli(string which, params string[] args)
    {
        DriverResult r = RunCli(which, args);
        AssertNoCrash(r);
        return r;
    }

    private static DriverResult RunCli(string which, string[] args)
    {
        using var p = which == CSharp
            ? DriverProcess.Start([Repo.Cli, .. args], withPythonPath: false)
            : DriverProcess.Start([Interpreters.Preferred.Executable, "-m", "sharedbridge", .. args]);
        return p.WaitForExit(Quick);
    }

    private static void AssertNoCrash(DriverResult r) =>
        Assert.That(r.Stderr, Does.Not.Contain("Traceback").And.Not.Contain("Unhandled exception").And.Not.Contain("   at "), r.Describe());

    /// <summary>One CLI run per argument list, a few at a time (most of a run is starting the process); the
    /// results in the order of the lists. Asserts nothing: the caller does, on the test's thread.</summary>
    private static DriverResult[] CliEach(string which, IReadOnlyList<string[]> argLists)
    {
        var results = new DriverResult[argLists.Count];
        Parallel.For(0, argLists.Count, new ParallelOptions { MaxDegreeOfParallelism = 4 },
            i => results[i] = RunCli(which, argLists[i]));
        return results;
    }

    private static JsonNode Json(DriverResult r, int exitCode = 0)
    {
        Assert.That(r.ExitCode, Is.EqualTo(exitCode), r.Describe());
        return JsonNode.Parse(r.Stdout)!;
    }

    /// <summary>Every difference between two JSON documents (numbers compared by value), ignoring Differing keys.</summary>
    internal static List<string> Differences(JsonNode? a, JsonNode? b, string path = "$")
    {
        var diffs = new List<string>();
        switch (a, b)
        {
            case (null, null):
                break;
            case (JsonObject oa, JsonObject ob):
                foreach (string key in oa.Select(p => p.Key).Union(ob.Select(p => p.Key)))
                {
                    if (Differing.Contains(key)) continue;
                    if (!oa.ContainsKey(key) || !ob.ContainsKey(key)) diffs.Add($"{path}.{key}: only in one");
                    else diffs.AddRange(Differences(oa[key], ob[key], $"{path}.{key}"));
                }
                break;
            case (JsonArray xa, JsonArray xb):
                if (xa.Count != xb.Count) diffs.Add($"{path}: {xa.Count} vs {xb.Count} items");
                else for (int i = 0; i < xa.Count; i++) diffs.AddRange(Differences(xa[i], xb[i], $"{path}[{i}]"));
                break;
            case (JsonValue va, JsonValue vb) when va.GetValueKind() == System.Text.Json.JsonValueKind.Number
                                                   && vb.GetValueKind() == System.Text.Json.JsonValueKind.Number:
                if (va.GetValue<decimal>() != vb.GetValue<decimal>()) diffs.Add($"{path}: {va} vs {vb}");
                break;
            default:
                if (a?.ToJsonString() != b?.ToJsonString()) diffs.Add($"{path}: {a?.ToJsonString()} vs {b?.ToJsonString()}");
                break;
        }
        return diffs;
    }

    private static void AssertSameJson(JsonNode csharp, JsonNode python, string what) =>
        Assert.That(Differences(csharp, python), Is.Empty, $"{what}: the .NET and the Python CLI differ");

    /// <summary>The `ls` table without its last column (AGE, which moves between the two runs).</summary>
    private static List<string> TableWithoutAge(string stdout) =>
        stdout.TrimEnd('\n').Split('\n').Select(line => LastColumn().Replace(line, "")).ToList();

    [GeneratedRegex(@"\s+\S+$")]
    private static partial Regex LastColumn();

    private const string PythonMaker = """
        import ctypes, sys, sharedbridge as sb
        P = sys.argv[1]
        class Point(ctypes.Structure):
            _fields_ = [("X", ctypes.c_double), ("Y", ctypes.c_double)]
        lock = sb.RLock(P + "l")
        a = sb.Array("d", [1.5, -2.0, float("nan")], name=P + "a")
        v = sb.Value("i", 7, lock=lock, name=P + "v")
        p = sb.RawArray(Point, [(1.0, 2.0), (3.0, -4.5)], name=P + "p")
        u = sb.RawArray("u", "h\u00e9", name=P + "u")
        n = sb.ndarray((2, 3, 4), "f", name=P + "n")
        n.as_ctypes()[23] = 2.5
        r = sb.ndarray((), "q", lock=False, name=P + "r")
        r.as_ctypes()[0] = -7
        s = sb.ndarray((2,), Point, lock=False, name=P + "s")
        s.as_ctypes()[1] = (3.0, -4.5)
        z = sb.ndarray((3, 0), "d", name=P + "z")
        print("ready", flush=True)
        sys.stdin.readline()
        """;

    public struct Point
    {
        public double X;
        public double Y;
    }

    /// <summary>Makes the same nine segments in this (C#) process; dispose to remove them.</summary>
    private static IDisposable[] MakeInCSharp(string p)
    {
        var lk = SharedLock.Create(p + "l", new SegmentOptions { RecursiveLock = true });
        var n = SharedTensor<float>.Create(p + "n", [2, 3, 4]);
        n[1, 2, 3] = 2.5f;
        var r = SharedTensor<long>.Create(p + "r", [], new SegmentOptions { Synchronized = false, TypeCode = 'q' });
        r.Set([], -7);
        var s = SharedTensor<Point>.Create(p + "s", [2], new SegmentOptions { Synchronized = false });
        s[1] = new Point { X = 3, Y = -4.5 };
        return
        [
            n,
            r,
            s,
            SharedTensor<double>.Create(p + "z", [3, 0]),
            SharedArray<double>.Create(p + "a", [1.5, -2.0, double.NaN]),
            SharedValue<int>.Create(p + "v", 7, new SegmentOptions { SharedLock = lk }),
            SharedArray<Point>.Create(p + "p", [new Point { X = 1, Y = 2 }, new Point { X = 3, Y = -4.5 }], new SegmentOptions { Synchronized = false }),
            SharedArray<System.Text.Rune>.Create(p + "u", [new System.Text.Rune('h'), new System.Text.Rune('\u00e9')], new SegmentOptions { Synchronized = false }),
            lk,
        ];
    }

    [TestCase(CSharp)]
    [TestCase(Python)]
    public void BothClisShowTheSameSegments(string maker)
    {
        string p = NewPrefix();
        DriverProcess? child = null;
        IDisposable[] made = [];
        int makerPid = Environment.ProcessId;
        try
        {
            if (maker == Python)
            {
                child = DriverProcess.Start([Interpreters.Preferred.Executable, "-c", PythonMaker, p]);
                Assert.That(child.ReadLine(Quick), Is.EqualTo("ready"), child.Describe());
                makerPid = child.Id;
            }
            else made = MakeInCSharp(p);

            JsonNode csLs = Json(Cli(CSharp, "ls", "--json", "--prefix", p)), pyLs = Json(Cli(Python, "ls", "--json", "--prefix", p));
            AssertSameJson(csLs, pyLs, "ls --json");
            var byName = csLs.AsArray().ToDictionary(i => (string)i!["name"]!, i => i!);
            Assert.That(byName.Keys, Is.EquivalentTo(new[] { p + "a", p + "l", p + "n", p + "p", p + "r", p + "s", p + "u", p + "v", p + "z" }));
            foreach (var info in byName.Values)
            {
                Assert.That((string?)info["status"], Is.EqualTo("ok"));
                Assert.That((int?)info["creator_pid"], Is.EqualTo(makerPid));
                Assert.That((bool?)info["creator_alive"], Is.True);
                Assert.That(info["mapped_by"]!.AsArray().Select(x => (int)x!), Does.Contain(makerPid));
            }
            Assert.That((string?)byName[p + "v"]["lock_name"], Is.EqualTo(p + "l"));
            Assert.That((string?)byName[p + "p"]["type_name"], Is.EqualTo("Point"));
            // docs/format.md 12.3: kind ndarray with its shape ([] for rank 0) and ndim; no shape for other kinds.
            Assert.That((string?)byName[p + "n"]["kind"], Is.EqualTo("ndarray"));
            Assert.That(byName[p + "n"]["shape"]!.ToJsonString(), Is.EqualTo("[2,3,4]"));
            Assert.That((int?)byName[p + "n"]["ndim"], Is.EqualTo(3));
            Assert.That((long?)byName[p + "n"]["length"], Is.EqualTo(24));
            Assert.That((string?)byName[p + "r"]["kind"], Is.EqualTo("ndarray"));
            Assert.That(byName[p + "r"]["shape"]!.ToJsonString(), Is.EqualTo("[]"));
            Assert.That((int?)byName[p + "r"]["ndim"], Is.EqualTo(0));
            Assert.That(byName[p + "z"]["shape"]!.ToJsonString(), Is.EqualTo("[3,0]"));
            Assert.That((long?)byName[p + "z"]["length"], Is.EqualTo(0));
            Assert.That((string?)byName[p + "s"]["type_name"], Is.EqualTo("Point"));
            Assert.That(byName[p + "a"]["shape"], Is.Null);
            Assert.That(byName[p + "a"]["ndim"], Is.Null);

            foreach (string name in byName.Keys)
            {
                JsonNode cs = Json(Cli(CSharp, "inspect", name, "--json", "--data", "3"));
                AssertSameJson(cs, Json(Cli(Python, "inspect", name, "--json", "--data", "3")), $"inspect {name}");
                if (name == p + "a") Assert.That(cs["data"]!.ToJsonString(), Is.EqualTo("[1.5,-2,\"NaN\"]"));
                if (name == p + "u") Assert.That(cs["data"]!.AsArray().Select(x => (string)x!), Is.EqualTo(new[] { "h", "\u00e9" }));
                if (name == p + "p") Assert.That(cs["fields"]!.AsArray().Select(f => (string)f!["name"]!), Is.EqualTo(new[] { "X", "Y" }));
                if (name == p + "n")
                    Assert.That((cs["shape"]!.ToJsonString(), (int?)cs["ndim"]), Is.EqualTo(("[2,3,4]", (int?)3)));
                if (name == p + "r")
                    Assert.That((cs["shape"]!.ToJsonString(), (int?)cs["ndim"], cs["data"]!.ToJsonString()), Is.EqualTo(("[]", (int?)0, "[-7]")));
            }

            DriverResult csTable = Cli(CSharp, "ls", "--prefix", p), pyTable = Cli(Python, "ls", "--prefix", p);
            Assert.That(TableWithoutAge(csTable.Stdout), Is.EqualTo(TableWithoutAge(pyTable.Stdout)), csTable.Stdout + pyTable.Stdout);
            Assert.That(csTable.Stdout, Does.Contain("24 [2, 3, 4]").And.Contain("1 []").And.Contain("0 [3, 0]"),
                "docs/cli.md: an ndarray's LENGTH column shows its shape");
            foreach (string n in new[] { "n", "r", "s", "z" })
            {
                string text = Cli(CSharp, "inspect", p + n).Stdout;
                Assert.That(Regex.Replace(text, "age: .*", ""), Is.EqualTo(Regex.Replace(Cli(Python, "inspect", p + n).Stdout, "age: .*", "")), $"inspect {n}");
                var (shapeText, ndim) = n switch { "n" => ("[2, 3, 4]", 3), "r" => ("[]", 0), "s" => ("[2]", 1), _ => ("[3, 0]", 2) };
                Assert.That(text, Does.Contain($"shape: {shapeText}").And.Contain($"ndim: {ndim}"));
            }
        }
        finally
        {
            if (child is not null)
            {
                child.WriteLine("");
                Assert.That(child.WaitForExit(Quick).ExitCode, Is.Zero, child.Describe());
                child.Dispose();
            }
            foreach (var d in made) d.Dispose();
        }
    }

    /// <summary>A lock held by a live process of one language, then its holder killed: both CLIs report
    /// "held" by that pid, then "owner dead", identically.</summary>
    [TestCase(CSharp)]
    [TestCase(Python)]
    public void BothClisSeeAHeldLockThenItsDeadOwner(string holderLanguage)
    {
        string name = NewPrefix() + "h";
        if (holderLanguage == CSharp) using (SharedArray<int>.Create(name, 1, new SegmentOptions { KeepOnDispose = true })) { }
        using var holder = holderLanguage == Python
            ? DriverProcess.Start([Interpreters.Preferred.Executable, "-c",
                $"import sys, sharedbridge as sb\nlk = sb.RLock('{name}', keep=True)\nlk.acquire()\nprint('held', flush=True)\nsys.stdin.readline()\n"])
            : Driver.CSharp.Start("worker", "hold", name, "1");
        Assert.That(holder.ReadLine(Quick), Does.Contain("held").Or.Contain("holding"), holder.Describe());
        JsonNode cs = Json(Cli(CSharp, "inspect", name, "--json"));
        AssertSameJson(cs, Json(Cli(Python, "inspect", name, "--json")), "inspect of a held lock");
        Assert.That(((string?)cs["lock_state"], (int?)cs["lock_holder_pid"]), Is.EqualTo(("held", (int?)holder.Id)));
        Assert.That(cs["mapped_by"]!.AsArray().Select(x => (int)x!), Is.EqualTo(new[] { holder.Id }));
        Assert.That(Cli(Python, "ls", "--prefix", name).Stdout, Does.Contain($"held by pid {holder.Id}"));
        holder.Kill();
        JsonNode dead = Json(Cli(Python, "inspect", name, "--json"));
        AssertSameJson(Json(Cli(CSharp, "inspect", name, "--json")), dead, "inspect after the holder died");
        Assert.That(((string?)dead["lock_state"], (int?)dead["lock_holder_pid"]), Is.EqualTo(("owner dead", (int?)null)));
        Assert.That(Cli(CSharp, "ls", "--prefix", name).Stdout, Does.Contain("owner dead: will be recovered"));
    }

    /// <summary>A segment whose maker (the other language) has exited, leaving a corrupt mutex: the CLI resets
    /// the lock, reports it healthy afterwards, unlinks the segment, and fails (1) on a second unlink.</summary>
    [TestCase(CSharp)]
    [TestCase(Python)]
    public void ResetLockAndUnlinkASegmentOfTheOtherLanguage(string cli)
    {
        string name = NewPrefix() + "r";
        if (cli == CSharp)
        {
            using var maker = DriverProcess.Start([Interpreters.Preferred.Executable, "-c", $"""
                import struct, sharedbridge as sb
                a = sb.Array("i", 2, name="{name}", keep=True)
                struct.pack_into("<i", a.get_lock()._seg.mm, 0x1C0 + 16, 0)
                """]);
            Assert.That(maker.WaitForExit(Quick).ExitCode, Is.Zero, maker.Describe());
        }
        else
        {
            using (SharedArray<int>.Create(name, 2, new SegmentOptions { KeepOnDispose = true })) { }
            using var fs = new FileStream(Shm.PathOf(name), FileMode.Open, FileAccess.Write);
            fs.Position = 0x1C0 + 16; // the mutex's kind word
            fs.Write(new byte[4]);
        }
        JsonNode before = Json(Cli(cli, "inspect", name, "--json"));
        // The Python maker has exited; the C# maker is this test process.
        Assert.That(((string?)before["lock_state"], (bool?)before["creator_alive"]), Is.EqualTo(("corrupt", (bool?)(cli == Python))));

        DriverResult reset = Cli(cli, "reset-lock", name);
        Assert.That((reset.ExitCode, reset.Stdout.Trim()), Is.EqualTo((0, $"reset the lock of {name}")), reset.Describe());
        JsonNode after = Json(Cli(cli == CSharp ? Python : CSharp, "inspect", name, "--json"));
        Assert.That(((string?)after["lock_state"], (int?)after["recoveries"]), Is.EqualTo(("free", (int?)1)));
        Assert.That(Cli(cli, "reset-lock", name).Stdout, Does.Contain("healthy: nothing done"));

        DriverResult unlink = Cli(cli, "unlink", name);
        Assert.That((unlink.ExitCode, unlink.Stdout.Trim()), Is.EqualTo((0, $"unlinked {name}")), unlink.Describe());
        Assert.That(Shm.Exists(name), Is.False);
        DriverResult again = Cli(cli, "unlink", name);
        Assert.That((again.ExitCode, again.Stdout), Is.EqualTo((1, "")), again.Describe());
        Assert.That(again.Stderr, Does.Contain(name));
    }

    /// <summary>A killed maker (the drivers' `hold create`, SIGKILL) leaves a creator, a last-closer and a
    /// persistent segment: both CLIs' dry runs report the first two with the same reasons, the other language's
    /// CLI removes them with --yes, and the persistent one stays.</summary>
    [TestCase(CSharp)]
    [TestCase(Python)]
    public void BothClisReapWhatAKilledMakerOfTheOtherLanguageLeft(string maker)
    {
        string p = NewPrefix();
        var driver = maker == CSharp ? Driver.CSharp : Driver.Python(Interpreters.Preferred);
        foreach (var (suffix, lifetime) in new[] { ("c", "creator"), ("l", "last-closer"), ("p", "persistent") })
        {
            using var holder = driver.Start("hold", "create", p + suffix, lifetime);
            Assert.That(holder.ReadLine(Quick), Does.Contain("\"ready\""), holder.Describe());
            holder.Kill();
        }
        JsonNode csLs = Json(Cli(CSharp, "ls", "--json", "--prefix", p));
        AssertSameJson(csLs, Json(Cli(Python, "ls", "--json", "--prefix", p)), "ls --json");
        Assert.That(csLs.AsArray().Select(i => ((string)i!["name"]!, (string)i["lifetime"]!, (bool)i["creator_alive"]!)),
            Is.EqualTo(new[] { (p + "c", "creator", false), (p + "l", "last-closer", false), (p + "p", "persistent", false) }));

        JsonNode dry = Json(Cli(CSharp, "reap", "--prefix", p, "--json"));
        AssertSameJson(dry, Json(Cli(Python, "reap", "--prefix", p, "--json")), "reap --json (dry run)");
        Assert.That(dry.AsArray().Select(r => ((string)r!["name"]!, (bool)r["removed"]!)), Is.EqualTo(new[] { (p + "c", false), (p + "l", false) }));
        Assert.That((string?)dry[0]!["reason"], Does.EndWith("is gone"));
        Assert.That(Shm.Leftovers(p), Has.Count.EqualTo(3), "a dry run removes nothing");

        string other = maker == CSharp ? Python : CSharp;
        DriverResult text = Cli(other, "reap", "--prefix", p);
        Assert.That(text.Stdout, Does.Contain($"would remove {p}l: last-closer: no process holds it open"), text.Describe());
        // The suggested command repeats the user's own filter: copied, it removes what the dry run listed.
        Assert.That(text.Stdout.TrimEnd('\n').Split('\n')[^1],
            Is.EqualTo($"dry run: 2 segment(s) would be removed; run `sharedbridge reap --yes --prefix {p}` to remove them"));
        Assert.That(Cli(maker, "reap", "--prefix", p).Stdout, Is.EqualTo(text.Stdout), "both CLIs' dry runs");
        JsonNode done = Json(Cli(other, "reap", "--yes", "--prefix", p, "--json"));
        Assert.That(done.AsArray().Select(r => ((string)r!["name"]!, (bool)r["removed"]!)), Is.EqualTo(new[] { (p + "c", true), (p + "l", true) }));
        Assert.That(Shm.Leftovers(p), Is.EqualTo(new[] { p + "p" }));
        Assert.That(Cli(maker, "reap", "--yes", "--prefix", p).Stdout.Trim(), Is.EqualTo("nothing to reap"));
    }

    /// <summary>A maker of one language killed while it initializes a segment (stopped by the library's test
    /// hook between its identity write and state = ready): never reaped while the maker lives, however old;
    /// after the kill and once older than the grace period, both CLIs report it alike and the other language's
    /// CLI removes it (docs/format.md section 8).</summary>
    [TestCase(CSharp)]
    [TestCase(Python)]
    public void BothClisReapASegmentWhoseMakerOfTheOtherLanguageWasKilledWhileCreatingIt(string maker)
    {
        string p = NewReapPrefix(), name = p + "i";
        string other = maker == CSharp ? Python : CSharp;
        var driver = maker == CSharp ? Driver.CSharp : Driver.Python(Interpreters.Preferred);
        using (var creator = driver.Start("hold", "paused", name, "creator"))
        {
            Assert.That(creator.ReadLine(Quick), Does.Contain("\"ready\""), creator.Describe());
            File.SetLastWriteTimeUtc(Shm.PathOf(name), DateTime.UtcNow.AddHours(-1));
            Assert.That(Cli(other, "reap", "--yes", "--prefix", p).Stdout.Trim(), Is.EqualTo("nothing to reap"));
            Assert.That(Shm.Exists(name), Is.True, "a live creator's segment is never reaped");
            creator.Kill();
            JsonNode dry = Json(Cli(CSharp, "reap", "--prefix", p, "--json"));
            AssertSameJson(dry, Json(Cli(Python, "reap", "--prefix", p, "--json")), "reap --json (dry run)");
            string start = BitConverter.ToUInt64(Shm.ReadAll(name), 0x48).ToString(System.Globalization.CultureInfo.InvariantCulture);
            string reason = $"initializing: creator pid {creator.Id} (started {start}) is gone";
            Assert.That(dry.AsArray().Select(r => ((string)r!["name"]!, (string)r["reason"]!, (bool)r["removed"]!)),
                Is.EqualTo(new[] { (name, reason, false) }));
            Assert.That(Cli(other, "reap", "--yes", "--prefix", p).Stdout, Does.StartWith($"removed {name}: {reason}\n"));
            Assert.That(Shm.Exists(name), Is.False);
        }
    }

    /// <summary>A killed maker's segment that a live process of the other language still maps: both CLIs name
    /// that process on the segment's reap line and in --json (its memory stays valid, the name is gone).</summary>
    [TestCase(CSharp)]
    [TestCase(Python)]
    public void BothClisNameTheProcessThatStillMapsWhatTheyReap(string maker)
    {
        string p = NewReapPrefix(), name = p + "m";
        var makerDriver = maker == CSharp ? Driver.CSharp : Driver.Python(Interpreters.Preferred);
        var attacherDriver = maker == CSharp ? Driver.Python(Interpreters.Preferred) : Driver.CSharp;
        using var creator = makerDriver.Start("hold", "create", name, "creator");
        Assert.That(creator.ReadLine(Quick), Does.Contain("\"ready\""), creator.Describe());
        using var attacher = attacherDriver.Start("hold", "open", name);
        Assert.That(attacher.ReadLine(Quick), Does.Contain("\"ready\""), attacher.Describe());
        creator.Kill();
        JsonNode dry = Json(Cli(CSharp, "reap", "--prefix", p, "--json"));
        AssertSameJson(dry, Json(Cli(Python, "reap", "--prefix", p, "--json")), "reap --json (dry run)");
        Assert.That(dry[0]!["mapped_by"]!.AsArray().Select(x => (int)x!), Is.EqualTo(new[] { attacher.Id }));
        DriverResult csText = Cli(CSharp, "reap", "--prefix", p);
        Assert.That(csText.Stdout, Is.EqualTo(Cli(Python, "reap", "--prefix", p).Stdout), "both CLIs' dry runs");
        Assert.That(csText.Stdout, Does.Contain($"(still mapped by pid {attacher.Id}: memory would stay valid for it, the name would be gone)"));
        string removed = Cli(maker == CSharp ? Python : CSharp, "reap", "--yes", "--prefix", p).Stdout;
        Assert.That(removed.Split('\n')[0], Does.StartWith($"removed {name}: ")
            .And.EndWith($" (still mapped by pid {attacher.Id}: memory stays valid for it, the name is gone)"));
        Assert.That(Shm.Exists(name), Is.False);
        attacher.WriteLine("exit");
        Assert.That(attacher.WaitForExit(Quick).ExitCode, Is.Zero, attacher.Describe());
    }

    private const string PythonSyncMaker = """
        import sys, sharedbridge as sb
        P = sys.argv[1]
        e = sb.Event(name=P + "e"); e.set()
        s = sb.BoundedSemaphore(3, name=P + "s"); s.acquire()
        u = sb.Semaphore(5, name=P + "u")
        b = sb.Barrier(3, name=P + "b"); b.abort()
        c = sb.Condition(name=P + "c")
        print("ready", flush=True)
        sys.stdin.readline()
        """;

    /// <summary>The synchronization kinds made by one language: both CLIs decode their words alike (--json `sync`,
    /// the SYNC column, inspect) instead of showing sixteen raw `I` elements.</summary>
    [TestCase(CSharp)]
    [TestCase(Python)]
    public void BothClisDecodeTheSynchronizationWordsAlike(string maker)
    {
        string p = NewReapPrefix();
        DriverProcess? child = null;
        IDisposable[] made = [];
        try
        {
            if (maker == Python)
            {
                child = DriverProcess.Start([Interpreters.Preferred.Executable, "-c", PythonSyncMaker, p]);
                Assert.That(child.ReadLine(Quick), Is.EqualTo("ready"), child.Describe());
            }
            else
            {
                var s = SharedSemaphore.Create(p + "s", 3, 3);
                s.Wait();
                var b = SharedBarrier.Create(p + "b", 3);
                b.Abort();
                made = [SharedEvent.Create(p + "e", initialState: true), s, SharedSemaphore.Create(p + "u", 5), b, SharedCondition.Create(p + "c")];
            }
            JsonNode csLs = Json(Cli(CSharp, "ls", "--json", "--prefix", p));
            AssertSameJson(csLs, Json(Cli(Python, "ls", "--json", "--prefix", p)), "ls --json");
            var sync = csLs.AsArray().ToDictionary(i => ((string)i!["name"]!)[p.Length..], i => i!["sync"]!.ToJsonString());
            Assert.That(sync, Is.EqualTo(new Dictionary<string, string>
            {
                ["b"] = """{"waiters":0,"parties":3,"count":0,"state":"broken"}""",
                ["c"] = """{"waiters":0}""",
                ["e"] = """{"waiters":0,"flag":1}""",
                ["s"] = """{"waiters":0,"value":2,"max_value":3,"bounded":1}""",
                ["u"] = """{"waiters":0,"value":5,"max_value":2147483647,"bounded":0}""",
            }));
            DriverResult csTable = Cli(CSharp, "ls", "--prefix", p), pyTable = Cli(Python, "ls", "--prefix", p);
            Assert.That(TableWithoutAge(csTable.Stdout), Is.EqualTo(TableWithoutAge(pyTable.Stdout)), csTable.Stdout + pyTable.Stdout);
            Assert.That(csTable.Stdout, Does.Contain("broken, 0 of 3 parties waiting").And.Contain("value 2 of at most 3")
                .And.Contain("value 5 ").And.Contain(" set ").And.Contain("0 waiting"));
            foreach (string n in new[] { "b", "c", "e", "s", "u" })
            {
                AssertSameJson(Json(Cli(CSharp, "inspect", p + n, "--json")), Json(Cli(Python, "inspect", p + n, "--json")), $"inspect {n}");
                var text = Cli(CSharp, "inspect", p + n).Stdout;
                Assert.That(Regex.Replace(text, "age: .*", ""), Is.EqualTo(Regex.Replace(Cli(Python, "inspect", p + n).Stdout, "age: .*", "")));
            }
        }
        finally
        {
            if (child is not null)
            {
                child.WriteLine("");
                Assert.That(child.WaitForExit(Quick).ExitCode, Is.Zero, child.Describe());
                child.Dispose();
            }
            foreach (var d in made) d.Dispose();
        }
    }

    private static readonly Dictionary<string, string> StatusOfClass = new()
    {
        ["ok"] = "ok", ["corrupt"] = "corrupt", ["not-sharedbridge"] = "foreign",
        ["unsupported-version"] = "unsupported", ["initializing"] = "initializing", ["permission"] = "inaccessible",
    };

    /// <summary>The invalid vectors of tests/cross/vectors/invalid at their fixed names: both CLIs list and
    /// inspect every one with the same status (corrupt with its reason, never a traceback) and exit code.</summary>
    [Test]
    public void BothClisDescribeTheInvalidVectorsAlike()
    {
        using var fixedNames = FixedNamesLock.Acquire();
        var names = new List<string>();
        try
        {
            foreach (var c in InvalidVectorTests.Cases) names.AddRange(InvalidVectorTests.Materialize(c));
            JsonNode cs = Json(Cli(CSharp, "ls", "--all", "--json", "--prefix", "sbinv_"));
            AssertSameJson(cs, Json(Cli(Python, "ls", "--all", "--json", "--prefix", "sbinv_")), "ls --all --json of the invalid vectors");
            var byName = cs.AsArray().ToDictionary(i => (string)i!["name"]!, i => i!);
            var cases = InvalidVectorTests.Cases.Where(c => c.Special != "other-owner" || InvalidVectorTests.Geteuid() == 0).ToList();
            // inspect reports the processes that map the segment (mapped_by): each vector is its own
            // segment, so one CLI inspects several vectors at once, but the two CLIs never run together.
            var inspectArgs = cases.Select(c => new[] { "inspect", c.Name, "--json" }).ToList();
            DriverResult[] csInspects = CliEach(CSharp, inspectArgs), pyInspects = CliEach(Python, inspectArgs);
            for (int k = 0; k < cases.Count; k++)
            {
                var c = cases[k];
                // A segment whose external lock segment is gone or is no lock: its own header is fine (status ok),
                // its lock is "missing" or "unreadable" (attach refuses it: not-found, corrupt).
                bool lockProblem = c.Expect == "not-found" || (c.Lock is not null && c.Expect == "corrupt");
                string status = lockProblem ? "ok" : StatusOfClass[c.Expect];
                Assert.That((string?)byName[c.Name]["status"], Is.EqualTo(status), $"{c.Id}: {c.Rule}");
                if (status != "ok") Assert.That((string?)byName[c.Name]["reason"], Is.Not.Empty, c.Id);
                if (lockProblem)
                    Assert.That((string?)byName[c.Name]["lock_state"], Is.EqualTo(c.Expect == "not-found" ? "missing" : "unreadable"), c.Id);
                DriverResult ci = csInspects[k], pi = pyInspects[k];
                AssertNoCrash(ci);
                AssertNoCrash(pi);
                Assert.That(ci.ExitCode, Is.EqualTo(status == "ok" ? 0 : 1), ci.Describe());
                Assert.That(pi.ExitCode, Is.EqualTo(ci.ExitCode), pi.Describe());
                AssertSameJson(JsonNode.Parse(ci.Stdout)!, JsonNode.Parse(pi.Stdout)!, $"inspect {c.Id}");
                if (status != "ok") Assert.That(ci.Stderr + pi.Stderr, Does.Contain($"{c.Name}: {status}: "), c.Id);
            }
            Assert.That(Json(Cli(CSharp, "ls", "--json", "--prefix", "sbinv_")).AsArray().Select(i => (string)i!["status"]!),
                Is.All.AnyOf("ok", "corrupt", "unsupported", "initializing"), "ls without --all lists only SharedBridge segments");
        }
        finally
        {
            foreach (string n in names) InvalidVectorTests.RemoveAnything(n);
        }
    }

    /// <summary>Usage errors (2), runtime errors (1) and help (0): the same exit code from both CLIs, messages on
    /// stderr, nothing on stdout.</summary>
    [Test]
    public void BothClisExitAlike()
    {
        string missing = NewPrefix() + "none";
        (string[] Args, int Code)[] cases =
        [
            ([], 2), (["frobnicate"], 2), (["inspect"], 2), (["inspect", "x", "--data", "-1"], 2), (["inspect", "x", "--data", "many"], 2),
            (["ls", "--nope"], 2), (["unlink", "a", "b"], 2), (["reset-lock"], 2), (["reap", "NAME"], 2), (["reap", "--yes=1"], 2),
            (["inspect", missing], 1), (["unlink", missing], 1), (["reset-lock", missing], 1), (["inspect", "bad/name"], 1),
            (["--help"], 0), (["ls", "--help"], 0), (["inspect", "--help"], 0), (["unlink", "--help"], 0), (["reset-lock", "--help"], 0), (["reap", "--help"], 0),
        ];
        foreach (var (args, code) in cases)
            foreach (string cli in new[] { CSharp, Python })
            {
                DriverResult r = Cli(cli, args);
                Assert.That(r.ExitCode, Is.EqualTo(code), r.Describe());
                if (code != 0) Assert.That((r.Stdout, r.Stderr.Length > 0), Is.EqualTo(("", true)), r.Describe());
                if (code == 2) Assert.That(r.Stderr, Does.Contain("usage: sharedbridge").Or.Contain("error:"), r.Describe());
                if (code == 0) Assert.That(r.Stdout, Does.StartWith("usage: sharedbridge"), r.Describe());
            }
        foreach (string verb in new[] { "ls", "inspect", "reap", "unlink", "reset-lock" })
            Assert.That(Cli(CSharp, "--help").Stdout + Cli(Python, "--help").Stdout, Does.Contain(verb));
        Assert.That(Cli(CSharp, "--help").Stdout, Does.Contain("demo"));
    }
}
