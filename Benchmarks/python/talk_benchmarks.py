"""The talk's three micro-benchmarks on asyncio and uvloop, measured the same way as the Swift rows:
run-until-complete of a zero sleep, call_soon, call_later(0). Prints RESULT lines like the Swift binary.

usage: python3 talk_benchmarks.py --loop asyncio|uvloop --workload NAME --n N
"""
import argparse
import asyncio
import time


def make_loop(kind):
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_until_complete_sleep0(loop, n):
    start = time.perf_counter_ns()
    for _ in range(n):
        loop.run_until_complete(asyncio.sleep(0))
    return (time.perf_counter_ns() - start) / n


def call_soon(loop, n):
    done = loop.create_future()
    count = 0

    def callback():
        nonlocal count
        count += 1
        if count == n:
            done.set_result(None)

    start = time.perf_counter_ns()
    for _ in range(n):
        loop.call_soon(callback)
    loop.run_until_complete(done)
    return (time.perf_counter_ns() - start) / n


def call_later_zero(loop, n):
    done = loop.create_future()
    count = 0

    def callback():
        nonlocal count
        count += 1
        if count == n:
            done.set_result(None)

    start = time.perf_counter_ns()
    for _ in range(n):
        loop.call_later(0, callback)
    loop.run_until_complete(done)
    return (time.perf_counter_ns() - start) / n


def socketpair_ping_pong(loop, n):
    """One byte each way per round trip over a non-blocking socketpair, both ends driven by
    add_reader callbacks and os.read/os.write (the fastest documented way to get raw descriptor
    readiness on asyncio/uvloop; socket.send/recv cost more per call)."""
    import os
    import socket
    sa, sb = socket.socketpair()
    sa.setblocking(False)
    sb.setblocking(False)
    a, b = sa.fileno(), sb.fileno()
    done = loop.create_future()
    rounds = 0
    start = 0

    def echo():
        os.write(b, os.read(b, 1))

    def pong():
        nonlocal rounds, start
        os.read(a, 1)
        rounds += 1
        if rounds == 100:
            start = time.perf_counter_ns()          # after a warm-up of 100 rounds
        if rounds == n + 100:
            done.set_result((time.perf_counter_ns() - start) / n)
        else:
            os.write(a, b"x")

    loop.add_reader(b, echo)
    loop.add_reader(a, pong)
    os.write(a, b"x")
    result = loop.run_until_complete(done)
    loop.remove_reader(a)
    loop.remove_reader(b)
    sa.close()
    sb.close()
    return result


WORKLOADS = {
    "socketpair-ping-pong": (socketpair_ping_pong, "ns/round-trip"),
    "run-until-complete-sleep0": (run_until_complete_sleep0, "ns/run"),
    "call_soon": (call_soon, "ns/callback"),
    "call_later(0)": (call_later_zero, "ns/callback"),
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", required=True)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args()
    loop = make_loop(args.loop)
    function, unit = WORKLOADS[args.workload]
    value = function(loop, args.n)
    loop.close()
    suffix = " add_reader" if args.workload == "socketpair-ping-pong" else ""
    print(f"RESULT\t{args.workload}\tpython {args.loop}{suffix}\t{value}\t{unit}")
