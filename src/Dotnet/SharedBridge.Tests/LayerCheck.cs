using System.Collections.Immutable;
using System.Reflection;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;
using System.Text;
using System.Text.RegularExpressions;

namespace SharedBridge.Tests;

/// <summary>
/// The library's layers, lowest first: a type may use its own layer and the layers below it. Root is
/// the library folder itself (Exceptions.cs): the errors every layer throws.
/// </summary>
internal enum Layer { Root, Format, Platform, Objects }

/// <summary>One use of a higher layer.</summary>
internal sealed record LayerViolation(Layer FromLayer, string From, Layer ToLayer, string To, string Where)
{
    public override string ToString() => $"{FromLayer} {From} uses {ToLayer} {To} ({Where})";
}

/// <summary>
/// Finds uses of a higher layer in a compiled assembly. It reads what the compiler emitted
/// (System.Reflection.Metadata), so it also sees uses the source never spells out: an inferred
/// <c>var</c>, a call through <c>using static</c>, a catch clause, a generic argument, a lambda's
/// closure. It reads base types, interfaces, constraints, attributes, the signatures of fields,
/// methods, properties and events, local variables, exception handlers and every metadata token in
/// the IL of every method body. Nested and compiler-generated types count as their outermost type.
/// What it cannot see: constants, whose values the compiler copies into the user (see
/// <see cref="NamespaceUses"/>).
/// </summary>
internal static class LayerCheck
{
    /// <param name="assemblyPath">The assembly to read.</param>
    /// <param name="layerOf">The layer of a top-level type, or null for a type outside the check
    /// (compiler-generated helpers, the rest of a test assembly).</param>
    internal static List<LayerViolation> Violations(string assemblyPath, Func<MetadataReader, TypeDefinitionHandle, Layer?> layerOf)
    {
        using var stream = File.OpenRead(assemblyPath);
        using var pe = new PEReader(stream);
        var md = pe.GetMetadataReader();
        var layers = new Dictionary<TypeDefinitionHandle, Layer?>();
        Layer? LayerOf(TypeDefinitionHandle t)
        {
            t = Outermost(md, t);
            if (!layers.TryGetValue(t, out var layer)) layers[t] = layer = layerOf(md, t);
            return layer;
        }

        var violations = new List<LayerViolation>();
        foreach (var type in md.TypeDefinitions)
        {
            if (LayerOf(type) is not { } from) continue;
            var uses = new TypeUses(md, pe);
            uses.Collect(type);
            foreach (var (used, where) in uses.Found)
                if (LayerOf(used) is { } to && to > from)
                    violations.Add(new LayerViolation(from, FullName(md, Outermost(md, type)), to, FullName(md, Outermost(md, used)),
                        $"{FullName(md, type)}, {where}"));
        }
        return violations.Distinct().ToList();
    }

    internal static TypeDefinitionHandle Outermost(MetadataReader md, TypeDefinitionHandle t)
    {
        while (md.GetTypeDefinition(t).GetDeclaringType() is { IsNil: false } outer) t = outer;
        return t;
    }

    internal static string FullName(MetadataReader md, TypeDefinitionHandle t)
    {
        var def = md.GetTypeDefinition(t);
        string name = md.GetString(def.Name);
        if (def.GetDeclaringType() is { IsNil: false } outer) return FullName(md, outer) + "+" + name;
        string ns = md.GetString(def.Namespace);
        return ns.Length == 0 ? name : ns + "." + name;
    }

    /// <summary>
    /// Constants are the one use the compiled code does not show. An internal type of a higher layer
    /// can only be named through its namespace, so a source file of a lower layer must not mention
    /// one: no <c>using SharedBridge.Platform;</c>, no <c>Platform.Interop.EINTR</c>. Returns the
    /// offending lines of <paramref name="source"/> (comments and string literals do not count).
    /// </summary>
    internal static List<string> NamespaceUses(string source, Layer layer)
    {
        var higher = Enum.GetValues<Layer>().Where(l => l > layer && l != Layer.Root).Select(l => l.ToString()).ToArray();
        if (higher.Length == 0) return [];
        var pattern = new Regex($@"(?<![\w.])(?:SharedBridge\.)?(?:{string.Join("|", higher)})\b\s*(?:\.|;)");
        var found = new List<string>();
        foreach (string line in CodeOnly(source).Split('\n'))
            if (pattern.IsMatch(line)) found.Add(line.Trim());
        return found;
    }

