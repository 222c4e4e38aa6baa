using System.Runtime.CompilerServices;

namespace SharedBridge.Tests;

/// <summary>
/// When a segment's mapping goes: at the last release of an object that was disposed, never because the
/// garbage collector found an object nobody disposed (its spans may still be in use).
/// </summary>
public class MappingLifetimeTests
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Span<int> SpanOfAnUndisposedAttach(string name) => SharedArray<int>.Open(name).AsSpan();

    [Fact]
    public void ASpanOfAnUndisposedArrayStaysValidAfterTheArrayIsCollected()
    {
        string name = "sbCP" + Names.Unique("span");
        using var creator = SharedArray<int>.Create(name, 4);
        var span = SpanOfAnUndisposedAttach(name); // the attached array is garbage from here on
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        span[1] = 42;                               // still mapped: no crash
        Assert.Equal(42, creator[1]);
        Assert.Equal(42, span[1]);
    }
}
