using System.Diagnostics;
using System.Runtime.InteropServices;
using SharedBridge.Platform;
using static SharedBridge.Platform.Interop;

namespace SharedBridge.Objects;

/// <summary>
/// The process's waiter thread for asynchronous waits (docs/wakeups-design.md section 6): one background thread,
/// started by the first wait that has to sleep, blocks in futex_waitv on the <c>seq</c> words of every pending wait
/// (one entry per word, however many waits share it) plus a private control word that adding or cancelling a wait
/// bumps and wakes. It re-reads every word at least once per 50 ms slice (section 10.3: a notifier may die between its
/// release and its FUTEX_WAKE) and runs a wait's step when its word changed, its deadline or slice came, it was
/// cancelled or its object disposed. futex_waitv takes at most 128 words: a second thread starts only when more than
/// 127 different words are waited on, and such extra threads end once they have nothing to wait for.
/// </summary>
internal static unsafe class AsyncWaiter
{
    /// <summary>The waiter threads' name (the OS shows its first 15 characters).</summary>
    internal const string ThreadName = "SharedBridge waits";

    private static readonly long SliceTicks = (long)(WaitWords.Slice.TotalSeconds * Stopwatch.Frequency);

    // Guards every worker's list of waits and s_workers.
    private static readonly object s_gate = new();
    private static readonly List<Worker> s_workers = [];

    /// <summary>False on kernels without futex_waitv: each asynchronous wait then blocks a dedicated thread.</summary>
    internal static bool Available => FutexWaitv.Available && !s_unavailableForTests;

    /// <summary>Tests only: behave as on a kernel without futex_waitv.</summary>
    internal static bool s_unavailableForTests;

    internal static void Add(WaitWords.AsyncWait wait)
    {
        Worker worker;
        lock (s_gate)
        {
            worker = s_workers.Find(w => w.Watches(wait.Seq)) ?? s_workers.Find(w => w.HasRoom) ?? Worker.Start(s_workers.Count == 0);
            worker.Add(wait);
        }
        worker.Poke();
    }

    /// <summary>Wakes the thread serving <paramref name="wait"/> (it was cancelled).</summary>
    internal static void Poke(WaitWords.AsyncWait wait)
    {
        Worker? worker;
        lock (s_gate) worker = (Worker?)wait.Worker;
        worker?.Poke();     // not handed over yet: the thread sees the cancellation when it gets it
    }

    private sealed class Worker
    {
        private readonly bool _first;
        // Pinned, and owned by the worker object: a late Poke from a cancellation never writes freed memory.
        private readonly uint[] _controlWord = GC.AllocateArray<uint>(1, pinned: true);
        private readonly uint* _control;
        // Both guarded by s_gate: the pending waits, and how many of them wait on each word.
        private readonly List<WaitWords.AsyncWait> _waits = [];
        private readonly Dictionary<nint, int> _words = [];

        private Worker(bool first)
        {
            _first = first;
            _control = (uint*)Marshal.UnsafeAddrOfPinnedArrayElement(_controlWord, 0);
        }

        internal static Worker Start(bool first)
        {
            var worker = new Worker(first);
            s_workers.Add(worker);
            // UnsafeStart: the thread serves every caller, it takes nobody's ExecutionContext.
            new Thread(worker.Run) { IsBackground = true, Name = ThreadName }.UnsafeStart();
            return worker;
        }

        internal bool Watches(uint* word) => _words.ContainsKey((nint)word);

        internal bool HasRoom => _words.Count < FutexWaitv.MaxWords - 1;    // one entry is the control word

        internal void Add(WaitWords.AsyncWait wait)
        {
            _waits.Add(wait);
            _words[(nint)wait.Seq] = _words.GetValueOrDefault((nint)wait.Seq) + 1;
            wait.Worker = this;
        }

        private void Remove(WaitWords.AsyncWait wait)
        {
            _waits.Remove(wait);
            if (--_words[(nint)wait.Seq] == 0) _words.Remove((nint)wait.Seq);
        }

        internal void Poke()
        {
            Interlocked.Increment(ref *(int*)_control);
            Futex.Wake(_control);
        }

        private void Run()
        {
            var entries = (FutexWaitvEntry*)NativeMemory.Alloc((nuint)(FutexWaitv.MaxWords * sizeof(FutexWaitvEntry)));
            var pending = new List<WaitWords.AsyncWait>();
            var over = new List<WaitWords.AsyncWait>();
            var seen = new HashSet<nint>();
            while (true)
            {
                try
                {
                    // Read before the list: a wait added or cancelled after this read changes the word, and
                    // futex_waitv returns at once.
                    uint control = Volatile.Read(ref *_control);
                    pending.Clear();
                    lock (s_gate)
                    {
                        if (_waits.Count == 0 && !_first)
                        {
                            s_workers.Remove(this);
                            break;
                        }
                        pending.AddRange(_waits);
                    }
                    long now = Stopwatch.GetTimestamp();
                    long wake = pending.Count == 0 ? long.MaxValue : now + SliceTicks;
                    over.Clear();
                    foreach (var wait in pending)
                    {
                        if (wait.Due(now) && wait.Attempt()) over.Add(wait);    // Attempt never throws
                    }
                    if (over.Count > 0)
                    {
                        lock (s_gate) over.ForEach(Remove);
                    }
                    FutexWaitv.Set(entries, _control, control);
                    int count = 1;
                    seen.Clear();
                    foreach (var wait in pending)
                    {
                        if (over.Contains(wait)) continue;
                        wake = Math.Min(wake, wait.RetryAt > now ? wait.RetryAt : wait.NextStep);
                        // A wait whose lock was busy is retried at RetryAt; its word may have changed already.
                        if (wait.RetryAt <= now && seen.Add((nint)wait.Seq)) FutexWaitv.Set(entries + count++, wait.Seq, wait.Expected);
                    }
                    long left = wake - Stopwatch.GetTimestamp();
                    if (wake != long.MaxValue && left <= 0) continue;
                    var timeout = wake == long.MaxValue ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds((double)left / Stopwatch.Frequency);
                    int errno = FutexWaitv.Wait(entries, count, timeout);
                    if (errno != 0)
                    {
                        // Never expected (the words stay mapped while their waits are pending): report it and go on
                        // re-reading the words once per slice rather than spinning.
                        Trace.TraceError($"SharedBridge: futex_waitv failed: {OsErrors.Describe(errno)}; asynchronous waits poll every slice.");
                        Thread.Sleep(WaitWords.Slice);
                    }
                }
                catch (Exception e)     // a bug of this loop: the waits stay pending and the thread serves them on
                {
                    Trace.TraceError($"SharedBridge: the asynchronous waiter thread failed: {e}");
                    Thread.Sleep(WaitWords.Slice);
                }
            }
            NativeMemory.Free(entries);
        }
    }
}
