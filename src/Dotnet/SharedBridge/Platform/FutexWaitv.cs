using System.Runtime.InteropServices;
using static SharedBridge.Platform.Interop;

namespace SharedBridge.Platform;

/// <summary>
/// futex_waitv(2) (Linux 5.16 and later): one thread sleeps until any of up to 128 32-bit words
/// changes or is woken. The words are shared futexes as in docs/format.md section 10.3 (FUTEX_32,
/// never FUTEX_PRIVATE_FLAG: other processes wake them with a shared FUTEX_WAKE).
/// </summary>
internal static unsafe class FutexWaitv
{
    /// <summary>The kernel's FUTEX_WAITV_MAX.</summary>
    internal const int MaxWords = 128;
    private const uint Futex32 = 2;

    private static readonly long SysFutexWaitv = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 or Architecture.Arm64 => 449,
        _ => -1,
    };

    private static readonly Lazy<bool> s_available = new(Probe);

    /// <summary>True when the kernel has futex_waitv (an older kernel answers ENOSYS, a seccomp filter EPERM).</summary>
    internal static bool Available => s_available.Value;

    // No words at all: a kernel with the call refuses that with EINVAL before looking at anything else.
    private static bool Probe()
    {
        if (SysFutexWaitv < 0 || !OperatingSystem.IsLinux()) return false;
        long rc = SyscallFutexWaitv(SysFutexWaitv, null, 0, 0, null, CLOCK_MONOTONIC);
        return rc == -1 && Marshal.GetLastPInvokeError() == EINVAL;
    }

    /// <summary>Fills one entry: sleep while <c>*address == expected</c>.</summary>
    internal static void Set(FutexWaitvEntry* entry, uint* address, uint expected)
    {
        entry->Value = expected;
        entry->Address = (ulong)address;
        entry->Flags = Futex32;
        entry->Reserved = 0;
    }

    /// <summary>Sleeps while every word holds its expected value, at most <paramref name="timeout"/>
    /// (infinite: until a word changes or is woken). Returns 0 at a wake-up, a changed word (EAGAIN), a signal
    /// (EINTR) or the timeout: the caller re-reads the words; otherwise the errno of a failed call.</summary>
    internal static int Wait(FutexWaitvEntry* entries, int count, TimeSpan timeout)
    {
        Timespec deadline;
        Timespec* at = null;
        if (timeout != Timeout.InfiniteTimeSpan)
        {
            // The kernel takes an absolute time on the given clock.
            ClockGetTime(CLOCK_MONOTONIC, &deadline);
            long ticks = Math.Max(0, timeout.Ticks);
            long ns = deadline.Nanoseconds + ticks % TimeSpan.TicksPerSecond * 100;
            deadline.Seconds += ticks / TimeSpan.TicksPerSecond + ns / 1_000_000_000;
            deadline.Nanoseconds = ns % 1_000_000_000;
            at = &deadline;
        }
        long rc = SyscallFutexWaitv(SysFutexWaitv, entries, count, 0, at, CLOCK_MONOTONIC);
        if (rc >= 0) return 0;
        int errno = Marshal.GetLastPInvokeError();
        return errno is EWOULDBLOCK or EINTR or ETIMEDOUT ? 0 : errno;
    }
}
