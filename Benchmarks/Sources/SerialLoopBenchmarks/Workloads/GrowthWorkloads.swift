@preconcurrency import Glibc
import SerialLoop

// Growth (issue 12 targets): does per-operation cost grow with what else the loop holds?
// - socketpair-growth: the `readable` ping-pong with 10,000 other descriptors registered and idle
//   (5,000 socketpairs, both ends with `loop.addReader(fd) {}`: they sit in epoll and never fire)
//   against the same round trip with none. Raw epoll with the same idle set is the kernel's part.
// - yield-growth: `Task.yield()` ping with 100,000 tasks suspended in `loop.sleep(for: 1 h)`
//   against yield alone.
// Each growth row's ratio to its own baseline row (same workload, "none" / "alone") is what the
// target reads (≤ 1.1×).

let idleDescriptorCount = 10_000
let sleeperCount = 100_000

let growthBenchmarks: [Benchmark] = [
    Benchmark(workload: "socketpair-growth", executor: "SerialLoop readable, no idle fds", unit: "ns/round-trip",
              method: "baseline: the `readable` ping-pong (two tasks on the loop), nothing else registered") { n in
        try withLoop { loop in try await serialLoopPingPong(loop, n, measure: nanosecondsPerRound) }
    },
    Benchmark(workload: "socketpair-growth", executor: "SerialLoop readable, 10k idle fds", unit: "ns/round-trip",
              method: "the same with 10,000 idle descriptors (5,000 socketpairs) registered via `loop.addReader(fd) {}` (RLIMIT_NOFILE raised to its hard limit)") { n in
        let idle = try idleSocketPairs(idleDescriptorCount)
        return try withLoop { loop in
            for fd in idle { try loop.addReader(fd) {} }
            let result = try await serialLoopPingPong(loop, n, measure: nanosecondsPerRound)
            for fd in idle {
                loop.removeReader(fd)
                try loop.close(fd)
            }
            return result
        }
    },
    Benchmark(workload: "socketpair-growth", executor: "raw epoll, no idle fds", unit: "ns/round-trip",
              method: "baseline: raw epoll ping-pong (RawEpoll.swift)") { n in
        rawEpollPingPong(n)
    },
    Benchmark(workload: "socketpair-growth", executor: "raw epoll, 10k idle fds", unit: "ns/round-trip",
              method: "raw epoll with the same 10,000 idle descriptors in its epoll set (the kernel's share of any growth)") { n in
        let idle = try idleSocketPairs(idleDescriptorCount)
        let result = rawEpollPingPong(n, idle: idle)
        for fd in idle { close(fd) }
        return result
    },

    Benchmark(workload: "yield-growth", executor: "SerialLoop, alone", unit: "ns/yield",
              method: "baseline: one task preferring the loop, n × `Task.yield()`, nothing else on the loop") { n in
        try withLoop { loop in try await yieldAmongSleepers(loop, sleepers: 0, n) }
    },
    Benchmark(workload: "yield-growth", executor: "SerialLoop, 100k tasks in loop.sleep", unit: "ns/yield",
              method: "the same with 100,000 other tasks preferring the loop suspended in `loop.sleep(for: 1 h)` (cancelled after the measurement)") { n in
        try withLoop { loop in try await yieldAmongSleepers(loop, sleepers: sleeperCount, n) }
    },
]

/// `count` idle non-blocking descriptors (count/2 socketpairs), after raising RLIMIT_NOFILE's soft
/// limit to its hard limit. Throws `SkipBenchmark` when the process cannot have that many (plus 50
/// for the loop, NIO, stdio and the ping-pong pair).
func idleSocketPairs(_ count: Int) throws -> [Int32] {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
        throw SkipBenchmark(reason: "getrlimit(RLIMIT_NOFILE) failed: errno \(errno)")
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    let needed = count + 50
    guard limit.rlim_cur >= rlim_t(needed) else {
        throw SkipBenchmark(reason: "needs \(needed) descriptors, RLIMIT_NOFILE allows \(limit.rlim_cur) (hard limit \(limit.rlim_max))")
    }
    var fds: [Int32] = []
    fds.reserveCapacity(count)
    while fds.count < count {
        let (a, b) = socketPair()
        fds.append(a)
        fds.append(b)
    }
    return fds
}

/// Starts `sleepers` tasks that sleep an hour on the loop, waits (by yielding, no timing) until all
/// of them have started their sleep, then times `n` yields of this task; cancels them at the end.
func yieldAmongSleepers(_ loop: Loop, sleepers: Int, _ n: Int) async throws -> Double {
    let started = Shared(0)
    let tasks = (0..<sleepers).map { _ in
        Task(executorPreference: loop) {
            started.value += 1
            try await loop.sleep(for: .seconds(3600))
        }
    }
    while started.value < sleepers { await Task.yield() }
    await Task.yield()      // the last starter has reached its sleep
    let result = await yieldPing(n)
    for task in tasks { task.cancel() }
    for task in tasks { _ = try? await task.value }
    return result
}
