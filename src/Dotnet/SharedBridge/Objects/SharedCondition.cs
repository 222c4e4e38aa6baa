// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using System.Diagnostics;
using SharedBridge.Objects;
using static SharedBridge.Objects.WaitWords;

namespace SharedBridge;

/// <summary>
/// A named condition variable shared between processes and languages (docs/format.md section 10, kind 6):
/// Python's <c>sharedbridge.Condition</c>. It has its own recursive lock, or uses any SharedBridge lock
/// (a <see cref="SharedLock"/>, or <c>GetLock()</c> of a synchronized array or value), whose segment it
/// names. Hold the lock around <see cref="Wait(TimeSpan)"/>, <see cref="Notify"/> and
/// <see cref="NotifyAll"/>: "update under the lock, then notify". A waiter may wake without a
/// notification after another waiter died: wait in a predicate loop (<see cref="WaitFor"/>).
/// </summary>
public sealed class SharedCondition : IDisposable
{
    private const string OwnerName = "SharedCondition";
    private readonly WaitWords _words;

    private SharedCondition(WaitWords words) => _words = words;

    /// <summary>Creates a condition segment.</summary>
    /// <param name="name">Segment name, or null for a generated name.</param>
    /// <param name="sharedLock">The lock to use (for example <c>array.GetLock()</c>), or null for the condition's own
    /// recursive lock. The segment records the lock's name, so every process and language finds it.</param>
    /// <param name="options">Mode and lifetime (Synchronized must stay true, SharedLock and TypeCode null).</param>
    /// <exception cref="ArgumentException"><paramref name="sharedLock"/> is the internal lock of an event, a semaphore, a
    /// barrier or a queue (docs/format.md section 10.1).</exception>
    public static SharedCondition Create(string? name = null, SharedLock? sharedLock = null, SegmentOptions? options = null)
    {
        if (sharedLock is not null && !SharedObjectCore.CanLockACondition(sharedLock.SegmentKind))
            throw new ArgumentException(
                $"The lock of \"{sharedLock.Name}\" is the internal lock of {sharedLock.SegmentKind} (kind {(int)sharedLock.SegmentKind}), which " +
                "guards that object's own words: a condition may not use it (docs/format.md section 10.1). Use a SharedLock, or the lock of an " +
                "array or a value.", nameof(sharedLock));
        return new(new WaitWords(WaitWords.Create(OwnerName, name, SegmentKind.Condition, options, [], sharedLock)));
    }

    /// <summary>Opens an existing condition segment (and its lock's segment).</summary>
    /// <exception cref="TypeMismatchException">The segment is not a condition.</exception>
    public static SharedCondition Open(string name, OpenOptions? options = null) =>
        new(OpenChecked(OwnerName, name, options, SegmentKind.Condition).Words);

    /// <summary>The segment name.</summary>
    public string Name => _words.Core.Name;

    /// <summary>True when this object created the segment.</summary>
    public bool IsOwner => _words.Core.IsOwner;

    /// <summary>The validated private copy of the header.</summary>
    public SegmentHeader Header => _words.Core.Header;

    /// <summary>The name of the segment holding the lock (this one, or the one given at creation).</summary>
    public string LockName => _words.Core.LockHolder!.Name;

    /// <summary>Acquires the condition's lock; dispose the scope to release it.</summary>
    public LockScope Lock() => _words.Core.Lock();

    /// <summary>Acquires the condition's lock within <paramref name="timeout"/>.</summary>
    /// <exception cref="LockTimeoutException">The lock was not acquired in time.</exception>
    public LockScope Lock(TimeSpan timeout) => _words.Core.Lock(timeout);

    /// <summary>The condition's lock as a <see cref="SharedLock"/> (dispose it when done).</summary>
    public SharedLock GetLock() => SharedLock.ForSegmentOf(_words.Core);

    /// <summary>Releases the lock, waits for a notification, takes the lock again.</summary>
    public void Wait() => Wait(Timeout.InfiniteTimeSpan, default);

    /// <summary>Releases the lock, waits for a notification or <paramref name="timeout"/>, takes the lock again;
    /// false when the timeout expired. A lock this thread holds several times (nested <see cref="Lock()"/> scopes) is
    /// released completely and taken again to the same depth, as Python's (multiprocessing's) Condition does with an
    /// RLock (docs/format.md section 10.3).</summary>
    /// <exception cref="SynchronizationLockException">This thread does not hold the lock.</exception>
    public bool Wait(TimeSpan timeout) => Wait(timeout, default);

    /// <summary>As <see cref="Wait(TimeSpan)"/>; a cancellation ends the wait (OperationCanceledException) with the
    /// lock held again.</summary>
    public bool Wait(TimeSpan timeout, CancellationToken cancellationToken) => _words.Wait(timeout, cancellationToken);

    /// <summary>Waits until <paramref name="predicate"/> is true (checked under the lock) or <paramref name="timeout"/>
    /// passes; returns the predicate's last value. The caller holds the lock.</summary>
    public bool WaitFor(Func<bool> predicate, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        CheckTimeout(timeout);
        long start = Stopwatch.GetTimestamp();
        while (!predicate())
        {
            var left = Left(timeout, start);
            if (left == TimeSpan.Zero) return false;
            Wait(left);
        }
        return true;
    }

    /// <summary>Wakes at most <paramref name="count"/> waiters, in any process; the caller holds the lock.</summary>
    /// <exception cref="SynchronizationLockException">This thread does not hold the lock.</exception>
    public void Notify(int count = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _words.RequireHeld("Notify");
        _words.Notify((uint)count);
    }

    /// <summary>Wakes every waiter; the caller holds the lock.</summary>
    public void NotifyAll() => Notify(int.MaxValue);

    /// <summary>Removes the name now; the memory stays mapped.</summary>
    public void Unlink() => _words.Core.Unlink();

    /// <summary>Closes the condition; the creator also unlinks the name unless kept.</summary>
    public void Dispose() => _words.Core.Dispose();
}
