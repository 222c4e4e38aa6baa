// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Platform;

namespace SharedBridge;

/// <summary>
/// A held shared lock; disposing it releases the lock. Dispose it exactly once, on the thread that
/// acquired it (never across an <c>await</c>): the lock belongs to a thread.
/// </summary>
public readonly struct LockScope : IDisposable
{
    private readonly RobustMutex? _mutex;

    internal LockScope(RobustMutex mutex, bool recovered)
    {
        _mutex = mutex;
        Recovered = recovered;
    }

    /// <summary>
    /// True when the previous owner died while holding the lock and this acquisition recovered it.
    /// The data it protects holds whatever the dead owner left: completed writes are intact, a write
    /// in progress may be partial.
    /// </summary>
    public bool Recovered { get; }

    /// <summary>True when this scope holds a lock (false for <c>default(LockScope)</c>).</summary>
    public bool IsHeld => _mutex is not null;

    /// <summary>Releases the lock.</summary>
    public void Dispose() => _mutex?.Unlock();
}
