using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using SharedBridge;

namespace SharedBridge.Benchmarks;

/// <summary>
/// The .NET sides of the wake-up ping-pong (bench/wakeup.py, docs/benchmarks.md section 7). One round trip:
/// the driving side hands "ping" over and waits for "pong"; the serving side waits for "ping" and hands
/// "pong" back. KIND and its segments (bench/wakeup.py creates them, both sides open them):
/// <list type="bullet">
/// <item><c>event PING PONG</c>: driver Set(ping), Wait(pong), Reset(pong); server Wait(ping), Reset(ping), Set(pong).</item>
/// <item><c>semaphore PING PONG</c> (both at 0): driver Release(ping), Wait(pong); server Wait(ping), Release(pong).</item>
/// <item><c>condition COND STATE</c> (STATE an int value, 0): each side holds the condition's lock for the whole
/// run except inside Wait; driver state = 1, Notify, wait until state == 0; server waits until state == 1,
/// state = 0, Notify.</item>
/// </list>
/// Every wait is cut into slices of <see cref="Slice"/>; only when a slice times out does a side check that
/// its peer (a process id, or the other thread) is alive and that it has waited less than the patience, and
/// otherwise gives up (exit 1), so a dead peer ends the run and the hot path carries no bookkeeping.
/// </summary>
internal static class Wake
{
    private static readonly TimeSpan Slice = TimeSpan.FromMilliseconds(200);

    private sealed class GaveUpException(string message) : Exception(message);

    /// <summary>Checks the peer after a slice timed out; <paramref name="slices"/> counts this wait's timed-out slices.</summary>
    private sealed class Peer(Func<bool> alive, double patienceSeconds)
    {
        public void Check(int slices)
        {
            if (!alive()) throw new GaveUpException("the other side has died");
            if (slices * Slice.TotalSeconds > patienceSeconds) throw new GaveUpException("no progress within the patience");
        }

        /// <summary>A process is alive when /proc/PID/stat exists and its state is not zombie or dead.</summary>
        public static Func<bool> Process(int pid) => () =>
        {
            try
            {
                string stat = File.ReadAllText($"/proc/{pid}/stat");
                char state = stat[(stat.LastIndexOf(')') + 2)..].FirstOrDefault();
                return state is not ('Z' or 'X' or 'x' or '\0');
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentOutOfRangeException)
            {
                return false;    // gone, or a stat line this reader does not understand: treat as gone
            }
        };
    }

    /// <summary>One side of a ping-pong over a kind of shared object.</summary>
    private interface ISide : IDisposable
    {
        /// <summary>Runs <paramref name="loop"/> (the condition holds its lock around it, as its waits need).</summary>
        void Run(TimeSpan patience, Action loop) => loop();
        void Ping(Peer peer);      // the driver's half: hand over, wait for the answer
        void Pong(Peer peer);      // the server's half: wait for the request, answer
    }

    private sealed class EventSide(string ping, string pong) : ISide
    {
        private readonly SharedEvent _ping = SharedEvent.Open(ping), _pong = SharedEvent.Open(pong);

        public void Ping(Peer peer)
        {
            _ping.Set();
            for (int s = 1; !_pong.Wait(Slice); s++) peer.Check(s);
            _pong.Reset();
        }

        public void Pong(Peer peer)
        {
            for (int s = 1; !_ping.Wait(Slice); s++) peer.Check(s);
            _ping.Reset();
            _pong.Set();
        }

        public void Dispose()
        {
            _ping.Dispose();
            _pong.Dispose();
        }
    }

    /// <summary>Release / wait on two counting semaphores at 0: SharedSemaphore across processes, and .NET's own
    /// baseline SemaphoreSlim between two threads of this process.</summary>
    private sealed class CountingSide<T>(T ping, T pong, Action<T> release, Func<T, TimeSpan, bool> wait) : ISide
        where T : IDisposable
    {
        public void Ping(Peer peer)
        {
            release(ping);
            for (int s = 1; !wait(pong, Slice); s++) peer.Check(s);
        }

        public void Pong(Peer peer)
        {
            for (int s = 1; !wait(ping, Slice); s++) peer.Check(s);
            release(pong);
        }

        public void Dispose()
        {
            ping.Dispose();
            pong.Dispose();
        }
    }

    private static CountingSide<SharedSemaphore> SemaphoreSide(string ping, string pong) =>
        new(SharedSemaphore.Open(ping), SharedSemaphore.Open(pong), static s => s.Release(), static (s, t) => s.Wait(t));

    private static CountingSide<SemaphoreSlim> SlimSide() =>
        new(new SemaphoreSlim(0), new SemaphoreSlim(0), static s => s.Release(), static (s, t) => s.Wait(t));

    private sealed class ConditionSide(string cond, string state) : ISide
    {
        private readonly SharedCondition _cond = SharedCondition.Open(cond);
        private readonly SharedValue<int> _state = SharedValue<int>.Open(state);
        public void Run(TimeSpan patience, Action loop)
        {
            using (_cond.Lock(patience))
                loop();
        }

