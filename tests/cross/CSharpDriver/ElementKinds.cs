using System.Text;
using System.Text.Json;

namespace SharedBridge.CrossDriver;

/// <summary>What a verifier learned by opening a segment with its typed API.</summary>
public sealed record ReadBack(IDisposable Handle, IReadOnlyList<string> Values, Func<TimeSpan, bool> TryLockOnce) : IDisposable
{
    public void Dispose() => Handle.Dispose();
}

/// <summary>One element type: how to build it from JSON, how to create and open segments of it
/// with the typed API, and its canonical text.</summary>
public interface IElementKind
{
    string Canonical(JsonElement json);
    IDisposable CreateArray(string name, IReadOnlyList<JsonElement> values, SegmentOptions options);
    IDisposable CreateValue(string name, JsonElement value, SegmentOptions options);
    ReadBack OpenArray(string name);
    ReadBack OpenValue(string name);
    IDisposable CreateTensor(string name, long[] shape, IReadOnlyList<JsonElement> values, SegmentOptions options);
    ReadBack OpenTensor(string name);
}

public sealed class ElementKind<T>(Func<JsonElement, T> parse, Func<T, string> canonical) : IElementKind
    where T : unmanaged
{
    public string Canonical(JsonElement json) => canonical(parse(json));

    public IDisposable CreateArray(string name, IReadOnlyList<JsonElement> values, SegmentOptions options) =>
        SharedArray<T>.Create(name, values.Select(parse).ToArray(), options);

    public IDisposable CreateValue(string name, JsonElement value, SegmentOptions options) =>
        SharedValue<T>.Create(name, parse(value), options);

    public ReadBack OpenArray(string name)
    {
        var array = SharedArray<T>.Open(name);
        return new ReadBack(array, array.ToArray().Select(canonical).ToList(), timeout =>
        {
            if (!array.TryLock(timeout, out var scope)) return false;
            scope.Dispose();
            return true;
        });
    }

    /// <summary>A SharedTensor of the shape, filled in C order through CopyFrom (docs/format.md section 12).</summary>
    public IDisposable CreateTensor(string name, long[] shape, IReadOnlyList<JsonElement> values, SegmentOptions options)
    {
        var tensor = SharedTensor<T>.Create(name, shape, options);
        try
        {
            tensor.CopyFrom(values.Select(parse).ToArray());
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>Opens with SharedTensor: the values are the shape ("shape=[2,3,4]", as cross_vectors.canon_shape)
    /// then the elements in C order (AsSpan). The strides must be C order's and the indexer must find every
    /// element where the flat view has it (section 12: element (i_0..i_n-1) at sum(i_k * s_k)).</summary>
    public ReadBack OpenTensor(string name)
    {
        var tensor = SharedTensor<T>.Open(name);
        try
        {
            long[] shape = tensor.GetShape(), strides = tensor.GetStrides();
            if (shape.Length != tensor.Rank) throw new InvalidDataException($"Rank {tensor.Rank} but {shape.Length} dimensions");
            long step = 1;
            for (int k = shape.Length - 1; k >= 0; k--)
            {
                if (strides[k] != step)
                    throw new InvalidDataException($"strides [{string.Join(",", strides)}] are not C order's for shape [{string.Join(",", shape)}]");
                step *= shape[k];
            }
            if (tensor.Length != step) throw new InvalidDataException($"Length {tensor.Length}, the shape's product is {step}");
            T[] flat = tensor.ToArray();
            var index = new long[shape.Length];
            for (int i = 0; i < flat.Length; i++)
            {
                long rest = i;
                for (int k = shape.Length - 1; k >= 0; k--)
                {
                    index[k] = rest % shape[k];
                    rest /= shape[k];
                }
                if (canonical(tensor.Get(index)) != canonical(flat[i]))
                    throw new InvalidDataException($"the indexer at [{string.Join(",", index)}] differs from AsSpan()[{i}]");
            }
            var values = new List<string> { "shape=[" + string.Join(",", shape) + "]" };
            values.AddRange(flat.Select(canonical));
            return new ReadBack(tensor, values, timeout =>
            {
                if (!tensor.TryLock(timeout, out var scope)) return false;
                scope.Dispose();
                return true;
            });
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    public ReadBack OpenValue(string name)
    {
        var value = SharedValue<T>.Open(name);
        return new ReadBack(value, [canonical(value.Value)], timeout =>
        {
            if (!value.TryLock(timeout, out var scope)) return false;
            scope.Dispose();
            return true;
        });
    }
}

public static class ElementKinds
{
    private static readonly Dictionary<char, IElementKind> Scalars = new()
    {
        ['b'] = new ElementKind<sbyte>(e => e.GetSByte(), v => Canonical.Of(v)),
        ['B'] = new ElementKind<byte>(e => e.GetByte(), v => Canonical.Of(v)),
        ['h'] = new ElementKind<short>(e => e.GetInt16(), v => Canonical.Of(v)),
        ['H'] = new ElementKind<ushort>(e => e.GetUInt16(), v => Canonical.Of(v)),
        ['i'] = new ElementKind<int>(e => e.GetInt32(), v => Canonical.Of(v)),
        ['I'] = new ElementKind<uint>(e => e.GetUInt32(), v => Canonical.Of(v)),
        ['l'] = new ElementKind<long>(e => e.GetInt64(), v => Canonical.Of(v)),
        ['L'] = new ElementKind<ulong>(e => e.GetUInt64(), v => Canonical.Of(v)),
        ['q'] = new ElementKind<long>(e => e.GetInt64(), v => Canonical.Of(v)),
        ['Q'] = new ElementKind<ulong>(e => e.GetUInt64(), v => Canonical.Of(v)),
        ['f'] = new ElementKind<float>(e => (float)Canonical.Double(e), v => Canonical.Of(v)),
        ['d'] = new ElementKind<double>(Canonical.Double, v => Canonical.Of(v)),
        ['?'] = new ElementKind<bool>(e => e.GetBoolean(), v => Canonical.Of(v)),
        ['u'] = new ElementKind<Rune>(Canonical.Rune, v => Canonical.Of(v)),
    };

    private static readonly Dictionary<string, IElementKind> Structs = new()
    {
        ["Point"] = new ElementKind<Point>(Point.FromJson, p => p.Canonical_()),
        ["Mixed"] = new ElementKind<Mixed>(Mixed.FromJson, m => m.Canonical_()),
        ["Packed"] = new ElementKind<Packed>(Packed.FromJson, p => p.Canonical_()),
        ["Packed2"] = new ElementKind<Packed2>(Packed2.FromJson, p => p.Canonical_()),
        ["SensorReadingWithAnUnreasonablyLongName"] = new ElementKind<SensorReadingWithAnUnreasonablyLongName>(
            SensorReadingWithAnUnreasonablyLongName.FromJson, s => s.Canonical_()),
    };

    public static IElementKind For(Vector vector) => vector.TypeCode == 'T'
        ? Structs.TryGetValue(vector.StructName!, out var s) ? s
            : throw new NotSupportedException($"the C# driver has no struct {vector.StructName}: add it to Structs.cs")
        : Scalars.TryGetValue(vector.TypeCode, out var k) ? k
            : throw new NotSupportedException($"the C# driver has no element type '{vector.TypeCode}'");
}
