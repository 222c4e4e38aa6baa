using System.Reflection;
using System.Reflection.Metadata;

namespace SharedBridge.Tests;

/// <summary>
/// The library's layers (src/Dotnet/SharedBridge/README.md): Format/ (the binary contract) uses no
/// other layer, Platform/ (the OS) uses only Format, Objects/ (the public objects) uses both; the
/// errors at the root use none. Checked on the compiled library (<see cref="LayerCheck"/>), plus its
/// sources for the constants the compiled code does not show. The last two tests run the same checks
/// on fixtures that break the rules, to show they fail when they should.
/// </summary>
public class LayeringTests
{
    private static readonly string LibraryPath = typeof(SharedArray<>).Assembly.Location;

    private static readonly string SourceDir =
        typeof(LayeringTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "LibrarySource").Value!;

    private static readonly Dictionary<TypeDefinitionHandle, SortedSet<string>> Files = LibraryLayout.SourceFiles(LibraryPath, SourceDir);

    /// <summary>The layer of a library type: the one folder its source files are in.</summary>
    private static Layer? LayerOf(MetadataReader md, TypeDefinitionHandle type) =>
        LibraryLayout.IsLibraryType(md, type) && Files.TryGetValue(type, out var files)
        && files.Select(LibraryLayout.LayerOfFile).Distinct().ToList() is [{ } layer] ? layer : null;

    [Fact]
    public void EveryTypeSitsInOneLayerFolderAndTakesItsNamespaceUnlessPublic()
    {
        using var stream = File.OpenRead(LibraryPath);
        using var pe = new System.Reflection.PortableExecutable.PEReader(stream);
        var md = pe.GetMetadataReader();
        var problems = new List<string>();
        int checkedTypes = 0;
        foreach (var handle in md.TypeDefinitions)
        {
            var type = md.GetTypeDefinition(handle);
            if (!type.GetDeclaringType().IsNil || !LibraryLayout.IsLibraryType(md, handle)) continue;
            checkedTypes++;
            string name = LayerCheck.FullName(md, handle);
            if (!Files.TryGetValue(handle, out var files))
            {
                problems.Add($"{name}: no source file found in the PDB");
                continue;
            }
            var layers = files.Select(LibraryLayout.LayerOfFile).Distinct().ToList();
            if (layers is not [{ } layer])
            {
                problems.Add($"{name}: not in exactly one layer folder ({string.Join(", ", files)})");
                continue;
            }
            string ns = md.GetString(type.Namespace);
            bool isPublic = (type.Attributes & TypeAttributes.VisibilityMask) == TypeAttributes.Public;
            string expected = isPublic || layer == Layer.Root ? "SharedBridge" : "SharedBridge." + layer;
            if (ns != expected)
                problems.Add($"{name} ({(isPublic ? "public" : "internal")}, {string.Join(", ", files)}): namespace {ns}, expected {expected}");
        }
        Assert.True(checkedTypes > 30, $"only {checkedTypes} library types found");
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void NoTypeUsesAHigherLayer()
    {
        var violations = LayerCheck.Violations(LibraryPath, LayerOf);
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }

    [Fact]
    public void NoSourceFileNamesTheNamespaceOfAHigherLayer()
    {
        var problems = new List<string>();
        int files = 0;
        foreach (string path in Directory.EnumerateFiles(SourceDir, "*.cs", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(SourceDir, path);
            if (relative.StartsWith("obj" + Path.DirectorySeparatorChar) || relative.StartsWith("bin" + Path.DirectorySeparatorChar)) continue;
            files++;
            if (LibraryLayout.LayerOfFile(relative) is not { } layer)
            {
                problems.Add($"{relative}: not in a layer folder");
                continue;
            }
            problems.AddRange(LayerCheck.NamespaceUses(File.ReadAllText(path), layer).Select(line => $"{relative} ({layer}): {line}"));
        }
        Assert.True(files > 20, $"only {files} source files found in {SourceDir}");
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    // ------------------------------------------------------------------ the checks can fail

    [Fact]
    public void TheCompiledCheckFindsEveryKindOfUseOfAHigherLayer()
    {
        // The fixtures below, in this assembly: their layer is the last part of their namespace.
        const string Prefix = "SharedBridge.Tests.LayeringFixture";
        Layer? FixtureLayer(MetadataReader md, TypeDefinitionHandle type)
        {
            string ns = md.GetString(md.GetTypeDefinition(type).Namespace);
            if (ns == Prefix) return Layer.Root;
            return ns.StartsWith(Prefix + ".", StringComparison.Ordinal) ? Enum.Parse<Layer>(ns[(Prefix.Length + 1)..]) : null;
        }

        var found = LayerCheck.Violations(typeof(LayeringTests).Assembly.Location, FixtureLayer)
            .Select(v => $"{v.From[(Prefix.Length + 1)..]} -> {v.To[(Prefix.Length + 1)..]}")
            .ToHashSet();

        string[] expected =
        [
            "RootUsesFormat -> Format.Codec",
            "Format.CallsPlatform -> Platform.Mapping",
            "Format.HoldsAnObject -> Objects.PublicObject",
            "Format.CatchesAPlatformError -> Platform.MappingError",
            "Format.UsingStatic -> Platform.Mapping",
            "Format.LambdaUsesPlatform -> Platform.Mapping",
            "Format.GenericArgument -> Objects.PublicObject",
            "Format.Attributed -> Objects.MarkerAttribute",
            "Format.TypeOf -> Platform.Mapping",
            "Platform.ReturnsAnObject -> Objects.PublicObject",
            "Platform.DerivesFromAnObject -> Objects.PublicObject",
        ];
        Assert.Equal(expected.Order(), found.Order());
    }

    [Fact]
    public void TheSourceCheckFindsNamespacesOfHigherLayersInCodeOnly()
    {
        const string Source = """"
            using System.Text;
            using SharedBridge.Platform;
            using static SharedBridge.Platform.Interop;
            namespace SharedBridge.Format;
            // using SharedBridge.Objects; (a comment)
            /* Platform.Interop.EINTR in a block comment */
            internal static class Sample
            {
                private const string Text = "Platform.Interop in a string";
                private const char Quote = '"';
                private const string Verbatim = @"see ""Objects.SharedObjectCore"" too";
                private static string Hole(int x) => $"value {(x > 0 ? "Objects.A" : Platform.Interop.Describe(x))} end";
                private static int Errno => Platform.Interop.EINTR;
                private const string Raw = """Platform.Nothing""";
                private static bool Unsupported => throw new PlatformNotSupportedException();
            }
            """";
        var found = LayerCheck.NamespaceUses(Source, Layer.Format);
        Assert.Equal(4, found.Count);
        Assert.Equal("using SharedBridge.Platform;", found[0]);
        Assert.Equal("using static SharedBridge.Platform.Interop;", found[1]);
        Assert.Contains("Platform.Interop.Describe(x)", found[2]); // an interpolation hole is code ...
        Assert.DoesNotContain("Objects.A", found[2]);              // ... and a string inside it is not
        Assert.Equal("private static int Errno => Platform.Interop.EINTR;", found[3]);
        Assert.Empty(LayerCheck.NamespaceUses(Source, Layer.Platform)); // "Objects." only in comments and strings
    }
}