    /// <summary>The source with comments and the contents of string and character literals blanked
    /// (line breaks kept). Handles verbatim, raw and interpolated strings with nested holes.</summary>
    internal static string CodeOnly(string s)
    {
        var code = new StringBuilder(s.Length);
        int i = 0;
        Code(s, ref i, code, closingBrace: false);
        return code.ToString();
    }

    private static void Code(string s, ref int i, StringBuilder code, bool closingBrace)
    {
        int depth = 0;
        while (i < s.Length)
        {
            char c = s[i];
            if (c == '/' && At(s, i, "//"))
            {
                while (i < s.Length && s[i] != '\n') i++;
            }
            else if (c == '/' && At(s, i, "/*"))
            {
                int end = s.IndexOf("*/", i + 2, StringComparison.Ordinal);
                end = end < 0 ? s.Length : end + 2;
                code.Append('\n', s.AsSpan(i, end - i).Count('\n'));
                i = end;
            }
            else if (c == '\'')
            {
                i++;
                while (i < s.Length && s[i] != '\'') i += s[i] == '\\' ? 2 : 1;
                i++;
                code.Append("' '");
            }
            else if (c is '"' or '$' or '@' && StringStart(s, i) is { } start)
            {
                i += start.Prefix;
                code.Append('"');
                if (start.Raw > 0) RawString(s, ref i, code, start.Raw, start.Interpolated);
                else QuotedString(s, ref i, code, start.Verbatim, start.Interpolated);
                code.Append('"');
            }
            else
            {
                if (closingBrace && c == '{') depth++;
                if (closingBrace && c == '}' && depth-- == 0) return;
                code.Append(c);
                i++;
            }
        }
    }

    private static bool At(string s, int i, string what) => string.CompareOrdinal(s, i, what, 0, what.Length) == 0;

    /// <summary>A string literal starting at <paramref name="i"/>: its prefix length (through the
    /// opening quotes) and kind; null when none starts there.</summary>
    private static (int Prefix, bool Verbatim, bool Interpolated, int Raw)? StringStart(string s, int i)
    {
        int j = i;
        bool interpolated = false, verbatim = false;
        while (j < s.Length && s[j] is '$' or '@')
        {
            if (s[j] == '$') interpolated = true;
            else verbatim = true;
            j++;
        }
        if (j >= s.Length || s[j] != '"') return null;
        int quotes = 0;
        while (j + quotes < s.Length && s[j + quotes] == '"') quotes++;
        if (quotes >= 3) return (j - i + quotes, false, interpolated, quotes);
        return (j - i + 1, verbatim, interpolated, 0);
    }

    private static void QuotedString(string s, ref int i, StringBuilder code, bool verbatim, bool interpolated)
    {
        while (i < s.Length)
        {
            char c = s[i];
            if (!verbatim && c == '\\') { i += 2; continue; }
            if (c == '"')
            {
                if (verbatim && At(s, i, "\"\"")) { i += 2; continue; }
                i++;
                return;
            }
            if (interpolated && c == '{')
            {
                if (At(s, i, "{{")) { i += 2; continue; }
                i++;
                Code(s, ref i, code, closingBrace: true); // the hole is code (it may hold strings)
                i++;
                continue;
            }
            if (c == '\n') code.Append('\n');
            i++;
        }
    }

    private static void RawString(string s, ref int i, StringBuilder code, int quotes, bool interpolated)
    {
        string close = new('"', quotes);
        while (i < s.Length)
        {
            if (At(s, i, close)) { i += quotes; return; }
            if (interpolated && s[i] == '{')
            {
                i++;
                Code(s, ref i, code, closingBrace: true);
                i++;
                continue;
            }
            if (s[i] == '\n') code.Append('\n');
            i++;
        }
    }

