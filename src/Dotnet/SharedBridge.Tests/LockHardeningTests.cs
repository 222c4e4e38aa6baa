using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace SharedBridge.Tests;

/// <summary>
/// The lock never wedges and a corrupt mutex is an error (docs/format.md sections 7.2 to 7.4): a
/// not-recoverable lock gives every acquirer the not-recoverable error every time and leaves the lock
/// word 0; overwritten mutex bytes raise CorruptLockException instead of aborting or hanging;
/// SharedLock.Reset is the operator's explicit way out.
/// </summary>
public sealed partial class LockHardeningTests
{
    private const int MutexOffset = 0x1C0, LockWord = 0, OwnerWord = 8, KindWord = 16;
    private const int EOWNERDEAD = 130;

    [LibraryImport("libc", EntryPoint = "pthread_mutex_lock")]
    private static partial int RawLock(IntPtr mutex);

    [LibraryImport("libc", EntryPoint = "pthread_mutex_unlock")]
    private static partial int RawUnlock(IntPtr mutex);

    /// <summary>A second, raw mapping of the segment: what another (buggy) program sees.</summary>
    private sealed class RawView : IDisposable
    {
        private readonly MemoryMappedFile _file;
        private readonly MemoryMappedViewAccessor _view;

        internal RawView(string name)
        {
            _file = MemoryMappedFile.CreateFromFile(Names.ShmPath(name), FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
            _view = _file.CreateViewAccessor(0, 512, MemoryMappedFileAccess.ReadWrite);
        }

        internal IntPtr Mutex => _view.SafeMemoryMappedViewHandle.DangerousGetHandle() + (int)_view.PointerOffset + MutexOffset;

        internal int this[int word]
        {
            get => _view.ReadInt32(MutexOffset + word);
            set => _view.Write(MutexOffset + word, value);
        }

        public void Dispose()
        {
            _view.Dispose();
            _file.Dispose();
        }
    }

    private static int NonexistentTid()
    {
        int tid = 4_000_000;
        while (Directory.Exists($"/proc/{tid}")) tid++;
        return tid;
    }

    /// <summary>A holder is killed; a careless program then unlocks without pthread_mutex_consistent.</summary>
    private static void MakeNotRecoverable(string name, RawView raw)
    {
        using (var child = Child.Start("hold", name, "1", "7"))
        {
            child.ExpectLine("locked");
            child.KillHard();
        }
        Assert.Equal(EOWNERDEAD, RawLock(raw.Mutex));
        Assert.Equal(0, RawUnlock(raw.Mutex));
        Assert.Equal(0x7FFFFFFE, raw[OwnerWord]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void NotRecoverableLockFailsEveryAcquirerPromptlyAndForever(bool recursive)
    {
        string name = Names.Unique("nr");
        using var array = SharedArray<long>.Create(name, 2, new SegmentOptions { RecursiveLock = recursive });
        using var raw = new RawView(name);
        MakeNotRecoverable(name, raw);
        using var shared = array.GetLock();
        var entryPoints = new (string, Action)[]
        {
            ("Lock()", () => array.Lock().Dispose()),
            ("Lock(1 s)", () => array.Lock(TimeSpan.FromSeconds(1)).Dispose()),
            ("TryLock(0)", () => array.TryLock(TimeSpan.Zero, out _)),
            ("TryLock(1 s)", () => array.TryLock(TimeSpan.FromSeconds(1), out _)),
            ("SharedLock.Lock()", () => shared.Lock().Dispose()),
        };
        for (int round = 0; round < 3; round++)
        {
            foreach (var (what, call) in entryPoints)
            {
                var watch = Stopwatch.StartNew();
                var e = Assert.Throws<LockNotRecoverableException>(call);
                Assert.Contains("SharedLock.Reset", e.Message);
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), what);
                Assert.True(raw[LockWord] == 0, $"{what} left the lock word set");
            }
        }
        Assert.Equal(LockState.NotRecoverable, shared.State);

        // Another process, twice each: the same answer, no hang.
        using var other = Child.Start("try-lock", name, "1000");
        other.ExpectLine(nameof(LockNotRecoverableException));
        other.ExpectLine(nameof(LockNotRecoverableException));
        Assert.Equal(0, other.WaitForExit());
        Assert.Equal(0, raw[LockWord]);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(0x10 | 0x80)]
    [InlineData(0x91 | 0x20)]
    [InlineData(0x92 | 0x20)]
    [InlineData(1)]
    public void WrongKindWordIsACorruptLockError(int kind)
    {
        string name = Names.Unique("kind");
        using var array = SharedArray<int>.Create(name, 2);
        using var raw = new RawView(name);
        int good = raw[KindWord];
        raw[KindWord] = kind;
        Assert.Contains("kind", Assert.Throws<CorruptLockException>(() => array.Lock()).Message);
        Assert.Throws<CorruptLockException>(() => array.TryLock(TimeSpan.Zero, out _));
        Assert.Throws<CorruptLockException>(() => array.TryLock(TimeSpan.FromSeconds(1), out _));
        using (var shared = array.GetLock()) Assert.Equal(LockState.Corrupt, shared.State);
        raw[KindWord] = good;
        using (array.Lock()) array[0] = 5;
        Assert.Equal(5, array[0]);
    }

