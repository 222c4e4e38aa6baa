// sharedbridge-cli: command-line tools for SharedBridge segments.
using SharedBridge.Cli;

return Commands.Run(args);

namespace SharedBridge.Cli
{
    /// <summary>The command table: one entry per command, each a small class of its own.</summary>
    public static class Commands
    {
        private static readonly Dictionary<string, (string Help, Func<string[], int> Run)> Table = new()
        {
            ["demo"] = ("run a mixed C#/Python pipeline over shared memory and compare it with multiprocessing", Demo.DemoCommand.Run),
        };

        public static int Run(string[] args)
        {
            if (args.Length == 0 || !Table.TryGetValue(args[0], out var command))
            {
                Console.Error.WriteLine("usage: sharedbridge-cli COMMAND [options]\n\ncommands:");
                foreach (var (name, (help, _)) in Table) Console.Error.WriteLine($"  {name,-8} {help}");
                return args.Length == 0 || args[0] is "-h" or "--help" ? 0 : 2;
            }
            try
            {
                return command.Run(args[1..]);
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine($"sharedbridge-cli {args[0]}: {e.Message}");
                return 2;
            }
        }
    }

    /// <summary>A wrong command line: reported as a message and exit status 2, not a stack trace.</summary>
    public sealed class UsageException(string message) : Exception(message);
}
