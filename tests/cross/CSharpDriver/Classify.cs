using System.Text.Json;

namespace SharedBridge.CrossDriver;

/// <summary>classify-batch: opens every name of a manifest and reports the error class, in the words of
/// tests/cross/vectors/invalid (the Python driver's twin is python_driver.classify).</summary>
public static class Classify
{
    public static int Batch(string manifestPath)
    {
        using var manifest = JsonDocument.Parse(File.ReadAllText(manifestPath));
        var root = manifest.RootElement;
        var timeout = TimeSpan.FromSeconds(root.TryGetProperty("timeout", out var t) ? t.GetDouble() : 0.3);
        var classes = new Dictionary<string, string>();
        foreach (var name in root.GetProperty("names").EnumerateArray().Select(n => n.GetString()!))
            classes[name] = Of(name, timeout);
        Json.Emit(new { classes });
        return 0;
    }

    public static string Of(string name, TimeSpan timeout)
    {
        try
        {
            // Only looking (never joining a last-closer segment: the first classifier would remove it);
            // an external lock's segment is then checked by opening (section 6.2 step 7).
            var header = SharedSegment.ReadHeader(name, new OpenOptions { ReadyTimeout = timeout });
            if (header.LockKind == LockKind.External)
                using (SharedSegment.Open(name, timeout)) { }
            return "ok";
        }
        catch (NotASharedBridgeSegmentException) { return "not-sharedbridge"; }
        catch (UnsupportedFormatVersionException) { return "unsupported-version"; }
        catch (CorruptSegmentException) { return "corrupt"; }
        catch (SegmentNotFoundException) { return "not-found"; }
        catch (SegmentAccessDeniedException) { return "permission"; }
        catch (SegmentNotReadyException) { return "initializing"; }
        catch (Exception e) { return $"other:{e.GetType().FullName}: {e.Message}"; }
    }
}
