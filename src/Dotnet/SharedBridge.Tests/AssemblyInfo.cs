// SharedBridge runs on Linux only (POSIX shared memory, glibc robust mutexes).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