    [Fact]
    public void PriorityInheritanceKindWithAForgedOwnerNeverAbortsAnotherProcess()
    {
        // glibc asserts (aborts the process) on a PI mutex whose owner does not exist: the kind check
        // must come before any pthread call. A child runs it, so a regression is an abort, not a dead host.
        string name = Names.Unique("pi");
        using var array = SharedArray<int>.Create(name, 1);
        using var raw = new RawView(name);
        raw[KindWord] = 0x91 | 0x20;
        raw[LockWord] = NonexistentTid() | 0x40000000;
        using var child = Child.Start("try-lock", name, "500");
        child.ExpectLine(nameof(CorruptLockException));
        child.ExpectLine(nameof(CorruptLockException));
        Assert.Equal(0, child.WaitForExit());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AForgedOwnerThatDoesNotExistStopsABlockedAcquire(bool recursive)
    {
        string name = Names.Unique("stale");
        using var array = SharedArray<double>.Create(name, 1, new SegmentOptions { RecursiveLock = recursive });
        using var raw = new RawView(name);
        int tid = NonexistentTid();
        raw[LockWord] = tid;
        Assert.False(array.TryLock(TimeSpan.Zero, out _));
        foreach (var call in new Action[] { () => array.Lock(), () => array.TryLock(TimeSpan.FromSeconds(30), out _) })
        {
            var watch = Stopwatch.StartNew();
            Assert.Contains(tid.ToString(), Assert.Throws<CorruptLockException>(call).Message);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5));
        }
        raw[LockWord] = 0;
        using (array.Lock()) array[0] = 1.5;
        Assert.Equal(1.5, array[0]);
    }

    [Fact]
    public void ALiveOwnerIsWaitedForNotReported()
    {
        string name = Names.Unique("live");
        using var array = SharedArray<long>.Create(name, 1);
        var holder = new Thread(() =>
        {
            using (array.Lock()) Thread.Sleep(2500);
        });
        holder.Start();
        while (array.TryLock(TimeSpan.Zero, out var probe)) { probe.Dispose(); Thread.Sleep(1); }
        var watch = Stopwatch.StartNew();
        Assert.True(array.TryLock(TimeSpan.FromSeconds(20), out var scope));
        scope.Dispose();
        Assert.True(watch.Elapsed > TimeSpan.FromSeconds(1.5));
        holder.Join();
    }

    [Fact]
    public void AnUnlockTheMutexRefusesIsReported()
    {
        string name = Names.Unique("unl");
        using var array = SharedArray<long>.Create(name, 1, new SegmentOptions { RecursiveLock = false });
        using var raw = new RawView(name);
        var scope = array.Lock();
        int me = raw[LockWord];
        raw[LockWord] = NonexistentTid(); // a buggy peer overwrote the owner
        SynchronizationLockException? refused = null;
        try { scope.Dispose(); }
        catch (SynchronizationLockException e) { refused = e; }
        Assert.NotNull(refused);
        raw[LockWord] = me;
        Assert.Equal(0, RawUnlock(raw.Mutex));
        using (array.Lock()) array[0] = 3;
        Assert.Equal(3, array[0]);
    }

    [Fact]
    public void ResetIsExplicitRefusedWhileMappedAndThenWorks()
    {
        string name = Names.Unique("reset");
        using var array = SharedArray<long>.Create(name, 2);
        Assert.False(SharedLock.Reset(name)); // healthy: nothing to do
        using var raw = new RawView(name);
        MakeNotRecoverable(name, raw);
        Assert.Throws<LockNotRecoverableException>(() => array.Lock()); // never reset implicitly
        long before = array.LockRecoveries;
        using (var child = Child.Start("open-and-wait", name))
        {
            child.ExpectLine("opened");
            var e = Assert.Throws<SegmentInUseException>(() => SharedLock.Reset(name));
            Assert.Contains(child.Pid, e.ProcessIds);
            child.KillHard();
        }
        Assert.True(SharedLock.Reset(name));
        Assert.Equal(before + 1, array.LockRecoveries);
        using (var shared = array.GetLock()) Assert.Equal(LockState.Free, shared.State);
        using (array.Lock()) array[0] += 5;
        Assert.Equal(7 + 5, array[0]); // the killed holder wrote 7
    }

    [Fact]
    public void ResetNamesTheLockSegmentOfAnExternalLock()
    {
        using var shared = SharedLock.Create(Names.Unique("rl"));
        string name = Names.Unique("ext");
        using var array = SharedArray<int>.Create(name, 1, new SegmentOptions { SharedLock = shared });
        Assert.Contains(shared.Name, Assert.Throws<TypeMismatchException>(() => SharedLock.Reset(name)).Message);
        string rawName = Names.Unique("rawr");
        using var rawArray = SharedArray<int>.Create(rawName, 1, new SegmentOptions { Synchronized = false });
        Assert.Contains("no shared lock", Assert.Throws<TypeMismatchException>(() => SharedLock.Reset(rawName)).Message);
    }
}
