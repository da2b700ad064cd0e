@preconcurrency import Glibc
import SerialLoop

// What observing the loop costs (issue 13): the yield, spawn, schedule+cancel and socketpair rows
// with a no-op instrument installed, and with debug mode on. The plain SerialLoop rows measure the
// always-on metrics; compare them with a build of SerialLoop with `-DSERIALLOOP_NO_METRICS`.

/// An instrument whose hooks do nothing: what the hook calls and the per-job timing cost.
final class NoOpInstrument: LoopInstrument {}

private func observed(_ loop: Loop, _ how: String) {
    switch how {
    case "instrument": loop.addInstrument(NoOpInstrument())
    case "debug": loop.debug = LoopDebugOptions(slowJobThreshold: .seconds(10), sink: { _ in })
    default: break
    }
}

let observabilityBenchmarks: [Benchmark] = ["instrument", "debug"].flatMap { how -> [Benchmark] in
    let executor = how == "instrument" ? "SerialLoop + no-op instrument" : "SerialLoop + debug mode"
    return [
        Benchmark(workload: "yield", executor: executor, unit: "ns/yield",
              method: "the SerialLoop row with a no-op `LoopInstrument` installed, or debug mode on") { n in
            try withLoop { loop in
                observed(loop, how)
                return await yieldPing(n)
            }
        },
        Benchmark(workload: "spawn-await", executor: executor, unit: "ns/task",
              method: "the SerialLoop row with a no-op `LoopInstrument` installed, or debug mode on") { n in
            try withLoop { loop in
                observed(loop, how)
                let start = ContinuousClock.now
                for i in 0..<n { _ = await Task(executorPreference: loop) { i }.value }
                return nanoseconds(since: start) / Double(n)
            }
        },
        Benchmark(workload: "schedule-cancel", executor: executor, unit: "ns/op",
              method: "the SerialLoop row with a no-op `LoopInstrument` installed, or debug mode on") { n in
            try withLoop { loop in
                observed(loop, how)
                let start = ContinuousClock.now
                for _ in 0..<n { loop.schedule(after: .seconds(3600)) {}.cancel() }
                return nanoseconds(since: start) / Double(n)
            }
        },
        Benchmark(workload: "socketpair-ping-pong", executor: executor, unit: "ns/round-trip",
              method: "the SerialLoop `readable` row with a no-op `LoopInstrument` installed, or debug mode on") { n in
            try withLoop { loop in
                observed(loop, how)
                return try await serialLoopPingPong(loop, n, measure: nanosecondsPerRound)
            }
        },
    ]
}
