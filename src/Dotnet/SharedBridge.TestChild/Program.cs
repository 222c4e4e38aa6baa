// Helper process for the xunit suite: `dotnet exec SharedBridge.TestChild.dll <command> ARGS...`
// (the commands are in ChildCommands.cs; TestSupport.cs's Child starts and reads it).
using SharedBridge.TestChild;

return ChildCommands.Run(args);
