// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Platform;

namespace SharedBridge;

/// <summary>
/// A held shared lock as a heap object, from <c>LockUnscoped()</c>: for the rare code that cannot use a
/// <see cref="LockScope"/> (a lock taken in one method and released in another, an object that holds it,
/// a <c>with</c> statement in Python through pythonnet). The lock still belongs to the thread that
/// acquired it: <see cref="Dispose"/> on any other thread throws <see cref="SynchronizationLockException"/>
/// and leaves the lock held (README.md, "Locks and async code"). Never hold one across an <c>await</c>;
/// use <c>LockAsync</c> there.
/// </summary>
public sealed class LockHandle : IDisposable
{
    private RobustMutex? _mutex;
    private readonly string _name;

    internal LockHandle(RobustMutex mutex, bool recovered)
    {
        _mutex = mutex;
        _name = mutex.SegmentName;
        Recovered = recovered;
        ThreadId = Environment.CurrentManagedThreadId;
    }

    /// <summary>True when the previous owner died while holding the lock and this acquisition recovered it
    /// (as <see cref="LockScope.Recovered"/>).</summary>
    public bool Recovered { get; }

    /// <summary>True until the handle is disposed on its thread.</summary>
    public bool IsHeld => Volatile.Read(ref _mutex) is not null;

    /// <summary>The managed thread id (<see cref="Environment.CurrentManagedThreadId"/>) of the thread that
    /// acquired the lock: the only thread that can release it.</summary>
    public int ThreadId { get; }

    /// <summary>
    /// Releases the lock, on the thread that acquired it; a second call does nothing.
    /// </summary>
    /// <exception cref="SynchronizationLockException">Called on another thread (typically after an
    /// <c>await</c> resumed elsewhere). Nothing is released: the lock stays held by the acquiring thread
    /// until this handle is disposed on that thread, or that thread exits (the next locker then recovers
    /// it, <c>Recovered</c> true).</exception>
    public void Dispose()
    {
        var mutex = Volatile.Read(ref _mutex);
        if (mutex is null) return;
        int current = Environment.CurrentManagedThreadId;
        if (current != ThreadId)
            throw new SynchronizationLockException(
                $"The lock of \"{_name}\" was acquired by managed thread {ThreadId} and cannot be released " +
                $"by thread {current}: a shared lock belongs to the thread that acquired it. It is still held. Dispose " +
                $"this LockHandle on thread {ThreadId}, and do not await while holding it: in async code use " +
                "LockAsync(...), which runs the critical section on one thread.");
        mutex.Unlock();
        Volatile.Write(ref _mutex, null);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"LockHandle(\"{_name}\", {(IsHeld ? $"held by thread {ThreadId}" : "released")})";
}
