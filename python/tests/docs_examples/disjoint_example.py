"""The lock=False disjoint-ranges example (seeds/003, "Advanced Application").

Usage: disjoint_example.py START_METHOD {sb|mp}.
"""
import multiprocessing
import sys

if sys.argv[2] == "sb":
    import sharedbridge as shared
else:
    shared = multiprocessing


def compute_part(shared_arr, start_index, end_index, value):
    """
    Modify only the assigned index range (No lock needed as indices don't overlap)
    """
    for i in range(start_index, end_index):
        shared_arr[i] = value


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    # Disable locking for higher speed (Use carefully)
    size = 10
    arr = shared.Array('i', size, lock=False)
    # Process 1 handles the first 5 elements, Process 2 handles the last 5
    p1 = multiprocessing.Process(target=compute_part, args=(arr, 0, 5, 100))
    p2 = multiprocessing.Process(target=compute_part, args=(arr, 5, 10, 200))
    p1.start()
    p2.start()
    p1.join()
    p2.join()
    print(list(arr))
    # Result: [100, 100, 100, 100, 100, 200, 200, 200, 200, 200]
