// Public API: namespace SharedBridge, not SharedBridge.Objects; the folder names the layer (README.md).
using System.Diagnostics;

namespace SharedBridge;

/// <summary>
/// Process-wide settings of the library.
/// </summary>
public static class SharedBridgeSettings
{
    /// <summary>The largest spin budget (docs/format.md section 10.3).</summary>
    public static readonly TimeSpan MaxSpinBudget = TimeSpan.FromMilliseconds(1);

    private static readonly TimeSpan DefaultSpinBudget = TimeSpan.FromMicroseconds(200);
    private static long s_spinTicks = InitialSpinBudget().Ticks;

    /// <summary>
    /// How long a waiter (<see cref="SharedEvent"/>, <see cref="SharedSemaphore"/>, <see cref="SharedCondition"/>,
    /// <see cref="SharedBarrier"/>) may spin, reading the object's sequence word, before it sleeps in the kernel
    /// (docs/format.md section 10.3, "Spinning"): a wake-up that comes within it costs no system call on
    /// either side. An object whose spins end in a sleep four times in a row stops spinning for 16 waits, then
    /// 32, ... 1024 after each retry that fails too, so a waiter nobody wakes soon burns at most a few budgets.
    /// The default covers a wake-up of an idle CPU of a virtual machine (67 us median, 203 us p99 measured on
    /// a Firecracker VM): a shorter budget never gets both sides of a ping-pong spinning.
    /// Default: 200 us, or the environment variable <c>SHAREDBRIDGE_SPIN_US</c> (integer microseconds, read at
    /// startup, clamped to 0..1000). <see cref="TimeSpan.Zero"/> turns spinning off (oversubscribed machines,
    /// containers with one CPU share). A process that may use only one CPU
    /// (<see cref="Environment.ProcessorCount"/> 1) never spins, whatever the budget.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Set below zero or above <see cref="MaxSpinBudget"/> (1 ms).</exception>
    public static TimeSpan SpinBudget
    {
        get => TimeSpan.FromTicks(Volatile.Read(ref s_spinTicks));
        set
        {
            if (value < TimeSpan.Zero || value > MaxSpinBudget)
                throw new ArgumentOutOfRangeException(nameof(value), value,
                    "The spin budget must be between TimeSpan.Zero (no spinning) and 1 ms (SharedBridgeSettings.MaxSpinBudget).");
            Volatile.Write(ref s_spinTicks, value.Ticks);
        }
    }

    /// <summary>The budget a wait may spin now, in Stopwatch ticks: 0 when spinning is off or the process may
    /// use only one CPU (the other side of a wake-up could not run while this one spins).</summary>
    internal static long SpinStopwatchTicks =>
        Environment.ProcessorCount > 1 ? Volatile.Read(ref s_spinTicks) * Stopwatch.Frequency / TimeSpan.TicksPerSecond : 0;

    /// <summary>
    /// The prefix of the names generated for objects created without a name (docs/format.md section 1.1), for this process:
    /// a team or a test suite scopes <c>sharedbridge ls --prefix P</c> and <see cref="SegmentReaper.Reap"/>(prefix: P) to its
    /// own objects. Default: <c>sb_</c>, or the environment variable <c>SHAREDBRIDGE_NAME_PREFIX</c> (read at startup; an
    /// invalid value is reported as a Trace warning and <c>sb_</c> used).
    /// </summary>
    /// <exception cref="InvalidSegmentNameException">A prefix that would not make valid names (ASCII letters, digits, '_',
    /// '-' or '.', not starting with '.' or 'sem.', at most 239 characters).</exception>
    public static string NamePrefix
    {
        get => Format.SegmentName.Prefix;
        set
        {
            if (Format.SegmentName.CheckPrefix(value) is { } problem)
                throw new InvalidSegmentNameException($"Invalid name prefix \"{value}\": {problem}; for example \"myteam_\".");
            Format.SegmentName.Prefix = value;
        }
    }

    /// <summary>SHAREDBRIDGE_SPIN_US: unset 200 us; integer microseconds clamped to 0..1000; anything else is
    /// reported (Trace warning) and the default used.</summary>
    private static TimeSpan InitialSpinBudget()
    {
        string? text = Environment.GetEnvironmentVariable("SHAREDBRIDGE_SPIN_US");
        if (text is null) return DefaultSpinBudget;
        if (!System.Numerics.BigInteger.TryParse(text.Trim(), System.Globalization.NumberStyles.AllowLeadingSign,
                System.Globalization.CultureInfo.InvariantCulture, out var us))
        {
            Trace.TraceWarning(
                $"SharedBridge: SHAREDBRIDGE_SPIN_US=\"{text}\" is not an integer number of microseconds; spinning uses the default " +
                "200 us. Set it to 0 (no spinning) up to 1000, or set SharedBridgeSettings.SpinBudget.");
            return DefaultSpinBudget;
        }
        long max = (long)MaxSpinBudget.TotalMicroseconds;
        return TimeSpan.FromMicroseconds(us < 0 ? 0 : us > max ? max : (long)us);
    }
}
