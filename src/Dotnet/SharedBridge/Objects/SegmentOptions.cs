// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
namespace SharedBridge;

/// <summary>
/// Options for creating a segment. Defaults: synchronized by an embedded robust recursive lock,
/// mode 0600, unlinked when the creating object is disposed.
/// </summary>
public sealed class SegmentOptions
{
    /// <summary>False creates an unsynchronized segment (RawArray, RawValue, <c>lock=False</c>).</summary>
    public bool Synchronized { get; init; } = true;

    /// <summary>Use this lock (another segment's) instead of an embedded one: several segments then share one lock.</summary>
    public SharedLock? SharedLock { get; init; }

    /// <summary>A typecode other than the type's default, e.g. 'l' for long, 'L' for ulong, 'c' for byte, 'u' for uint.</summary>
    public char? TypeCode { get; init; }

    /// <summary>Permission bits of the shared-memory object (applied exactly, regardless of the umask).</summary>
    public UnixFileMode Mode { get; init; } = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>True leaves the segment in place when the creating object is disposed or the process exits.</summary>
    public bool KeepOnDispose { get; init; }

    /// <summary>The embedded lock's type: recursive like RLock (default), or false for an error-checking
    /// non-recursive lock like Python's Lock (locking it twice from one thread throws).</summary>
    public bool RecursiveLock { get; init; } = true;

    internal static SegmentOptions Default { get; } = new();
}
