"""The Python side of the install test (tests/install/test_install.py), run by the interpreter of a
fresh venv that has only the built wheel installed (isolated mode: no PYTHONPATH, no user site,
not the script's folder). Commands (segment values are doubles, typecode 'd'):
  where               sharedbridge.__version__ and sharedbridge.__file__
  serve NAME X...     create Array('d', X...) named NAME, print "created", wait for a line on stdin,
                      print the values it holds then, exit (the creator unlinks NAME)
  modify NAME         attach NAME and, under its lock, set every element x to x * 2 + 0.25
  backend NAME        create Value('q') named NAME, add 1 a thousand times with each of the seeds'
                      idioms (`with v.get_lock(): v.value += 1` and the synchronized `v.value += 1`),
                      print sharedbridge.lock_backend(), the file of the compiled module (or "none")
                      and the value, then close it (the creator unlinks NAME)
  serve-pythonnet NAME X...
                      as serve, but the array is a .NET SharedArray<double> made in this process
                      through pythonnet by sharedbridge.dotnet with the assembly the wheel
                      installed; prints that assembly's file after the values
"""
import sys

import sharedbridge


def main(argv):
    match argv:
        case ["where"]:
            print(sharedbridge.__version__)
            print(sharedbridge.__file__)
        case ["serve", name, *initial]:
            created = sharedbridge.Array("d", [float(x) for x in initial], name=name)
            print("created", flush=True)
            sys.stdin.readline()
            print(" ".join(repr(x) for x in created[:]))
        case ["serve-pythonnet", name, *initial]:
            import sharedbridge.dotnet as sbn
            sb = sbn.load()
            import clr                      # only after load(): it picks the runtime
            created = sbn.create_array("d", [float(x) for x in initial], name=name)
            print("created", flush=True)
            sys.stdin.readline()
            print(" ".join(repr(x) for x in created.ToArray()))
            print(clr.GetClrType(sb.SegmentOptions).Assembly.Location)
        case ["backend", name]:
            from sharedbridge._platform import lock_core
            v = sharedbridge.Value("q", 0, name=name)
            for _ in range(1000):
                with v.get_lock():
                    v.value += 1
            for _ in range(1000):
                v.value += 1
            print(sharedbridge.lock_backend())
            print(lock_core.accel.__file__ if lock_core.accel is not None else "none")
            print(v.value)
            v.get_lock().close()
            v.close()
        case ["modify", name]:
            opened = sharedbridge.attach(name)
            with opened.get_lock():
                for i in range(len(opened)):
                    opened[i] = opened[i] * 2 + 0.25
            print("modified")
        case _:
            print("usage: install_check.py where | serve NAME X... | serve-pythonnet NAME X... | modify NAME | backend NAME",
                  file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
