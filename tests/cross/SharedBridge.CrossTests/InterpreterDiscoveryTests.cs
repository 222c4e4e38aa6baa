using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>The matrix is only as good as the interpreters it found: fail loudly if none.</summary>
public sealed class InterpreterDiscoveryTests
{
    [Test]
    public void AtLeastOnePython310OrNewerIsFound()
    {
        Assert.That(Interpreters.All, Is.Not.Empty, "no CPython 3.10+ found in $(pyenv root)/versions or /usr/bin/python3");
        Assert.That(Interpreters.All.Select(i => i.Label), Is.Unique);
        TestContext.Out.WriteLine(string.Join(", ", Interpreters.All.Select(i => $"{i.Label}={i.Executable}")));
    }
}
