namespace SharedBridge;

/// <summary>Placeholder.</summary>
public static class Placeholder { }
