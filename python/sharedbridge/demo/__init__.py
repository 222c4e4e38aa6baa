"""The Python side of the .NET tool's demo (`sharedbridge demo`, docs/cli.md), installed with the
package so the installed tool and the installed wheel run it without a checkout:

- ``work``: the work, written once, run over sharedbridge queues and multiprocessing queues;
- ``worker``: one worker next to the C# ones (``python -m sharedbridge.demo.worker``);
- ``baseline``: the same work with the standard library alone (``python -m sharedbridge.demo.baseline``).

Nothing here is imported by the rest of the package.
"""
