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
    /// <param name="waitForName">See <see cref="WaitForName"/>.</param>
    /// <param name="directory">See <see cref="Directory"/>.</param>
    public OpenOptions(TimeSpan? readyTimeout = null, bool allowOtherOwner = false, TimeSpan? waitForName = null,
        string? directory = null)
    {
        WaitForName = waitForName;
        Directory = directory;
        ReadyTimeout = readyTimeout;
        AllowOtherOwner = allowOtherOwner;
    }

    /// <summary>How long to wait for a creator that is still initializing the segment
    /// (null: 5 seconds; <see cref="Timeout.InfiniteTimeSpan"/>: no limit).</summary>
    public TimeSpan? ReadyTimeout { get; init; }

    /// <summary>
    /// How long to wait for the name to appear when no segment has it yet (null, the default: do not wait, throw
    /// <see cref="SegmentNotFoundException"/> at once; <see cref="Timeout.InfiniteTimeSpan"/>: no limit): a consumer started
    /// before its producer (docs/api.md, "Starting a pipeline"). A bounded poll (1 ms doubling to 50 ms); once the name
    /// exists, <see cref="ReadyTimeout"/> covers its creator's initialization as always.
    /// </summary>
    public TimeSpan? WaitForName { get; init; }

    /// <summary>
    /// The directory of the directory backend to open the segment in (docs/format.md section 1.3), as its creator's
    /// <see cref="SegmentOptions.Directory"/>. Null: the environment variable <c>SHAREDBRIDGE_DIR</c>, else /dev/shm.
    /// </summary>
    public string? Directory { get; init; }

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
