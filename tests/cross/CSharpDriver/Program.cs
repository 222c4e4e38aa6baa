// The C# driver of the cross-language suite (the Python twin is tests/cross/python_driver.py).
// Commands and output are the same as the Python driver's; see its docstring.
using SharedBridge.CrossDriver;

return Cli.Run(args);

namespace SharedBridge.CrossDriver
{
    public static class Cli
    {
        private const string Usage = """
            usage: csharp-driver create|verify|host VECTOR NAME [--lock-name L]
                   csharp-driver create-batch|verify-batch|classify-batch MANIFEST
                   csharp-driver worker SCENARIO ARGS...
                   csharp-driver parent SCENARIO BASE --child ARGV_JSON [--child ARGV_JSON ...]
                   csharp-driver hold create NAME LIFETIME | hold open NAME | hold paused NAME LIFETIME
                   csharp-driver reap PREFIX [--dry-run]
            """;

        public static int Run(string[] args)
        {
            if (args.Length < 2)
            {
                Console.Error.WriteLine(Usage);
                return 2;
            }
            switch (args[0])
            {
                case "create" or "verify" or "host":
                {
                    if (args.Length < 3)
                    {
                        Console.Error.WriteLine(Usage);
                        return 2;
                    }
                    var vector = Vector.Load(args[1]);
                    string name = args[2];
                    string? lockName = Option(args, "--lock-name") ?? vector.LockSegment;
                    return args[0] switch
                    {
                        "create" => VectorCommands.CreateCommand(vector, name, lockName),
                        "verify" => VectorCommands.VerifyCommand(vector, name, lockName),
                        _ => VectorCommands.HostCommand(vector, name, lockName),
                    };
                }
                case "classify-batch":
                    return Classify.Batch(args[1]);
                case "create-batch" or "verify-batch":
                    return Batch.Run(args[1], create: args[0] == "create-batch");
                case "worker":
                    return Scenarios.Worker(args[1], args[2..]);
                case "hold" when args.Length >= 3:
                    return LifetimeCommands.Hold(args[1], args[2], args.Length > 3 ? args[3] : "creator");
                case "reap":
                    return LifetimeCommands.Reap(args[1], args.Contains("--dry-run"));
                case "parent":
                {
                    var children = new List<IReadOnlyList<string>>();
                    for (int i = 3; i < args.Length - 1; i++)
                        if (args[i] == "--child") children.Add(Scenarios.ParseChild(args[++i]));
                    return Scenarios.Parent(args[1], args[2], children);
                }
                default:
                    Console.Error.WriteLine(Usage);
                    return 2;
            }
        }

        private static string? Option(string[] args, string option)
        {
            int i = Array.IndexOf(args, option);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }
    }
}
