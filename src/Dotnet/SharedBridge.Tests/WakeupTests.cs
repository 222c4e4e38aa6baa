using System.Diagnostics;
using System.IO.MemoryMappedFiles;

namespace SharedBridge.Tests;

/// <summary>The wait protocol of docs/wakeups-design.md section 3 (docs/format.md section 10.3): a waiting
/// operation stays counted in <c>waiters</c> for its whole length, and a notifier under a recursive lock
/// wakes its waiter at the outermost release.</summary>
public class WakeupTests
{
    private static string NewName(string tag) => Names.Unique(tag, "sbCW");

    private static readonly TimeSpan Long = TimeSpan.FromSeconds(10);

    /// <summary>The synchronization words of a segment mapped a second time, read without the lock as
    /// <c>sharedbridge ls</c> does (SegmentDirectory.ReadSync).</summary>
    internal sealed unsafe class WordReader : IDisposable
    {
        private readonly MemoryMappedFile _file;
        private readonly MemoryMappedViewAccessor _view;
        private readonly uint* _words;

        internal WordReader(string name, long dataOffset)
        {
            _file = MemoryMappedFile.CreateFromFile(Names.ShmPath(name), FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
            _view = _file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.ReadWrite);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _words = (uint*)(p + _view.PointerOffset + dataOffset);
        }

        internal uint this[int index]
        {
            get => Volatile.Read(ref _words[index]);
            set => Volatile.Write(ref _words[index], value);
        }

        /// <summary>Waits (at most 10 s) until word <paramref name="index"/> is <paramref name="value"/>.</summary>
        internal void AwaitWord(int index, uint value)
        {
            var sw = Stopwatch.StartNew();
            while (this[index] != value)
            {
                Assert.True(sw.Elapsed < Long, $"word {index} stayed {this[index]}, expected {value}");
                Thread.Sleep(1);
            }
        }

        /// <summary>Reads the waiters word in a loop for <paramref name="duration"/>; returns how many reads saw 0.</summary>
        internal (long Zeros, long Samples) SampleWaiters(TimeSpan duration)
        {
            long zeros = 0, samples = 0;
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < duration)
            {
                for (int i = 0; i < 1024; i++)
                    if (Volatile.Read(ref _words[1]) == 0) zeros++;
                samples += 1024;
            }
            return (zeros, samples);
        }

        public void Dispose()
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _file.Dispose();
        }
    }

    /// <summary>Runs <paramref name="wait"/> (a 2.5 s wait nobody ends) on a thread and reads the waiters word
    /// without the lock for 0.6 s meanwhile: it must never read 0 (section 10.3: join once, leave once).</summary>
    private static void AssertCountedWhileWaiting(string name, long dataOffset, Func<TimeSpan, bool> wait)
    {
        using var words = new WordReader(name, dataOffset);
        bool? ended = null;
        var waiter = new Thread(() => ended = wait(TimeSpan.FromSeconds(2.5))) { IsBackground = true };
        waiter.Start();
        words.AwaitWord(1, 1);
        var (zeros, samples) = words.SampleWaiters(TimeSpan.FromSeconds(0.6));
        Assert.True(waiter.Join(Long), "the wait did not end at its timeout");
        Assert.False(ended);
        Assert.True(zeros == 0, $"{zeros} of {samples} reads saw waiters 0 while a Wait was on");
        Assert.Equal(0u, words[1]);
    }

    [Fact]
    public void ASemaphoreWaitStaysCountedAsAWaiterAcrossItsSlicesAndReclaims()
    {
        using var sem = SharedSemaphore.Create(NewName("semw"), 1);
        Assert.True(sem.Wait(TimeSpan.Zero));   // a live holder (this process): every slice searches the table
        AssertCountedWhileWaiting(sem.Name, sem.Header.DataOffset, sem.Wait);
        sem.Release();
    }

    [Fact]
    public void AnEventWaitStaysCountedAsAWaiterAcrossItsSlices()
    {
        using var ev = SharedEvent.Create(NewName("evw"));
        AssertCountedWhileWaiting(ev.Name, ev.Header.DataOffset, ev.Wait);
    }

    [Fact]
    public void ABarrierWaitStaysCountedAsAWaiterAcrossItsSlicesAndReaps()
    {
        using var barrier = SharedBarrier.Create(NewName("barw"), 2);
        AssertCountedWhileWaiting(barrier.Name, barrier.Header.DataOffset, timeout =>
        {
            try
            {
                barrier.SignalAndWait(timeout);
                return true;
            }
            catch (BrokenBarrierException)
            {
                return false;   // its timeout broke the barrier
            }
        });
    }

    [Fact]
    public void AConditionNotifiedUnderARecursiveLockHeldTwiceWakesItsWaiterAfterTheOuterRelease()
    {
        string name = NewName("cond");
        using var cond = SharedCondition.Create(name);
        using var words = new WordReader(name, cond.Header.DataOffset);
        bool? notified = null;
        using var returned = new ManualResetEventSlim();
        var waiter = new Thread(() =>
        {
            using (cond.Lock()) notified = cond.Wait(Long);
            returned.Set();
        }) { IsBackground = true };
        waiter.Start();
        words.AwaitWord(1, 1);
        using (cond.Lock())
        {
            using (cond.Lock()) cond.Notify();
            // The inner release leaves the lock held: the waiter cannot return yet.
            Assert.False(returned.Wait(100));
        }
        Assert.True(returned.Wait(Long), "the waiter was not woken after the outer release");
        Assert.True(waiter.Join(Long));
        Assert.True(notified);
        Assert.Equal(0u, words[1]);
        Assert.Equal(0u, words[2]);
    }
}
