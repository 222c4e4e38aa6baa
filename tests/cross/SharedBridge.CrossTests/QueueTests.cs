using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharedBridge.CrossTests.Golden;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// Queues (docs/format.md section 11) across real processes of C#, Python and a third implementation
/// written in C from the spec alone (bench/c/queue_peer.c): every message type of section 11.4 in every
/// direction, value by value; 2 C# + 2 Python producers and consumers with exact accounting; the same
/// with SIGKILLs at random moments (section 11.3's documented loss only); a fuzzer over ring contents;
/// what both CLIs show of a queue. Workers: cross_queue.py and CSharpDriver/QueueWorkers.cs. The test
/// process creates the queues (names sbt_xq_...) and removes them.
/// </summary>
public sealed class QueueTests : CrossTestBase
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(60);
    private static string Prefix => "sbt_xq_" + Shm.RunPrefix;
    private static int s_counter;

    private static string NewName() => $"{Prefix}_{Interlocked.Increment(ref s_counter)}";

    private static Driver Py => Driver.Python(Interpreters.Preferred);

    private static Driver ByShortLabel(string label) => label == "py" ? Py : Driver.CSharp;

    private static string MessagesPath => Path.Combine(Repo.CrossDir, "queue", "messages.json");

    /// <summary>Messages of the accounting test (environment SB_CROSSQ_MESSAGES; default 10 million).</summary>
    private static long AccountingMessages =>
        long.TryParse(Environment.GetEnvironmentVariable("SB_CROSSQ_MESSAGES"), out var n) && n >= 4 ? n : 10_000_000;

    private string _work = "";

    [SetUp]
    public void MakeWorkDir()
    {
        _work = Path.Combine(TestContext.CurrentContext.WorkDirectory, "crossq", Shm.RunPrefix + "_" + Interlocked.Increment(ref s_counter));
        Directory.CreateDirectory(_work);
    }

    [TearDown]
    public void NothingLeftInShm()
    {
        DriverProcess.KillAll();
        var left = Shm.RemoveAll(Prefix);
        try { Directory.Delete(_work, recursive: true); } catch (IOException) { }
        if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Passed)
            Assert.That(left, Is.Empty, "segments left in /dev/shm (now removed)");
    }

    private static JsonNode Json(string line) => JsonNode.Parse(line)!;

    private static SharedQueue NewQueue(long capacity = 1 << 20, int maxMessages = 0) =>
        SharedQueue.Create(NewName(), new QueueOptions { Capacity = capacity, MaxMessages = maxMessages });

    // ---- 1. every message type, every direction ----

    public static IEnumerable<TestCaseData> TypeDirections() =>
        new[] { ("C#", "py"), ("py", "C#"), ("C#", "C#"), ("py", "py") }
            .Select(d => new TestCaseData(d.Item1, d.Item2).SetName($"queue message types: {d.Item1} -> {d.Item2}"));

    [TestCaseSource(nameof(TypeDirections))]
    public void EveryMessageTypeArrivesValueByValue(string sender, string receiver)
    {
        using var q = NewQueue();
        var sent = ByShortLabel(sender).Run(Long, "worker", "q-send-types", q.Name, MessagesPath, "all");
        Assert.That(sent.ExitCode, Is.Zero, sent.Describe());
        var sentJson = Json(sent.Stdout.Trim());
        var items = sentJson["sent"]!.AsArray();
        var got = ByShortLabel(receiver).Run(Long, "worker", "q-recv-types", q.Name, items.Count.ToString());
        Assert.That(got.ExitCode, Is.Zero, got.Describe());
        var received = Json(got.Stdout.Trim())["received"]!.AsArray();
        Assert.That(received, Has.Count.EqualTo(items.Count), got.Describe());

        var table = JsonNode.Parse(File.ReadAllText(MessagesPath))!["messages"]!.AsArray().ToDictionary(m => (string)m!["id"]!);
        var errors = new List<string>();
        for (int i = 0; i < items.Count; i++)
        {
            string id = (string)items[i]!["id"]!;
            var entry = table[id]!;
            string type = (string)entry["type"]!;
            var r = received[i]!;
            string? canon = (string?)r["canon"];
            string kind = (string?)r["kind"] ?? (string?)r["error"] ?? "";
            if (receiver == "py")
            {
                if (canon != (string)items[i]!["py_canon"]!) errors.Add($"{id}: sent {items[i]!["py_canon"]}, received {r.ToJsonString()}");
                continue;
            }
            if (type == "pickle")
            {
                // Section 11.4: a .NET reader reports a pickle clearly and hands out its raw bytes.
                if (canon != "raw:" + (string)items[i]!["data"]!) errors.Add($"{id}: raw bytes differ: {r.ToJsonString()}");
                if (!kind.StartsWith("PythonObject:-:") || !kind.Contains("pickle", StringComparison.OrdinalIgnoreCase))
                    errors.Add($"{id}: no clear error for a typed read of a pickle: {kind}");
                continue;
            }
            if (canon != (string)items[i]!["canon"]!) errors.Add($"{id}: sent {items[i]!["canon"]}, received {r.ToJsonString()}");
            if (type is "scalar" or "array")
            {
                string tc = (string)entry["typecode"]!;
                string expectedKind = (type == "scalar" ? "Scalar:" : "Array:") + tc;
                if (!kind.StartsWith(expectedKind)) errors.Add($"{id}: .NET sees {kind}, expected {expectedKind}");
            }
        }
        Assert.That(errors, Is.Empty, $"{sender} -> {receiver}:\n{string.Join("\n", errors)}\n{sent.Describe()}\n{got.Describe()}");
        if (sender == "C#")
            Assert.That(sentJson["skipped"]!.AsArray().Select(s => (string)s!["id"]!),
                Is.EquivalentTo(new[] { "scalar_c", "scalar_l", "scalar_L_upper", "pickle_dict" }),
                "the C# sender skips only what no .NET type writes (c, l, L) and the pickle");
    }

    [Test]
    public void BothSendersDescribeTheTableAlike()
    {
        // The canonical texts each sender computes from its own typed values agree: a receiver that
        // matches one sender matches the table, not a shared mistake of one language.
        using var q1 = NewQueue();
        using var q2 = NewQueue();
        var cs = Driver.CSharp.Run(Long, "worker", "q-send-types", q1.Name, MessagesPath, "nopickle");
        var py = Py.Run(Long, "worker", "q-send-types", q2.Name, MessagesPath, "nopickle");
        Assert.That(cs.ExitCode + py.ExitCode, Is.Zero, cs.Describe() + py.Describe());
        var csCanon = Json(cs.Stdout.Trim())["sent"]!.AsArray().ToDictionary(s => (string)s!["id"]!, s => (string)s!["canon"]!);
        var pyCanon = Json(py.Stdout.Trim())["sent"]!.AsArray().ToDictionary(s => (string)s!["id"]!, s => (string)s!["canon"]!);
        var differ = csCanon.Where(kv => pyCanon[kv.Key] != kv.Value).Select(kv => $"{kv.Key}: C# {kv.Value}, py {pyCanon[kv.Key]}").ToList();
        Assert.That(differ, Is.Empty);
    }

    // ---- the C peer (bench/c/queue_peer.c) ----

    private static string? s_peer;
    private static string? s_peerProblem;

    /// <summary>queue_peer built with cc into the test output folder (once); the test is skipped with the
    /// reason when there is no C compiler.</summary>
    private static string Peer()
    {
        lock (typeof(QueueTests))
        {
            if (s_peer is null && s_peerProblem is null)
            {
                string source = Path.Combine(Repo.Root, "bench", "c", "queue_peer.c");
                string exe = Path.Combine(TestContext.CurrentContext.WorkDirectory, "queue_peer");
                try
                {
                    var cc = DriverProcess.Start(["cc", "-O2", "-pthread", "-o", exe, source], withPythonPath: false);
                    var r = cc.WaitForExit(Long);
                    cc.Dispose();
                    if (r.ExitCode != 0) s_peerProblem = "cc failed: " + r.Describe();
                    else s_peer = exe;
                }
                catch (System.ComponentModel.Win32Exception e)
                {
                    s_peerProblem = "no C compiler (cc) to build bench/c/queue_peer.c: " + e.Message;
                }
            }
            if (s_peer is null) Assert.Ignore(s_peerProblem!);
            return s_peer!;
        }
    }

    private static DriverResult RunPeer(params string[] args)
    {
        using var p = DriverProcess.Start([Peer(), .. args], withPythonPath: false);
        return p.WaitForExit(Long);
    }

    [Test]
    public void MessagesOfTheCPeerReachBothLanguagesAndTheirsReachIt()
    {
        const int per = 20_000;
        string name = NewName();
        Assert.That(RunPeer("create", name, "65536").ExitCode, Is.Zero);
        try
        {
            // C -> C# and Python: two C producers (ids 0, 1), a C# and a Python consumer with ledgers.
            var cProducers = new[] { "0", "1" }.Select(id => DriverProcess.Start([Peer(), "put", name, per.ToString(), "64", id], withPythonPath: false)).ToList();
            var consumers = new[] { Driver.CSharp, Py }.Select((d, i) =>
                d.Start("worker", "q-consume", name, Path.Combine(_work, $"c{i}"), "2", per.ToString())).ToList();
            foreach (var p in cProducers) Assert.That(p.WaitForExit(Long).ExitCode, Is.Zero, p.Describe());
            Assert.That(RunPeer("complete", name).ExitCode, Is.Zero);
            var outs = consumers.Select(c => Json(c.ReadLine(Long))).ToList();
            Assert.That(outs.Select(o => (long?)o["fifo_errors"]), Is.All.EqualTo(0L), string.Join("\n", outs));
            AssertEveryMessageOnce(Ledgers(2), 2, per, $"C -> C#, py: {string.Join(", ", outs)}");
            cProducers.Concat(consumers).ToList().ForEach(p => p.Dispose());
        }
        finally
        {
            RunPeer("unlink", name);
        }

        name = NewName();
        Assert.That(RunPeer("create", name, "65536").ExitCode, Is.Zero);
        try
        {
            // C# and Python -> C: the C consumer checks FIFO per producer and counts.
            using var cConsumer = DriverProcess.Start([Peer(), "get", name, (2 * per).ToString()], withPythonPath: false);
            using var csP = Driver.CSharp.Start("worker", "q-produce", name, "0", per.ToString(), "64", Path.Combine(_work, "p0"));
            using var pyP = Py.Start("worker", "q-produce", name, "1", per.ToString(), "64", Path.Combine(_work, "p1"));
            Assert.That(csP.WaitForExit(Long).ExitCode + pyP.WaitForExit(Long).ExitCode, Is.Zero, csP.Describe() + pyP.Describe());
            var r = cConsumer.WaitForExit(Long);
            Assert.That(r.ExitCode, Is.Zero, r.Describe());
            var o = Json(r.Stdout.Trim());
            Assert.That((long)o["got"]!, Is.EqualTo(2 * per), r.Describe());
            Assert.That((long)o["per_producer"]!["0"]!, Is.EqualTo(per));
            Assert.That((long)o["per_producer"]!["1"]!, Is.EqualTo(per));
        }
        finally
        {
            RunPeer("unlink", name);
        }
    }

    // ---- accounting ----

    private List<byte[]> Ledgers(int count, string prefix = "c") =>
        Enumerable.Range(0, count).Select(i => Path.Combine(_work, $"{prefix}{i}")).Where(File.Exists).Select(File.ReadAllBytes).ToList();

    private static void AssertEveryMessageOnce(IReadOnlyList<byte[]> ledgers, int producers, long per, string context)
    {
        long missing = 0, duplicated = 0;
        string firstBad = "";
        for (long i = 0; i < producers * per; i++)
        {
            int n = 0;
            foreach (var l in ledgers) if (i < l.Length) n += l[i];
            if (n == 1) continue;
            if (n == 0) missing++;
            else duplicated++;
            if (firstBad == "") firstBad = $" (first: producer {i / per}, sequence {i % per}, received {n} times)";
        }
        Assert.That((missing, duplicated), Is.EqualTo((0L, 0L)), $"messages missing / received more than once{firstBad}: {context}");
    }

    [Test]
    public void TwoAndTwoProducersAndConsumersPassEveryMessageExactlyOnce()
    {
        long total = AccountingMessages;
        long per = total / 4;
        using var q = NewQueue();
        var sw = Stopwatch.StartNew();
        // The C# sides one message per call (Write; Read, a take) and in batches (WriteMany; ReadMany, copies).
        var producers = new (Driver D, string Mode)[] { (Driver.CSharp, "one"), (Driver.CSharp, "many"), (Py, ""), (Py, "") }.Select((p, i) =>
            p.D.Start(["worker", "q-produce", q.Name, i.ToString(), per.ToString(), "64", Path.Combine(_work, $"p{i}"), .. p.Mode == "" ? Array.Empty<string>() : [p.Mode]])).ToList();
        var consumers = new (Driver D, string[] Extra)[]
            {
                (Driver.CSharp, ["take"]), (Driver.CSharp, ["many"]), (Py, ["256"]), (Py, ["256"]),
            }
            .Select((c, i) => c.D.Start(["worker", "q-consume", q.Name, Path.Combine(_work, $"c{i}"), "4", per.ToString(), .. c.Extra])).ToList();
        var budget = TimeSpan.FromSeconds(Math.Max(60, total / 20_000.0));
        var produced = producers.Select(p => Json(p.ReadLine(budget))).ToList();
        q.Complete();
        var consumed = consumers.Select(c => Json(c.ReadLine(budget))).ToList();
        double seconds = sw.Elapsed.TotalSeconds;
        producers.Concat(consumers).ToList().ForEach(p => p.Dispose());

        Assert.That(consumed.Select(c => (long?)c["fifo_errors"]), Is.All.EqualTo(0L), "FIFO per producer in every consumer's stream: " + string.Join("\n", consumed));
        Assert.That(consumed.Sum(c => (long)c["consumed"]!), Is.EqualTo(4 * per), string.Join("\n", consumed));
        AssertEveryMessageOnce(Ledgers(4), 4, per, string.Join("\n", consumed));
        Assert.That(q.Count, Is.Zero);
        TestContext.Out.WriteLine($"{4 * per:N0} 64-byte messages, 2 C# (one, many) + 2 Python producers -> 2 C# (take, many) + 2 Python consumers: " +
            $"{seconds:F1} s, {4 * per / seconds:N0} messages/s (under load, process start-up included); per consumer: " +
            string.Join(", ", consumed.Select(c => c["consumed"]!.ToString())));
    }

    // ---- reusable out-of-line data segments (section 11.5) ----

    [TestCase("C#", "py")]
    [TestCase("py", "C#")]
    [TestCase("C#", "C#")]
    [TestCase("py", "py")]
    public void BigMessagesReuseTheirDataSegmentsAndHeldOnesNeverChange(string producer, string consumer)
    {
        // 40 messages of 2 MiB in a 1 MiB ring go out of line; at most one message in the ring and one held by the
        // consumer (a zero-copy view), so a producer that reuses its data segments needs only a few. Each held view
        // must keep its bytes while the producer writes the next ones; every name is gone once both have ended.
        const int count = 40, size = 2 << 20;
        using var q = NewQueue(1 << 20, maxMessages: 1);
        var (produced, consumed) = RunBigMessages(q, producer, consumer, count, size, hold: true);

        Assert.That((int)consumed["bad"]!, Is.Zero, "messages whose bytes were wrong when read: " + consumed);
        Assert.That((int)consumed["changed"]!, Is.Zero, "held messages whose bytes changed under the reader: " + consumed);
        Assert.That((int)produced["distinct"]!, Is.InRange(1, 8), $"data segments used for {count} messages (reuse, section 11.5): {produced}");
        var left = Directory.EnumerateFiles("/dev/shm", q.Name + ".m*").Select(Path.GetFileName).ToList();
        Assert.That(left, Is.Empty, "data segments left after the producer and the consumer ended");
        TestContext.Out.WriteLine($"{producer} -> {consumer}: {count} x {size >> 20} MiB, {produced["distinct"]} data segments");
    }

    [TestCase("py", "C#")]
    [TestCase("C#", "C#")]
    public void ManyMegabyteMessagesArriveIntactThroughTheDataSegmentsTheConsumerKeepsMapped(string producer, string consumer)
    {
        // 200 messages of 1 MiB (out of line in a 1 MiB ring), up to 4 in the ring: the producer rotates through a few
        // reusable data segments, and the C# consumer keeps each one it met mapped between messages, re-checked for every
        // message (section 11.5, section 8 step 3). Every message's bytes are checked; the consumer holds no lock between
        // messages, so the producer (last to leave) and the consumer's Dispose leave nothing behind.
        const int count = 200, size = 1 << 20;
        using var q = NewQueue(1 << 20, maxMessages: 4);
        var (produced, consumed) = RunBigMessages(q, producer, consumer, count, size, hold: false);

        Assert.That((int)consumed["consumed"]!, Is.EqualTo(count), consumed.ToString());
        Assert.That((int)consumed["bad"]!, Is.Zero, "messages whose bytes were wrong when read: " + consumed);
        Assert.That((int)produced["distinct"]!, Is.InRange(1, 8), $"data segments used for {count} messages (reuse, section 11.5): {produced}");
        Assert.That((int)consumed["mapped"]!, Is.InRange(1, (int)produced["distinct"]!), "data segments the consumer kept mapped: " + consumed);
        var left = Directory.EnumerateFiles("/dev/shm", q.Name + ".m*").Select(Path.GetFileName).ToList();
        Assert.That(left, Is.Empty, "data segments left after the producer and the consumer ended");
        TestContext.Out.WriteLine($"{producer} -> {consumer}: {count} x 1 MiB, {produced["distinct"]} data segments, {consumed["mapped"]} kept mapped");
    }

    /// <summary>A q-big-produce worker of <paramref name="producer"/> and a q-big-consume worker of
    /// <paramref name="consumer"/> pass <paramref name="count"/> messages of <paramref name="size"/> bytes through
    /// <paramref name="q"/> (the consumer holding each one's zero-copy view until the next with <paramref name="hold"/>);
    /// both must exit 0. Their report lines.</summary>
    private static (JsonNode Produced, JsonNode Consumed) RunBigMessages(SharedQueue q, string producer, string consumer,
                                                                        int count, int size, bool hold)
    {
        using var c = ByShortLabel(consumer).Start("worker", "q-big-consume", q.Name, count.ToString(), hold ? "1" : "0");
        using var p = ByShortLabel(producer).Start("worker", "q-big-produce", q.Name, count.ToString(), size.ToString());
        var produced = Json(p.ReadLine(Long));
        var consumed = Json(c.ReadLine(Long));
        Assert.That(p.WaitForExit(Long).ExitCode, Is.Zero, p.Describe());
        Assert.That(c.WaitForExit(Long).ExitCode, Is.Zero, c.Describe());
        return (produced, consumed);
    }

    // ---- crashes ----

    [Test]
    public void RandomSigkillsLoseOnlyWhatSection11_3Allows()
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("SB_CROSSQ_SEED"), out var s) ? s : Environment.TickCount & 0x7FFFFFFF;
        TestContext.Out.WriteLine($"seed {seed} (rerun with SB_CROSSQ_SEED={seed})");
        var rng = new Random(seed);
        const long per = 100_000;
        const int maxProducers = 16, kills = 8;
        using var q = NewQueue(capacity: 64 * 1024, maxMessages: 2000);

        var producers = new List<(int Id, DriverProcess P, Driver D)>();
        var consumers = new List<(int Id, DriverProcess P, Driver D, string Mode)>();
        int nextProducer = 0, nextConsumer = 0, consumerKills = 0, producerKills = 0, takerKills = 0;

        void StartProducer(Driver d)
        {
            int id = nextProducer++;
            producers.Add((id, d.Start("worker", "q-produce", q.Name, id.ToString(), per.ToString(), "64", Path.Combine(_work, $"p{id}")), d));
        }
        void StartConsumer(Driver d, string mode)
        {
            int id = nextConsumer++;
            // One message at a time: a consumer records each message before taking the next, so a kill
            // loses (from the ledgers) at most the message in its hands.
            consumers.Add((id, d.Start("worker", "q-consume", q.Name, Path.Combine(_work, $"c{id}"), maxProducers.ToString(), per.ToString(), mode), d, mode));
        }

        StartProducer(Driver.CSharp); StartProducer(Driver.CSharp); StartProducer(Py); StartProducer(Py);
        StartConsumer(Driver.CSharp, "take"); StartConsumer(Driver.CSharp, "copy"); StartConsumer(Py, "1"); StartConsumer(Py, "1");
        var log = new List<string>();
        for (int k = 0; k < kills; k++)
        {
            Thread.Sleep(rng.Next(100, 400));
            bool killProducer = rng.Next(2) == 0 && nextProducer < maxProducers;
            if (killProducer)
            {
                var live = producers.Where(p => !p.P.HasExited).ToList();
                if (live.Count == 0) continue;
                var victim = live[rng.Next(live.Count)];
                victim.P.Kill();
                producerKills++;
                log.Add($"killed producer {victim.Id} ({victim.D.Label})");
                StartProducer(victim.D);
            }
            else
            {
                var live = consumers.Where(c => !c.P.HasExited).ToList();
                var victim = live[rng.Next(live.Count)];
                victim.P.Kill();
                consumerKills++;
                if (victim.Mode == "take") takerKills++;
                log.Add($"killed consumer {victim.Id} ({victim.D.Label} {victim.Mode})");
                StartConsumer(victim.D, victim.Mode);
            }
        }
        foreach (var p in producers.Where(p => !p.P.HasExited).ToList())
            Assert.That(p.P.ReadLine(Long), Does.Contain("produced"), p.P.Describe());
        // The queue stays open (the round trip below needs puts): each live consumer ends at a "stop".
        var liveConsumers = consumers.Where(c => !c.P.HasExited).ToList();
        foreach (var _ in liveConsumers) q.Write("stop"u8, Long);
        foreach (var c in liveConsumers)
        {
            var line = Json(c.P.ReadLine(Long));
            Assert.That((long?)line["fifo_errors"], Is.EqualTo(0L), "FIFO per producer: " + c.P.Describe());
            Assert.That((long?)line["foreign"], Is.EqualTo(0L), "a torn or foreign message: " + c.P.Describe());
        }

        // Accounting: per producer, what it committed is at least its progress ledger (written after each
        // put returned: C# 1 message, Python a batch of 256 behind at most); every message below the
        // highest one received or committed must have arrived exactly once, except the consumer losses.
        var ledgers = Ledgers(nextConsumer);
        long lost = 0, duplicated = 0, received = 0;
        var lostAt = new List<string>();
        for (int p = 0; p < nextProducer; p++)
        {
            string progressPath = Path.Combine(_work, $"p{p}");
            long progress = File.Exists(progressPath) ? BitConverter.ToInt64(File.ReadAllBytes(progressPath).AsSpan(0, 8)) : 0;
            long highest = -1;
            var counts = new int[per];
            for (long sq = 0; sq < per; sq++)
            {
                foreach (var l in ledgers) counts[sq] += l[p * per + sq];
                if (counts[sq] > 0) highest = sq;
                if (counts[sq] > 1) duplicated++;
                received += counts[sq];
            }
            for (long sq = 0; sq < Math.Max(progress, highest + 1); sq++)
                if (counts[sq] == 0) { lost++; lostAt.Add($"producer {p} sequence {sq}"); }
        }
        TestContext.Out.WriteLine($"{string.Join("; ", log)}\nreceived {received:N0}, lost {lost} ({string.Join(", ", lostAt)}), " +
            $"{producerKills} producer kills, {consumerKills} consumer kills ({takerKills} zero-copy C# takers)");
        Assert.That(duplicated, Is.Zero, "a message delivered twice");
        Assert.That(lost, Is.LessThanOrEqualTo(consumerKills), "lost more than one message per killed consumer: " + string.Join(", ", lostAt));

        // No wedge: a put/get round trip in each language, then the queue is empty.
        foreach (var d in new[] { Driver.CSharp, Py })
        {
            var r = d.Run(Long, "worker", "q-roundtrip", q.Name, "5000");
            Assert.That(r.ExitCode, Is.Zero, r.Describe());
            Assert.That(r.Stdout, Does.Contain("\"roundtrip\":true").Or.Contain("\"roundtrip\": true"), r.Describe());
        }
        Assert.That(q.Count, Is.Zero, "messages left after the accounting");
        producers.ForEach(p => p.P.Dispose());
        consumers.ForEach(c => c.P.Dispose());
    }

    // ---- 5. what the CLIs show ----

    /// <summary>The values of <paramref name="key"/> anywhere in a JSON document.</summary>
    private static IEnumerable<JsonNode?> Find(JsonNode? node, string key) => node switch
    {
        JsonObject o => o.SelectMany(p => (p.Key == key ? [p.Value] : Enumerable.Empty<JsonNode?>()).Concat(Find(p.Value, key))),
        JsonArray a => a.SelectMany(x => Find(x, key)),
        _ => [],
    };

    [Test]
    public void BothCLIsShowTheSameDepthCapacityPutsAndGetsOfAQueue()
    {
        // Section 11.6: capacity, max_messages, depth (count), bytes in use, puts, gets, completed, waiters.
        using var q = SharedQueue.Create(NewName(), new QueueOptions { Capacity = 8192, MaxMessages = 5 });
        for (int i = 0; i < 3; i++) q.Write(new byte[10 * i + 1], Long);
        q.Read(Long).Dispose();
        foreach (string verb in new[] { "ls", "inspect" })
        {
            string[] args = verb == "ls" ? ["ls", "--json", "--prefix", q.Name] : ["inspect", "--json", q.Name];
            // One CLI after the other: both report the processes that map the queue (mapped_by), and each maps it
            // to read its words, so one running during the other's look would show up in it.
            using var csP = DriverProcess.Start([Repo.Cli, .. args], withPythonPath: false);
            var cs = csP.WaitForExit(Long);
            using var pyP = DriverProcess.Start([Interpreters.Preferred.Executable, "-m", "sharedbridge", .. args]);
            var py = pyP.WaitForExit(Long);
            Assert.That(cs.ExitCode, Is.Zero, cs.Describe());
            Assert.That(py.ExitCode, Is.Zero, py.Describe());
            JsonNode csJson = JsonNode.Parse(cs.Stdout)!, pyJson = JsonNode.Parse(py.Stdout)!;
            foreach (var (key, value) in new (string, long)[] { ("capacity", 8192), ("max_messages", 5), ("count", 2), ("puts", 3), ("gets", 1) })
            {
                Assert.That(Find(csJson, key).Select(v => v?.ToJsonString()), Does.Contain(value.ToString()), $"{verb}: .NET CLI {key}:\n{cs.Stdout}");
                Assert.That(Find(pyJson, key).Select(v => v?.ToJsonString()), Does.Contain(value.ToString()), $"{verb}: Python CLI {key}:\n{py.Stdout}");
            }
            Assert.That(CliTests.Differences(csJson, pyJson), Is.Empty, $"{verb} --json: the .NET and the Python CLI differ");
        }
    }

    // ---- 6. golden message records (tests/cross/vectors/messages, docs/format.md section 9) ----

    private static string MessageVectorsDir => Path.Combine(Repo.VectorsDir, "messages");

    private static byte[] GoldenRecord(string id)
    {
        string path = Path.Combine(MessageVectorsDir, id + ".bin");
        if (!File.Exists(path)) Assert.Ignore($"no golden record {path}: run `PYTHONPATH=python:tests/cross python3 tests/cross/make_golden.py`");
        return File.ReadAllBytes(path);
    }

    /// <summary>The records of a queue's ring from head to tail (section 11.3), pads left out.</summary>
    private static List<byte[]> Records(string name)
    {
        byte[] seg = Shm.ReadAll(name);
        const int control = 0x200, ring = 0x300;
        long cap = BitConverter.ToInt64(seg, 0x18) - SpecEncoder.QueueControl;
        long p = BitConverter.ToInt64(seg, control + 64), tail = BitConverter.ToInt64(seg, control + 80);
        var records = new List<byte[]>();
        while (p < tail)
        {
            int at = ring + (int)(p & (cap - 1));
            int size = (int)BitConverter.ToUInt32(seg, at);
            if (seg[at + 4] != 4) records.Add(seg[at..(at + size)]);
            p += size;
        }
        return records;
    }

    [TestCase("C#")]
    [TestCase("py")]
    public void EachLibraryWritesTheGoldenMessageRecords(string writer)
    {
        using var q = NewQueue();
        var sent = ByShortLabel(writer).Run(Long, "worker", "q-send-types", q.Name, MessagesPath, "all");
        Assert.That(sent.ExitCode, Is.Zero, sent.Describe());
        var ids = Json(sent.Stdout.Trim())["sent"]!.AsArray().Select(x => (string)x!["id"]!).ToList();
        var records = Records(q.Name);
        Assert.That(records, Has.Count.EqualTo(ids.Count));
        var errors = new List<string>();
        for (int i = 0; i < ids.Count; i++)
        {
            byte[] golden = GoldenRecord(ids[i]), actual = records[i];
            if (writer == "C#" && golden.Length == actual.Length && golden[5] == 5 && golden[32] == (byte)'T')
            {
                // A numpy structured dtype has no name: Python writes an empty type_name (section 4.1), .NET the
                // struct's; compare the rest.
                int ndim = golden[33], typeName = 32 + 8 + 8 * ndim + 8;
                Array.Clear(golden, typeName, 32);
                actual = (byte[])actual.Clone();
                Array.Clear(actual, typeName, 32);
            }
            if (!golden.AsSpan().SequenceEqual(actual))
                errors.Add($"{ids[i]}: golden {Convert.ToHexStringLower(golden)}\n{new string(' ', ids[i].Length)}  {writer,6} {Convert.ToHexStringLower(actual)}");
        }
        Assert.That(errors, Is.Empty, $"{writer} writes records that differ from tests/cross/vectors/messages");
    }

    [TestCase("C#")]
    [TestCase("py")]
    public void EachLibraryReadsTheGoldenMessageRecords(string reader)
    {
        // The expected canonical texts, computed by the Python driver from queue/messages.json.
        using var scratch = NewQueue();
        var table = Py.Run(Long, "worker", "q-send-types", scratch.Name, MessagesPath, "all");
        Assert.That(table.ExitCode, Is.Zero, table.Describe());
        var items = Json(table.Stdout.Trim())["sent"]!.AsArray();

        // A queue whose ring holds the golden records back to back, then the words of section 11.2.
        using var q = NewQueue();
        var ring = items.SelectMany(x => GoldenRecord((string)x!["id"]!)).ToArray();
        using (var f = new FileStream(Shm.PathOf(q.Name), FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = 0x300;
            f.Write(ring);
            var words = new byte[8];
            f.Position = 0x200 + 48;
            BitConverter.TryWriteBytes(words, (ulong)(uint)items.Count | ((ulong)(uint)items.Count << 32));   // count, unfinished
            f.Write(words);
            f.Position = 0x200 + 80;
            BitConverter.TryWriteBytes(words, (ulong)ring.Length);                                 // tail
            f.Write(words);
            BitConverter.TryWriteBytes(words, (ulong)items.Count);                                 // puts
            f.Write(words);
        }
        var got = ByShortLabel(reader).Run(Long, "worker", "q-recv-types", q.Name, items.Count.ToString());
        Assert.That(got.ExitCode, Is.Zero, got.Describe());
        var received = Json(got.Stdout.Trim())["received"]!.AsArray();
        var errors = new List<string>();
        for (int i = 0; i < items.Count; i++)
        {
            string id = (string)items[i]!["id"]!;
            string? canon = (string?)received[i]!["canon"];
            string expected = reader == "py" ? (string)items[i]!["py_canon"]!
                : id.StartsWith("pickle") ? "raw:" + (string)items[i]!["data"]! : (string)items[i]!["canon"]!;
            if (canon != expected) errors.Add($"{id}: expected {expected}, read {received[i]!.ToJsonString()}");
        }
        Assert.That(errors, Is.Empty, $"{reader} misreads golden records");
    }

    // ---- 4. a fuzzer over ring contents ----

    private sealed record Target(string What, int Offset, int Width, bool Decided);

    [Test]
    public void FuzzedRingContentsEndInAMessageEmptyOrCorruptInBothLanguagesAlike()
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("SB_CROSSQ_FUZZ_SEED"), out var sd) ? sd : 2020;
        int cases = int.TryParse(Environment.GetEnvironmentVariable("SB_CROSSQ_FUZZ_CASES"), out var nc) ? nc : 1000;
        TestContext.Out.WriteLine($"fuzz seed {seed}, {cases} cases (SB_CROSSQ_FUZZ_SEED, SB_CROSSQ_FUZZ_CASES)");
        var rng = new Random(seed);

        // A queue of 4096 bytes whose tail has wrapped (a pad record), holding one message of each kind.
        byte[] snapshot;
        string source = NewName();
        using (var q = SharedQueue.Create(source, new QueueOptions { Capacity = 4096, Lifetime = SegmentLifetime.Persistent }))
        {
            var filler = new byte[1000];
            for (int i = 0; i < 3; i++) { q.Write(filler, Long); q.Read(Long).Dispose(); }
            q.Write("twenty bytes of data"u8, Long);
            q.Write("h\u00e9llo", Long);
            q.Write(-123456789L, Long);
            q.Write<double>((ReadOnlySpan<double>)[1.5, -2.0, 0.25, 8.0], (ReadOnlySpan<long>)[2, 2], Long);
            q.Write<short>((ReadOnlySpan<short>)[7], (ReadOnlySpan<long>)[], Long);
            snapshot = Shm.ReadAll(source);
            q.Unlink();
        }
        const int control = 0x200, ring = 0x300;
        long cap = BitConverter.ToInt64(snapshot, 0x18) - 256;
        long head = BitConverter.ToInt64(snapshot, control + 64), tail = BitConverter.ToInt64(snapshot, control + 80);

        var targets = new List<Target>
        {
            new("count", 48, 4, true), new("unfinished", 52, 4, true), new("completed", 56, 4, true), new("reserved +60", 60, 4, false),
            // tail: a tail beyond the last record is only seen by a reader that walks to it (not decided).
            new("head", 64, 8, true), new("read", 72, 8, true), new("tail", 80, 8, false), new("puts", 88, 8, false), new("gets", 96, 8, false),
            new("reserved +104", 104, 8, false), new("max_messages", 128, 4, true), new("flavour", 132, 4, true), new("reserved +136", 136, 4, false),
        };
        foreach (var (block, b) in new[] { ("R", 0), ("W", 16), ("J", 32) })
            foreach (var (word, w) in new[] { ("seq", 0), ("waiters", 4), ("signals", 8), ("sleepers", 12) })
                targets.Add(new($"{block}.{word}", b + w, 4, true));
        for (long p = head, k = 0; p < tail; k++)
        {
            int at = ring + (int)(p & (cap - 1)) - control;
            uint size = BitConverter.ToUInt32(snapshot, control + at);
            byte state = snapshot[control + at + 4];
            string r = $"record {k} (state {state})";
            // Only the record at read is stepped on by one get (section 11.3): whether a reader also
            // validates the records behind it (the .NET library does, on open) is not decided.
            bool first = k == 0;
            targets.Add(new(r + " size", at, 4, first));
            targets.Add(new(r + " state", at + 4, 1, first));
            if (state != 4)
            {
                uint dl = BitConverter.ToUInt32(snapshot, control + at + 8);
                long dataAt = at + 32 + ((dl + 7) & ~7u);
                var fields = new List<Target>
                {
                    new(r + " tag", at + 5, 1, first), new(r + " flags", at + 6, 1, first), new(r + " reserved +7", at + 7, 1, false),
                    new(r + " desc_length", at + 8, 4, first), new(r + " taker_pid", at + 12, 4, false), new(r + " taker_start_time", at + 16, 8, false),
                    new(r + " data_length", at + 24, 8, first),
                    new(r + " data byte 0", (int)dataAt, 1, first),
                };
                for (int d = 0; d < dl; d += 4) fields.Add(new(r + $" descriptor +{d}", at + 32 + d, 4, first));
                targets.AddRange(fields);
            }
            p += size == 0 ? 8 : size;
        }

        var names = new List<(string Cs, string Py, string What, bool Decided)>();
        for (int i = 0; i < cases; i++)
        {
            var t = targets[rng.Next(targets.Count)];
            var bytes = (byte[])snapshot.Clone();
            int off = control + t.Offset;
            ulong old = t.Width switch { 1 => bytes[off], 4 => BitConverter.ToUInt32(bytes, off), _ => BitConverter.ToUInt64(bytes, off) };
            ulong mask = t.Width == 8 ? ulong.MaxValue : (1UL << (8 * t.Width)) - 1;
            ulong value = rng.Next(9) switch
            {
                0 => 0, 1 => 1, 2 => old + 1, 3 => old - 1, 4 => old + 8, 5 => old - 8,
                6 => old ^ (1UL << rng.Next(8 * t.Width)), 7 => mask, _ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40),
            } & mask;
            if (value == old) value = (old + 8) & mask;
            for (int k = 0; k < t.Width; k++) bytes[off + k] = (byte)(value >> (8 * k));
            string what = $"{t.What} {old} -> {value}";
            string cs = $"{Prefix}_fz{i}c", py = $"{Prefix}_fz{i}p";
            Shm.WriteNew(cs, bytes);
            Shm.WriteNew(py, bytes);
            names.Add((cs, py, what, t.Decided));
        }

        var sw = Stopwatch.StartNew();
        List<JsonNode> csOut, pyOut;
        try
        {
            csOut = RunEach(Driver.CSharp, names.Select(n => n.Cs).ToList());
            pyOut = RunEach(Py, names.Select(n => n.Py).ToList());
        }
        finally
        {
            // The fuzzed copies are persistent segments the test made itself: removed whatever happened.
            foreach (var n in names) { Shm.Remove(n.Cs); Shm.Remove(n.Py); }
        }
        var bugs = new List<string>();
        var decided = new List<string>();
        var undecided = new List<string>();
        var tally = new Dictionary<string, int>();
        for (int i = 0; i < names.Count; i++)
        {
            var c = csOut[i]; var p = pyOut[i];
            string co = (string)c["outcome"]!, po = (string)p["outcome"]!;
            tally[co + "/" + po] = tally.GetValueOrDefault(co + "/" + po) + 1;
            foreach (var (lang, o, j) in new[] { ("C#", co, c), ("py", po, p) })
                if (o.StartsWith("other")) bugs.Add($"case {i} ({names[i].What}): {lang} ended with {j.ToJsonString()}");
            bool same = co == po && (co != "message" || (string?)c["canon"] == (string?)p["canon"]);
            if (!same)
                (names[i].Decided ? decided : undecided).Add($"case {i} ({names[i].What}): C# {c.ToJsonString()} | py {p.ToJsonString()}");
        }
        TestContext.Out.WriteLine($"{names.Count} cases in {sw.Elapsed.TotalSeconds:F1} s; outcomes C#/py: " +
            string.Join(", ", tally.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key} {kv.Value}")));
        if (undecided.Count > 0) TestContext.Out.WriteLine("disagreements where the spec does not decide:\n" + string.Join("\n", undecided));
        if (decided.Count > 0) TestContext.Out.WriteLine("DISAGREEMENTS where the spec decides:\n" + string.Join("\n", decided));
        Assert.That(bugs, Is.Empty, "a reader ended with something other than a message, Empty or the corrupt-segment error");
        Assert.That(decided, Is.Empty, "the two languages classify a mutated queue differently where docs/format.md section 11 decides");
    }

    [TestCase(13u, TestName = "queue corrupt count: 32 * count > tail - read")]
    [TestCase(0xFFFFFFFFu, TestName = "queue corrupt count: count > max_messages")]
    public void ACountTheRecordsCannotHoldIsCorruptInBothLanguages(uint count)
    {
        // Section 11.2: an operation that reads count > max_messages or 32 * count > tail - read reports a
        // corrupt segment and changes nothing. Two messages in the ring, count overwritten.
        string source = NewName();
        byte[] bytes;
        using (var q = SharedQueue.Create(source, new QueueOptions { Capacity = 4096, Lifetime = SegmentLifetime.Persistent }))
        {
            q.Write("first"u8, Long);
            q.Write("second"u8, Long);
            bytes = Shm.ReadAll(source);
            q.Unlink();
        }
        BitConverter.TryWriteBytes(bytes.AsSpan(0x200 + 48), count);
        string cs = NewName(), py = NewName();
        Shm.WriteNew(cs, bytes);
        Shm.WriteNew(py, bytes);
        try
        {
            var c = RunEach(Driver.CSharp, [cs])[0];
            var p = RunEach(Py, [py])[0];
            Assert.Multiple(() =>
            {
                Assert.That((string)c["outcome"]!, Is.EqualTo("corrupt"), "C#: " + c.ToJsonString());
                Assert.That((string)p["outcome"]!, Is.EqualTo("corrupt"), "py: " + p.ToJsonString());
            });
        }
        finally
        {
            Shm.Remove(cs);
            Shm.Remove(py);
        }
    }

    /// <summary>One get per name in one process of the driver (non-blocking); a crash or a hang names the case.</summary>
    private static List<JsonNode> RunEach(Driver driver, IReadOnlyList<string> names)
    {
        using var p = driver.Start(["worker", "q-get-each", "0", .. names]);
        var outs = new List<JsonNode>();
        var deadline = Stopwatch.StartNew();
        for (int i = 0; i < names.Count; i++)
        {
            var left = TimeSpan.FromSeconds(30) - deadline.Elapsed;
            string? line = null;
            try
            {
                line = p.ReadLine(left > TimeSpan.Zero ? left : TimeSpan.FromMilliseconds(1));
            }
            catch (AssertionException)
            {
                Assert.Fail($"{driver.Label} crashed or hung on fuzz case {i} ({names[i]}): {p.Describe()}");
            }
            outs.Add(Json(line!));
        }
        return outs;
    }
}
