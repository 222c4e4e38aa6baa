namespace SharedBridge.TestChild;

// The tensor tests' element types and value pattern, one definition for both sides: SharedTensorTests
// (SharedBridge.Tests) and the child's tensor commands (TensorCommands.cs) compute the same expected
// element values (the test project compiles this file too, a <Compile Link>, like FuzzShapes.cs).

/// <summary>A structure element of the tensor tests (field table: x 'd', y 'i', flag '?').</summary>
public struct TensorPoint
{
    public double X;
    public int Y;
    public bool Flag;
}

/// <summary>The value every test writes at flat index <c>i</c> with a salt (a new salt per writer).</summary>
public static class TensorPattern
{
    public static T Value<T>(long i, int salt) where T : unmanaged
    {
        object v = typeof(T) switch
        {
            var t when t == typeof(double) => i * 0.5 + salt,
            var t when t == typeof(float) => (float)(i * 0.25 + salt),
            var t when t == typeof(int) => (int)(i * 3 - salt),
            var t when t == typeof(long) => i * 1_000_003L + salt,
            var t when t == typeof(byte) => (byte)(i * 7 + salt),
            var t when t == typeof(short) => (short)(i - salt),
            var t when t == typeof(bool) => (i + salt) % 2 == 1,
            var t when t == typeof(TensorPoint) => new TensorPoint { X = i + salt * 0.125, Y = (int)i - salt, Flag = (i + salt) % 3 == 0 },
            _ => throw new ArgumentException("no pattern for " + typeof(T).Name),
        };
        return (T)v;
    }

    /// <summary>The C-order indices of flat index <paramref name="flat"/> in <paramref name="shape"/>.</summary>
    public static nint[] Indices(long flat, ReadOnlySpan<nint> shape)
    {
        var indices = new nint[shape.Length];
        for (int k = shape.Length - 1; k >= 0; k--)
        {
            indices[k] = (nint)(flat % shape[k]);
            flat /= shape[k];
        }
        return indices;
    }
}
