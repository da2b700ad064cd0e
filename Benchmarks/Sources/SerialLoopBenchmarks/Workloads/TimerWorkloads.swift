import NIOCore
import NIOPosix
import SerialLoop

// Timer workloads: fire, schedule + cancel, cost growth with pending timers, Task.sleep in many tasks.

let timerBenchmarks: [Benchmark] = [
    // MARK: n timers scheduled and fired (deadlines spread over 1 ms); process CPU time per timer
    Benchmark(workload: "timers-fire", executor: "SerialLoop", unit: "CPU ns/timer") { n in
        try withLoop { loop in
            let done = loop.makeFuture(of: Void.self)
            let fired = Shared(0)
            let cpu = processCPUNanoseconds()
            for i in 0..<n {
                loop.schedule(after: .nanoseconds(i % 1000 * 1000)) {
                    fired.value += 1
                    if fired.value == n { done.succeed(()) }
                }
            }
            try await done.value
            return (processCPUNanoseconds() - cpu) / Double(n)
        }
    },
    Benchmark(workload: "timers-fire", executor: "NIO scheduleTask", unit: "CPU ns/timer") { n in
        let cpu = processCPUNanoseconds()
        try onNIOThread { promise in
            let fired = Shared(0)
            for i in 0..<n {
                nioLoop.scheduleTask(in: .nanoseconds(Int64(i % 1000 * 1000))) {
                    fired.value += 1
                    if fired.value == n { promise.succeed(()) }
                }
            }
        }
        return (processCPUNanoseconds() - cpu) / Double(n)
    },
    Benchmark(workload: "timers-fire", executor: "NIO scheduleCallback", unit: "CPU ns/timer") { n in
        let cpu = processCPUNanoseconds()
        try onNIOThread { promise in
            let handler = CountingHandler(counter: Shared(0), target: n, promise: promise)
            for i in 0..<n {
                _ = try! nioLoop.assumeIsolated().scheduleCallback(in: .nanoseconds(Int64(i % 1000 * 1000)), handler: handler)
            }
        }
        return (processCPUNanoseconds() - cpu) / Double(n)
    },

    // MARK: n × (schedule a timer an hour out, cancel it), nothing else pending
    Benchmark(workload: "schedule-cancel", executor: "SerialLoop", unit: "ns/op") { n in
        try withLoop { loop in
            let start = ContinuousClock.now
            for _ in 0..<n { loop.schedule(after: .seconds(3600)) {}.cancel() }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "schedule-cancel", executor: "NIO scheduleTask", unit: "ns/op") { n in
        try onNIOThreadTimed(n) { _ in nioLoop.scheduleTask(in: .hours(1)) {}.cancel() }
    },
    Benchmark(workload: "schedule-cancel", executor: "NIO scheduleCallback", unit: "ns/op") { n in
        try onNIOThreadTimed(n) { _ in
            try! nioLoop.assumeIsolated().scheduleCallback(in: .hours(1), handler: NoopHandler()).cancel()
        }
    },

    // MARK: the same schedule + cancel with 1k or 1M other timers pending (deadlines spread out)
    Benchmark(workload: "timer-op-1k-pending", executor: "SerialLoop", unit: "ns/op") { n in
        try serialLoopTimerOp(pending: 1_000, n)
    },
    Benchmark(workload: "timer-op-1M-pending", executor: "SerialLoop", unit: "ns/op") { n in
        try serialLoopTimerOp(pending: 1_000_000, n)
    },
    Benchmark(workload: "timer-op-1k-pending", executor: "NIO scheduleCallback", unit: "ns/op") { n in
        try nioTimerOp(pending: 1_000, n)
    },
    Benchmark(workload: "timer-op-1M-pending", executor: "NIO scheduleCallback", unit: "ns/op") { n in
        try nioTimerOp(pending: 1_000_000, n)
    },

    // MARK: Task.sleep(1 ms) in n separate tasks, all started at once; wall ns per task
    Benchmark(workload: "task-sleep-100k", executor: "SerialLoop", unit: "ns/task") { n in
        try withLoop { loop in
            let start = ContinuousClock.now
            let tasks = (0..<n).map { _ in Task(executorPreference: loop) { try await Task.sleep(for: .milliseconds(1)) } }
            for task in tasks { try await task.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "task-sleep-100k", executor: "default", unit: "ns/task") { n in
        try onDefaultExecutor {
            let start = ContinuousClock.now
            let tasks = (0..<n).map { _ in Task { try await Task.sleep(for: .milliseconds(1)) } }
            for task in tasks { try await task.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "task-sleep-100k", executor: "NIO", unit: "ns/task") { n in
        try onNIO {
            let start = ContinuousClock.now
            let tasks = (0..<n).map { _ in Task { @NIOActor in try await Task.sleep(for: .milliseconds(1)) } }
            for task in tasks { try await task.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
]

/// Spread deadlines: an hour out plus up to ~28 hours, so new timers land all over the heap.
func farDeadlineSeconds(_ i: Int) -> Int64 { Int64(3600 + i % 100_000) }

func serialLoopTimerOp(pending: Int, _ n: Int) throws -> Double {
    try withLoop { loop in
        let handles = (0..<pending).map { i in loop.schedule(after: .seconds(farDeadlineSeconds(i))) {} }
        let start = ContinuousClock.now
        for i in 0..<n { loop.schedule(after: .seconds(farDeadlineSeconds(i))) {}.cancel() }
        let result = nanoseconds(since: start) / Double(n)
        for handle in handles { handle.cancel() }
        return result
    }
}

/// NIO removes a cancelled timer with a linear search of its heap (`removeFirst(where:)`), so the
/// pending timers are left in place: the process exits right after the measurement.
func nioTimerOp(pending: Int, _ n: Int) throws -> Double {
    try onNIOThreadTimed(n, setUp: {
        let loop = nioLoop.assumeIsolated()
        for i in 0..<pending { _ = try! loop.scheduleCallback(in: .seconds(farDeadlineSeconds(i)), handler: NoopHandler()) }
    }) { i in
        try! nioLoop.assumeIsolated().scheduleCallback(in: .seconds(farDeadlineSeconds(i)), handler: NoopHandler()).cancel()
    }
}