    /// <summary>The types of the assembly one type definition uses, each with where.</summary>
    private sealed class TypeUses(MetadataReader md, PEReader pe) : ISignatureTypeProvider<int, object?>
    {
        internal readonly List<(TypeDefinitionHandle Type, string Where)> Found = [];
        private string _where = "";

        internal void Collect(TypeDefinitionHandle handle)
        {
            var type = md.GetTypeDefinition(handle);
            _where = "base type";
            Entity(type.BaseType);
            _where = "interface";
            foreach (var i in type.GetInterfaceImplementations()) Entity(md.GetInterfaceImplementation(i).Interface);
            Constraints(type.GetGenericParameters(), "type");
            Attributes(type.GetCustomAttributes(), "type");
            foreach (var f in type.GetFields())
            {
                var field = md.GetFieldDefinition(f);
                _where = "field " + md.GetString(field.Name);
                field.DecodeSignature(this, null);
                Attributes(field.GetCustomAttributes(), _where);
            }
            foreach (var p in type.GetProperties())
            {
                var property = md.GetPropertyDefinition(p);
                _where = "property " + md.GetString(property.Name);
                property.DecodeSignature(this, null);
                Attributes(property.GetCustomAttributes(), _where);
            }
            foreach (var e in type.GetEvents())
            {
                var ev = md.GetEventDefinition(e);
                _where = "event " + md.GetString(ev.Name);
                Entity(ev.Type);
            }
            foreach (var m in type.GetMethods()) Method(m);
            foreach (var i in type.GetMethodImplementations())
            {
                _where = "explicit interface implementation";
                Entity(md.GetMethodImplementation(i).MethodDeclaration);
            }
        }

        private void Method(MethodDefinitionHandle handle)
        {
            var method = md.GetMethodDefinition(handle);
            string name = "method " + md.GetString(method.Name);
            _where = name + ", signature";
            method.DecodeSignature(this, null);
            Attributes(method.GetCustomAttributes(), name);
            foreach (var p in method.GetParameters()) Attributes(md.GetParameter(p).GetCustomAttributes(), name + ", parameter");
            Constraints(method.GetGenericParameters(), name);
            if (method.RelativeVirtualAddress == 0) return;

            var body = pe.GetMethodBody(method.RelativeVirtualAddress);
            if (!body.LocalSignature.IsNil)
            {
                _where = name + ", local variable";
                md.GetStandaloneSignature(body.LocalSignature).DecodeLocalSignature(this, null);
            }
            _where = name + ", catch clause";
            foreach (var region in body.ExceptionRegions) Entity(region.CatchType);
            _where = name + ", body";
            var il = body.GetILReader();
            while (il.RemainingBytes > 0)
                if (Il.TokenIn(ref il, name) is { } token) Entity(MetadataTokens.EntityHandle(token));
        }

        private void Constraints(GenericParameterHandleCollection parameters, string owner)
        {
            _where = owner + ", generic constraint";
            foreach (var g in parameters)
                foreach (var c in md.GetGenericParameter(g).GetConstraints())
                    Entity(md.GetGenericParameterConstraint(c).Type);
        }

        private void Attributes(CustomAttributeHandleCollection attributes, string owner)
        {
            string saved = _where;
            _where = owner + ", attribute";
            foreach (var a in attributes) Entity(md.GetCustomAttribute(a).Constructor);
            _where = saved;
        }

