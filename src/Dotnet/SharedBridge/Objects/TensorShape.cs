using SharedBridge.Format;

namespace SharedBridge.Objects;

/// <summary>Shape arithmetic shared by the n-dimensional objects (docs/format.md section 12).</summary>
internal static class TensorShape
{
    /// <summary>"[2, 3, 4]" ("[]" for rank 0), as the messages and tools write a shape.</summary>
    internal static string Text(IReadOnlyList<long> shape) => "[" + string.Join(", ", shape) + "]";

    internal static string Text(ReadOnlySpan<nint> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    /// <summary>C-order strides in elements, section 12's formula: the last is 1, each other the next one times the
    /// next dimension (so every stride before a dimension 0 is 0). The products are bounded by the header rules.</summary>
    internal static nint[] Strides(ReadOnlySpan<nint> shape)
    {
        var strides = new nint[shape.Length];
        nint stride = 1;
        for (int k = shape.Length - 1; k >= 0; k--)
        {
            strides[k] = stride;
            stride = checked(stride * shape[k]);
        }
        return strides;
    }

    /// <summary>Checks a shape a creator was given against section 12.1's bounds and returns its element count.</summary>
    internal static long CheckForCreate(long[] shape, int elementSize, string parameter)
    {
        if (shape.Length > HeaderLayout.MaxNdim)
            throw new ArgumentException($"A shape of {shape.Length} dimensions: at most {HeaderLayout.MaxNdim} are allowed (docs/format.md section 12.1).", parameter);
        long nonZero = elementSize;
        bool empty = false;
        for (int k = 0; k < shape.Length; k++)
        {
            if (shape[k] < 0)
                throw new ArgumentOutOfRangeException(parameter, shape[k], $"Dimension {k} of the shape {Text(shape)} is negative.");
            if (shape[k] == 0) { empty = true; continue; }
            // The data must fit a segment (half of the 2^63 - 1 bytes section 12.1 allows, as for SharedArray).
            if (nonZero > long.MaxValue / 2 / shape[k])
                throw new ArgumentOutOfRangeException(parameter, Text(shape), $"The shape {Text(shape)} holds more data than a segment can.");
            nonZero *= shape[k];
        }
        return empty ? 0 : nonZero / elementSize;
    }
}
