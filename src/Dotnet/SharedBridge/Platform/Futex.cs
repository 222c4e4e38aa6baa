using System.Runtime.InteropServices;
using static SharedBridge.Platform.Interop;

namespace SharedBridge.Platform;

/// <summary>
/// futex(2) on a 32-bit word of a shared mapping (docs/format.md section 10.3): FUTEX_WAIT with a
/// relative timeout (the kernel measures it on CLOCK_MONOTONIC) and FUTEX_WAKE, never with
/// FUTEX_PRIVATE_FLAG: other processes sleep on the same word.
/// </summary>
internal static unsafe class Futex
{
    private const int FutexWait = 0, FutexWake = 1;
    internal const int WakeAll = int.MaxValue;

    private static readonly long SysFutex = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 202,
        Architecture.Arm64 => 98,
        _ => -1,
    };

    internal static bool Available => SysFutex > 0 && OperatingSystem.IsLinux();

    /// <summary>Sleeps while <c>*address == expected</c>, at most <paramref name="timeout"/>. Returns at a
    /// wake-up, a changed word (EAGAIN), a signal (EINTR) or the timeout: the caller re-reads the word.</summary>
    internal static void Wait(uint* address, uint expected, TimeSpan timeout)
    {
        long ticks = Math.Max(0, timeout.Ticks);
        Timespec ts = new() { Seconds = ticks / TimeSpan.TicksPerSecond, Nanoseconds = ticks % TimeSpan.TicksPerSecond * 100 };
        SyscallFutex(SysFutex, address, FutexWait, expected, &ts, null, 0);
    }

    /// <summary>One CPU pause between two reads of a word another CPU is about to change (docs/wakeups-design.md
    /// section 3, "Spinning"): PAUSE on x86, YIELD on Arm. Never SpinWait, whose fallback sleeps 1 ms.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static void Pause()
    {
        if (System.Runtime.Intrinsics.X86.X86Base.IsSupported) System.Runtime.Intrinsics.X86.X86Base.Pause();
        else if (System.Runtime.Intrinsics.Arm.ArmBase.IsSupported) System.Runtime.Intrinsics.Arm.ArmBase.Yield();
    }

    /// <summary>Wakes up to <paramref name="count"/> threads of any process sleeping on <paramref name="address"/>.</summary>
    internal static void Wake(uint* address, int count = WakeAll) =>
        SyscallFutex(SysFutex, address, FutexWake, count, null, null, 0);
}
