using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace SharedBridge.Platform;

/// <summary>
/// One <c>mmap(MAP_SHARED)</c> mapping of a shared-memory object, unmapped (<c>munmap</c>) when the
/// handle is released. Replaces MemoryMappedFile, which extends a file smaller than the requested
/// capacity (it must never resize a segment it did not create) and maps the whole object.
/// </summary>
internal sealed class MappedMemory : SafeHandle
{
    private MappedMemory() : base(invalidHandleValue: -1, ownsHandle: true) { }

    /// <summary>Length of the mapping in bytes.</summary>
    internal nuint Length { get; private set; }

    public override bool IsInvalid => handle == -1 || handle == 0;

    /// <summary>Maps the first <paramref name="length"/> bytes of <paramref name="fd"/> read-write and shared.
    /// Returns null and the errno when mmap fails.</summary>
    internal static MappedMemory? TryMap(SafeFileHandle fd, long length, out int errno)
    {
        var mapping = new MappedMemory();
        nint address = Interop.MMap(0, (nuint)length, Interop.PROT_READ | Interop.PROT_WRITE, Interop.MAP_SHARED, fd, 0);
        if (address == -1)
        {
            errno = Marshal.GetLastPInvokeError();
            mapping.SetHandleAsInvalid();
            return null;
        }
        errno = 0;
        mapping.Length = (nuint)length;
        mapping.SetHandle(address);
        return mapping;
    }

    protected override bool ReleaseHandle() => Interop.MUnmap(handle, Length) == 0;
}
