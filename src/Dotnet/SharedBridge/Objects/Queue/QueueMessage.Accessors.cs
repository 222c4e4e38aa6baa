using SharedBridge.Format;
using SharedBridge.Objects;

namespace SharedBridge;

// The typed view of a message (docs/format.md section 11.4); the lifetime, Descriptor and Data are in
// the other part of the class.
public sealed partial class QueueMessage
{
    /// <summary>What the message holds (its tag).</summary>
    public QueueMessageType Type => Descriptor.Type;

    /// <summary>The element typecode (section 3.4) of a scalar, record ('T') or array message; '\0' for
    /// bytes, strings and Python objects. Valid after Dispose.</summary>
    public char Typecode => Descriptor.Typecode;

    /// <summary>An array message's extents in C order (0 to 32 of them); empty for every other type (a
    /// scalar or record is one element). Valid after Dispose.</summary>
    public ReadOnlySpan<long> Shape => Descriptor.Shape;

    /// <summary>The structure's name as the writer recorded it (informational) when <see cref="Typecode"/> is 'T'.</summary>
    public string TypeName => Descriptor.TypeName;

    /// <summary>The structure's field table (section 4) when <see cref="Typecode"/> is 'T', otherwise empty.</summary>
    public IReadOnlyList<StructField> Fields => Descriptor.Fields;

    /// <summary>The string of a <see cref="QueueMessageType.String"/> message. Throws
    /// <see cref="TypeMismatchException"/> for any other type and <see cref="CorruptDataException"/>
    /// when the bytes are not UTF-8.</summary>
    public string GetString() => MessageCodec.GetString(Descriptor, Data);

    /// <summary>The value of a scalar or record message (or of an array of exactly one element) as
    /// <typeparamref name="T"/>: a copy, bools read as true/false, a 'u' value that is no Unicode scalar
    /// value is <see cref="CorruptDataException"/>. <typeparamref name="T"/> must be the .NET type of the
    /// typecode (section 3.4: 'l' and 'q' read as long, 'u' as Rune or uint) or a struct with the same
    /// field table; otherwise <see cref="TypeMismatchException"/> naming both types.</summary>
    public T GetValue<T>() where T : unmanaged => MessageCodec.GetValue<T>(Descriptor, Data);

    /// <summary>The elements of an array message (or the one element of a scalar or record) viewed in
    /// place, without a copy, valid until Dispose; bools and Runes as stored (raw view, section 3.4).
    /// Type rules as <see cref="GetValue{T}"/>.</summary>
    public ReadOnlySpan<T> GetSpan<T>() where T : unmanaged => MessageCodec.GetSpan<T>(Descriptor, Data);

    /// <summary>A copy of the elements of <see cref="GetSpan{T}"/>, with the checks of <see cref="GetValue{T}"/>.</summary>
    public T[] ToArray<T>() where T : unmanaged => MessageCodec.ToArray<T>(Descriptor, Data);
}
