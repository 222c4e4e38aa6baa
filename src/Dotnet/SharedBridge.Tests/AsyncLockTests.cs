using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace SharedBridge.Tests;

/// <summary>
/// The shared lock and async code (README.md, "Locks and async code"): a <see cref="LockScope"/> cannot
/// be kept across an <c>await</c> (the compiler refuses it), <c>LockAsync</c> runs a critical section on
/// one thread, and a <see cref="LockHandle"/> released on the wrong thread says so and stays held.
/// </summary>
public class AsyncLockTests
{
    private static int s_counter;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static string Name(string tag) =>
        $"sbasync_{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}-{tag}";

    // ------------------------------------------------------------- the compiler refuses the mistake

    /// <summary>Compiles <paramref name="code"/> (C# declarations) against the library; returns the error ids.</summary>
    private static ImmutableArray<string> CompileErrors(string code)
    {
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!)
            .Split(Path.PathSeparator)
            .Append(typeof(LockScope).Assembly.Location)
            .Distinct()
            .Select(path => MetadataReference.CreateFromFile(path));
        var source = "using System; using System.Threading; using System.Threading.Tasks; using SharedBridge;\n" + code;
        var compilation = CSharpCompilation.Create(
            "LockScopeUse",
            [CSharpSyntaxTree.ParseText(source, new CSharpParseOptions(LanguageVersion.Latest))],
            references,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        // Emit, not only GetDiagnostics: a local kept across an await is found when the async method is lowered.
        var emitted = compilation.Emit(Stream.Null);
        return [.. emitted.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.Id)];
    }

    [Fact]
    public void LockScopeIsARefStruct()
    {
        Assert.True(typeof(LockScope).IsByRefLike);
        Assert.False(typeof(LockHandle).IsValueType);
    }

    [Fact]
    public void ALockScopeHeldAcrossAnAwaitDoesNotCompile()
    {
        // What a .NET developer writes first: it compiled, and the continuation's Dispose on another
        // thread left the mutex held by the first thread.
        Assert.Contains("CS4007", CompileErrors("""
            static class Bad
            {
                static async Task Run(SharedArray<int> arr)
                {
                    using var scope = arr.Lock();
                    await Task.Delay(10);
                    arr[0]++;
                }
            }
            """));
        Assert.Contains("CS4007", CompileErrors("""
            static class BadToo
            {
                static async Task Run(SharedArray<int> arr)
                {
                    using (arr.Lock(TimeSpan.FromSeconds(1))) { await Task.Yield(); }
                }
            }
            """));
    }

    [Fact]
    public void ALockScopeCannotBeStoredInAFieldOrCapturedByALambda()
    {
        Assert.Contains("CS8345", CompileErrors("class Holder { public LockScope Scope; }"));
        Assert.Contains("CS8175", CompileErrors("""
            static class Captured
            {
                static Action Run(SharedArray<int> arr) { var scope = arr.Lock(); return () => scope.Dispose(); }
            }
            """));
    }

    [Fact]
    public void SyncUsesAndAsyncCodeThatReleasesBeforeAwaitingStillCompile()
    {
        Assert.Empty(CompileErrors("""
            static class Fine
            {
                static void Sync(SharedArray<int> arr)
                {
                    using var scope = arr.Lock();
                    if (scope.Recovered) arr[0] = 0;
                    arr[0]++;
                    using (arr.Lock(TimeSpan.FromSeconds(1))) arr[0]++;
                    if (arr.TryLock(TimeSpan.Zero, out var s)) s.Dispose();
                }
                static async Task<int> Async(SharedArray<int> arr, CancellationToken ct)
                {
                    using (arr.Lock()) arr[0]++;             // released before the await
                    await Task.Yield();
                    await arr.LockAsync(() => arr[0]++, TimeSpan.FromSeconds(1), ct);
                    using var handle = arr.LockUnscoped();   // compiles: the explicit, thread-affine heap form
                    return await arr.LockAsync(() => arr[0]);
                }
            }
            """));
    }

    // ------------------------------------------------------------- LockAsync

    /// <summary>A thread holding <paramref name="a"/>'s lock until <see cref="IDisposable.Dispose"/>.</summary>
    private sealed class Holder : IDisposable
    {
        private readonly ManualResetEventSlim _held = new(), _release = new();
        private readonly Thread _thread;

        internal Holder(SharedArray<long> a)
        {
            _thread = new Thread(() =>
            {
                using (a.Lock()) { _held.Set(); _release.Wait(Patience); }
            });
            _thread.Start();
            Assert.True(_held.Wait(Patience));
        }

        public void Dispose()
        {
            _release.Set();
            Assert.True(_thread.Join(Patience));
            _held.Dispose();
            _release.Dispose();
        }
    }

    private static bool FreeForAnotherThread(SharedArray<long> a)
    {
        bool free = false;
        var t = new Thread(() => { if (a.TryLock(TimeSpan.Zero, out var s)) { free = true; s.Dispose(); } });
        t.Start();
        Assert.True(t.Join(Patience));
        return free;
    }

    [Fact]
    public async Task LockAsyncOnAFreeLockRunsTheBodyAtOnceOnTheCallingThread()
    {
        using var a = SharedArray<long>.Create(Name("free"), 1);
        int caller = Environment.CurrentManagedThreadId;
        int ranOn = 0;
        Task<long> task = a.LockAsync(() =>
        {
            ranOn = Environment.CurrentManagedThreadId;
            Assert.False(FreeForAnotherThread(a)); // held while the body runs
            return ++a[0];
        });
        Assert.True(task.IsCompletedSuccessfully);
        Assert.Equal(caller, ranOn);
        Assert.Equal(1, await task);
        Assert.True(FreeForAnotherThread(a));
    }

    [Fact]
    public async Task LockAsyncWaitsOffTheCallerAndRunsTheBodyOnTheThreadThatHoldsTheLock()
    {
        using var a = SharedArray<long>.Create(Name("wait"), 1);
        bool ownerRanBody = false;
        Task task;
        using (new Holder(a))
        {
            task = a.LockAsync(() =>
            {
                // A zero-timeout TryLock succeeds only for the owner (the lock is recursive): the body runs
                // on the thread that acquired the lock, and the release on that thread completes the task.
                ownerRanBody = a.TryLock(TimeSpan.Zero, out var again);
                again.Dispose();
                a[0] = 42;
            });
            Assert.False(task.IsCompleted); // the caller was not blocked
        }
        await task.WaitAsync(Patience);
        Assert.True(ownerRanBody);
        Assert.Equal(42, a[0]);
        Assert.True(FreeForAnotherThread(a));
    }

    [Fact]
    public async Task LockAsyncExcludesOtherLockersAcrossAwaits()
    {
        using var a = SharedArray<long>.Create(Name("count"), 1);
        const int workers = 6, rounds = 200;
        var all = Enumerable.Range(0, workers).Select(_ => Task.Run(async () =>
        {
            for (int i = 0; i < rounds; i++)
            {
                await a.LockAsync(() => { long v = a[0]; Thread.SpinWait(20); a[0] = v + 1; }).WaitAsync(Patience);
                await Task.Yield();
            }
        }));
        await Task.WhenAll(all).WaitAsync(Patience);
        Assert.Equal(workers * rounds, a[0]);
    }

    [Fact]
    public async Task TheLockIsReleasedWhenTheBodyThrows()
    {
        using var a = SharedArray<long>.Create(Name("throw"), 1);
        var inline = a.LockAsync(() => throw new InvalidOperationException("body failed"));
        Assert.Equal("body failed", (await Assert.ThrowsAsync<InvalidOperationException>(() => inline)).Message);
        Assert.True(FreeForAnotherThread(a));

        Task<int> waited;
        using (new Holder(a))
            waited = a.LockAsync<int>(() => throw new FormatException("waited body failed"));
        await Assert.ThrowsAsync<FormatException>(() => waited.WaitAsync(Patience));
        Assert.True(FreeForAnotherThread(a));
    }

    [Fact]
    public async Task ATimeoutFailsWithLockTimeoutExceptionAndNeverRunsTheBody()
    {
        using var a = SharedArray<long>.Create(Name("timeout"), 1);
        bool ran = false;
        using (new Holder(a))
        {
            var e = await Assert.ThrowsAsync<LockTimeoutException>(
                () => a.LockAsync(() => ran = true, TimeSpan.FromMilliseconds(100)).WaitAsync(Patience));
            Assert.Contains(a.Name, e.Message);
            await Assert.ThrowsAsync<LockTimeoutException>(() => a.LockAsync(() => ran = true, TimeSpan.Zero));
        }
        Assert.False(ran);
        Assert.True(FreeForAnotherThread(a));
    }

    [Fact]
    public async Task CancellationStopsTheWaitAndNeverRunsTheBody()
    {
        using var a = SharedArray<long>.Create(Name("cancel"), 1);
        bool ran = false;
        using (var cts = new CancellationTokenSource())
        using (new Holder(a))
        {
            var task = a.LockAsync(() => ran = true, cancellationToken: cts.Token);
            Assert.False(task.IsCompleted);
            cts.Cancel();
            var e = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => task.WaitAsync(Patience));
            Assert.Equal(cts.Token, e.CancellationToken);
            Assert.True(task.IsCanceled);
        }
        Assert.False(ran);
        Assert.True(FreeForAnotherThread(a)); // the canceled waiter holds nothing

        using var canceled = new CancellationTokenSource();
        canceled.Cancel();
        var already = a.LockAsync(() => ran = true, cancellationToken: canceled.Token);
        Assert.True(already.IsCanceled);
        Assert.False(ran);
    }

    [Fact]
    public async Task UsageErrorsThrowAtTheCallAndLockErrorsArriveInTheTask()
    {
        var a = SharedArray<long>.Create(Name("usage"), 1);
        Assert.Throws<ArgumentNullException>(() => { _ = a.LockAsync((Action)null!); });
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = a.LockAsync(() => { }, TimeSpan.FromSeconds(-2)); });
        using var unsynchronized = SharedArray<long>.Create(Name("nolock"), 1, new SegmentOptions { Synchronized = false });
        Assert.Throws<InvalidOperationException>(() => { _ = unsynchronized.LockAsync(() => { }); });
        a.Dispose();
        Assert.Throws<ObjectDisposedException>(() => { _ = a.LockAsync(() => { }); });

        using var errorChecking = SharedArray<long>.Create(Name("errchk"), 1, new SegmentOptions { RecursiveLock = false });
        Task again;
        using (errorChecking.Lock())
            again = errorChecking.LockAsync(() => { }); // this thread holds the non-recursive lock: refused, no hang
        await Assert.ThrowsAsync<LockRecursionException>(() => again.WaitAsync(Patience));
    }

    // ------------------------------------------------------------- LockHandle (LockUnscoped)

    [Fact]
    public void AHandleReleasedOnAnotherThreadIsRefusedLoudlyAndStaysHeldUntilItsThreadReleasesIt()
    {
        using var a = SharedArray<long>.Create(Name("handle"), 1);
        var handle = a.LockUnscoped();
        Assert.True(handle.IsHeld);
        Assert.False(handle.Recovered);
        Assert.Equal(Environment.CurrentManagedThreadId, handle.ThreadId);
        Exception? error = null;
        var t = new Thread(() =>
        {
            try { handle.Dispose(); }
            catch (Exception e) { error = e; }
        });
        t.Start();
        Assert.True(t.Join(Patience));
        var refused = Assert.IsType<SynchronizationLockException>(error);
        Assert.Contains($"acquired by managed thread {handle.ThreadId}", refused.Message);
        Assert.Contains("still held", refused.Message);
        Assert.Contains("LockAsync", refused.Message);
        Assert.True(handle.IsHeld);
        Assert.False(FreeForAnotherThread(a)); // not released behind its owner's back
        handle.Dispose();                       // its own thread releases it
        Assert.False(handle.IsHeld);
        handle.Dispose();                       // a second Dispose does nothing
        Assert.True(FreeForAnotherThread(a));
    }

    [Fact]
    public async Task AHandleDisposedAfterAnAwaitOnAnotherThreadThrowsAndTheLockIsRecoveredWhenItsThreadEnds()
    {
        using var a = SharedArray<long>.Create(Name("await"), 1);
        // The mistake the ref struct prevents, made on purpose with the heap handle: acquire on a thread that
        // then ends, "continue" on another one.
        LockHandle? handle = null;
        var first = new Thread(() => handle = a.LockUnscoped());
        first.Start();
        Assert.True(first.Join(Patience));
        await Task.Yield();
        var refused = Assert.Throws<SynchronizationLockException>(() => handle!.Dispose());
        Assert.Contains("LockAsync", refused.Message);
        // The acquiring thread exited holding it: the kernel marked the robust mutex owner-dead, and the
        // next locker recovers it (Recovered) instead of waiting forever.
        using (var scope = a.Lock(Patience))
            Assert.True(scope.Recovered);
        Assert.Equal(1, a.LockRecoveries);
    }

    [Fact]
    public void LockUnscopedWithATimeoutThrowsLockTimeoutWhenHeldElsewhere()
    {
        using var a = SharedArray<long>.Create(Name("utimeout"), 1);
        using (new Holder(a))
            Assert.Throws<LockTimeoutException>(() => a.LockUnscoped(TimeSpan.FromMilliseconds(20)));
        using var handle = a.LockUnscoped(Patience);
        Assert.True(handle.IsHeld);
    }

    [Fact]
    public async Task EveryLockableObjectHasTheHandleAndLockAsync()
    {
        string name = Name("all");
        using var lockSegment = SharedLock.Create(name + "l");
        using var value = SharedValue<int>.Create(name + "v");
        using var chars = SharedCharArray.Create(name + "c", 4);
        using (var h = lockSegment.LockUnscoped()) Assert.True(h.IsHeld);
        using (var h = value.LockUnscoped(Patience)) Assert.True(h.IsHeld);
        using (var h = chars.LockUnscoped()) Assert.True(h.IsHeld);
        Assert.Equal(7, await lockSegment.LockAsync(() => 7));
        await value.LockAsync(() => { value.Value = 3; });
        Assert.Equal(3, value.Value);
        Assert.Equal(4, await chars.LockAsync(() => chars.Length));
    }
}
