"""The binary contract of docs/format.md, with no operating system in it: encoding,
decoding and validating the segment header (header), the one builder of a new
header (header_spec), the field table <-> ctypes
Structure layout (struct_layout), the typecodes (typecodes) and the segment-name rules
(segment_name); the .NET library's Format folder holds the same. The bottom layer above
sharedbridge.errors: imports only errors and the standard library.
scripts/check_python_layers.py enforces it.
"""
