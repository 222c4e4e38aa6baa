namespace SharedBridge;

/// <summary>What a queue message holds: the record's <c>tag</c> (docs/format.md section 11.4).</summary>
public enum QueueMessageType : byte
{
    /// <summary>Raw bytes (tag 1): read <see cref="QueueMessage.Data"/>.</summary>
    Bytes = 1,
    /// <summary>A UTF-8 string (tag 2): <see cref="QueueMessage.GetString"/>.</summary>
    String = 2,
    /// <summary>One element of a typecode of section 3.4 (tag 3): <see cref="QueueMessage.GetValue{T}"/>.</summary>
    Scalar = 3,
    /// <summary>One structure described by its field table (tag 4): <see cref="QueueMessage.GetValue{T}"/>.</summary>
    Record = 4,
    /// <summary>An n-dimensional array in C order (tag 5): <see cref="QueueMessage.GetSpan{T}"/>,
    /// <see cref="QueueMessage.ToArray{T}"/> and <see cref="QueueMessage.Shape"/>.</summary>
    Array = 5,
    /// <summary>A pickled Python object (tag 6): only <see cref="QueueMessage.Data"/> (the pickle and its
    /// out-of-band buffers) can be read in .NET.</summary>
    PythonObject = 6,
}
