// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
namespace SharedBridge;

/// <summary>
/// Options for opening an existing segment (the <c>Open(name, options)</c> overloads).
/// </summary>
public sealed class OpenOptions
{
    /// <summary>The defaults; set the properties with an object initializer.</summary>
    public OpenOptions() { }

    /// <summary>Every option as a parameter, for hosts that cannot use object initializers of <c>init</c>
    /// properties (pythonnet, PowerShell, F# interactive).</summary>
    /// <param name="readyTimeout">See <see cref="ReadyTimeout"/>.</param>
    /// <param name="allowOtherOwner">See <see cref="AllowOtherOwner"/>.</param>
    public OpenOptions(TimeSpan? readyTimeout = null, bool allowOtherOwner = false)
    {
        ReadyTimeout = readyTimeout;
        AllowOtherOwner = allowOtherOwner;
    }

    /// <summary>How long to wait for a creator that is still initializing the segment
    /// (null: 5 seconds; <see cref="Timeout.InfiniteTimeSpan"/>: no limit).</summary>
    public TimeSpan? ReadyTimeout { get; init; }

    /// <summary>
    /// False (the default) refuses a segment whose shared-memory object belongs to another user with
    /// <see cref="SegmentAccessDeniedException"/>: its owner could change or resize it at any time.
    /// Set it to true when you trust that user. Applies to the external lock segment too.
    /// </summary>
    public bool AllowOtherOwner { get; init; }

    internal static OpenOptions Default { get; } = new();

    internal static OpenOptions WithTimeout(TimeSpan? readyTimeout) =>
        readyTimeout is null ? Default : new OpenOptions { ReadyTimeout = readyTimeout };
}
