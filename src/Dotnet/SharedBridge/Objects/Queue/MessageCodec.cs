using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using SharedBridge.Format;

namespace SharedBridge.Objects;

/// <summary>Byte layout of the message descriptors (docs/format.md section 11.4), little-endian.</summary>
internal static class MessageLayout
{
    /// <summary>Tag 3: u8 typecode, 7 zero bytes.</summary>
    internal const int ScalarLength = 8;

    /// <summary>Struct description: u32 field_count, u32 element_size, 32-byte type_name, then
    /// field_count entries of section 4 (64 bytes each).</summary>
    internal const int StructHeaderLength = 8 + HeaderLayout.TypeNameWidth;
    internal const int StructTypeNameOffset = 8;

    /// <summary>Tag 5: u8 typecode, u8 ndim, u16 0, u32 0, then u64 shape[ndim] (and the struct
    /// description when the typecode is 'T').</summary>
    internal const int ArrayHeaderLength = 8;
    internal const int MaxDimensions = 32;

    /// <summary>Tag 6: u32 buffer_count, u32 0, u64 pickle_length, then u64 buffer_length[buffer_count].</summary>
    internal const int PickleHeaderLength = 16;

    /// <summary>The most field-table entries a struct description may hold: as many as a segment header
    /// can (header_size at most 1 MiB, section 3.1), so every message structure could also be a segment's.</summary>
    internal const int MaxStructFields = (HeaderLayout.MaxHeaderSize - HeaderLayout.FixedSize) / HeaderLayout.FieldEntrySize;

    /// <summary>The longest struct description: <see cref="MaxStructFields"/> entries.</summary>
    internal const int MaxStructLength = StructHeaderLength + HeaderLayout.FieldEntrySize * MaxStructFields;

    internal static ulong Align8(ulong x) => (x + 7) & ~7UL;
}

