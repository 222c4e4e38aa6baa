// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using SharedBridge.Platform;

namespace SharedBridge;

/// <summary>
/// Control over the end-of-process cleanup of the segments this process created, for hosts where the
/// .NET defaults do not fit. By default SharedBridge retires and unlinks them on
/// <see cref="AppDomain.ProcessExit"/>, on an unhandled exception and on SIGTERM, SIGINT and SIGHUP.
/// Hosted in another runtime (pythonnet in a Python interpreter or a Jupyter kernel), ProcessExit never
/// runs and the signals belong to the host: the host turns <see cref="SignalHandlersEnabled"/> off and
/// calls <see cref="ReleaseCreatedSegments"/> from its own exit and signal paths (the Python package's
/// <c>sharedbridge.dotnet</c> does this).
/// </summary>
public static class SegmentCleanup
{
    /// <summary>Retires and unlinks every <see cref="SegmentLifetime.Creator"/> segment this process created
    /// and has not disposed yet, and leaves every <see cref="SegmentLifetime.LastCloser"/> segment it holds
    /// (created or opened: the last holder unlinks it); never throws. Objects still open keep working on
    /// their mapping. Returns how many segments were released.</summary>
    public static int ReleaseCreatedSegments() => ExitCleanup.CleanUp();

    /// <summary>How many segments would be released now (created creator-lifetime ones, held last-closer ones).</summary>
    public static int CreatedSegmentCount => ExitCleanup.OwnedCount;

    /// <summary>True (the default) while SharedBridge handles SIGTERM, SIGINT and SIGHUP to unlink its
    /// segments. Setting it false removes those handlers, leaving the signals to the host (and to any other
    /// registration); setting it true registers them again.</summary>
    public static bool SignalHandlersEnabled
    {
        get => ExitCleanup.SignalHandlersEnabled;
        set => ExitCleanup.SignalHandlersEnabled = value;
    }
}