        /// <summary>Every type definition a metadata entity (type, member, signature) names.</summary>
        private void Entity(EntityHandle handle)
        {
            if (handle.IsNil) return;
            switch (handle.Kind)
            {
                case HandleKind.TypeDefinition:
                    Found.Add(((TypeDefinitionHandle)handle, _where));
                    break;
                case HandleKind.TypeSpecification:
                    md.GetTypeSpecification((TypeSpecificationHandle)handle).DecodeSignature(this, null);
                    break;
                case HandleKind.MethodDefinition:
                    Found.Add((md.GetMethodDefinition((MethodDefinitionHandle)handle).GetDeclaringType(), _where));
                    break;
                case HandleKind.FieldDefinition:
                    Found.Add((md.GetFieldDefinition((FieldDefinitionHandle)handle).GetDeclaringType(), _where));
                    break;
                case HandleKind.MemberReference:
                    var member = md.GetMemberReference((MemberReferenceHandle)handle);
                    Entity(member.Parent);
                    if (member.GetKind() == MemberReferenceKind.Method) member.DecodeMethodSignature(this, null);
                    else member.DecodeFieldSignature(this, null);
                    break;
                case HandleKind.MethodSpecification:
                    var spec = md.GetMethodSpecification((MethodSpecificationHandle)handle);
                    Entity(spec.Method);
                    spec.DecodeSignature(this, null);
                    break;
                case HandleKind.StandaloneSignature:
                    var sig = md.GetStandaloneSignature((StandaloneSignatureHandle)handle);
                    if (sig.GetKind() == StandaloneSignatureKind.Method) sig.DecodeMethodSignature(this, null);
                    else sig.DecodeLocalSignature(this, null);
                    break;
                // TypeReference: another assembly's type (the compiler names this one's by definition).
                // ModuleReference: a native library (P/Invoke).
            }
        }

        // ISignatureTypeProvider: records every type definition a signature names.
        public int GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind)
        {
            Found.Add((handle, _where));
            return 0;
        }

        public int GetTypeFromSpecification(MetadataReader reader, object? genericContext, TypeSpecificationHandle handle, byte rawTypeKind) =>
            reader.GetTypeSpecification(handle).DecodeSignature(this, genericContext);

        public int GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind) => 0;
        public int GetPrimitiveType(PrimitiveTypeCode typeCode) => 0;
        public int GetSZArrayType(int elementType) => 0;
        public int GetArrayType(int elementType, ArrayShape shape) => 0;
        public int GetByReferenceType(int elementType) => 0;
        public int GetPointerType(int elementType) => 0;
        public int GetPinnedType(int elementType) => 0;
        public int GetGenericInstantiation(int genericType, ImmutableArray<int> typeArguments) => 0;
        public int GetGenericMethodParameter(object? genericContext, int index) => 0;
        public int GetGenericTypeParameter(object? genericContext, int index) => 0;
        public int GetFunctionPointerType(MethodSignature<int> signature) => 0;
        public int GetModifiedType(int modifier, int unmodifiedType, bool isRequired) => 0;
    }

    /// <summary>Walks IL one instruction at a time (operand sizes from System.Reflection.Emit.OpCodes).</summary>
    private static class Il
    {
        private static readonly OpCode?[] OneByte = new OpCode?[256];
        private static readonly OpCode?[] TwoByte = new OpCode?[256];

        static Il()
        {
            foreach (var f in typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static))
            {
                var op = (OpCode)f.GetValue(null)!;
                if (op.Size == 1) OneByte[(byte)op.Value] = op;
                else TwoByte[(byte)op.Value] = op;
            }
        }

        /// <summary><see cref="Token"/>, naming the method when the IL cannot be read.</summary>
        internal static int? TokenIn(ref BlobReader il, string where)
        {
            try { return Token(ref il); }
            catch (InvalidOperationException e) { throw new InvalidOperationException(where + ": " + e.Message); }
        }

        /// <summary>Reads one instruction; returns its metadata token, if it has one other than a string's.</summary>
        internal static int? Token(ref BlobReader il)
        {
            byte first = il.ReadByte();
            OpCode op = (first == 0xFE ? TwoByte[il.ReadByte()] : OneByte[first])
                        ?? throw new InvalidOperationException($"Unknown IL opcode 0x{first:X2} at offset {il.Offset - 1}.");
            switch (op.OperandType)
            {
                case OperandType.InlineField or OperandType.InlineMethod or OperandType.InlineSig
                    or OperandType.InlineTok or OperandType.InlineType:
                    return il.ReadInt32();
                case OperandType.InlineSwitch:
                    // The target count first: `il.Offset += 4 * il.ReadInt32()` would read Offset before
                    // ReadInt32 moves it and land 4 bytes early.
                    int targets = il.ReadInt32();
                    il.Offset += 4 * targets;
                    return null;
                default:
                    il.Offset += op.OperandType switch
                    {
                        OperandType.InlineNone => 0,
                        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                        OperandType.InlineVar => 2,
                        OperandType.InlineBrTarget or OperandType.InlineI or OperandType.ShortInlineR or OperandType.InlineString => 4,
                        OperandType.InlineI8 or OperandType.InlineR => 8,
                        var other => throw new InvalidOperationException($"Unknown IL operand type {other}."),
                    };
                    return null;
            }
        }
    }
}

