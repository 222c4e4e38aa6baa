// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
namespace SharedBridge;

/// <summary>
/// Options for creating a segment. Defaults: synchronized by an embedded robust recursive lock,
/// mode 0600, unlinked when the creating object is disposed.
/// </summary>
public sealed class SegmentOptions
{
    /// <summary>The defaults; set the properties with an object initializer.</summary>
    public SegmentOptions() { }

    /// <summary>Every option as a parameter, for hosts that cannot use object initializers of <c>init</c>
    /// properties (pythonnet: <c>SegmentOptions(synchronized=False)</c>, PowerShell, F# interactive).</summary>
    /// <param name="synchronized">See <see cref="Synchronized"/>.</param>
    /// <param name="sharedLock">See <see cref="SharedLock"/>.</param>
    /// <param name="typeCode">See <see cref="TypeCode"/>; null for the type's default.</param>
    /// <param name="mode">See <see cref="Mode"/>; null for 0600.</param>
    /// <param name="keepOnDispose">See <see cref="KeepOnDispose"/>.</param>
    /// <param name="recursiveLock">See <see cref="RecursiveLock"/>.</param>
    public SegmentOptions(bool synchronized = true, SharedLock? sharedLock = null, char? typeCode = null,
        UnixFileMode? mode = null, bool keepOnDispose = false, bool recursiveLock = true)
    {
        Synchronized = synchronized;
        SharedLock = sharedLock;
        TypeCode = typeCode;
        if (mode is { } m) Mode = m;
        KeepOnDispose = keepOnDispose;
        RecursiveLock = recursiveLock;
    }

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
