using System.Globalization;

namespace SharedBridge.Cli.Segments;

/// <summary>A verb's command line: flags, options with a value (--x V or --x=V) and positional arguments,
/// in any order; anything else is a UsageException (exit status 2). -h/--help sets Help.</summary>
internal sealed class Arguments
{
    private readonly Dictionary<string, string?> _values = new();
    private readonly List<string> _positional = [];

    internal bool Help { get; private set; }

    internal static Arguments Parse(string[] args, string[] flags, string[] options, int positional)
    {
        var parsed = new Arguments();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a is "-h" or "--help") { parsed.Help = true; return parsed; }
            if (a.StartsWith("--", StringComparison.Ordinal))
            {
                int eq = a.IndexOf('=');
                string key = eq < 0 ? a : a[..eq];
                if (flags.Contains(key) && eq < 0) parsed._values[key] = null;
                else if (options.Contains(key))
                {
                    if (eq >= 0) parsed._values[key] = a[(eq + 1)..];
                    else if (i + 1 < args.Length) parsed._values[key] = args[++i];
                    else throw new UsageException($"argument {key}: expected one argument");
                }
                else throw new UsageException($"unrecognized arguments: {a}");
            }
            else parsed._positional.Add(a);
        }
        if (parsed._positional.Count > positional)
            throw new UsageException($"unrecognized arguments: {string.Join(' ', parsed._positional.Skip(positional))}");
        if (parsed._positional.Count < positional)
            throw new UsageException("the following arguments are required: name");
        return parsed;
    }

    internal bool Has(string flag) => _values.ContainsKey(flag);

    internal string? Value(string option) => _values.GetValueOrDefault(option);

    internal string Positional(int index) => _positional[index];

    internal int Count(string option)
    {
        if (Value(option) is not { } text) return 0;
        if (!System.Numerics.BigInteger.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
            throw new UsageException($"argument {option}: not a number: '{text}'");
        if (n < 0) throw new UsageException($"argument {option}: must be 0 or more: {n}");
        return n > int.MaxValue ? int.MaxValue : (int)n; // more than any segment holds: all of them
    }
}
