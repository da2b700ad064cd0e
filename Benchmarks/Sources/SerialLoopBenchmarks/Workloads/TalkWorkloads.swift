import SerialLoop

// The talk's three micro-benchmarks (asyncio / uvloop figures come from python/talk_benchmarks.py,
// run by the same driver): run_until_complete of a zero sleep, call_soon, call_later(0).

let talkBenchmarks: [Benchmark] = [
    Benchmark(workload: "run-until-complete-sleep0", executor: "SerialLoop", unit: "ns/run",
              method: "n × `loop.run(until:)` of a task doing `loop.sleep(for: .zero)`") { n in
        let loop = try Loop()
        let start = ContinuousClock.now
        for _ in 0..<n {
            _ = try loop.run(until: Task<Void, any Error>(executorPreference: loop) { try await loop.sleep(for: .zero) })
        }
        let result = nanoseconds(since: start) / Double(n)
        return result
    },
    Benchmark(workload: "call_soon", executor: "SerialLoop", unit: "ns/callback",
              method: "from a task on the loop, n × `loop.callSoon {}`, until the last ran") { n in
        try withLoop { loop in
            let done = loop.makeFuture(of: Void.self)
            let count = Shared(0)
            let start = ContinuousClock.now
            for _ in 0..<n { loop.callSoon { count.value += 1; if count.value == n { done.succeed(()) } } }
            try await done.value
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "call_later(0)", executor: "SerialLoop", unit: "ns/callback",
              method: "from a task on the loop, n × `loop.schedule(after: .zero) {}`, until the last ran") { n in
        try withLoop { loop in
            let done = loop.makeFuture(of: Void.self)
            let count = Shared(0)
            let start = ContinuousClock.now
            for _ in 0..<n { loop.schedule(after: .zero) { count.value += 1; if count.value == n { done.succeed(()) } } }
            try await done.value
            return nanoseconds(since: start) / Double(n)
        }
    },
]
