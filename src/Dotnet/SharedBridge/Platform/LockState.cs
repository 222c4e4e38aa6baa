// Public API: namespace SharedBridge, not SharedBridge.Platform; the folder names the layer (README.md).
namespace SharedBridge;

/// <summary>The state of a shared lock as a tool sees it (it may change as soon as it is read).</summary>
public enum LockState
{
    /// <summary>Nobody holds it.</summary>
    Free,
    /// <summary>A live thread holds it.</summary>
    Held,
    /// <summary>Its holder died; the next acquirer recovers it.</summary>
    OwnerDead,
    /// <summary>Permanently unusable until an operator resets it (docs/format.md section 7.4).</summary>
    NotRecoverable,
    /// <summary>Its bytes were overwritten: a wrong kind word, or an owner thread that does not exist.</summary>
    Corrupt,
}
