// The C# side of the install test of the SharedBridge.Tensors package (tests/install/test_install.py):
// compiled in a fresh `dotnet new console` project OUTSIDE the repository that references only the
// SharedBridge.Tensors NuGet package from build/dist (SharedBridge comes in as its dependency).
// Commands:
//   where         the informational version and file of the SharedBridge.Tensors and SharedBridge assemblies in use
//   views NAME    create a float tensor NAME of shape [2, 3, 4], write through AsTensorSpan() and read through a
//                 second mapping (SharedTensor.Open) and AsReadOnlyTensorSpan(), print "views ok [2, 3, 4]"
//                 (or what differs) and exit (the creator unlinks NAME)
using System.Numerics.Tensors;
using System.Reflection;
using SharedBridge;

switch (args)
{
    case ["where"]:
        foreach (var assembly in new[] { typeof(TensorSpanExtensions).Assembly, typeof(SharedTensor<float>).Assembly })
        {
            Console.WriteLine(assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion);
            Console.WriteLine(assembly.Location);
        }
        return 0;
    case ["views", var name]:
    {
        using var created = SharedTensor<float>.Create(name, [2, 3, 4]);
        TensorSpan<float> span = created.AsTensorSpan();
        for (nint i = 0; i < 2; i++)
            for (nint j = 0; j < 3; j++)
                for (nint k = 0; k < 4; k++)
                    span[i, j, k] = 100 * i + 10 * j + k;
        using var opened = SharedTensor<float>.Open(name, [2, 3, 4]);
        ReadOnlyTensorSpan<float> read = opened.AsReadOnlyTensorSpan();
        opened[1, 2, 3] = -1f;
        var problems = new List<string>();
        if (read[1, 2, 3] != -1f || span[1, 2, 3] != -1f) problems.Add("a write through the indexer is not in the views");
        if (read[1, 0, 2] != 102f || opened.ToArray()[14] != 102f) problems.Add("a write through the TensorSpan is not in the other mapping");
        Console.WriteLine(problems.Count == 0 ? $"views ok [{string.Join(", ", read.Lengths.ToArray())}]" : string.Join("; ", problems));
        return problems.Count == 0 ? 0 : 1;
    }
    default:
        Console.Error.WriteLine("usage: TensorCheck where | views NAME");
        return 2;
}
