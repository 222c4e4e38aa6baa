using SharedBridge;

namespace SharedBridge.TestChild;

/// <summary>Child commands for the synchronization objects (SyncTests.cs): each prints a line when it
/// has done its part.</summary>
internal static partial class ChildCommands
{
    private const string SyncUsage =
        "event-wait NAME MS | event-set NAME | sem-hold NAME | sem-release NAME COUNT | cond-wait NAME | barrier-rounds NAME ROUNDS | barrier-enter NAME | spin-budget";

    private static int? RunSync(string[] args)
    {
        switch (args)
        {
            // event-wait NAME MS: say "waiting", wait up to MS ms, print "set" or "timeout".
            case ["event-wait", var name, var ms]:
            {
                using var ev = SharedEvent.Open(name);
                Say("waiting");
                Say(ev.Wait(TimeSpan.FromMilliseconds(int.Parse(ms))) ? "set" : "timeout");
                return 0;
            }
            case ["event-set", var name]:
            {
                using var ev = SharedEvent.Open(name);
                ev.Set();
                Say("done");
                return 0;
            }
            // sem-hold NAME: take one unit, say "held", wait to be killed.
            case ["sem-hold", var name]:
            {
                var sem = SharedSemaphore.Open(name);
                sem.Wait();
                Say("held");
                Thread.Sleep(Timeout.Infinite);
                return 1;
            }
            // sem-release NAME COUNT: release COUNT units, say "released".
            case ["sem-release", var name, var count]:
            {
                using var sem = SharedSemaphore.Open(name);
                sem.Release(int.Parse(count));
                Say("released");
                return 0;
            }
            // cond-wait NAME: wait on the condition for ever (to be killed while waiting).
            case ["cond-wait", var name]:
            {
                var cond = SharedCondition.Open(name);
                var scope = cond.Lock();
                Say("waiting");
                cond.Wait();
                scope.Dispose();
                return 1;
            }
            // barrier-rounds NAME ROUNDS: ROUNDS x SignalAndWait(10 s); prints the sum of the indices.
            case ["barrier-rounds", var name, var rounds]:
            {
                using var barrier = SharedBarrier.Open(name);
                long sum = 0;
                for (int i = 0; i < int.Parse(rounds); i++) sum += barrier.SignalAndWait(TimeSpan.FromSeconds(10));
                Say($"sum {sum}");
                return 0;
            }
            // barrier-enter NAME: say "entering", then wait on the barrier (to be killed inside the wait).
            case ["barrier-enter", var name]:
            {
                var barrier = SharedBarrier.Open(name);
                Say("entering");
                barrier.SignalAndWait(TimeSpan.FromMinutes(2));
                return 1;
            }
            // spin-budget: print "budget US" (SharedBridgeSettings.SpinBudget, from SHAREDBRIDGE_SPIN_US) with the
            // library's Trace warnings on stdout before it.
            case ["spin-budget"]:
            {
                System.Diagnostics.Trace.Listeners.Add(new System.Diagnostics.TextWriterTraceListener(Console.Out));
                System.Diagnostics.Trace.AutoFlush = true;
                Say($"budget {SharedBridgeSettings.SpinBudget.TotalMicroseconds}");
                return 0;
            }
            default:
                return null;
        }
    }

    private static void Say(string line)
    {
        Console.WriteLine(line);
        Console.Out.Flush();
    }
}
