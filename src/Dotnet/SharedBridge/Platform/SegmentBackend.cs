using Microsoft.Win32.SafeHandles;
using SharedBridge.Format;

namespace SharedBridge.Platform;

/// <summary>
/// Where segment objects live (docs/format.md section 1.3): the one place that opens, creates and removes them by key
/// (<see cref="SegmentName"/>). A bare name is a POSIX shared-memory object (shm_open, shm_unlink); an absolute
/// <c>&lt;dir&gt;/&lt;name&gt;</c> is a file of the directory backend, opened with open(2) and the flags glibc's shm_open
/// adds on Linux (O_NOFOLLOW, O_CLOEXEC), so that every rule after the open (fstat checks, mmap, flock, the robust mutex,
/// identity checks before unlink) is the same for both.
/// </summary>
internal static class SegmentBackend
{
    /// <summary>The descriptor of segment object <paramref name="key"/>; null (and the errno) on failure.</summary>
    internal static SafeFileHandle? Open(string key, int flags, uint mode, out int errno) =>
        SegmentName.IsPath(key)
            ? Interop.OpenFile(key, flags | Interop.O_NOFOLLOW | Interop.O_CLOEXEC, mode, out errno)
            : Interop.ShmOpen(SegmentName.ToOsName(key), flags, mode, out errno);

    /// <summary>Removes the name <paramref name="key"/>: 0, or -1 with the errno in <see cref="OsErrors.Last"/>.</summary>
    internal static int Unlink(string key) =>
        SegmentName.IsPath(key) ? Interop.Unlink(key) : Interop.ShmUnlink(SegmentName.ToOsName(key));

    /// <summary>The names in <paramref name="directory"/> (null: /dev/shm), sorted (empty if it cannot be listed).</summary>
    internal static IReadOnlyList<string> List(string? directory)
    {
        try
        {
            var names = Directory.EnumerateFileSystemEntries(directory ?? SegmentName.ShmDirectory)
                .Select(Path.GetFileName).OfType<string>().ToList();
            names.Sort(StringComparer.Ordinal);
            return names;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }
}
