// Which threads does SharedEvent.WaitAsync use while it sleeps (docs/wakeups-design.md section 6)?
// Counts the OS threads (/proc/self/task, by name) and the pool's threads before and while 50 waits are
// pending, where the code after an await resumes, what one WaitAsync on a set event costs, and how long a
// pending WaitAsync takes from Set to the code after its await, next to a thread blocked in Wait.
using System.Diagnostics;
using SharedBridge;

static Dictionary<string, int> Threads() =>
    Directory.GetDirectories("/proc/self/task")
        .Select(t => File.ReadAllText(Path.Combine(t, "comm")).Trim())
        .GroupBy(n => n).ToDictionary(g => g.Key, g => g.Count());

static void Show(string when)
{
    var t = Threads();
    Console.WriteLine($"{when}: OS threads {t.Values.Sum()}, ThreadPool.ThreadCount {ThreadPool.ThreadCount}, " +
        $"pending pool items {ThreadPool.PendingWorkItemCount}; by name: " +
        string.Join(", ", t.OrderByDescending(kv => kv.Value).Take(6).Select(kv => $"{kv.Key} x{kv.Value}")));
}

string name = $"sbWD_async_{Environment.ProcessId}";
using var ev = SharedEvent.Create(name);
Show("before");
var waits = Enumerable.Range(0, 50).Select(_ => ev.WaitAsync(TimeSpan.FromSeconds(30))).ToArray();
Thread.Sleep(500);
Show("50 WaitAsync pending");
string? contThread = null; bool contPool = false;
var one = Task.Run(async () =>
{
    await ev.WaitAsync(TimeSpan.FromSeconds(30));
    contThread = Thread.CurrentThread.Name; contPool = Thread.CurrentThread.IsThreadPoolThread;
});
Thread.Sleep(200);
ev.Set();
Task.WaitAll(waits, TimeSpan.FromSeconds(10));
one.Wait(TimeSpan.FromSeconds(10));
Console.WriteLine($"all completed: {waits.All(w => w.IsCompletedSuccessfully && w.Result)}; the code after 'await WaitAsync' ran on thread " +
    $"\"{contThread}\" (thread-pool thread: {contPool})");
Thread.Sleep(300);
Show("after Set");
// Cost of one WaitAsync on a set event (completes on the calling thread; before the waiter thread, a dedicated
// thread's start) vs Wait.
var sw = new List<double>(); var ss = new List<double>();
for (int i = 0; i < 300; i++)
{
    long t0 = Stopwatch.GetTimestamp(); ev.WaitAsync(TimeSpan.FromSeconds(5)).Wait(); sw.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
    t0 = Stopwatch.GetTimestamp(); ev.Wait(TimeSpan.FromSeconds(5)); ss.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
}
sw.Sort(); ss.Sort();
Console.WriteLine($"event already set: WaitAsync(...).Wait() median {sw[150]:F1} us (p99 {sw[296]:F1}); Wait() median {ss[150]:F1} us");

// Wake-up of one pending wait: Set, then the code after the await (a pool thread) or after Wait (a blocked thread).
double[] WakeUps(bool async)
{
    var us = new double[300];
    for (int i = 0; i < us.Length; i++)
    {
        ev.Reset();
        long resumed = 0;
        Task waiter = async
            ? Task.Run(async () => { await ev.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); resumed = Stopwatch.GetTimestamp(); })
            : Task.Factory.StartNew(() => { ev.Wait(TimeSpan.FromSeconds(5)); resumed = Stopwatch.GetTimestamp(); }, TaskCreationOptions.LongRunning);
        Thread.Sleep(2);    // the waiter is asleep by now
        long set = Stopwatch.GetTimestamp();
        ev.Set();
        waiter.Wait(TimeSpan.FromSeconds(10));
        us[i] = Stopwatch.GetElapsedTime(set, resumed).TotalMicroseconds;
    }
    Array.Sort(us);
    return us;
}
var wa = WakeUps(async: true);
var ws = WakeUps(async: false);
Console.WriteLine($"pending wait, Set to resumed: WaitAsync median {wa[150]:F1} us (p99 {wa[296]:F1}); Wait median {ws[150]:F1} us (p99 {ws[296]:F1})");
