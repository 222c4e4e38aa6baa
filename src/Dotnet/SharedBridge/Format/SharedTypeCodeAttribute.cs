// Public API: namespace SharedBridge, not SharedBridge.Format; the folder names the layer (README.md).
// In Format, not Objects: StructLayoutTable reads it to build the field table.
namespace SharedBridge;

/// <summary>
/// Chooses a non-default typecode for a struct field, for example <c>[SharedTypeCode('c')]</c> on a
/// <c>fixed byte name[16]</c> buffer so that it matches a Python <c>c_char * 16</c> field, or
/// <c>'l'</c> on a <c>long</c> to match <c>c_long</c>. The typecode must accept the field's type
/// (docs/format.md section 3.4).
/// </summary>
[AttributeUsage(AttributeTargets.Field, AllowMultiple = false)]
public sealed class SharedTypeCodeAttribute(char typeCode) : Attribute
{
    /// <summary>The typecode recorded in the field table.</summary>
    public char TypeCode { get; } = typeCode;
}
