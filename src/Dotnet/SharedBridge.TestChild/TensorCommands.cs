using SharedBridge;

namespace SharedBridge.TestChild;

/// <summary>Child commands for SharedTensor (SharedTensorTests.cs): each prints a line when it has done its part.
/// TYPE is d, f, i, q, B, h, ? or point (TensorPoint); DIMS the shape, dimension 0 first (none: rank 0).</summary>
internal static partial class ChildCommands
{
    private static int? RunTensor(string[] args) => args switch
    {
        // tensor-serve NAME TYPE SALT DIMS...: create the tensor, write the pattern of SALT through the indexer by
        // indices, say "created"; after a stdin line, check that every element holds the pattern of SALT + 1 (what
        // the parent wrote), say "ok" or "bad FLAT", and dispose (the name goes).
        ["tensor-serve", var name, var type, var salt, .. var dims] => ByType(type, new Serve(name, int.Parse(salt), dims)),
        // tensor-touch NAME TYPE RANK SALT: open the tensor with that rank, check the pattern of SALT everywhere,
        // write the pattern of SALT + 1 through the indexer, say "shape [..] strides [..] ok" (or "bad FLAT"; or
        // "TypeMismatchException: MESSAGE" and exit 3 when it has another rank or type).
        ["tensor-touch", var name, var type, var rank, var salt] => ByType(type, new Touch(name, int.Parse(rank), int.Parse(salt))),
        _ => null,
    };

    private interface ITensorCommand
    {
        int Run<T>() where T : unmanaged;
    }

    private static int ByType(string type, ITensorCommand command) => type switch
    {
        "d" => command.Run<double>(),
        "f" => command.Run<float>(),
        "i" => command.Run<int>(),
        "q" => command.Run<long>(),
        "B" => command.Run<byte>(),
        "h" => command.Run<short>(),
        "?" => command.Run<bool>(),
        "point" => command.Run<TensorPoint>(),
        _ => throw new ArgumentException("unknown tensor type " + type),
    };

    private sealed record Serve(string Name, int Salt, string[] Dims) : ITensorCommand
    {
        public int Run<T>() where T : unmanaged
        {
            long[] shape = Array.ConvertAll(Dims, long.Parse);
            using var t = SharedTensor<T>.Create(Name, shape);
            for (long i = 0; i < t.Length; i++) t[TensorPattern.Indices(i, t.Shape)] = TensorPattern.Value<T>(i, Salt);
            Say("created");
            Console.In.ReadLine();
            Say(FirstDifference(t, Salt + 1) is { } bad ? $"bad {bad}" : "ok");
            return 0;
        }
    }

    private sealed record Touch(string Name, int Rank, int Salt) : ITensorCommand
    {
        public int Run<T>() where T : unmanaged
        {
            SharedTensor<T> opened;
            try { opened = SharedTensor<T>.Open(Name, Rank); }
            catch (TypeMismatchException e)
            {
                Say($"{nameof(TypeMismatchException)}: {e.Message}");
                return 3;
            }
            using var t = opened;
            if (FirstDifference(t, Salt) is { } bad)
            {
                Say($"bad {bad}");
                return 1;
            }
            for (long i = 0; i < t.Length; i++) t[TensorPattern.Indices(i, t.Shape)] = TensorPattern.Value<T>(i, Salt + 1);
            Say($"shape [{string.Join(", ", t.GetShape())}] strides [{string.Join(", ", t.GetStrides())}] ok");
            return 0;
        }
    }

    /// <summary>The first flat index whose element (read through the indexer, and in the flat copy) is not the
    /// pattern of <paramref name="salt"/>, or null.</summary>
    private static long? FirstDifference<T>(SharedTensor<T> t, int salt) where T : unmanaged
    {
        var flat = t.ToArray();
        for (long i = 0; i < t.Length; i++)
        {
            var expected = TensorPattern.Value<T>(i, salt);
            if (!EqualityComparer<T>.Default.Equals(t[TensorPattern.Indices(i, t.Shape)], expected)
                || !EqualityComparer<T>.Default.Equals(flat[i], expected))
                return i;
        }
        return null;
    }
}
