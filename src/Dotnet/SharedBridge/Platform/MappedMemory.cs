using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace SharedBridge.Platform;

/// <summary>
/// One <c>mmap(MAP_SHARED)</c> mapping of a shared-memory object, unmapped (<c>munmap</c>) when the
/// handle is disposed. Replaces MemoryMappedFile, which extends a file smaller than the requested
/// capacity (it must never resize a segment it did not create) and maps the whole object.
/// </summary>
/// <remarks>
/// Only <see cref="SafeHandle.Dispose()"/> unmaps, never the finalizer: the owner
/// (<see cref="MappedSegment"/>) disposes it when its last reference goes, and a segment nobody
/// disposed may have handed out spans that outlive every object referring to it, so its mapping
/// stays for the life of the process rather than vanish under them.
/// </remarks>
internal sealed class MappedMemory : SafeHandle
{
    private MappedMemory() : base(invalidHandleValue: -1, ownsHandle: true) { }

    /// <summary>Length of the mapping in bytes.</summary>
    internal nuint Length { get; private set; }

    /// <summary>The first mapped byte (valid until disposed).</summary>
    internal unsafe byte* Base => (byte*)handle;

    public override bool IsInvalid => handle == -1 || handle == 0;

    /// <summary>Maps the first <paramref name="length"/> bytes of segment <paramref name="name"/>'s
    /// descriptor read-write and shared; throws the error of <see cref="OsErrors.Map"/>.</summary>
    internal static MappedMemory Map(string name, SafeFileHandle fd, long length)
    {
        var mapping = new MappedMemory();
        nint address = Interop.MMap(0, (nuint)length, Interop.PROT_READ | Interop.PROT_WRITE, Interop.MAP_SHARED, fd, 0);
        if (address == -1)
        {
            int errno = OsErrors.Last;
            mapping.SetHandleAsInvalid();
            throw OsErrors.Map(name, errno, length);
        }
        mapping.Length = (nuint)length;
        mapping.SetHandle(address);
        GC.SuppressFinalize(mapping); // see the remarks: unmapped by Dispose only
        return mapping;
    }

    /// <summary>A full memory barrier. A writer calls it between the bytes it publishes and the word that
    /// publishes them (state = 1, docs/format.md section 6.1 step 6); a reader between reading that word and the rest.</summary>
    internal static void Fence() => Interlocked.MemoryBarrier();

    protected override bool ReleaseHandle() => Interop.MUnmap(handle, Length) == 0;
}
