using System.Buffers.Binary;

namespace SharedBridge.Format;

/// <summary>The immutable words of a data area that every open mapping it checks (docs/format.md section 6.2
/// step 6): a semaphore's <c>max_value</c> and <c>bounded</c> and a barrier's <c>parties</c> (section 10.2), a
/// queue's <c>max_messages</c> and <c>flavour</c> (section 11.2). The objects read and keep their own copy.</summary>
internal static class ImmutableWords
{
    /// <summary>The largest semaphore value and barrier party count (section 10.2).</summary>
    internal const uint ValueMax = 0x7FFFFFFF;

    /// <summary>The first bytes of the data area an open reads for <paramref name="kind"/> (0: nothing to check).</summary>
    internal static int BytesFor(SegmentKind kind) => kind switch
    {
        SegmentKind.Semaphore or SegmentKind.Barrier => 24,
        SegmentKind.Queue => QueueLayout.Flavour + 4,
        _ => 0,
    };

    /// <summary>What breaks the rules in <paramref name="data"/> (the first <see cref="BytesFor"/> bytes of the
    /// data area), or null.</summary>
    internal static string? Problem(SegmentKind kind, ReadOnlySpan<byte> data)
    {
        switch (kind)
        {
            case SegmentKind.Semaphore:
            {
                uint max = U32(data, 16), bounded = U32(data, 20);
                return bounded > 1 || max > ValueMax || (bounded == 0 && max != ValueMax)
                    ? $"a semaphore with bounded {bounded}, max_value {max} (section 10.2)" : null;
            }
            case SegmentKind.Barrier:
            {
                uint parties = U32(data, 12);
                return parties is 0 or > ValueMax ? $"a barrier with parties {parties} (1 to {ValueMax}, section 10.2)" : null;
            }
            case SegmentKind.Queue:
            {
                uint max = U32(data, QueueLayout.MaxMessages), flavour = U32(data, QueueLayout.Flavour);
                if (max is 0 or > QueueLayout.Unbounded) return $"a queue with max_messages {max} (1 to 0x7FFFFFFF, section 11.2)";
                return flavour > QueueLayout.MaxFlavour ? $"a queue with flavour {flavour} (0 to {QueueLayout.MaxFlavour}, section 11.2)" : null;
            }
            default:
                return null;
        }
    }

    private static uint U32(ReadOnlySpan<byte> data, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(data[offset..]);
}