/// <summary>
/// What a writer puts into a record for one message (docs/format.md section 11.4): the tag, the
/// descriptor bytes (<see cref="WriteDescriptor"/>) and the length of the data that follows. The
/// writer copies the data itself (the bytes of the span, the UTF-8 of the string, the element).
/// </summary>
internal readonly struct MessageSpec
{
    private readonly ElementType? _element;
    private readonly long[]? _shape;

    private MessageSpec(QueueMessageType type, int descriptorLength, ulong dataLength, ElementType? element, long[]? shape)
    {
        Type = type;
        DescriptorLength = descriptorLength;
        DataLength = dataLength;
        _element = element;
        _shape = shape;
    }

    /// <summary>The record's tag.</summary>
    internal QueueMessageType Type { get; }

    /// <summary>Bytes <see cref="WriteDescriptor"/> writes (the record's desc_length); always a multiple of 8.</summary>
    internal int DescriptorLength { get; }

    /// <summary>The message's data bytes (the record's data_length).</summary>
    internal ulong DataLength { get; }

    /// <summary>Raw bytes (tag 1).</summary>
    internal static MessageSpec Bytes(int length) =>
        new(QueueMessageType.Bytes, 0, (ulong)NonNegative(length, nameof(length)), null, null);

    /// <summary>A UTF-8 string of <paramref name="utf8Length"/> bytes (tag 2).</summary>
    internal static MessageSpec String(int utf8Length) =>
        new(QueueMessageType.String, 0, (ulong)NonNegative(utf8Length, nameof(utf8Length)), null, null);

    /// <summary>UTF-8 that throws on a lone surrogate instead of writing U+FFFD: a string message is the
    /// text, not a substitute (Python pickles such a str instead).</summary>
    internal static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>A string message for <paramref name="text"/> (tag 2): its UTF-8 length, checked. Write its
    /// bytes with <see cref="StrictUtf8"/>. A lone surrogate is an ArgumentException.</summary>
    internal static MessageSpec String(string text)
    {
        try
        {
            return String(StrictUtf8.GetByteCount(text));
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException(
                $"The string has a lone surrogate (0x{(int)e.CharUnknown:X4} at index {e.Index}), which UTF-8 cannot encode: " +
                "a string message is UTF-8 text (docs/format.md section 11.4). Send it as bytes you encode yourself.", nameof(text), e);
        }
    }

    /// <summary>One element of a primitive type of section 3.4 (tag 3) with its default typecode
    /// (int 'i', long 'q', ... Rune 'u'). A struct is a record: <see cref="Record{T}"/> or <see cref="Value{T}"/>.</summary>
    internal static MessageSpec Scalar<T>() where T : unmanaged
    {
        var element = ElementType.Of<T>();
        if (element.TypeCode == TypeCodes.Structure)
            throw new ArgumentException($"{typeof(T).Name} is a structure: it is sent as a record message, not a scalar.", nameof(T));
        return new(QueueMessageType.Scalar, MessageLayout.ScalarLength, (ulong)element.Size, element, null);
    }

    /// <summary>One structure (tag 4) described by its field table (StructLayoutTable).</summary>
    internal static MessageSpec Record<T>() where T : unmanaged
    {
        var element = ElementType.Of<T>();
        if (element.TypeCode != TypeCodes.Structure)
            throw new ArgumentException($"{typeof(T).Name} is not a structure: it is sent as a scalar message ({TypeCodes.Describe(element.TypeCode)}).", nameof(T));
        return new(QueueMessageType.Record, StructDescriptionLength(element), (ulong)element.Size, element, null);
    }

    /// <summary>A scalar (tag 3) for a primitive type, a record (tag 4) for a struct.</summary>
    internal static MessageSpec Value<T>() where T : unmanaged =>
        ElementType.Of<T>().TypeCode == TypeCodes.Structure ? Record<T>() : Scalar<T>();

    /// <summary>An n-d array (tag 5) of <typeparamref name="T"/> elements in C order; every extent must be
    /// at least 0, at most 32 of them, and the array's bytes must fit in a long.</summary>
    internal static MessageSpec Array<T>(ReadOnlySpan<long> shape) where T : unmanaged
    {
        var element = ElementType.Of<T>();
        if (shape.Length > MessageLayout.MaxDimensions)
            throw new ArgumentException($"An array message has at most {MessageLayout.MaxDimensions} dimensions, this shape has {shape.Length}.", nameof(shape));
        ulong count = 1;
        bool overflow = false;
        foreach (long extent in shape)
        {
            if (extent < 0)
                throw new ArgumentException($"The shape ({string.Join(", ", shape.ToArray())}) has a negative extent.", nameof(shape));
            overflow |= extent != 0 && count > (ulong)long.MaxValue / (ulong)extent;
            count = overflow ? 1 : count * (ulong)extent;
        }
        // Overflow is judged without the zero extents: a consumer computes strides from the others.
        if (overflow || count > (ulong)long.MaxValue / (ulong)element.Size)
            throw new ArgumentException($"The shape ({string.Join(", ", shape.ToArray())}) of {element.Size}-byte elements is larger than {long.MaxValue} bytes.", nameof(shape));
        if (shape.IndexOf(0L) >= 0) count = 0;
        int length = MessageLayout.ArrayHeaderLength + 8 * shape.Length
                     + (element.TypeCode == TypeCodes.Structure ? StructDescriptionLength(element) : 0);
        return new(QueueMessageType.Array, length, count * (ulong)element.Size, element, shape.ToArray());
    }

    /// <summary>An n-d array (tag 5) over <paramref name="elementCount"/> elements: the shape's product must
    /// equal it (ArgumentException otherwise).</summary>
    internal static MessageSpec Array<T>(ReadOnlySpan<long> shape, long elementCount) where T : unmanaged
    {
        var spec = Array<T>(shape);
        if (spec.DataLength != (ulong)elementCount * (ulong)ElementType.Of<T>().Size)
            throw new ArgumentException(
                $"The shape ({string.Join(", ", shape.ToArray())}) holds {spec.DataLength / (ulong)ElementType.Of<T>().Size} elements, " +
                $"the span {elementCount}: pass a shape whose product is the span's length.", nameof(shape));
        return spec;
    }

    /// <summary>A one-dimensional array (tag 5) of <paramref name="length"/> elements.</summary>
    internal static MessageSpec Array<T>(int length) where T : unmanaged =>
        Array<T>([NonNegative(length, nameof(length))]);

    /// <summary>Writes the descriptor (<see cref="DescriptorLength"/> bytes) at the start of <paramref name="dest"/>.</summary>
    internal void WriteDescriptor(Span<byte> dest)
    {
        if (dest.Length < DescriptorLength)
            throw new ArgumentException($"The descriptor needs {DescriptorLength} bytes, the destination has {dest.Length}.", nameof(dest));
        dest = dest[..DescriptorLength];
        dest.Clear();
        switch (Type)
        {
            case QueueMessageType.Scalar:
                dest[0] = (byte)_element!.TypeCode;
                break;
            case QueueMessageType.Record:
                WriteStructDescription(dest, _element!);
                break;
            case QueueMessageType.Array:
                dest[0] = (byte)_element!.TypeCode;
                dest[1] = (byte)_shape!.Length;
                for (int i = 0; i < _shape.Length; i++)
                    BinaryPrimitives.WriteInt64LittleEndian(dest[(MessageLayout.ArrayHeaderLength + 8 * i)..], _shape[i]);
                if (_element.TypeCode == TypeCodes.Structure)
                    WriteStructDescription(dest[(MessageLayout.ArrayHeaderLength + 8 * _shape.Length)..], _element);
                break;
        }
    }

    private static int StructDescriptionLength(ElementType element)
    {
        if (element.Fields.Length > MessageLayout.MaxStructFields)
            throw new UnsupportedTypeException(
                $"{element.ClrType.Name} cannot be sent in a queue message: its field table has {element.Fields.Length} entries, " +
                $"at most {MessageLayout.MaxStructFields} fit (docs/format.md section 3.1, header_size at most 1 MiB).");
        return MessageLayout.StructHeaderLength + HeaderLayout.FieldEntrySize * element.Fields.Length;
    }

    private static void WriteStructDescription(Span<byte> dest, ElementType element)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(dest, (uint)element.Fields.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[4..], (uint)element.Size);
        HeaderCodec.WriteText(dest.Slice(MessageLayout.StructTypeNameOffset, HeaderLayout.TypeNameWidth), element.TypeName);
        HeaderCodec.WriteFieldEntries(dest[MessageLayout.StructHeaderLength..], element.Fields);
    }

    private static int NonNegative(int value, string name) =>
        value >= 0 ? value : throw new ArgumentOutOfRangeException(name, value, "A length cannot be negative.");
}

