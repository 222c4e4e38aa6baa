using System.Runtime.InteropServices;

namespace SharedBridge.Format;

/// <summary>The layout of glibc's pthread_mutex_t on this machine (header field <c>lock_abi</c>).</summary>
internal sealed record LockAbi(int Id, int MutexSize, string Description)
{
    private static readonly LockAbi X64 = new(1, 40, "Linux glibc x86_64");
    private static readonly LockAbi Arm64 = new(2, 48, "Linux glibc aarch64");

    /// <summary>This process's ABI, or null when embedded locks are not supported here.</summary>
    internal static LockAbi? Current { get; } = Detect();

    private static LockAbi? Detect()
    {
        if (!OperatingSystem.IsLinux()) return null;
        return RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => X64,
            Architecture.Arm64 => Arm64,
            _ => null,
        };
    }

    internal static LockAbi RequireCurrent() => Current ?? throw new PlatformNotSupportedException(
        $"Embedded locks need Linux with glibc on x86_64 or aarch64; this is {RuntimeInformation.OSDescription} " +
        $"{RuntimeInformation.ProcessArchitecture}. Create the segment with Synchronized = false.");
}
