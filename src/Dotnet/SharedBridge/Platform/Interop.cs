using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace SharedBridge.Platform;

/// <summary>
/// Every call into libc. Functions that report failure through <c>errno</c> set
/// <c>SetLastError</c>; the pthread functions return their error code directly.
/// </summary>
internal static unsafe partial class Interop
{
    private const string Libc = "libc";

    // Open flags and errno values: identical on Linux x86_64 and aarch64 (asm-generic).
    internal const int O_RDONLY = 0;
    internal const int O_RDWR = 2;
    internal const int O_CREAT = 0x40;
    internal const int O_EXCL = 0x80;
    internal const int O_NONBLOCK = 0x800;

    internal const int EPERM = 1;
    internal const int ENOENT = 2;
    internal const int ENXIO = 6;
    internal const int ENOMEM = 12;
    internal const int EACCES = 13;
    internal const int EBUSY = 16;
    internal const int EEXIST = 17;
    internal const int EINVAL = 22;
    internal const int EFBIG = 27;
    internal const int ENOSPC = 28;
    internal const int EDEADLK = 35;
    internal const int ENAMETOOLONG = 36;
    internal const int ELOOP = 40;
    internal const int EISDIR = 21;
    internal const int EINTR = 4;
    internal const int EOVERFLOW = 75;
    internal const int ETIMEDOUT = 110;
    internal const int EOWNERDEAD = 130;
    internal const int ENOTRECOVERABLE = 131;

    internal const int EWOULDBLOCK = 11;

    // flock(2) operations.
    internal const int LOCK_SH = 1;
    internal const int LOCK_EX = 2;
    internal const int LOCK_NB = 4;
    internal const int LOCK_UN = 8;

    internal const int PROT_READ = 1;
    internal const int PROT_WRITE = 2;
    internal const int MAP_SHARED = 1;

    // st_mode file types (S_IFMT mask).
    internal const uint S_IFMT = 0xF000;
    internal const uint S_IFREG = 0x8000;

    internal const int CLOCK_MONOTONIC = 1;
    internal const int PTHREAD_PROCESS_SHARED = 1;
    internal const int PTHREAD_MUTEX_ROBUST = 1;
    internal const int PTHREAD_MUTEX_RECURSIVE = 1;
    internal const int PTHREAD_MUTEX_ERRORCHECK = 2;

    /// <summary>struct timespec on LP64 Linux.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport(Libc, EntryPoint = "shm_open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ShmOpenRaw(string name, int oflag, uint mode);

