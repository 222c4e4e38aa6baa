using System.Text;

namespace SharedBridge.TestChild;

// The structure of the header fuzzer's 'T' shape: a nested structure, a fixed array, a bool and a Rune.
// One definition for both sides: HeaderFuzzTests (SharedBridge.Tests) creates segments of it, and the
// child's fuzz-open command opens the mutated copies as it; the test project compiles this file too
// (a <Compile Link> in SharedBridge.Tests.csproj), since it cannot reference the child program.

/// <summary>The inner structure of <see cref="FuzzOuter"/>.</summary>
public struct FuzzInner
{
    public int A;
    public Rune Letter;
    public bool Flag;
}

/// <summary>The header fuzzer's structure: a nested structure, a fixed array, a bool and a Rune.</summary>
public unsafe struct FuzzOuter
{
    public double X;
    public FuzzInner Inner;
    public fixed short Codes[3];
    public long Y;
}
