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


WORKLOADS = {
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
    print(f"RESULT\t{args.workload}\tpython {args.loop}\t{value}\t{unit}")
