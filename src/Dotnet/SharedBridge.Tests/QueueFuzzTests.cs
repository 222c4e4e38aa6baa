using System.Buffers.Binary;
using Xunit.Abstractions;
using static SharedBridge.Tests.QueueTests;

namespace SharedBridge.Tests;

/// <summary>
/// Seeded fuzzer over a queue's ring contents (docs/format.md sections 11.2 and 11.3: the control words, the wait blocks,
/// the positions and the record headers are written by every peer and are untrusted). A valid queue holding messages of
/// several types, wrapped, with a taken record, is copied with 1 to 3 mutations and used every way by a CHILD process
/// (<c>queue-fuzz</c>). A crash, a hang (no answer within 10 s) or an exception that is not a SharedBridge one (ISharedBridgeException) fails the
/// test; the outcome classes are printed. <c>SB_FUZZ_CASES</c> / <c>SB_FUZZ_SEED</c> as HeaderFuzzTests.
/// </summary>
public class QueueFuzzTests(ITestOutputHelper output)
{
    private static readonly uint[] Interesting = [0, 1, 2, 4, 7, 8, 24, 31, 32, 33, 255, 4095, 4096, 4097, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF8, 0xFFFFFFFF];

    [Fact]
    public void MutatedRingsGiveOnlyOkOrOurExceptions()
    {
        int cases = int.TryParse(Environment.GetEnvironmentVariable("SB_FUZZ_CASES"), out int n) ? n : 300;
        int seed = int.TryParse(Environment.GetEnvironmentVariable("SB_FUZZ_SEED"), out int s) ? s : 20261207;
        var rng = new Random(seed);
        using var q = SharedQueue.Create(NewName("fzbase"), new QueueOptions { Capacity = 4096, MaxMessages = 50 });
        for (int i = 0; i < 6; i++) q.Write(new byte[500]);
        for (int i = 0; i < 5; i++) using (q.Read(Long)) { }             // wrap the ring
        q.Write("text");
        q.Write(42L);
        q.Write<double>([1, 2, 3, 4], [2, 2]);
        q.Write(new byte[300]);
        using var held = q.Read(Long);                                    // a taken record (this process: alive)
        q.Write(7);
        long dataOffset = q.Header.DataOffset;
        byte[] baseBytes = File.ReadAllBytes(Names.ShmPath(q.Name));
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var failures = new List<string>();
        Child? child = null;
        try
        {
            for (int c = 0; c < cases; c++)
            {
                var bytes = (byte[])baseBytes.Clone();
                string what = Mutate(bytes, dataOffset, rng);
                string name = NewName("fz");
                File.WriteAllBytes(Names.ShmPath(name), bytes);
                string answer;
                try
                {
                    bool fresh = child is null;
                    child ??= Child.Start("queue-fuzz");
                    child.WriteLine(name);
                    answer = child.ReadLine(fresh ? 60_000 : 10_000);
                }
                catch (Exception e) when (e is TimeoutException or IOException)
                {
                    answer = child!.HasExited ? "crash" : "hang";
                    failures.Add($"case {c} ({what}): {answer}; stderr: {child.Stderr}");
                    child.Dispose();
                    child = null;
                }
                finally
                {
                    foreach (var left in Leftovers(name)) File.Delete(Names.ShmPath(left));
                }
                outcomes[answer] = outcomes.GetValueOrDefault(answer) + 1;
                if (answer.StartsWith("foreign:", StringComparison.Ordinal))
                    failures.Add($"case {c} ({what}): {answer}; stderr: {child?.Stderr}");
            }
        }
        finally
        {
            child?.Dispose();
        }
        foreach (var (k, v) in outcomes) output.WriteLine($"{v,5} {k}");
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
        Assert.True(outcomes.Keys.Count(k => k != "ok") >= 2, "the mutations reached the validation");
    }

    private static string Mutate(byte[] b, long dataOffset, Random rng)
    {
        var parts = new List<string>();
        for (int k = rng.Next(1, 4); k > 0; k--)
        {
            int choice = rng.Next(10);
            if (choice < 4)
            {
                int word = 4 * rng.Next(0, 35);             // +0 .. +136: wait blocks, counters, positions, immutable words
                uint v = rng.Next(3) == 0 ? (uint)rng.Next() : Interesting[rng.Next(Interesting.Length)];
                BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan((int)dataOffset + word), v);
                parts.Add($"word +{word} = 0x{v:X}");
            }
            else if (choice < 6)
            {
                int at = 64 + 8 * rng.Next(0, 3);           // head, read, tail
                ulong p = BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan((int)dataOffset + at));
                long[] deltas = [-4096, -64, -32, -8, -4, 4, 8, 32, 64, 4096, 1L << 40];
                ulong v = unchecked(p + (ulong)deltas[rng.Next(deltas.Length)]);
                BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan((int)dataOffset + at), v);
                parts.Add($"position +{at} {p} -> {v}");
            }
            else
            {
                int at = (int)dataOffset + 256 + rng.Next(4096);
                if (rng.Next(2) == 0) at &= ~7;             // a record header's start more often
                at += rng.Next(2) == 0 ? 0 : 4 * rng.Next(0, 8);
                at = Math.Min(at, b.Length - 4);
                if (rng.Next(2) == 0)
                {
                    byte v = (byte)rng.Next(256);
                    b[at] = v;
                    parts.Add($"ring byte {at - dataOffset - 256} = {v}");
                }
                else
                {
                    uint v = Interesting[rng.Next(Interesting.Length)];
                    BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(at), v);
                    parts.Add($"ring u32 {at - dataOffset - 256} = 0x{v:X}");
                }
            }
        }
        return string.Join(", ", parts);
    }
}