    [LibraryImport(Libc, EntryPoint = "shm_unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int ShmUnlink(string name);

    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenRaw(string path, int oflag, uint mode);

    [LibraryImport(Libc, EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Unlink(string path);

    /// <summary>O_NOFOLLOW: 0x20000 on x86_64, 0x8000 on aarch64 (asm-generic differs from x86's fcntl.h).</summary>
    internal static readonly int O_NOFOLLOW =
        RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x8000 : 0x20000;
    internal const int O_CLOEXEC = 0x80000;

    /// <summary>open(2) wrapped into a SafeFileHandle; null (and the errno) on failure.</summary>
    internal static SafeFileHandle? OpenFile(string path, int flags, uint mode, out int errno) =>
        OwnedHandle(OpenRaw(path, flags, mode), out errno);

    /// <summary>A descriptor just returned by a P/Invoke, wrapped into a SafeFileHandle; null (and that call's errno)
    /// when it failed.</summary>
    private static SafeFileHandle? OwnedHandle(int fd, out int errno)
    {
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }

    [LibraryImport(Libc, EntryPoint = "ftruncate", SetLastError = true)]
    internal static partial int FTruncate(SafeFileHandle fd, long length);

    [LibraryImport(Libc, EntryPoint = "fchmod", SetLastError = true)]
    internal static partial int FChmod(SafeFileHandle fd, uint mode);

    /// <summary>Returns an error number (0 on success), not -1/errno.</summary>
    [LibraryImport(Libc, EntryPoint = "posix_fallocate")]
    internal static partial int PosixFallocate(SafeFileHandle fd, long offset, long length);

    [LibraryImport(Libc, EntryPoint = "fstat", SetLastError = true)]
    private static partial int FStatRaw(SafeFileHandle fd, byte* buffer);

    [LibraryImport(Libc, EntryPoint = "lstat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int LStatRaw(string path, byte* buffer);

    /// <summary>flock(2) on the open file description of <paramref name="fd"/> (docs/format.md section 8).</summary>
    [LibraryImport(Libc, EntryPoint = "flock", SetLastError = true)]
    internal static partial int Flock(SafeFileHandle fd, int operation);

    [LibraryImport(Libc, EntryPoint = "pread", SetLastError = true)]
    private static partial nint PReadRaw(SafeFileHandle fd, byte* buffer, nuint count, long offset);

    [LibraryImport(Libc, EntryPoint = "mmap", SetLastError = true)]
    internal static partial nint MMap(nint address, nuint length, int protection, int flags, SafeFileHandle fd, long offset);

    [LibraryImport(Libc, EntryPoint = "munmap", SetLastError = true)]
    internal static partial int MUnmap(nint address, nuint length);

    [LibraryImport(Libc, EntryPoint = "geteuid")]
    internal static partial uint GetEUid();

    [LibraryImport(Libc, EntryPoint = "getpid")]
    internal static partial int GetPid();

    [LibraryImport(Libc, EntryPoint = "pthread_mutexattr_init")]
    internal static partial int MutexAttrInit(void* attr);

    [LibraryImport(Libc, EntryPoint = "pthread_mutexattr_setpshared")]
    internal static partial int MutexAttrSetPShared(void* attr, int value);

    [LibraryImport(Libc, EntryPoint = "pthread_mutexattr_setrobust")]
    internal static partial int MutexAttrSetRobust(void* attr, int value);

    [LibraryImport(Libc, EntryPoint = "pthread_mutexattr_settype")]
    internal static partial int MutexAttrSetType(void* attr, int value);

    [LibraryImport(Libc, EntryPoint = "pthread_mutexattr_destroy")]
    internal static partial int MutexAttrDestroy(void* attr);

    [LibraryImport(Libc, EntryPoint = "pthread_mutex_init")]
    internal static partial int MutexInit(void* mutex, void* attr);

    /// <summary>Blocking up to the deadline: keeps the GC transition so the runtime can suspend this
    /// thread while it waits.</summary>
    [LibraryImport(Libc, EntryPoint = "pthread_mutex_clocklock")]
    internal static partial int MutexClockLock(void* mutex, int clock, Timespec* deadline);

    // The non-blocking acquire of docs/format.md section 7.3: clocklock with a deadline already
    // past ({-1, 0}), which glibc answers before setting FUTEX_WAITERS or entering the kernel. Never
    // pthread_mutex_trylock: it leaves the caller's tid in a not-recoverable mutex. This call and
    // unlock never block (an unlock at most issues one FUTEX_WAKE), never call back into the runtime
    // and do not use errno, so skipping the GC transition is safe and keeps the uncontended Lock()
    // close to a bare pthread pair. The caller checks the mutex kind first (a PI kind would enter the
    // kernel).
    [LibraryImport(Libc, EntryPoint = "pthread_mutex_clocklock")]
    [SuppressGCTransition]
    internal static partial int MutexLockNow(void* mutex, int clock, Timespec* pastDeadline);

    [LibraryImport(Libc, EntryPoint = "pthread_mutex_unlock")]
    [SuppressGCTransition]
    internal static partial int MutexUnlock(void* mutex);

    [LibraryImport(Libc, EntryPoint = "pthread_mutex_consistent")]
    internal static partial int MutexConsistent(void* mutex);

    /// <summary>syscall(2) for futex(2) only: (SYS_futex, uaddr, op, val, timeout, uaddr2, val3).</summary>
    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long SyscallFutex(long number, uint* address, long operation, long value, Timespec* timeout, void* address2, long value3);

    /// <summary>struct futex_waitv (linux/futex.h): the value expected at the word, its address, FUTEX_32 flags.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct FutexWaitvEntry
    {
        public ulong Value;
        public ulong Address;
        public uint Flags;
        public uint Reserved;
    }

    /// <summary>syscall(2) for futex_waitv(2) only: (SYS_futex_waitv, waiters, nr_futexes, flags, absolute timeout, clockid).</summary>
    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long SyscallFutexWaitv(long number, FutexWaitvEntry* waiters, long count, long flags, Timespec* timeout, long clock);

    [LibraryImport(Libc, EntryPoint = "gettid")]
    internal static partial int GetTid();

    [ThreadStatic] private static int t_tid;

    /// <summary>gettid(2) of the calling thread, cached per thread (a thread's id never changes; the
    /// wait and notify paths ask it several times per call).</summary>
    internal static int CurrentTid => t_tid != 0 ? t_tid : t_tid = GetTid();

    [LibraryImport(Libc, EntryPoint = "clock_gettime")]
    internal static partial int ClockGetTime(int clock, Timespec* time);

    /// <summary>shm_open wrapped into a SafeFileHandle; null (and the errno) on failure.</summary>
    internal static SafeFileHandle? ShmOpen(string osName, int flags, uint mode, out int errno) =>
        OwnedHandle(ShmOpenRaw(osName, flags, mode), out errno);

    /// <summary>The fields of struct stat SharedBridge needs. st_dev (0), st_ino (8) and st_size (48)
    /// sit at the same offsets in the x86_64 and the generic (aarch64) layouts; st_mode and st_uid
    /// do not (x86_64: 24 and 28, after an 8-byte st_nlink; generic: 16 and 24).</summary>
    internal readonly record struct FileStat(ulong Device, ulong Inode, long Size, uint Mode, uint Uid)
    {
        internal bool IsRegularFile => (Mode & S_IFMT) == S_IFREG;
    }

    private static readonly bool s_genericStatLayout = RuntimeInformation.ProcessArchitecture == Architecture.Arm64;

    /// <summary>fstat; null (and the errno) on failure.</summary>
    internal static FileStat? TryFStat(SafeFileHandle fd, out int errno)
    {
        byte* buffer = stackalloc byte[256]; // struct stat is 144 bytes on x86_64, 128 on aarch64
        if (FStatRaw(fd, buffer) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        errno = 0;
        return ParseStat(buffer);
    }

    /// <summary>lstat of a path (a symbolic link is not followed); null (and the errno) on failure.</summary>
    internal static FileStat? TryLStat(string path, out int errno)
    {
        byte* buffer = stackalloc byte[256];
        if (LStatRaw(path, buffer) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        errno = 0;
        return ParseStat(buffer);
    }

    private static FileStat ParseStat(byte* buffer)
    {
        uint mode = s_genericStatLayout ? *(uint*)(buffer + 16) : *(uint*)(buffer + 24);
        uint uid = s_genericStatLayout ? *(uint*)(buffer + 24) : *(uint*)(buffer + 28);
        return new FileStat(*(ulong*)buffer, *(ulong*)(buffer + 8), *(long*)(buffer + 48), mode, uid);
    }

    /// <summary>pread until <paramref name="buffer"/> is full or the end of the file; returns the
    /// number of bytes read, or -1 (and the errno) on failure.</summary>
    internal static long PRead(SafeFileHandle fd, Span<byte> buffer, long offset, out int errno)
    {
        long total = 0;
        fixed (byte* p = buffer)
        {
            while (total < buffer.Length)
            {
                nint n = PReadRaw(fd, p + total, (nuint)(buffer.Length - total), offset + total);
                if (n < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR) continue;
                    return -1;
                }
                if (n == 0) break;
                total += n;
            }
        }
        errno = 0;
        return total;
    }
}
