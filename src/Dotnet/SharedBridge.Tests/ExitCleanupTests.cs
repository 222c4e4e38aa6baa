namespace SharedBridge.Tests;

/// <summary>
/// How a creating process's end cleans up its segments (docs/format.md section 8), with real child
/// processes: SIGTERM, SIGINT and SIGHUP unlink the owned segments and the process still dies by the
/// signal; kept segments stay; an application handler that cancels keeps them; an ignored signal stays
/// ignored; an unhandled exception unlinks and still crashes; a fork child never unlinks.
/// </summary>
public class ExitCleanupTests
{
    private static void UnlinkIfPresent(params string[] names)
    {
        foreach (var name in names)
            if (Names.Exists(name)) SharedSegment.Unlink(name);
    }

    [Theory]
    [InlineData("TERM", 15)]
    [InlineData("INT", 2)]
    [InlineData("HUP", 1)]
    public void ASignalUnlinksOwnedSegmentsAndTheProcessStillDiesByIt(string signal, int number)
    {
        string name = Names.Unique("sig"), kept = Names.Unique("kept");
        try
        {
            using var child = WatchedChild.Start([], "create-and-wait", name, kept);
            child.Child.ExpectLine("created");
            Assert.True(Names.Exists(name));
            Signals.Send(child.Pid, signal);
            Assert.Equal(-number, child.WaitForEnd());
            Assert.False(Names.Exists(name), $"SIG{signal} left the creator's segment behind");
            Assert.True(Names.Exists(kept), "a KeepOnDispose segment must survive its creator");
        }
        finally
        {
            UnlinkIfPresent(name, kept);
        }
    }

    // A signal while a creation is between shm_open and being registered: the creator still removes the object it
    // made (docs/format.md section 8), whether it is still 0 bytes or written but not ready; a persistent one is the
    // reaper's (LifetimeTests).
    [Theory]
    [InlineData(SegmentLifetime.Creator, "unsized")]
    [InlineData(SegmentLifetime.LastCloser, "unsized")]
    [InlineData(SegmentLifetime.Creator, "unready")]
    public void ASignalDuringCreationRemovesTheObjectBeingCreated(SegmentLifetime lifetime, string where)
    {
        string name = Names.Unique("creating", prefix: "sbt_lk0");
        try
        {
            string[] args = where == "unsized"
                ? ["create-paused", name, lifetime.ToString(), "unsized"] : ["create-paused", name, lifetime.ToString()];
            using var child = WatchedChild.Start([], args);
            child.Child.ExpectLine("ready");
            long size = new FileInfo(Names.ShmPath(name)).Length;
            Assert.True(where == "unsized" ? size == 0 : size > 0, $"the child paused at the wrong place: {size} bytes");
            Signals.Send(child.Pid, "TERM");
            Assert.Equal(-15, child.WaitForEnd());
            Assert.False(Names.Exists(name), $"SIGTERM left the {size}-byte object the creator was making behind");
        }
        finally
        {
            if (Names.Exists(name)) File.Delete(Names.ShmPath(name));
        }
    }

    [Fact]
    public void AnApplicationHandlerThatCancelsSigtermKeepsTheSegmentsUntilTheProcessExits()
    {
        string name = Names.Unique("cancel"), kept = Names.Unique("kept");
        try
        {
            using var child = WatchedChild.Start([], "create-and-wait", name, kept, "cancel-term");
            child.Child.ExpectLine("created");
            Signals.Send(child.Pid, "TERM");
            child.Child.ExpectLine("sigterm cancelled");
            Thread.Sleep(300); // time for a (wrong) cleanup to happen
            Assert.False(child.Child.HasExited);
            Assert.True(Names.Exists(name), "the application kept running: its segment must stay");
            using (var a = SharedArray<int>.Open(name)) Assert.Equal(1, a.Header.State);

            child.Child.WriteLine("exit");
            child.Child.ExpectLine("exiting");
            Assert.Equal(0, child.WaitForEnd());
            Assert.False(Names.Exists(name), "the normal exit that followed must unlink it");
            Assert.True(Names.Exists(kept));
        }
        finally
        {
            UnlinkIfPresent(name, kept);
        }
    }

    [Fact]
    public void AnIgnoredSignalStaysIgnored()
    {
        string name = Names.Unique("nohup"), kept = Names.Unique("kept");
        try
        {
            // nohup starts the child with SIGHUP ignored (SIG_IGN).
            using var child = WatchedChild.Start(["nohup"], "create-and-wait", name, kept);
            child.Child.ExpectLine("created");
            Signals.Send(child.Pid, "HUP");
            Thread.Sleep(300);
            Assert.False(child.Child.HasExited, "SIGHUP was ignored before SharedBridge: it must stay ignored");
            Assert.True(Names.Exists(name));
            Signals.Send(child.Pid, "TERM");
            Assert.Equal(-15, child.WaitForEnd());
            Assert.False(Names.Exists(name));
        }
        finally
        {
            UnlinkIfPresent(name, kept);
        }
    }

    [Fact]
    public void AnUnhandledExceptionUnlinksAndTheProcessStillCrashes()
    {
        string name = Names.Unique("unhandled");
        try
        {
            using var child = WatchedChild.Start([], "throw-unhandled", name);
            child.Child.ExpectLine("created");
            Assert.Equal(-6, child.WaitForEnd()); // the runtime aborts (SIGABRT) after an unhandled exception
            Assert.False(Names.Exists(name));
            Assert.Contains("unhandled on purpose", child.Child.Stderr);
        }
        finally
        {
            UnlinkIfPresent(name);
        }
    }

    [Fact]
    public void AForkChildNeverUnlinksItsParentsSegments()
    {
        string name = Names.Unique("fork");
        try
        {
            using var child = WatchedChild.Start([], "fork-dispose", name);
            child.Child.ExpectLine("child exited 0");
            child.Child.ExpectLine("exists state 1"); // the fork child disposed its copy: no unlink, no retire
            Assert.Equal(0, child.WaitForEnd());
            Assert.False(Names.Exists(name), "the creator's own exit must still unlink it");
        }
        finally
        {
            UnlinkIfPresent(name, name + "-warm");
        }
    }
}
