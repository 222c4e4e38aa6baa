using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>A process of one language holds the lock (twice when it is recursive), writes data
/// and is killed with SIGKILL; a process of the other language then acquires: it must get the lock, be
/// told it recovered it, and see the data written before the kill. The segment is created by the
/// test process itself, which stays out of the lock.</summary>
public sealed class CrashRecoveryTests : CrossTestBase
{
    private static readonly int[] Written = [11, 22, 33, 44, 55];

    public static IEnumerable<TestCaseData> Cases() =>
        from py in Interpreters.All
        from shared in new[] { false, true }
        let what = shared ? "a shared Lock segment" : "an embedded RLock held twice"
        from pair in new[] { (py.Label, Driver.CSharpLabel), (Driver.CSharpLabel, py.Label) }
        select new TestCaseData(pair.Item1, pair.Item2, shared)
            .SetName($"{pair.Item1} holder of {what} SIGKILLed -> {pair.Item2} recovers the lock");

    [TestCaseSource(nameof(Cases))]
    public void NextAcquireRecoversFromTheKilledHolder(string holderLabel, string recovererLabel, bool sharedLock)
    {
        string name = Shm.NewName();
        // lock=Lock() in Python terms: a non-recursive lock in its own segment (lock_kind 2)
        using var lockSegment = sharedLock ? SharedLock.Create(name + "l", new SegmentOptions { RecursiveLock = false }) : null;
        using var array = SharedArray<int>.Create(name, Written.Length, new SegmentOptions { SharedLock = lockSegment });
        Driver holder = Driver.ByLabel(holderLabel), recoverer = Driver.ByLabel(recovererLabel);

        using (var holding = holder.Start(["worker", "hold", name, .. Written.Select(v => v.ToString())]))
        {
            string line = holding.ReadLine(Quick);
            Assert.That(line, Does.Contain("holding"), holding.Describe());
            Assert.That(array.TryLock(TimeSpan.FromMilliseconds(100), out _), Is.False, "the holder does not actually hold the lock");
            holding.Kill();
        }

        using JsonDocument first = Acquire(recoverer, name);
        JsonElement r = first.RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(r.GetProperty("acquired").GetBoolean(), Is.True, "the lock was not acquired after the holder died");
            Assert.That(r.GetProperty("recovered").GetBoolean(), Is.True, "the acquire did not report the recovery");
            Assert.That(r.GetProperty("recoveries").GetInt64(), Is.EqualTo(1), "recovery_count after one recovery");
            Assert.That(r.GetProperty("values").EnumerateArray().Select(v => v.GetInt32()), Is.EqualTo(Written), "data written before the kill");
        });

        using JsonDocument second = Acquire(recoverer, name);
        Assert.Multiple(() =>
        {
            Assert.That(second.RootElement.GetProperty("recovered").GetBoolean(), Is.False, "a healthy lock reported a recovery");
            Assert.That(array.LockRecoveries, Is.EqualTo(1), "the creator does not see the recovery count");
        });
        using (array.Lock(TimeSpan.FromSeconds(5))) Assert.That(array.ToArray(), Is.EqualTo(Written));
    }

    private static JsonDocument Acquire(Driver driver, string name)
    {
        DriverResult r = driver.Run(Quick, "worker", "acquire", name);
        Assert.That(r.ExitCode, Is.Zero, r.Describe());
        return JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
    }
}