/// <summary>
/// A validated message descriptor (docs/format.md section 11.4): what a reader got, a private copy
/// of the ring's bytes, made by <see cref="MessageCodec.Read"/>.
/// </summary>
internal sealed class MessageDescriptor
{
    internal MessageDescriptor(string queueName, QueueMessageType type, ulong dataLength)
    {
        QueueName = queueName;
        Type = type;
        DataLength = dataLength;
    }

    /// <summary>The queue the message came from (for error messages).</summary>
    internal string QueueName { get; }

    internal QueueMessageType Type { get; }

    /// <summary>The element typecode of a scalar, record ('T') or array; '\0' for bytes, strings and pickles.</summary>
    internal char Typecode { get; init; }

    /// <summary>The array's extents (C order); empty for every other type (a scalar or record is one element).</summary>
    internal long[] Shape { get; init; } = [];

    /// <summary>Bytes per element (scalar, record, array); 1 for bytes and strings; 0 for pickles.</summary>
    internal int ElementSize { get; init; }

    /// <summary>Elements of a scalar, record (1) or array (the shape's product); bytes of bytes and strings.</summary>
    internal long ElementCount { get; init; }

    /// <summary>The structure's type_name (informational) when the typecode is 'T'.</summary>
    internal string TypeName { get; init; } = "";

    /// <summary>The structure's validated field table when the typecode is 'T'.</summary>
    internal StructField[] Fields { get; init; } = [];

