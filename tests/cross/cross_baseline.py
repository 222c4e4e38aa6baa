"""The scenarios with the standard library only: the multiprocessing documentation's examples,
run with real multiprocessing.Value/Array and multiprocessing.Process. Their output is the
oracle the mixed C#/Python runs (cross_scenarios.py, CSharpDriver) must reproduce exactly.
"""
import multiprocessing
import time
from ctypes import Structure, c_double
from multiprocessing.sharedctypes import Array, Value

HEAVY_ROUNDS = 20_000  # x 5 elements = 100,000 locked increments per worker


class Point(Structure):
    _fields_ = [("x", c_double), ("y", c_double)]


def modify(n, x, s, A):
    n.value **= 2
    x.value **= 2
    s.value = s.value.upper()
    for a in A:
        a.x **= 2
        a.y **= 2


def sharedctypes_example():
    lock = multiprocessing.Lock()
    n = Value("i", 7)
    x = Value(c_double, 1.0 / 3.0, lock=False)
    s = Array("c", b"hello world", lock=lock)
    A = Array(Point, [(1.875, -6.25), (-5.75, 2.0), (2.375, 9.5)], lock=lock)
    p = multiprocessing.Process(target=modify, args=(n, x, s, A))
    p.start()
    p.join()
    print(n.value)
    print(x.value)
    print(s.value)
    print([(a.x, a.y) for a in A])
    return p.exitcode


def increment_array_elements(shared_array, loop_count, pause):
    for _ in range(loop_count):
        for i in range(len(shared_array)):
            with shared_array.get_lock():
                shared_array[i] += 1
        if pause:
            time.sleep(0.001)


def run_increments(workers, loops, pause):
    shared_arr = Array("i", 5)
    print(f"Initial State: {list(shared_arr)}")
    processes = [multiprocessing.Process(target=increment_array_elements, args=(shared_arr, loops, pause))
                 for _ in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    print("--- All processes completed ---")
    print(f"Final Result: {list(shared_arr)}")
    print(f"Total: {sum(shared_arr)}")
    expected = [workers * loops] * 5
    print(">> Success: All elements were updated correctly." if list(shared_arr) == expected
          else ">> Failure: Data inconsistency occurred.")
    return max(p.exitcode for p in processes)


def compute_part(shared_arr, start_index, end_index, value):
    for i in range(start_index, end_index):
        shared_arr[i] = value


def disjoint():
    arr = Array("i", 10, lock=False)
    p1 = multiprocessing.Process(target=compute_part, args=(arr, 0, 5, 100))
    p2 = multiprocessing.Process(target=compute_part, args=(arr, 5, 10, 200))
    p1.start()
    p2.start()
    p1.join()
    p2.join()
    print(list(arr))
    return max(p1.exitcode, p2.exitcode)


SCENARIOS = {
    "sharedctypes": sharedctypes_example,
    "increment": lambda: run_increments(2, 50, True),
    "heavy": lambda: run_increments(4, HEAVY_ROUNDS, False),
    "disjoint": disjoint,
}


def run(scenario):
    return SCENARIOS[scenario]()