/// <summary>
/// Where each type of the library is: the layer folder of the source files its methods come from,
/// read from the portable PDB next to the assembly (types without method bodies, such as enums, are
/// listed in the PDB's TypeDefinitionDocuments record).
/// </summary>
internal static class LibraryLayout
{
    private static readonly Guid TypeDefinitionDocuments = new("932E74BC-DBA9-4478-8D46-0F32A7BAB3D3");

    /// <summary>The source files (relative to <paramref name="sourceDir"/>) of every top-level type;
    /// generated files outside the folder (obj/) are left out.</summary>
    internal static Dictionary<TypeDefinitionHandle, SortedSet<string>> SourceFiles(string assemblyPath, string sourceDir)
    {
        using var stream = File.OpenRead(assemblyPath);
        using var pe = new PEReader(stream);
        var md = pe.GetMetadataReader();
        using var pdbStream = File.OpenRead(Path.ChangeExtension(assemblyPath, ".pdb"));
        using var provider = MetadataReaderProvider.FromPortablePdbStream(pdbStream);
        var pdb = provider.GetMetadataReader();

        var files = new Dictionary<TypeDefinitionHandle, SortedSet<string>>();
        void Add(TypeDefinitionHandle type, DocumentHandle document)
        {
            string path = pdb.GetString(pdb.GetDocument(document).Name);
            string relative = Path.GetRelativePath(sourceDir, path);
            if (relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative)
                || relative.StartsWith("obj" + Path.DirectorySeparatorChar, StringComparison.Ordinal)) return;
            type = LayerCheck.Outermost(md, type);
            if (!files.TryGetValue(type, out var set)) files[type] = set = new SortedSet<string>(StringComparer.Ordinal);
            set.Add(relative);
        }

        foreach (var method in md.MethodDefinitions)
        {
            var info = pdb.GetMethodDebugInformation(method);
            if (!info.Document.IsNil) Add(md.GetMethodDefinition(method).GetDeclaringType(), info.Document);
        }
        foreach (var handle in pdb.CustomDebugInformation)
        {
            var cdi = pdb.GetCustomDebugInformation(handle);
            if (cdi.Parent.Kind != HandleKind.TypeDefinition || pdb.GetGuid(cdi.Kind) != TypeDefinitionDocuments) continue;
            var blob = pdb.GetBlobReader(cdi.Value);
            while (blob.RemainingBytes > 0)
                Add((TypeDefinitionHandle)cdi.Parent, MetadataTokens.DocumentHandle(blob.ReadCompressedInteger()));
        }
        return files;
    }

    /// <summary>The layer of a source file: its folder, or Root for a file in the library folder
    /// itself; null for any other folder.</summary>
    internal static Layer? LayerOfFile(string relativePath)
    {
        // Objects/Queue/... belongs to Objects: a layer is the first folder of the path.
        string? folder = Path.GetDirectoryName(relativePath)?.Split(Path.DirectorySeparatorChar)[0];
        if (string.IsNullOrEmpty(folder)) return Layer.Root;
        return Enum.TryParse<Layer>(folder, out var layer) && layer != Layer.Root && folder == layer.ToString() ? layer : null;
    }

    /// <summary>True for the types the library's sources declare (not compiler-made helpers such as
    /// &lt;PrivateImplementationDetails&gt; or the embedded attributes in System.* namespaces).</summary>
    internal static bool IsLibraryType(MetadataReader md, TypeDefinitionHandle type)
    {
        var def = md.GetTypeDefinition(type);
        string ns = md.GetString(def.Namespace);
        return !md.GetString(def.Name).StartsWith('<') && (ns == "SharedBridge" || ns.StartsWith("SharedBridge.", StringComparison.Ordinal));
    }
}
