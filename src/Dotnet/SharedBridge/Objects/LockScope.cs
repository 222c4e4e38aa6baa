// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Platform;

namespace SharedBridge;

/// <summary>
/// A held shared lock; disposing it releases the lock (<c>using var scope = arr.Lock();</c>).
/// The lock belongs to the thread that acquired it (a pthread mutex refuses an unlock from any other
/// thread), so a scope is a <c>ref struct</c>: it lives on that thread's stack, and the compiler refuses
/// to keep it across an <c>await</c> or a <c>yield</c> (error CS4007), to store it in a field, a lambda or
/// a boxed <see cref="IDisposable"/>. Async code uses <c>LockAsync</c>; code that really needs a heap
/// object uses <c>LockUnscoped()</c> (a <see cref="LockHandle"/>). See README.md, "Locks and async code".
/// </summary>
public readonly ref struct LockScope : IDisposable
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

    /// <summary>Releases the lock. Dispose a scope exactly once (a <c>using</c> declaration does).</summary>
    public void Dispose() => _mutex?.Unlock();
}
