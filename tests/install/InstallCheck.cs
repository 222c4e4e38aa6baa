// The C# side of the install test (tests/install/test_install.py): compiled in a fresh
// `dotnet new console` project OUTSIDE the repository that references the SharedBridge NuGet
// package from build/dist, never the project. Commands (segment values are doubles):
//   where               the informational version and the file of the SharedBridge assembly in use
//   serve NAME X...     create array NAME = X..., print "created", wait for a line on stdin,
//                       print the values it holds then, exit (the creator unlinks NAME)
//   modify NAME         open NAME and, under its lock, set every element x to x * 2 + 0.25
using System.Globalization;
using System.Reflection;
using SharedBridge;

var culture = CultureInfo.InvariantCulture;
switch (args)
{
    case ["where"]:
        var assembly = typeof(SharedArray<double>).Assembly;
        Console.WriteLine(assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion);
        Console.WriteLine(assembly.Location);
        return 0;
    case ["serve", var name, .. var initial]:
        using (var created = SharedArray<double>.Create(name, initial.Select(x => double.Parse(x, culture)).ToArray()))
        {
            Console.WriteLine("created");
            Console.ReadLine();
            Console.WriteLine(string.Join(" ", created.ToArray().Select(x => x.ToString("R", culture))));
        }
        return 0;
    case ["modify", var name]:
        using (var opened = SharedArray<double>.Open(name))
        using (opened.Lock())
        {
            for (var i = 0; i < opened.Length; i++)
                opened[i] = opened[i] * 2 + 0.25;
        }
        Console.WriteLine("modified");
        return 0;
    default:
        Console.Error.WriteLine("usage: InstallCheck where | serve NAME X... | modify NAME");
        return 2;
}
