"""The 2-process x 50-loop locked increment example (seeds/003).

Usage: increment_example.py START_METHOD {sb|mp}.
"""
import multiprocessing
import sys
import time
import os

if sys.argv[2] == "sb":
    import sharedbridge as shared
else:
    shared = multiprocessing


def increment_array_elements(shared_array, loop_count: int):
    """
    Increments all elements of the shared array for a specified number of loops.
    """
    pid = os.getpid()
    print(f"[Process-{pid}] Started", flush=True)
    for _ in range(loop_count):
        # Iterate through all elements of the array
        for i in range(len(shared_array)):
            # Acquire lock when writing to each element (Exclusive control)
            with shared_array.get_lock():
                shared_array[i] += 1
        # Simulate processing delay
        time.sleep(0.001)
    print(f"[Process-{pid}] Finished", flush=True)


def main():
    # Create shared array: Type is integer ('i'), size is 5 (Initial values: [0, 0, 0, 0, 0])
    shared_arr = shared.Array('i', 5)
    print(f"Initial State: {list(shared_arr)}", flush=True)
    # Run two processes in parallel
    process_count = 2
    loops = 50
    processes = []
    for _ in range(process_count):
        p = multiprocessing.Process(
            target=increment_array_elements,
            args=(shared_arr, loops)
        )
        processes.append(p)
        p.start()
    # Wait for all processes to finish
    for p in processes:
        p.join()
    print("--- All processes completed ---")
    # Display results
    # Expected: 2 processes * 50 loops = 100 per element
    print(f"Final Result: {list(shared_arr)}")
    expected = [process_count * loops] * 5
    if list(shared_arr) == expected:
        print(">> Success: All elements were updated correctly.")
    else:
        print(">> Failure: Data inconsistency occurred.")


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    main()
