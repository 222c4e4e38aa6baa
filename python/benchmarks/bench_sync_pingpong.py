#!/usr/bin/env python3
"""Round-trip latency of an Event ping-pong between two processes, every variant in one run.

  C# <-> Python, sharedbridge Events      (the far side: SharedBridge.Benchmarks pingpong-serve)
  Python <-> Python, sharedbridge Events
  Python <-> Python, multiprocessing.Event (the baseline)
  Python <-> Python, multiprocessing.Pipe  (the baseline)

One round trip: this process sets "ping" and waits for "pong"; the other waits for "ping", clears
it and sets "pong"; this process clears "pong". With a Pipe: send, then recv the echo.
Prints a table (median / p90 / mean microseconds per round trip); --json PATH also writes the
figures. Build first: dotnet build SharedBridge.sln -c Release.

Usage: PYTHONPATH=python python3 python/benchmarks/bench_sync_pingpong.py [--rounds N] [--json PATH]
"""
import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import sharedbridge as sb  # noqa: E402

SERVER = os.path.join(ROOT, "src", "Dotnet", "SharedBridge.Benchmarks", "bin", "Release", "net10.0",
                      "SharedBridge.Benchmarks.dll")
WARMUP = 200


def _serve_events(ping, pong, rounds):
    for _ in range(rounds):
        ping.wait()
        ping.clear()
        pong.set()


def _serve_pipe(conn, rounds):
    for _ in range(rounds):
        conn.send_bytes(conn.recv_bytes())


def _drive_events(ping, pong, rounds):
    times = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        t0 = clock()
        ping.set()
        pong.wait()
        pong.clear()
        times.append(clock() - t0)
    return times[WARMUP:]


def _drive_pipe(conn, rounds):
    times = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        t0 = clock()
        conn.send_bytes(b"x")
        conn.recv_bytes()
        times.append(clock() - t0)
    return times[WARMUP:]


def csharp_python(rounds):
    ping, pong = sb.Event(), sb.Event()
    server = subprocess.Popen(["dotnet", "exec", SERVER, "pingpong-serve", ping.name, pong.name,
                               str(rounds)], stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the C# side did not start")
        return _drive_events(ping, pong, rounds)
    finally:
        if server.wait(60) != 0:
            raise RuntimeError(f"the C# side failed ({server.returncode})")


def python_python(make_events, rounds):
    ctx = multiprocessing.get_context("fork")
    ping, pong = make_events()
    child = ctx.Process(target=_serve_events, args=(ping, pong, rounds))
    child.start()
    try:
        return _drive_events(ping, pong, rounds)
    finally:
        child.join(60)


def python_pipe(rounds):
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_serve_pipe, args=(there, rounds))
    child.start()
    try:
        return _drive_pipe(here, rounds)
    finally:
        child.join(60)


def summary(times):
    ordered = sorted(times)
    return {"median_us": statistics.median(ordered) / 1000,
            "p90_us": ordered[int(len(ordered) * 0.9)] / 1000,
            "mean_us": statistics.fmean(ordered) / 1000, "round_trips": len(ordered)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rounds = args.rounds + WARMUP
    mp = multiprocessing.get_context("fork")
    variants = [
        ("C# <-> Python, sharedbridge Event", lambda: csharp_python(rounds)),
        ("Python <-> Python, sharedbridge Event",
         lambda: python_python(lambda: (sb.Event(), sb.Event()), rounds)),
        ("Python <-> Python, multiprocessing.Event",
         lambda: python_python(lambda: (mp.Event(), mp.Event()), rounds)),
        ("Python <-> Python, multiprocessing.Pipe", lambda: python_pipe(rounds)),
    ]
    results = {}
    for label, run in variants:
        results[label] = summary(run())
    print(f"Event ping-pong round trip, {args.rounds} round trips each "
          f"(Python {platform.python_version()}, {os.cpu_count()} CPUs)")
    print(f"{'variant':45} {'median us':>10} {'p90 us':>10} {'mean us':>10}")
    for label, r in results.items():
        print(f"{label:45} {r['median_us']:10.1f} {r['p90_us']:10.1f} {r['mean_us']:10.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "sync_pingpong", "python": platform.python_version(),
                       "cpus": os.cpu_count(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
