using System.Text;
using System.Text.Json;
using SharedBridge.CrossTests.Infrastructure;

namespace SharedBridge.CrossTests;

/// <summary>
/// Reading rules of docs/format.md section 3.4 and the creation mode of section 1.2, across languages:
/// a `u` element that is not a Unicode scalar value is corrupt data for every reader; a `?` byte other
/// than 0 or 1 reads as true everywhere; every writer sets mode 0600 exactly, whatever the umask.
/// </summary>
public sealed class DataRulesTests : CrossTestBase
{
    private static IEnumerable<Driver> Drivers() => [Driver.CSharp, .. Interpreters.All.Select(Driver.Python)];

    public static IEnumerable<TestCaseData> DriverCases() =>
        Drivers().Select(d => new TestCaseData(d.Label).SetName($"{d.Label} follows the reading rules of u and ? elements"));

    [TestCaseSource(nameof(DriverCases))]
    public void NonScalarCharacterIsCorruptDataAndNonZeroBoolIsTrue(string label)
    {
        Driver driver = Driver.ByLabel(label);
        string chars = Shm.NewName();
        using (var arr = SharedArray<Rune>.Create(chars, [new Rune('a'), new Rune('b'), new Rune('c')]))
        {
            WriteRaw(chars, arr.Header.DataOffset + 4, BitConverter.GetBytes(0xD800));
            using JsonDocument r = Read(driver, chars, "u");
            Assert.That(r.RootElement.GetProperty("result").GetString(), Is.EqualTo("corrupt-data"), r.RootElement.ToString());
            WriteRaw(chars, arr.Header.DataOffset + 4, BitConverter.GetBytes(0x110000));
            using JsonDocument r2 = Read(driver, chars, "u");
            Assert.That(r2.RootElement.GetProperty("result").GetString(), Is.EqualTo("corrupt-data"), r2.RootElement.ToString());
            WriteRaw(chars, arr.Header.DataOffset + 4, BitConverter.GetBytes(0x10FFFF));
            using JsonDocument r3 = Read(driver, chars, "u");
            Assert.That(r3.RootElement.GetProperty("values").EnumerateArray().Select(v => v.GetInt32()), Is.EqualTo(new[] { 'a', 0x10FFFF, 'c' }));
        }
        string bools = Shm.NewName();
        using (var arr = SharedArray<bool>.Create(bools, 3))
        {
            WriteRaw(bools, arr.Header.DataOffset + 1, [2]);
            using JsonDocument r = Read(driver, bools, "?");
            Assert.That(r.RootElement.GetProperty("values").EnumerateArray().Select(v => v.GetBoolean()), Is.EqualTo(new[] { false, true, false }));
        }
    }

    public static IEnumerable<TestCaseData> ModeCases() =>
        Drivers().Select(d => new TestCaseData(d.Label).SetName($"{d.Label} creates mode 0600 exactly under umask 0277 and 0000"));

    [TestCaseSource(nameof(ModeCases))]
    public void CreatorSetsTheExactModeWhateverTheUmask(string label)
    {
        Driver driver = Driver.ByLabel(label);
        VectorFile vector = Vectors.ById("array_int_locked");
        foreach (string umask in new[] { "0277", "0000" })
        {
            string name = Shm.NewName();
            try
            {
                var argv = driver.Argv("create", vector.JsonPath, name);
                using var shell = DriverProcess.Start(["/bin/sh", "-c", $"umask {umask} && exec \"$@\"", "sh", .. argv]);
                DriverResult r = shell.WaitForExit(Quick);
                Assert.That(r.ExitCode, Is.Zero, r.Describe());
                Assert.That(File.GetUnixFileMode(Shm.PathOf(name)), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite), $"umask {umask}");
            }
            finally
            {
                Shm.Remove(name);
            }
        }
    }

    private static JsonDocument Read(Driver driver, string name, string typecode)
    {
        DriverResult r = driver.Run(Quick, "worker", "read-elements", name, typecode);
        Assert.That(r.ExitCode, Is.Zero, r.Describe());
        return JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
    }

    private static void WriteRaw(string name, long offset, byte[] bytes)
    {
        using var fs = new FileStream(Shm.PathOf(name), FileMode.Open, FileAccess.Write);
        fs.Seek(offset, SeekOrigin.Begin);
        fs.Write(bytes);
    }
}
