"""What the operating system provides: named segments created, opened, mapped and
unlinked (segment), the process-shared robust pthread mutex (robust_mutex), /proc facts
about processes (process_info) and unlinking this process's segments when it ends by a
signal (exit_cleanup); the .NET library's Platform folder holds the same. Imports
_format, sharedbridge.errors and the standard library, never _objects or the public
package. scripts/check_python_layers.py enforces it.
"""
