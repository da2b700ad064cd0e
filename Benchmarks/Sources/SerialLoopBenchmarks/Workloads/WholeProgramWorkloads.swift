@preconcurrency import Glibc
import SerialLoop

// The whole program on one loop (`Loop.runMain`): plain `Task {}` and default actors, which go to
// the program's default executor — here the loop. Each run is its own process (the driver starts
// one per row), so the process-wide install touches no other row. Compare with the "SerialLoop"
// rows (`withLoop`, tasks that prefer the loop, actors pinned to it) and the floor.

let wholeProgramBenchmarks: [Benchmark] = [
    // A plain Task {} (no executor preference) yielding: its jobs come through the default-executor role.
    Benchmark(workload: "yield", executor: "SerialLoop whole-program", unit: "ns/yield",
              method: "`Loop.runMain` (the loop is the program's default executor): a plain `Task {}`, n × `Task.yield()`") { n in
        try Loop.runMain { _ in await Task { await yieldPing(n) }.value }
    },
    Benchmark(workload: "spawn-await", executor: "SerialLoop whole-program", unit: "ns/task",
              method: "`Loop.runMain`: from a plain task, n × `await Task { i }.value`") { n in
        try Loop.runMain { _ in
            await Task {
                let start = ContinuousClock.now
                for i in 0..<n { _ = await Task { i }.value }
                return nanoseconds(since: start) / Double(n)
            }.value
        }
    },
    // Tasks without an executor preference waiting on descriptors: each executor switch skips the
    // runtime's preferred-executor lookup under the task's status lock.
    Benchmark(workload: "socketpair-ping-pong", executor: "SerialLoop whole-program", unit: "ns/round-trip",
              method: "`Loop.runMain`: two plain tasks (no preference), each side `await loop.readable(fd)` then `read`/`write` one byte") { n in
        try Loop.runMain { loop in
            try await Task { try await wholeProgramPingPong(loop, n) }.value
        }
    },
    // Default actors (no custom executor), called from a plain Task {}.
    Benchmark(workload: "actor-ping-pong", executor: "SerialLoop whole-program", unit: "ns/call",
              method: "`Loop.runMain`: two default actors, started from a plain task (no preference)") { n in
        try Loop.runMain { _ in
            await Task {
                let pinger = DefaultPinger(), ponger = DefaultPonger()
                let start = ContinuousClock.now
                _ = await pinger.run(n, against: ponger)
                return nanoseconds(since: start) / Double(n)
            }.value
        }
    },
]

/// `serialLoopPingPong` with plain tasks: the echo is a `Task {}`, the measuring side a plain task too.
func wholeProgramPingPong(_ loop: Loop, _ n: Int) async throws -> Double {
    let (a, b) = socketPair()
    let echo = Task {
        var byte: UInt8 = 0
        for _ in 0..<n + 100 {
            try await loop.readable(b)
            _ = read(b, &byte, 1)
            _ = write(b, &byte, 1)
        }
    }
    var byte: UInt8 = 1
    func round() async throws {
        _ = write(a, &byte, 1)
        try await loop.readable(a)
        _ = read(a, &byte, 1)
    }
    for _ in 0..<100 { try await round() }      // warm-up: registrations and buffers in place
    let start = ContinuousClock.now
    for _ in 0..<n { try await round() }
    let result = nanoseconds(since: start) / Double(n)
    try await echo.value
    try loop.close(a)
    try loop.close(b)
    return result
}
