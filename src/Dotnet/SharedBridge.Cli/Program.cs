// sharedbridge: look at, clean up and repair SharedBridge segments, and the demo (docs/cli.md).
using SharedBridge.Cli;

return Commands.Run(args);

namespace SharedBridge.Cli
{
    /// <summary>The command table: one entry per command, each a small class of its own. Exit status: 0 ok,
    /// 1 error (unknown name, corrupt segment, refused action), 2 usage error (docs/cli.md).</summary>
    public static class Commands
    {
        public const string Prog = "sharedbridge";

        private static readonly (string Name, string Help, Func<string[], int> Run)[] Table =
        [
            ("ls", "list the SharedBridge segments in /dev/shm", Segments.LsCommand.Run),
            ("inspect", "show one segment: header, field tree, lock, data", Segments.InspectCommand.Run),
            ("reap", "remove the segments left behind by dead processes", Segments.ReapCommand.Run),
            ("unlink", "remove a segment's name", Segments.UnlinkCommand.Run),
            ("reset-lock", "re-initialize a not-recoverable or corrupt lock", Segments.ResetLockCommand.Run),
            ("demo", "run a mixed C#/Python pipeline over shared memory and compare it with multiprocessing", Demo.DemoCommand.Run),
        ];

        public static int Run(string[] args)
        {
            if (args.Length == 0 || args[0] is "-h" or "--help")
            {
                var writer = args.Length == 0 ? Console.Error : Console.Out;
                writer.WriteLine($"usage: {Prog} COMMAND [options]\n\nLook at, clean up and repair SharedBridge shared-memory segments in /dev/shm.\n\ncommands:");
                foreach (var (name, help, _) in Table) writer.WriteLine($"  {name,-11} {help}");
                writer.WriteLine($"\n`{Prog} COMMAND --help` describes a command. Exit status: 0 ok, 1 error (unknown name, corrupt segment,\nrefused action), 2 usage error. See docs/cli.md.");
                return args.Length == 0 ? 2 : 0;
            }
            var command = Table.FirstOrDefault(c => c.Name == args[0]);
            if (command.Run is null)
            {
                Console.Error.WriteLine($"usage: {Prog} COMMAND [options]\n{Prog}: error: unknown command '{args[0]}' (choose from {string.Join(", ", Table.Select(c => c.Name))})");
                return 2;
            }
            try
            {
                return command.Run(args[1..]);
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine($"{Prog} {args[0]}: error: {e.Message}");
                return 2;
            }
            catch (Exception e) when (e is ISharedBridgeException)
            {
                Console.Error.WriteLine($"{Prog} {args[0]}: {e.Message}");
                return 1;
            }
            catch (IOException e)
            {
                Console.Error.WriteLine($"{Prog} {args[0]}: {e.Message}");
                return 1;
            }
        }
    }

    /// <summary>A wrong command line: reported as a message and exit status 2, not a stack trace.</summary>
    public sealed class UsageException(string message) : Exception(message);
}
