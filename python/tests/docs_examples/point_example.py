"""The multiprocessing.sharedctypes documentation example (the Point example).

Usage: point_example.py START_METHOD {sb|mp}: sb runs it with sharedbridge in place of
multiprocessing.sharedctypes, mp with the real module (for comparison).
"""
import sys
from multiprocessing import Process, Lock, set_start_method

if sys.argv[2] == "sb":
    from sharedbridge import Value, Array
else:
    from multiprocessing.sharedctypes import Value, Array
from ctypes import Structure, c_double


class Point(Structure):
    _fields_ = [('x', c_double), ('y', c_double)]


def modify(n, x, s, A):
    n.value **= 2
    x.value **= 2
    s.value = s.value.upper()
    for a in A:
        a.x **= 2
        a.y **= 2


if __name__ == '__main__':
    set_start_method(sys.argv[1])
    lock = Lock()

    n = Value('i', 7)
    x = Value(c_double, 1.0/3.0, lock=False)
    s = Array('c', b'hello world', lock=lock)
    A = Array(Point, [(1.875,-6.25), (-5.75,2.0), (2.375,9.5)], lock=lock)

    p = Process(target=modify, args=(n, x, s, A))
    p.start()
    p.join()

    print(n.value)
    print(x.value)
    print(s.value)
    print([(a.x, a.y) for a in A])