        public void Ping(Peer peer)
        {
            _state.Value = 1;
            _cond.Notify();
            for (int s = 1; _state.Value != 0;)
                if (!_cond.Wait(Slice)) peer.Check(s++);
        }

        public void Pong(Peer peer)
        {
            for (int s = 1; _state.Value != 1;)
                if (!_cond.Wait(Slice)) peer.Check(s++);
            _state.Value = 0;
            _cond.Notify();
        }

        public void Dispose()
        {
            _cond.Dispose();
            _state.Dispose();
        }
    }

    private static ISide Open(string kind, string[] names) => (kind, names) switch
    {
        ("event", [var a, var b]) => new EventSide(a, b),
        ("semaphore", [var a, var b]) => SemaphoreSide(a, b),
        ("condition", [var a, var b]) => new ConditionSide(a, b),
        _ => throw new ArgumentException($"wake: unknown kind {kind} or wrong number of names ({names.Length}); " +
                                         "kinds: event PING PONG, semaphore PING PONG, condition COND STATE"),
    };

    /// <summary><c>wake serve KIND ROUND_TRIPS PEER_PID PATIENCE_S NAME...</c>: prints "ready", then answers
    /// ROUND_TRIPS requests (warm-up included).</summary>
    internal static int Serve(string kind, int roundTrips, int peerPid, double patienceS, string[] names) =>
        Guarded("serve", () =>
        {
            using var side = Open(kind, names);
            var peer = new Peer(Peer.Process(peerPid), patienceS);
            Console.WriteLine("ready");
            Console.Out.Flush();
            side.Run(TimeSpan.FromSeconds(patienceS), () =>
            {
                for (int i = 0; i < roundTrips; i++) side.Pong(peer);
            });
        });

    /// <summary><c>wake drive KIND ROUND_TRIPS WARMUP PEER_PID PATIENCE_S NAME...</c>: WARMUP + ROUND_TRIPS round
    /// trips against a server already running; prints the measured ones in ns on one line.</summary>
    internal static int Drive(string kind, int roundTrips, int warmup, int peerPid, double patienceS, string[] names) =>
        Guarded("drive", () =>
        {
            using var side = Open(kind, names);
            Print(DriveLoop(side, roundTrips, warmup, new Peer(Peer.Process(peerPid), patienceS), patienceS));
        });

    /// <summary><c>wake slim ROUND_TRIPS WARMUP PATIENCE_S</c>: SemaphoreSlim ping-pong between two threads.</summary>
    internal static int Slim(int roundTrips, int warmup, double patienceS) =>
        Guarded("slim", () =>
        {
            using var side = SlimSide();
            var main = Thread.CurrentThread;
            var server = new Thread(() =>
            {
                try
                {
                    var toMain = new Peer(() => main.IsAlive, patienceS);
                    for (int i = 0; i < roundTrips + warmup; i++) side.Pong(toMain);
                }
                catch (GaveUpException)
                {
                    // The driving thread gives up too and reports.
                }
            }) { IsBackground = true, Name = "slim-serve" };
            server.Start();
            Print(DriveLoop(side, roundTrips, warmup, new Peer(() => server.IsAlive, patienceS), patienceS));
            server.Join(TimeSpan.FromSeconds(patienceS));
        });

    /// <summary><c>wake settings</c>: what this process sees of the settings bench/wakeup.py varies, as one JSON line:
    /// the library's spin budget in microseconds (<c>SharedBridgeSettings.SpinBudget</c>, read by reflection so
    /// that this builds against a library without it: null then) and <see cref="Environment.ProcessorCount"/>
    /// (on Linux the CPUs this process may run on, which a pinned session restricts to one).</summary>
    internal static int Settings()
    {
        PropertyInfo? spin = typeof(SharedEvent).Assembly.GetType("SharedBridge.SharedBridgeSettings")
            ?.GetProperty("SpinBudget", BindingFlags.Public | BindingFlags.Static);
        string budget = spin?.GetValue(null) is TimeSpan t
            ? t.TotalMicroseconds.ToString(CultureInfo.InvariantCulture)
            : "null";
        Console.WriteLine($"{{\"spin_budget_us\": {budget}, \"cpus\": {Environment.ProcessorCount}}}");
        return 0;
    }

    private static long[] DriveLoop(ISide side, int roundTrips, int warmup, Peer peer, double patienceS)
    {
        var times = new long[roundTrips];
        double nsPerTick = 1e9 / Stopwatch.Frequency;
        side.Run(TimeSpan.FromSeconds(patienceS), () =>
        {
            for (int i = -warmup; i < roundTrips; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                side.Ping(peer);
                long t1 = Stopwatch.GetTimestamp();
                if (i >= 0) times[i] = (long)((t1 - t0) * nsPerTick);
            }
        });
        return times;
    }

    private static void Print(long[] times) =>
        Console.WriteLine(string.Join(' ', times.Select(t => t.ToString(CultureInfo.InvariantCulture))));

    private static int Guarded(string role, Action body)
    {
        try
        {
            body();
            return 0;
        }
        catch (GaveUpException e)
        {
            Console.Error.WriteLine($"wake {role}: {e.Message}");
            return 1;
        }
    }
}
