using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// The lock rules of docs/format.md sections 7.2 to 7.4 across languages. A holder of one language is
/// killed and a careless program unlocks without pthread_mutex_consistent (the test process, through
/// raw pthread calls); or the mutex bytes are overwritten. Then every acquire entry point of every
/// driver, twice, must give the same outcome (not-recoverable / corrupt-lock, never a hang, never an
/// acquire), the lock word must stay 0, and the other language's operator reset must make it usable.
/// </summary>
public sealed partial class LockHardeningTests : CrossTestBase
{
    private const int MutexOffset = 0x1C0, LockWord = 0, KindWord = 16;

    [LibraryImport("libc", EntryPoint = "pthread_mutex_lock")]
    private static partial int RawLock(IntPtr mutex);

    [LibraryImport("libc", EntryPoint = "pthread_mutex_unlock")]
    private static partial int RawUnlock(IntPtr mutex);

    private static IEnumerable<Driver> Drivers() => [Driver.CSharp, .. Interpreters.All.Select(Driver.Python)];

    public static IEnumerable<TestCaseData> PairCases() =>
        from py in Interpreters.All
        from pair in new[] { (Driver.CSharpLabel, py.Label), (py.Label, Driver.CSharpLabel) }
        select new TestCaseData(pair.Item1, pair.Item2)
            .SetName($"not recoverable after a {pair.Item1} holder died: every driver fails every acquire, {pair.Item2} resets it");

    [TestCaseSource(nameof(PairCases))]
    public void NotRecoverableLockFailsEveryAcquirerThenTheOtherLanguageResetsIt(string holderLabel, string resetterLabel)
    {
        string name = Shm.NewName();
        try
        {
            // Kept, and closed by the test process before the reset: a lock is never reset while another
            // process maps its segment.
            using (SharedArray<int>.Create(name, 2, new SegmentOptions { RecursiveLock = holderLabel != Driver.CSharpLabel, KeepOnDispose = true })) { }
            using (var holding = Driver.ByLabel(holderLabel).Start("worker", "hold", name, "42"))
            {
                Assert.That(holding.ReadLine(Quick), Does.Contain("holding"), holding.Describe());
                holding.Kill();
            }
            using (var raw = RawView.Of(name))
            {
                Assert.That(RawLock(raw.Mutex), Is.EqualTo(130), "EOWNERDEAD after the holder's death");
                Assert.That(RawUnlock(raw.Mutex), Is.Zero); // without pthread_mutex_consistent
            }

            foreach (var driver in Drivers())
                ExpectEveryOutcome(driver, name, "not-recoverable");

            using (JsonDocument reset = Worker(Driver.ByLabel(resetterLabel), "reset-lock", name))
                Assert.That(reset.RootElement.GetProperty("reset").GetBoolean(), Is.True);
            foreach (var driver in Drivers())
                ExpectEveryOutcome(driver, name, "acquired");
            using var array = SharedArray<int>.Open(name);
            using (array.Lock(TimeSpan.FromSeconds(5))) Assert.That(array[0], Is.EqualTo(42));
            Assert.That(array.LockRecoveries, Is.EqualTo(1), "the reset counts as a recovery");
        }
        finally
        {
            Shm.Remove(name);
        }
    }

    public static IEnumerable<TestCaseData> CorruptCases() =>
        from corruption in new[] { "zeroed kind", "priority-inheritance kind", "forged owner" }
        select new TestCaseData(corruption).SetName($"{corruption}: every driver reports a corrupt lock, never aborts or hangs");

    [TestCaseSource(nameof(CorruptCases))]
    public void CorruptMutexIsAnErrorInEveryLanguage(string corruption)
    {
        string name = Shm.NewName();
        using var array = SharedArray<int>.Create(name, 2);
        int tid = 4_000_000;
        while (Directory.Exists($"/proc/{tid}")) tid++;
        int goodKind;
        using (var raw = RawView.Of(name))
        {
            goodKind = raw[KindWord];
            switch (corruption)
            {
                case "zeroed kind": raw[KindWord] = 0; break;
                case "priority-inheritance kind": raw[KindWord] = goodKind | 0x20; raw[LockWord] = tid | 0x40000000; break;
                default: raw[LockWord] = tid; break;
            }
        }
        // C# and one interpreter: a forged owner costs each waiting acquire a second to notice.
        foreach (var driver in new[] { Driver.CSharp, Driver.Python(Interpreters.Preferred) })
        {
            using JsonDocument probe = Worker(driver, "lock-probe", name);
            var outcomes = probe.RootElement.GetProperty("outcomes").EnumerateArray().Select(o => o.GetString()).ToList();
            // A try (no waiting) on a forged owner sees a busy lock; every acquire that waits must
            // notice that the owner does not exist.
            var expected = Enumerable.Range(0, 2).SelectMany(_ => corruption == "forged owner"
                ? new[] { "corrupt-lock", "corrupt-lock", "busy", "corrupt-lock" }
                : new[] { "corrupt-lock", "corrupt-lock", "corrupt-lock", "corrupt-lock" });
            Assert.That(outcomes, Is.EqualTo(expected), $"{driver.Label}: {probe.RootElement}");
        }
        using (var raw = RawView.Of(name))
        {
            raw[KindWord] = goodKind;
            raw[LockWord] = 0;
        }
        using (array.Lock(TimeSpan.FromSeconds(5))) array[1] = 5;
        Assert.That(array[1], Is.EqualTo(5));
    }

    private static void ExpectEveryOutcome(Driver driver, string name, string outcome)
    {
        using JsonDocument probe = Worker(driver, "lock-probe", name);
        var outcomes = probe.RootElement.GetProperty("outcomes").EnumerateArray().Select(o => o.GetString());
        Assert.Multiple(() =>
        {
            Assert.That(outcomes, Is.All.EqualTo(outcome), $"{driver.Label}: {probe.RootElement}");
            Assert.That(probe.RootElement.GetProperty("lock_word").GetInt32(), Is.Zero, $"{driver.Label} left the lock word set");
        });
    }

    private static JsonDocument Worker(Driver driver, params string[] args)
    {
        DriverResult r = driver.Run(Quick, ["worker", .. args]);
        Assert.That(r.ExitCode, Is.Zero, r.Describe());
        return JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
    }

    /// <summary>A raw second mapping of the segment: what another (buggy) program sees.</summary>
    private sealed class RawView : IDisposable
    {
        private readonly MemoryMappedFile _file;
        private readonly MemoryMappedViewAccessor _view;

        private RawView(string name)
        {
            _file = MemoryMappedFile.CreateFromFile("/dev/shm/" + name, FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
            _view = _file.CreateViewAccessor(0, 512, MemoryMappedFileAccess.ReadWrite);
        }

        internal static RawView Of(string name) => new(name);

        internal IntPtr Mutex => _view.SafeMemoryMappedViewHandle.DangerousGetHandle() + (int)_view.PointerOffset + MutexOffset;

        internal int this[int word]
        {
            get => _view.ReadInt32(MutexOffset + word);
            set => _view.Write(MutexOffset + word, value);
        }

        public void Dispose()
        {
            _view.Dispose();
            _file.Dispose();
        }
    }
}
