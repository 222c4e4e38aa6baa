using System.Diagnostics;
using SharedBridge.Platform;

namespace SharedBridge.Objects;

/// <summary>A kind's part of an asynchronous wait, run with the mutex held: true when the operation is over
/// (<paramref name="result"/> is its outcome), false to wait for the next change of <c>seq</c>. <paramref name="expired"/>
/// is true once the wait's deadline has passed. An exception ends the wait (the task faults).</summary>
internal delegate bool AsyncStep<T>(bool expired, out T result);

/// <summary>
/// Asynchronous waits (docs/wakeups-design.md section 6): <c>WaitAsync</c> tries the operation at once on the calling
/// thread; when it has to wait, it joins (section 10.3: waiters += 1, once), and the process's waiter thread
/// (<see cref="AsyncWaiter"/>) sleeps on its <c>seq</c> word together with every other pending wait. When
/// <c>seq</c> changes, the deadline passes, the token is cancelled or the object is disposed, that thread takes the
/// mutex, runs the next step and releases the mutex, all on itself (the mutex never crosses an await), and leaves
/// (once) when the wait is over. The task completes with continuations run asynchronously: the code after an await
/// never runs on the waiter thread.
/// </summary>
internal sealed unsafe partial class WaitWords
{
    /// <summary>The asynchronous form of a kind's wait. <paramref name="periodic"/>: run the step at least once per
    /// slice even when <c>seq</c> does not change (a semaphore's reclaim, a barrier's reap, as their synchronous
    /// waits do); <paramref name="abandon"/> undoes the kind's part when the wait ends by cancellation or an error;
    /// <paramref name="blocking"/> is the synchronous wait, run on a dedicated thread when the kernel has no
    /// futex_waitv (before Linux 5.16). Usage errors (a bad timeout, a disposed object) throw here.</summary>
    internal Task<T> WaitAsync<T>(TimeSpan timeout, CancellationToken cancellationToken, bool periodic, AsyncStep<T> step,
        Action? abandon, Func<T> blocking)
    {
        CheckTimeout(timeout);
        _core.ThrowIfDisposed();
        if (!AsyncWaiter.Available) return RunBlocking(blocking, cancellationToken);
        if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<T>(cancellationToken);
        return new AsyncWait<T>(this, timeout, cancellationToken, periodic, step, abandon).Start();
    }

    internal uint* SeqWord => &_w[Seq];

    // ------------------------------------------------------------------ the wait protocol's words, mutex held

    // The wait protocol's words (section 10.3), mutex held: the synchronous waits' Join, Leave, RegisterSleeper and
    // UnregisterSleeper (WaitWords.cs; an asynchronous waiter counts as a sleeper while it is with the waiter
    // thread), and step 7 below.

    /// <summary>Section 10.3 step 7: a signal, if there is one, is this waiter's.</summary>
    private void AsyncConsumeSignal()
    {
        CheckSignals();
        ConsumeSignal();
    }

    // ------------------------------------------------------------------ one pending wait

    /// <summary>The state of one asynchronous wait; once the first attempt hands it over, only the waiter thread
    /// touches it (except <see cref="RequestCancel"/>).</summary>
    internal abstract class AsyncWait
    {
        private static readonly long SliceTicks = (long)(Slice.TotalSeconds * Stopwatch.Frequency);
        private static readonly long FirstBackoff = Stopwatch.Frequency / 50_000, MaxBackoff = Stopwatch.Frequency / 1_000;

        private protected readonly WaitWords _words;
        private readonly bool _periodic;
        private readonly long _deadline;    // Stopwatch timestamp; long.MaxValue: none
        private long _backoff;
        private volatile bool _cancel;
        private bool _joined, _done;

        private protected AsyncWait(WaitWords words, TimeSpan timeout, bool periodic)
        {
            _words = words;
            _periodic = periodic;
            long now = Stopwatch.GetTimestamp();
            double ticks = timeout.TotalSeconds * Stopwatch.Frequency;
            _deadline = timeout == Timeout.InfiniteTimeSpan || ticks >= long.MaxValue - now ? long.MaxValue : now + (long)ticks;
            Seq = words.SeqWord;
            words._core.Segment.AddRef();     // the words stay mapped until the wait is over, even after a Dispose
        }

        /// <summary>The word the waiter thread sleeps on.</summary>
        internal uint* Seq { get; }

        /// <summary>The value of <see cref="Seq"/> when the wait last went to sleep.</summary>
        internal uint Expected { get; private set; }