    /// <summary>Tag 6: the pickle's bytes, at data offset 0.</summary>
    internal long PickleLength { get; init; }

    /// <summary>Tag 6: the out-of-band buffers' lengths; buffer i starts at <see cref="BufferOffsets"/>[i].</summary>
    internal long[] BufferLengths { get; init; } = [];

    /// <summary>Tag 6: each buffer's data offset (the previous end rounded up to a multiple of 8).</summary>
    internal long[] BufferOffsets { get; init; } = [];

    /// <summary>The last .NET element type this message was found to match (the check is not repeated);
    /// a race between threads only repeats it.</summary>
    internal ElementType? Matched { get; set; }

    /// <summary>The data bytes the descriptor accounts for (the record's data_length).</summary>
    internal ulong DataLength { get; }

    /// <summary>The element type as messages describe it: "'d' (c_double, .NET Double)", "'T' (structure Point, 16 bytes)".</summary>
    internal string ElementDescription => Typecode == TypeCodes.Structure
        ? $"'T' (structure {(TypeName.Length > 0 ? TypeName + ", " : "")}{ElementSize} bytes)"
        : TypeCodes.Describe(Typecode);

    /// <summary>What the message is, for error messages: "a scalar 'd' (c_double, .NET Double)", "an array of shape (2, 3) of ...".</summary>
    internal string Describe() => Type switch
    {
        QueueMessageType.Bytes => $"a bytes message ({DataLength} bytes)",
        QueueMessageType.String => $"a string message ({DataLength} UTF-8 bytes)",
        QueueMessageType.Scalar => $"a scalar message of {ElementDescription}",
        QueueMessageType.Record => $"a record message of {ElementDescription}",
        QueueMessageType.Array => $"an array message of shape ({string.Join(", ", Shape)}) of {ElementDescription}",
        _ => $"a pickled Python object ({PickleLength} pickle bytes, {BufferLengths.Length} out-of-band buffers)",
    };
}

/// <summary>Validates the descriptors of queue messages (docs/format.md section 11.4): hostile input.</summary>
internal static class MessageCodec
{
    private const int StackCopyLimit = 512;

