// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
namespace SharedBridge;

/// <summary>Which Python class a queue attaches as (docs/format.md section 11.2, <c>flavour</c>; informational in .NET).</summary>
public enum QueueFlavour : uint
{
    /// <summary><c>sharedbridge.Queue</c>.</summary>
    Queue = 0,
    /// <summary><c>sharedbridge.SimpleQueue</c>.</summary>
    SimpleQueue = 1,
    /// <summary><c>sharedbridge.JoinableQueue</c>.</summary>
    JoinableQueue = 2,
    /// <summary>One direction of a <c>sharedbridge.Pipe</c>.</summary>
    PipeDirection = 3,
}

/// <summary>How <see cref="SharedQueue.Create"/> makes a queue.</summary>
public sealed class QueueOptions
{
    /// <summary>The default ring size: 1 MiB.</summary>
    public const long DefaultCapacity = 1 << 20;

    /// <summary>The ring's bytes, rounded up to a power of two (at least 4096, at most 2^40). Messages whose record
    /// exceeds a quarter of it travel out of line, in a segment of their own (docs/format.md section 11.5).</summary>
    public long Capacity { get; init; } = DefaultCapacity;

    /// <summary>The most ready messages at once (Python's <c>maxsize</c>); 0 or less: unbounded.</summary>
    public int MaxMessages { get; init; }

    /// <summary>Who removes the name, and when (docs/format.md section 8); default <see cref="SegmentLifetime.Creator"/>.</summary>
    public SegmentLifetime Lifetime { get; init; } = SegmentLifetime.Creator;

    /// <summary>The class Python's <c>attach</c> returns.</summary>
    public QueueFlavour Flavour { get; init; } = QueueFlavour.Queue;

    /// <summary>Permission bits (default 0600).</summary>
    public UnixFileMode Mode { get; init; } = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Keep the queue (and its out-of-line messages' segments) as files in this directory: see
    /// <see cref="SegmentOptions.Directory"/> (null: SHAREDBRIDGE_DIR, else /dev/shm; docs/format.md section 1.3).</summary>
    public string? Directory { get; init; }

    internal static QueueOptions Default { get; } = new();
}
