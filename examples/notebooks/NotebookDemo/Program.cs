using SharedBridge;

namespace SharedBridgeDemo;

/// <summary>The multiprocessing documentation's Point (x, y: c_double), as in docs/format.md section 4.</summary>
public struct Point
{
    public double X;
    public double Y;
}

public static class Program
{
    /// <summary>
    /// fill NAME STEPS DELAY_MS: opens the double array NAME (made by the notebook) and, STEPS times,
    /// writes a travelling sine wave into it under the shared lock (sin(2 pi (2 i / length + step / 40))), then counts the step in
    /// NAME_step (a SharedValue&lt;long&gt;). Exits 0 when done, 2 on a usage error.
    /// </summary>
    public static int Main(string[] args)
    {
        if (args is ["tensor", var tensorName])
            return FillTensor(tensorName);
        if (args is not ["fill", var name, var stepsText, var delayText]
            || !int.TryParse(stepsText, out int steps) || !int.TryParse(delayText, out int delayMs))
        {
            Console.Error.WriteLine("usage: NotebookDemo fill NAME STEPS DELAY_MS | tensor NAME");
            return 2;
        }
        using var wave = SharedArray<double>.Open(name);
        using var step = SharedValue<long>.Open(name + "_step");
        var span = wave.AsSpan();
        for (int s = 1; s <= steps; s++)
        {
            using (wave.Lock())
            {
                for (int i = 0; i < span.Length; i++)
                    span[i] = Math.Sin(2 * Math.PI * (i / (double)span.Length * 2 + s / 40.0)); // a quarter period every 10 steps
                step.Value = s;
            }
            Thread.Sleep(delayMs);
        }
        Console.WriteLine($"filled {name} {steps} times");
        return 0;
    }

    /// <summary>
    /// tensor NAME: opens the 3-D float tensor NAME (made by the notebook, docs/format.md section 12) and writes
    /// t[z, y, x] = z + sin(x / 8) * cos(y / 8) into it in place, under its lock; prints its shape.
    /// </summary>
    private static int FillTensor(string name)
    {
        using var t = SharedTensor<float>.Open(name, rank: 3);
        using (t.Lock())
        {
            for (nint z = 0; z < t.Shape[0]; z++)
                for (nint y = 0; y < t.Shape[1]; y++)
                    for (nint x = 0; x < t.Shape[2]; x++)
                        t[z, y, x] = z + MathF.Sin(x / 8f) * MathF.Cos(y / 8f);
        }
        Console.WriteLine($"filled {name} [{string.Join(", ", t.GetShape())}] from C#");
        return 0;
    }
}