    /// <summary>
    /// Validates a record's tag, descriptor and data_length and returns a private description of the
    /// message. The descriptor is copied first and read once. Anything a conforming writer cannot have
    /// written is a <see cref="CorruptDataException"/> naming <paramref name="queueName"/>.
    /// </summary>
    internal static MessageDescriptor Read(byte tag, ReadOnlySpan<byte> descriptor, ulong dataLength, string queueName)
    {
        if (tag is 0 or > (byte)QueueMessageType.PythonObject)
            throw Corrupt(queueName, tag, $"tag {tag} is not a message type (1 to 6)");
        if (dataLength > long.MaxValue)
            throw Corrupt(queueName, tag, $"data_length {dataLength} is larger than any message");
        var type = (QueueMessageType)tag;
        if (type is QueueMessageType.Bytes or QueueMessageType.String)
        {
            if (descriptor.Length != 0)
                throw Corrupt(queueName, tag, $"desc_length is {descriptor.Length}, a {(type == QueueMessageType.Bytes ? "bytes" : "string")} message has no descriptor (0)");
            return new MessageDescriptor(queueName, type, dataLength) { ElementSize = 1, ElementCount = (long)dataLength };
        }

        // Longer than any descriptor of its tag: refused before it is copied (a pickle's grows with its
        // buffer count, bounded by the record, so by the ring).
        int longest = type switch
        {
            QueueMessageType.Scalar => MessageLayout.ScalarLength,
            QueueMessageType.Record => MessageLayout.MaxStructLength,
            QueueMessageType.Array => MessageLayout.ArrayHeaderLength + 8 * MessageLayout.MaxDimensions + MessageLayout.MaxStructLength,
            _ => int.MaxValue,
        };
        if (descriptor.Length > longest)
            throw Corrupt(queueName, tag, $"desc_length {descriptor.Length} is longer than any descriptor of this type ({longest} bytes)");

        // The private copy, read once (the ring is shared with other processes).
        byte[]? rented = null;
        Span<byte> copy = descriptor.Length <= StackCopyLimit
            ? stackalloc byte[descriptor.Length]
            : (rented = ArrayPool<byte>.Shared.Rent(descriptor.Length));
        copy = copy[..descriptor.Length];
        descriptor.CopyTo(copy);
        try
        {
            // A stream of messages of one type repeats its descriptor: the last one validated on this
            // thread is reused (descriptors are immutable), so a record or array costs one comparison.
            var last = t_last ??= new LastRead();
            if (last.Descriptor is { } previous && last.Tag == tag && last.DataLength == dataLength
                && ReferenceEquals(previous.QueueName, queueName) && copy.SequenceEqual(last.Bytes.AsSpan(0, last.Length)))
                return previous;
            var result = type switch
            {
                QueueMessageType.Scalar => ReadScalar(copy, dataLength, queueName),
                QueueMessageType.Record => ReadRecord(copy, dataLength, queueName),
                QueueMessageType.Array => ReadArray(copy, dataLength, queueName),
                _ => ReadPickle(copy, dataLength, queueName),
            };
            if (copy.Length <= LastReadLimit)
            {
                if (last.Bytes.Length < copy.Length) last.Bytes = new byte[Math.Max(copy.Length, 64)];
                copy.CopyTo(last.Bytes);
                (last.Tag, last.DataLength, last.Length, last.Descriptor) = (tag, dataLength, copy.Length, result);
            }
            return result;
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private const int LastReadLimit = 16 * 1024;

    [ThreadStatic] private static LastRead? t_last;

    private sealed class LastRead
    {
        internal byte Tag;
        internal ulong DataLength;
        internal byte[] Bytes = [];
        internal int Length;
        internal MessageDescriptor? Descriptor;
    }

    private static MessageDescriptor ReadScalar(ReadOnlySpan<byte> d, ulong dataLength, string queueName)
    {
        const byte tag = (byte)QueueMessageType.Scalar;
        if (d.Length != MessageLayout.ScalarLength)
            throw Corrupt(queueName, tag, $"desc_length is {d.Length}, a scalar's descriptor is {MessageLayout.ScalarLength} bytes");
        char code = (char)d[0];
        int size = TypeCodes.SizeOf(code);
        if (size == 0)
            throw Corrupt(queueName, tag, code == TypeCodes.Structure
                ? "typecode 'T' in a scalar descriptor (a structure is a record message, tag 4)"
                : $"unknown typecode 0x{(int)code:X2}");
        if (d[1..].IndexOfAnyExcept((byte)0) >= 0)
            throw Corrupt(queueName, tag, "the descriptor's reserved bytes 1-7 are not 0");
        if (dataLength != (ulong)size)
            throw Corrupt(queueName, tag, $"data_length {dataLength} is not the size of one '{code}' element ({size})");
        return new MessageDescriptor(queueName, QueueMessageType.Scalar, dataLength) { Typecode = code, ElementSize = size, ElementCount = 1 };
    }

    private static MessageDescriptor ReadRecord(ReadOnlySpan<byte> d, ulong dataLength, string queueName)
    {
        const byte tag = (byte)QueueMessageType.Record;
        var (elementSize, typeName, fields) = ReadStruct(d, queueName, tag);
        if (dataLength != (ulong)elementSize)
            throw Corrupt(queueName, tag, $"data_length {dataLength} is not the structure's element_size {elementSize}");
        return new MessageDescriptor(queueName, QueueMessageType.Record, dataLength)
        {
            Typecode = TypeCodes.Structure, ElementSize = elementSize, ElementCount = 1, TypeName = typeName, Fields = fields,
        };
    }

    private static MessageDescriptor ReadArray(ReadOnlySpan<byte> d, ulong dataLength, string queueName)
    {
        const byte tag = (byte)QueueMessageType.Array;
        if (d.Length < MessageLayout.ArrayHeaderLength)
            throw Corrupt(queueName, tag, $"desc_length is {d.Length}, an array's descriptor has at least {MessageLayout.ArrayHeaderLength} bytes");
        char code = (char)d[0];
        int ndim = d[1];
        if (code != TypeCodes.Structure && TypeCodes.SizeOf(code) == 0)
            throw Corrupt(queueName, tag, $"unknown typecode 0x{(int)code:X2}");
        if (ndim > MessageLayout.MaxDimensions)
            throw Corrupt(queueName, tag, $"ndim {ndim} is above {MessageLayout.MaxDimensions}");
        if (d[2..MessageLayout.ArrayHeaderLength].IndexOfAnyExcept((byte)0) >= 0)
            throw Corrupt(queueName, tag, "the descriptor's reserved bytes 2-7 are not 0");
        int shapeEnd = MessageLayout.ArrayHeaderLength + 8 * ndim;
        if (d.Length < shapeEnd || (code != TypeCodes.Structure && d.Length != shapeEnd))
            throw Corrupt(queueName, tag, $"desc_length is {d.Length}, {ndim} extents of '{code}' elements need " +
                                          (code == TypeCodes.Structure ? $"{shapeEnd} bytes plus the struct description" : $"exactly {shapeEnd}"));
        var shape = new long[ndim];
        // Overflow is judged without the zero extents (a consumer computes strides from the others), as writers do.
        ulong count = 1;
        bool overflow = false, empty = false;
        for (int i = 0; i < ndim; i++)
        {
            ulong extent = BinaryPrimitives.ReadUInt64LittleEndian(d[(MessageLayout.ArrayHeaderLength + 8 * i)..]);
            if (extent > long.MaxValue)
                throw Corrupt(queueName, tag, $"extent {i} ({extent}) is larger than any array");
            shape[i] = (long)extent;
            empty |= extent == 0;
            overflow |= extent != 0 && count > (ulong)long.MaxValue / extent;
            if (!overflow && extent != 0) count *= extent;
        }
        int elementSize;
        string typeName = "";
        StructField[] fields = [];
        if (code == TypeCodes.Structure)
            (elementSize, typeName, fields) = ReadStruct(d[shapeEnd..], queueName, tag);
        else
            elementSize = TypeCodes.SizeOf(code);
        if (overflow || count > (ulong)long.MaxValue / (ulong)elementSize)
            throw Corrupt(queueName, tag, $"shape ({string.Join(", ", shape)}) of {elementSize}-byte elements is larger than any array");
        if (empty) count = 0;
        if (count * (ulong)elementSize != dataLength)
            throw Corrupt(queueName, tag, $"data_length {dataLength} is not shape ({string.Join(", ", shape)}) x {elementSize} bytes = {count * (ulong)elementSize}");
        return new MessageDescriptor(queueName, QueueMessageType.Array, dataLength)
        {
            Typecode = code, Shape = shape, ElementSize = elementSize, ElementCount = (long)count, TypeName = typeName, Fields = fields,
        };
    }

    private static MessageDescriptor ReadPickle(ReadOnlySpan<byte> d, ulong dataLength, string queueName)
    {
        const byte tag = (byte)QueueMessageType.PythonObject;
        if (d.Length < MessageLayout.PickleHeaderLength)
            throw Corrupt(queueName, tag, $"desc_length is {d.Length}, a pickle's descriptor has at least {MessageLayout.PickleHeaderLength} bytes");
        uint buffers = BinaryPrimitives.ReadUInt32LittleEndian(d);
        if (BinaryPrimitives.ReadUInt32LittleEndian(d[4..]) != 0)
            throw Corrupt(queueName, tag, "the descriptor's reserved bytes 4-7 are not 0");
        ulong pickleLength = BinaryPrimitives.ReadUInt64LittleEndian(d[8..]);
        if (buffers > (uint)((d.Length - MessageLayout.PickleHeaderLength) / 8) || d.Length != MessageLayout.PickleHeaderLength + 8 * (long)buffers)
            throw Corrupt(queueName, tag, $"desc_length is {d.Length}, {buffers} buffer lengths need {MessageLayout.PickleHeaderLength + 8 * (ulong)buffers} bytes");
        if (pickleLength == 0 || pickleLength > dataLength)
            throw Corrupt(queueName, tag, $"pickle_length {pickleLength} is 0 or beyond data_length {dataLength}");
        var lengths = new long[buffers];
        var offsets = new long[buffers];
        ulong end = pickleLength; // at most data_length (at most long.MaxValue): no sum below overflows a ulong
        for (int i = 0; i < buffers; i++)
        {
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(d[(MessageLayout.PickleHeaderLength + 8 * i)..]);
            ulong start = MessageLayout.Align8(end);
            if (start > dataLength || length > dataLength - start)
                throw Corrupt(queueName, tag, $"buffer {i} ({length} bytes at offset {start}) ends beyond data_length {dataLength}");
            offsets[i] = (long)start;
            lengths[i] = (long)length;
            end = start + length;
        }
        if (end != dataLength)
            throw Corrupt(queueName, tag, $"data_length {dataLength} is not the end of the pickle and its buffers ({end})");
        return new MessageDescriptor(queueName, QueueMessageType.PythonObject, dataLength)
        {
            PickleLength = (long)pickleLength, BufferLengths = lengths, BufferOffsets = offsets,
        };
    }

    /// <summary>Parses a struct description that fills <paramref name="d"/> exactly, with the validation of a
    /// header's field table (section 4) and type_name (section 4.1); packed and explicit offsets are valid.</summary>
    private static (int ElementSize, string TypeName, StructField[] Fields) ReadStruct(ReadOnlySpan<byte> d, string queueName, byte tag)
    {
        if (d.Length < MessageLayout.StructHeaderLength)
            throw Corrupt(queueName, tag, $"the struct description has {d.Length} bytes, at least {MessageLayout.StructHeaderLength} are needed");
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(d);
        uint elementSize = BinaryPrimitives.ReadUInt32LittleEndian(d[4..]);
        if (count == 0 || count > MessageLayout.MaxStructFields)
            throw Corrupt(queueName, tag, $"field_count {count} is not 1 to {MessageLayout.MaxStructFields}");
        long expected = MessageLayout.StructHeaderLength + (long)HeaderLayout.FieldEntrySize * count;
        if (d.Length != expected)
            throw Corrupt(queueName, tag, $"the struct description has {d.Length} bytes, {count} fields need {expected}");
        if (elementSize == 0 || elementSize > int.MaxValue)
            throw Corrupt(queueName, tag, $"element_size {elementSize} is not 1 to {int.MaxValue}");
        Func<string, Exception> corrupt = problem => Corrupt(queueName, tag, "struct description: " + problem);
        string typeName = HeaderCodec.ReadText(d.Slice(MessageLayout.StructTypeNameOffset, HeaderLayout.TypeNameWidth), "type_name", corrupt);
        if (typeName.Length > 0 && !HeaderCodec.IsIdentifierText(typeName, allowLeadingDigit: false))
            throw corrupt($"type_name \"{typeName}\" is not an ASCII identifier");
        var fields = HeaderCodec.ParseFieldEntries(d[MessageLayout.StructHeaderLength..], (int)count, HeaderLayout.FieldEntrySize, elementSize, corrupt);
        return ((int)elementSize, typeName, fields);
    }

    internal static CorruptDataException Corrupt(string queueName, byte tag, string problem) =>
        new(queueName, -1,
            $"Queue \"{queueName}\" holds a corrupt message (tag {tag}): {problem}. It was not written by a conforming " +
            "SharedBridge (or was damaged); recreate the queue.");

    // ---- Reading the data of a validated message (QueueMessage's typed accessors) ----

    /// <summary>The message's string (tag 2); invalid UTF-8 is corrupt data.</summary>
    internal static string GetString(MessageDescriptor m, ReadOnlySpan<byte> data)
    {
        if (m.Type != QueueMessageType.String)
            throw Mismatch(m, "a string", m.Type == QueueMessageType.Bytes ? "read Data and decode it yourself" : null);
        CheckLength(m, data);
        if (!System.Text.Unicode.Utf8.IsValid(data))
        {
            int at = 0;
            while (Rune.DecodeFromUtf8(data[at..], out _, out int used) == OperationStatus.Done) at += used;
            throw new CorruptDataException(m.QueueName, at,
                $"Queue \"{m.QueueName}\" holds a corrupt string message: byte {at} is not valid UTF-8 (docs/format.md section 11.4). " +
                "Read Data for the raw bytes; the writer is not a conforming SharedBridge.");
        }
        return Encoding.UTF8.GetString(data);
    }

    /// <summary>The one element of a scalar, record or one-element array, as <typeparamref name="T"/>
    /// (bools made 0/1, Runes checked: section 3.4).</summary>
    internal static T GetValue<T>(MessageDescriptor m, ReadOnlySpan<byte> data) where T : unmanaged
    {
        var element = ElementType.Of<T>();
        bool single = m.Type is QueueMessageType.Scalar or QueueMessageType.Record
                      || (m.Type == QueueMessageType.Array && m.ElementCount == 1);
        if (!single)
            throw Mismatch(m, typeof(T).Name, m.Type == QueueMessageType.Array ? $"use GetSpan<{typeof(T).Name}>() or ToArray<{typeof(T).Name}>()" : null);
        CheckElements(m, element, typeof(T));
        CheckLength(m, data);
        T value = MemoryMarshal.Read<T>(data);
        element.FixCopies(new Span<T>(ref value), m.QueueName, 0);
        return value;
    }

    /// <summary>The elements of an array, scalar or record message, viewed in place (raw: bools and
    /// Runes as stored, section 3.4).</summary>
    internal static ReadOnlySpan<T> GetSpan<T>(MessageDescriptor m, ReadOnlySpan<byte> data) where T : unmanaged
    {
        var element = ElementType.Of<T>();
        if (m.Type is not (QueueMessageType.Array or QueueMessageType.Scalar or QueueMessageType.Record))
            throw Mismatch(m, $"elements of {typeof(T).Name}", null);
        CheckElements(m, element, typeof(T));
        CheckLength(m, data);
        return MemoryMarshal.Cast<byte, T>(data);
    }

    /// <summary>A copy of the elements (bools made 0/1, Runes checked: section 3.4).</summary>
    internal static T[] ToArray<T>(MessageDescriptor m, ReadOnlySpan<byte> data) where T : unmanaged
    {
        T[] copy = GetSpan<T>(m, data).ToArray();
        ElementType.Of<T>().FixCopies(copy.AsSpan(), m.QueueName, 0);
        return copy;
    }

    private static void CheckElements(MessageDescriptor m, ElementType element, Type t)
    {
        if (ReferenceEquals(m.Matched, element)) return;
        if (element.Mismatch(m.Typecode, m.ElementSize, m.TypeName, m.Fields, m.ElementDescription, "the message") is { } why)
            throw new TypeMismatchException(
                $"A message of queue \"{m.QueueName}\" cannot be read as {t.Name}: {why}. " +
                "Read it as the type it holds (section 3.4 lists the .NET type of each typecode; a structure must have the same field table).");
        m.Matched = element;
    }

    // Data is the record's data_length bytes (the queue checks it); a disagreement is a bug, not a user error.
    private static void CheckLength(MessageDescriptor m, ReadOnlySpan<byte> data)
    {
        if ((ulong)data.Length != m.DataLength)
            throw new InvalidOperationException($"message data has {data.Length} bytes, its descriptor says {m.DataLength}");
    }

    private static TypeMismatchException Mismatch(MessageDescriptor m, string wanted, string? hint)
    {
        string advice = hint ?? m.Type switch
        {
            QueueMessageType.PythonObject => "read Data for its pickle bytes (a Python reader gets the object back)",
            QueueMessageType.Bytes => "read Data",
            QueueMessageType.String => "use GetString()",
            QueueMessageType.Array => "use GetSpan<T>() or ToArray<T>()",
            _ => "use GetValue<T>() or GetSpan<T>()",
        };
        return new TypeMismatchException($"A message of queue \"{m.QueueName}\" is {m.Describe()}, not {wanted}: {advice}.");
    }
}
