using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SharedBridge.Platform;

/// <summary>
/// Retires and unlinks the creator-lifetime segments this process created, and leaves the last-closer
/// segments it holds (created or opened; the last holder unlinks, docs/format.md section 8), when the process ends:
/// a normal exit (<see cref="AppDomain.ProcessExit"/>), SIGTERM, SIGINT or SIGHUP, or an unhandled
/// exception. It never changes how the process ends: a signal's default action still follows (the
/// process dies by that signal, same exit status), an ignored signal stays ignored, and an unhandled
/// exception still crashes the process. SIGKILL and <see cref="Environment.FailFast(string)"/> leave
/// the segments behind (tools find them by creator pid and start time).
/// </summary>
/// <remarks>
/// <para>How .NET 10 runs <see cref="PosixSignalRegistration"/> handlers (measured on runtime 10.0):
/// every handler of a signal runs, newest registration first, all sharing one context; the runtime
/// applies the signal's default action afterwards unless <see cref="PosixSignalContext.Cancel"/> is
/// true. The default action of SIGTERM, SIGINT and SIGHUP kills the process at once: no
/// ProcessExit, no finalizers.</para>
/// <para>A handler sees only the <c>Cancel</c> set by the handlers that ran before it, that is the
/// ones registered after it. So SharedBridge registers its handlers as early as it can, when the
/// library is first used (module initializer), and unlinks only when no handler has cancelled the
/// signal by the time its own runs. An application handler that cancels (keeps the process running)
/// keeps the segments; if it then shuts down normally, ProcessExit unlinks them. A handler registered
/// before SharedBridge was first used runs after SharedBridge's: its cancellation cannot be seen.</para>
/// </remarks>
internal static class ExitCleanup
{
    private static readonly ConcurrentDictionary<MappedSegment, byte> Owned = new();
    // Objects being created (key -> device and inode): from the moment O_EXCL made them this process's to the
    // moment they are in Owned or removed again, so that a signal or an exit meanwhile removes the name too
    // (docs/format.md section 8: the creator removes what it made; otherwise only a reaper could, after the grace period).
    private static readonly ConcurrentDictionary<string, (ulong Device, ulong Inode)> Pending = new();
    private static readonly PosixSignal[] Signals = [PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGHUP];
    private static readonly object Gate = new();
    private static PosixSignalRegistration[]? s_registrations;
    private static bool s_processHooksInstalled;

    /// <summary>Registers the signal handlers when the library is first used, before the application
    /// can have registered handlers that would otherwise run after ours (see the remarks).</summary>
    [ModuleInitializer]
    [SuppressMessage("Usage", "CA2255:The 'ModuleInitializer' attribute should not be used in libraries",
        Justification = "Signal handlers must be registered before the application's own ones to see their Cancel.")]
    internal static void InstallEarly() => InstallSignalHandlers();

    /// <summary>Adds a segment this process created and must clean up, or a last-closer segment it holds.</summary>
    internal static void Register(MappedSegment segment)
    {
        Owned.TryAdd(segment, 0);
        InstallProcessHooks();
    }

    /// <summary>shm_open(O_EXCL) has just created <paramref name="key"/>, the object <paramref name="identity"/>: until
    /// <see cref="Created"/>, the process's end removes the name if it is still that object.</summary>
    internal static void Creating(string key, Interop.FileStat identity)
    {
        Pending[key] = (identity.Device, identity.Inode);
        InstallProcessHooks();
    }

    /// <summary>The creation of <paramref name="key"/> ended: registered as owned, kept, or removed.</summary>
    internal static void Created(string key) => Pending.TryRemove(key, out _);

    /// <summary>Removes the name <paramref name="key"/> if it is still the object (device, inode) this process
    /// made: never a stranger's segment that took the name after ours was removed. True when removed.</summary>
    internal static bool UnlinkIfSame(string key, ulong device, ulong inode) =>
        MappedSegment.Names(key, device, inode, out _) && SegmentBackend.Unlink(key) == 0;

    private static void InstallProcessHooks()
    {
        lock (Gate)
        {
            InstallSignalHandlers();
            if (s_processHooksInstalled) return;
            s_processHooksInstalled = true;
            AppDomain.CurrentDomain.ProcessExit += (_, _) => CleanUp();
            AppDomain.CurrentDomain.UnhandledException += (_, _) => CleanUp();
        }
    }

    /// <summary>Forgets a segment (its last reference is gone).</summary>
    internal static void Unregister(MappedSegment segment) => Owned.TryRemove(segment, out _);

    private static void InstallSignalHandlers()
    {
        lock (Gate)
        {
            if (s_registrations is not null) return;
            var registrations = new List<PosixSignalRegistration>(Signals.Length);
            try
            {
                foreach (var signal in Signals)
                    registrations.Add(PosixSignalRegistration.Create(signal, OnSignal));
            }
            catch (Exception e) when (e is PlatformNotSupportedException or IOException)
            {
                // No signal support here: only normal exits and unhandled exceptions clean up.
            }
            s_registrations = [.. registrations];
        }
    }

    private static void OnSignal(PosixSignalContext context)
    {
        // A handler registered after ours ran first and chose to keep the process running.
        if (context.Cancel) return;
        CleanUp();
    }

    /// <summary>Retires and unlinks every owned segment (best effort: never throws); returns how many.</summary>
    internal static int CleanUp()
    {
        int released = 0;
        // Not counted: an object whose creation had not finished is no segment of this process yet.
        foreach (var (key, identity) in Pending)
        {
            try
            {
                if (Pending.TryRemove(key, out _)) UnlinkIfSame(key, identity.Device, identity.Inode);
            }
            catch (Exception) { /* best effort while the process ends */ }
        }
        foreach (var segment in Owned.Keys)
        {
            try
            {
                segment.RetireAndUnlink();
                Owned.TryRemove(segment, out _);
                released++;
            }
            catch (Exception) { /* best effort while the process ends */ }
        }
        return released;
    }

    internal static int OwnedCount => Owned.Count;

    /// <summary>Whether our signal handlers are registered (a host that owns the signals, such as
    /// pythonnet's Python interpreter, turns them off and calls <see cref="CleanUp"/> itself).</summary>
    internal static bool SignalHandlersEnabled
    {
        get
        {
            lock (Gate) return s_registrations is { Length: > 0 };
        }
        set
        {
            lock (Gate)
            {
                if (value)
                {
                    if (s_registrations is { Length: 0 }) s_registrations = null;
                    InstallSignalHandlers();
                    return;
                }
                foreach (var registration in s_registrations ?? [])
                    registration.Dispose();
                s_registrations = [];   // empty, not null: Register must not install them again
            }
        }
    }
}
