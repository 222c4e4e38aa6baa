// Fixtures of LayeringTests.TheCompiledCheckFindsEveryKindOfUseOfAHigherLayer: small types whose
// layer is the last part of their namespace, each using a higher layer in a different way (or not
// at all). They are never called; only their compiled form is read.
#pragma warning disable CS0649 // a field never assigned
using static SharedBridge.Tests.LayeringFixture.Platform.Mapping;

namespace SharedBridge.Tests.LayeringFixture
{
    internal sealed class RootError : Exception;

    internal static class RootUsesFormat
    {
        internal static int Run() => Format.Codec.Twice(1);
    }
}

namespace SharedBridge.Tests.LayeringFixture.Format
{
    internal static class Codec
    {
        internal const int Size = 4;
        internal static int Twice(int x) => 2 * x;
    }

    // Allowed: its own layer and the root.
    internal static class Clean
    {
        internal static int Run() => Codec.Twice(Codec.Size) is 8 ? 0 : throw new RootError();
    }

    internal static class CallsPlatform
    {
        internal static int Run() => Platform.Mapping.Open();
    }

    internal sealed class HoldsAnObject
    {
        internal Objects.PublicObject? Field;
    }

    internal static class CatchesAPlatformError
    {
        internal static void Run()
        {
            try { Codec.Twice(1); }
            catch (Platform.MappingError) { }
        }
    }

    // Never names the type: the call goes through `using static` (top of the file).
    internal static class UsingStatic
    {
        internal static int Run() => Open();
    }

    internal static class LambdaUsesPlatform
    {
        internal static Func<int> Run() => () => Platform.Mapping.Open();
    }

    internal static class GenericArgument
    {
        internal static int Run() => new List<Objects.PublicObject>().Count;
    }

    [Objects.Marker]
    internal static class Attributed;

    internal static class TypeOf
    {
        internal static Type Run() => typeof(Platform.Mapping);
    }
}

namespace SharedBridge.Tests.LayeringFixture.Platform
{
    internal static class Mapping
    {
        internal static int Open() => Format.Codec.Twice(2); // allowed: Platform uses Format
    }

    internal sealed class MappingError : Exception;

    internal static class ReturnsAnObject
    {
        internal static Objects.PublicObject? Run() => null;
    }

    internal class DerivesFromAnObject : Objects.PublicObject;
}

namespace SharedBridge.Tests.LayeringFixture.Objects
{
    internal class PublicObject
    {
        internal int Use() => Platform.Mapping.Open() + Format.Codec.Size; // allowed: Objects uses everything
    }

    [AttributeUsage(AttributeTargets.Class)]
    internal sealed class MarkerAttribute : Attribute;
}
