using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SharedBridge;

namespace SharedBridge.Benchmarks;

/// <summary>
/// Uncontended SharedArray.Lock() + increment + unlock against bare P/Invoke
/// pthread_mutex_lock/unlock on a mutex of the same kind (process-shared, robust, recursive),
/// measured alternately in the same run; prints ns/op and the ratio.
/// </summary>
internal static unsafe partial class LockBenchmark
{
    [LibraryImport("libc", EntryPoint = "pthread_mutex_lock")]
    internal static partial int MutexLock(void* mutex);

    [LibraryImport("libc", EntryPoint = "pthread_mutex_unlock")]
    internal static partial int MutexUnlock(void* mutex);

    [LibraryImport("libc", EntryPoint = "pthread_mutex_trylock")]
    [SuppressGCTransition]
    private static partial int MutexTryLockNoTransition(void* mutex);

    [LibraryImport("libc", EntryPoint = "pthread_mutex_unlock")]
    [SuppressGCTransition]
    private static partial int MutexUnlockNoTransition(void* mutex);

    [LibraryImport("libc", EntryPoint = "pthread_mutex_init")]
    private static partial int MutexInit(void* mutex, void* attr);

    [LibraryImport("libc", EntryPoint = "pthread_mutexattr_init")]
    private static partial int AttrInit(void* attr);

    [LibraryImport("libc", EntryPoint = "pthread_mutexattr_setpshared")]
    private static partial int AttrSetPShared(void* attr, int value);

    [LibraryImport("libc", EntryPoint = "pthread_mutexattr_setrobust")]
    private static partial int AttrSetRobust(void* attr, int value);

    [LibraryImport("libc", EntryPoint = "pthread_mutexattr_settype")]
    private static partial int AttrSetType(void* attr, int value);

    /// <summary>A process-shared, robust, recursive pthread mutex (the library's kind) in native memory, or null.</summary>
    internal static void* NewMutex()
    {
        void* mutex = NativeMemory.AlignedAlloc(64, 64);
        NativeMemory.Clear(mutex, 64);
        ulong attr = 0;
        if (AttrInit(&attr) != 0 || AttrSetPShared(&attr, 1) != 0 || AttrSetRobust(&attr, 1) != 0
            || AttrSetType(&attr, 1) != 0 || MutexInit(mutex, &attr) != 0)
        {
            NativeMemory.AlignedFree(mutex);
            return null;
        }
        return mutex;
    }

    internal static int Run(long iterations)
    {
        void* mutex = NewMutex();
        if (mutex == null)
        {
            Console.Error.WriteLine("pthread mutex initialization failed");
            return 1;
        }

        using var array = SharedArray<long>.Create(null, 1);
        long* counter = (long*)NativeMemory.AlignedAlloc(64, 64);
        *counter = 0;

        // Warm up both paths (tiered JIT), then alternate rounds and keep each side's best round.
        Bare(mutex, counter, 200_000);
        BareNoTransition(mutex, counter, 200_000);
        Library(array, 200_000);
        const int rounds = 5;
        double bestBare = double.MaxValue, bestFast = double.MaxValue, bestLib = double.MaxValue;
        long perRound = Math.Max(1, iterations / rounds);
        for (int r = 0; r < rounds; r++)
        {
            bestBare = Math.Min(bestBare, Bare(mutex, counter, perRound));
            bestFast = Math.Min(bestFast, BareNoTransition(mutex, counter, perRound));
            bestLib = Math.Min(bestLib, Library(array, perRound));
        }
        long expected = 200_000 + perRound * rounds;
        if (array[0] != expected || *counter != 2 * expected)
        {
            Console.Error.WriteLine($"counter mismatch: library {array[0]}, bare {*counter}, expected {expected}");
            return 1;
        }
        Console.WriteLine($"iterations per round: {perRound:N0}, rounds: {rounds} (best round reported)");
        Console.WriteLine($"bare pthread_mutex_lock + increment + unlock             : {bestBare,7:F2} ns/op");
        Console.WriteLine($"bare trylock + increment + unlock, no GC transition    : {bestFast,7:F2} ns/op");
        Console.WriteLine($"SharedArray.Lock() + a[0]++ + LockScope.Dispose()      : {bestLib,7:F2} ns/op");
        Console.WriteLine($"ratio library / bare pthread pair                      : {bestLib / bestBare,7:F2}x (target <= 2x)");
        Console.WriteLine($"ratio library / bare pair without GC transition        : {bestLib / bestFast,7:F2}x");
        NativeMemory.AlignedFree(counter);
        NativeMemory.AlignedFree(mutex);
        return 0;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static double Bare(void* mutex, long* counter, long n)
    {
        var sw = Stopwatch.StartNew();
        for (long i = 0; i < n; i++)
        {
            MutexLock(mutex);
            (*counter)++;
            MutexUnlock(mutex);
        }
        return sw.Elapsed.TotalNanoseconds / n;
    }

    /// <summary>The library's own fast path without the library: trylock and unlock without a GC transition.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static double BareNoTransition(void* mutex, long* counter, long n)
    {
        var sw = Stopwatch.StartNew();
        for (long i = 0; i < n; i++)
        {
            if (MutexTryLockNoTransition(mutex) != 0) MutexLock(mutex);
            (*counter)++;
            MutexUnlockNoTransition(mutex);
        }
        return sw.Elapsed.TotalNanoseconds / n;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static double Library(SharedArray<long> array, long n)
    {
        var sw = Stopwatch.StartNew();
        for (long i = 0; i < n; i++)
        {
            using (array.Lock())
                array[0]++;
        }
        return sw.Elapsed.TotalNanoseconds / n;
    }
}
