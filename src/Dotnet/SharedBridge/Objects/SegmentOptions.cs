// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
namespace SharedBridge;

/// <summary>
/// Options for creating a segment. Defaults: synchronized by an embedded robust recursive lock,
/// mode 0600, lifetime <see cref="SegmentLifetime.Creator"/> (unlinked when the creating object is disposed).
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
    /// <param name="lifetime">See <see cref="Lifetime"/>; null for the default (or Persistent with keepOnDispose).</param>
    /// <param name="directory">See <see cref="Directory"/>.</param>
    public SegmentOptions(bool synchronized = true, SharedLock? sharedLock = null, char? typeCode = null,
        UnixFileMode? mode = null, bool keepOnDispose = false, bool recursiveLock = true, SegmentLifetime? lifetime = null,
        string? directory = null)
    {
        Directory = directory;
        _lifetime = lifetime;
        Synchronized = synchronized;
        SharedLock = sharedLock;
        TypeCode = typeCode;
        if (mode is { } m) Mode = m;
        KeepOnDispose = keepOnDispose;
        RecursiveLock = recursiveLock;
    }

    /// <summary>
    /// Keep the segment as a file in this directory (the directory backend, docs/format.md section 1.3: a tmpfs volume that
    /// containers share) instead of /dev/shm. Null: the environment variable <c>SHAREDBRIDGE_DIR</c>, else /dev/shm;
    /// "/dev/shm" itself means the POSIX shared-memory objects whatever the variable says. Every process that uses the
    /// segment must name the same directory (<see cref="OpenOptions.Directory"/>); a <see cref="SharedLock"/> must be in it too.
    /// </summary>
    public string? Directory { get; init; }

    /// <summary>False creates an unsynchronized segment (RawArray, RawValue, <c>lock=False</c>).</summary>
    public bool Synchronized { get; init; } = true;

    /// <summary>Use this lock (another segment's) instead of an embedded one: several segments then share one lock.</summary>
    public SharedLock? SharedLock { get; init; }

    /// <summary>A typecode other than the type's default, e.g. 'l' for long, 'L' for ulong, 'c' for byte, 'u' for uint.</summary>
    public char? TypeCode { get; init; }

    /// <summary>Permission bits of the shared-memory object (applied exactly, regardless of the umask).</summary>
    public UnixFileMode Mode { get; init; } = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>True leaves the segment in place when the creating object is disposed or the process exits:
    /// an alias of <see cref="Lifetime"/> = <see cref="SegmentLifetime.Persistent"/> (setting both to
    /// different lifetimes is refused when the segment is created).</summary>
    public bool KeepOnDispose { get; init; }

    private readonly SegmentLifetime? _lifetime;

    /// <summary>Who removes the name, and when (docs/api.md, "Lifetimes"): <see cref="SegmentLifetime.Creator"/>
    /// (default), <see cref="SegmentLifetime.LastCloser"/> or <see cref="SegmentLifetime.Persistent"/>.</summary>
    public SegmentLifetime Lifetime
    {
        get => _lifetime ?? (KeepOnDispose ? SegmentLifetime.Persistent : SegmentLifetime.Creator);
        init => _lifetime = value;
    }

    /// <summary>The lifetime to record; throws for contradictory options or an undefined value.</summary>
    internal SegmentLifetime ResolveLifetime()
    {
        if (_lifetime is { } chosen && !Enum.IsDefined(chosen))
            throw new ArgumentException($"Lifetime {(int)chosen} is not a SegmentLifetime (Creator, LastCloser or Persistent).", "options");
        if (KeepOnDispose && _lifetime is { } explicitLifetime && explicitLifetime != SegmentLifetime.Persistent)
            throw new ArgumentException(
                $"Contradictory options: KeepOnDispose = true means Lifetime = Persistent, but Lifetime = {explicitLifetime} was given; set only one of them.", "options");
        return Lifetime;
    }

    /// <summary>The embedded lock's type: recursive like RLock (default), or false for an error-checking
    /// non-recursive lock like Python's Lock (locking it twice from one thread throws).</summary>
    public bool RecursiveLock { get; init; } = true;

    internal static SegmentOptions Default { get; } = new();
}