        /// <summary>When the step runs even if <see cref="Seq"/> did not change (Stopwatch timestamp).</summary>
        internal long NextStep { get; private set; }

        /// <summary>Until then the mutex is not tried again (it was busy).</summary>
        internal long RetryAt { get; private set; }

        /// <summary>The thread serving this wait (set by <see cref="AsyncWaiter"/>).</summary>
        internal object? Worker { get; set; }

        /// <summary>Whether the waiter thread must run <see cref="Attempt"/> now.</summary>
        internal bool Due(long now) =>
            now >= RetryAt && (_cancel || now >= NextStep || Volatile.Read(ref *Seq) != Expected || _words._core.IsDisposed);

        internal void RequestCancel()
        {
            _cancel = true;
            AsyncWaiter.Poke(this);
        }

        /// <summary>One step with the mutex held, taken and released on this thread; true when the wait is over (its task
        /// is complete). Never throws: a failure faults the task.</summary>
        internal bool Attempt()
        {
            var words = _words;
            try
            {
                if (!words._mutex.TryLock(TimeSpan.Zero, out _))
                {
                    // Held by another thread or process: try again soon, without blocking the other waits.
                    _backoff = _backoff == 0 ? FirstBackoff : Math.Min(2 * _backoff, MaxBackoff);
                    RetryAt = Stopwatch.GetTimestamp() + _backoff;
                    return false;
                }
            }
            catch (Exception e)     // a corrupt or unrecoverable lock: nothing is held
            {
                Finish(() => Fail(e));
                return true;
            }
            _backoff = 0;
            Action complete;
            try
            {
                if (_joined) words.UnregisterSleeper();
                if (_cancel)
                {
                    Abandon();
                    complete = Cancel;
                }
                else
                {
                    if (_joined) words.AsyncConsumeSignal();
                    long now = Stopwatch.GetTimestamp();
                    if (!Step(now >= _deadline))
                    {
                        if (!_joined)
                        {
                            words.Join();
                            _joined = true;
                        }
                        Expected = Volatile.Read(ref *Seq);
                        words.RegisterSleeper();
                        NextStep = _periodic ? Math.Min(_deadline, now + SliceTicks) : _deadline;
                        words._mutex.Unlock();
                        return false;
                    }
                    complete = Succeed;
                }
            }
            catch (Exception e)
            {
                try { Abandon(); }
                catch (Exception) { /* the first error is the one reported */ }
                complete = () => Fail(e);
            }
            if (_joined) words.Leave();
            try
            {
                words._mutex.Unlock();
            }
            catch (Exception e)
            {
                complete = () => Fail(e);
            }
            Finish(complete);
            return true;
        }

        private void Finish(Action complete)
        {
            if (_done) return;
            _done = true;
            _words._core.Segment.Release();
            complete();
        }

        /// <summary>The kind's step (mutex held); the outcome is kept for <see cref="Succeed"/>.</summary>
        private protected abstract bool Step(bool expired);

        /// <summary>The kind's undo (mutex held): the wait ends by cancellation or an error.</summary>
        private protected abstract void Abandon();

        private protected abstract void Succeed();

        private protected abstract void Cancel();

        private protected abstract void Fail(Exception e);
    }

    private sealed class AsyncWait<T>(WaitWords words, TimeSpan timeout, CancellationToken cancellationToken, bool periodic,
        AsyncStep<T> step, Action? abandon) : AsyncWait(words, timeout, periodic)
    {
        private readonly TaskCompletionSource<T> _task = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T _result = default!;
        private CancellationTokenRegistration _registration;

        /// <summary>The first attempt on the calling thread; if the operation has to wait, the waiter thread takes over.</summary>
        internal Task<T> Start()
        {
            if (Attempt()) return _task.Task;
            // Registered before the hand-over: from then on only the waiter thread touches the registration.
            if (cancellationToken.CanBeCanceled)
                _registration = cancellationToken.UnsafeRegister(static w => ((AsyncWait)w!).RequestCancel(), this);
            AsyncWaiter.Add(this);
            return _task.Task;
        }

        private protected override bool Step(bool expired) => step(expired, out _result);

        private protected override void Abandon() => abandon?.Invoke();

        private protected override void Succeed()
        {
            _registration.Unregister();
            _task.TrySetResult(_result);
        }

        private protected override void Cancel()
        {
            _registration.Unregister();
            _task.TrySetCanceled(cancellationToken);
        }

        private protected override void Fail(Exception e)
        {
            _registration.Unregister();
            _task.TrySetException(e);
        }
    }
}
