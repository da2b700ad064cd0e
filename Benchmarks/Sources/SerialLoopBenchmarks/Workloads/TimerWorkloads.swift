import NIOCore
import NIOPosix
import SerialLoop

// Timer workloads: fire, schedule + cancel, cost growth with pending timers, Task.sleep in many tasks.

let timerBenchmarks: [Benchmark] = [
    // MARK: n timers scheduled and fired (deadlines spread over 1 ms); process CPU time per timer
    Benchmark(workload: "timers-fire", executor: "SerialLoop", unit: "CPU ns/timer",
              method: "from a task on the loop, n × `loop.schedule(after:)` (deadlines spread over 1 ms), process CPU until the last fires") { n in
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
    Benchmark(workload: "timers-fire", executor: "floor", unit: "CPU ns/timer",
              method: "FloorTimers.swift: a slot heap with in-place cancel, fired by a plain loop (clock read, fire due, `clock_nanosleep` to the next deadline); no tasks") { n in
        floorTimersFire(n)
    },
    Benchmark(workload: "timers-fire", executor: "NIO scheduleTask", unit: "CPU ns/timer",
              method: "inside one `eventLoop.execute`, n × `scheduleTask(in:)` with the same deadlines; process CPU") { n in
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
    Benchmark(workload: "timers-fire", executor: "NIO scheduleCallback", unit: "CPU ns/timer",
              method: "inside one `eventLoop.execute`, n × `eventLoop.scheduleCallback(in:handler:)` with one reused Sendable handler; process CPU") { n in
        let cpu = processCPUNanoseconds()
        try onNIOThread { promise in
            let handler = CountingHandler(counter: Shared(0), target: n, promise: promise)
            let loop = nioLoop      // the protocol method: faster than the isolated view (schedule-cancel)
            for i in 0..<n {
                _ = try! loop.scheduleCallback(in: .nanoseconds(Int64(i % 1000 * 1000)), handler: handler)
            }
        }
        return (processCPUNanoseconds() - cpu) / Double(n)
    },

    // MARK: n × (schedule a timer an hour out, cancel it), nothing else pending
    Benchmark(workload: "schedule-cancel", executor: "SerialLoop", unit: "ns/op",
              method: "from a task on the loop, n × `loop.schedule(after: 1 h) {}.cancel()`") { n in
        try withLoop { loop in
            let start = ContinuousClock.now
            for _ in 0..<n { loop.schedule(after: .seconds(3600)) {}.cancel() }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "schedule-cancel", executor: "floor", unit: "ns/op",
              method: "FloorTimers.swift from a task on the one-object floor: n × (`schedule(after: 1 h) {}`: one clock read, heap push; `cancel`: in-place heap removal)") { n in
        try floorScheduleCancel(n)
    },
    Benchmark(workload: "schedule-cancel", executor: "NIO scheduleTask", unit: "ns/op",
              method: "inside one `eventLoop.execute`, n × `scheduleTask(in: 1 h) {}.cancel()`") { n in
        try onNIOThreadTimed(n) { _ in nioLoop.scheduleTask(in: .hours(1)) {}.cancel() }
    },
    // NIO at its best (issue 12): the loop entered once (all n operations inside one
    // `eventLoop.execute`), one Sendable handler made once and reused, and the `EventLoop` protocol
    // method. The isolated view (`assumeIsolated().scheduleCallback`) is slower: it wraps every
    // handler with the loop (`LoopBoundScheduledCallbackHandlerWrapper`, an existential too big to
    // store inline), measured ~2x here — kept as its own, labelled row.
    Benchmark(workload: "schedule-cancel", executor: "NIO scheduleCallback", unit: "ns/op",
              method: "inside one `eventLoop.execute`: one reused Sendable handler, n × `eventLoop.scheduleCallback(in: 1 h, handler:)` then `.cancel()`") { n in
        try nioScheduleCancel(n)
    },
    Benchmark(workload: "schedule-cancel", executor: "NIO scheduleCallback (isolated view)", unit: "ns/op",
              method: "the same through `let l = eventLoop.assumeIsolated()` (taken once): n × `l.scheduleCallback(in: 1 h, handler:)` then `.cancel()` (wraps each handler: slower)") { n in
        try nioScheduleCancelIsolated(n)
    },

    // MARK: the same schedule + cancel with 1k or 1M other timers pending (deadlines spread out)
    Benchmark(workload: "timer-op-1k-pending", executor: "SerialLoop", unit: "ns/op",
              method: "schedule + cancel from a task on the loop while 1k other timers wait") { n in
        try serialLoopTimerOp(pending: 1_000, n)
    },
    Benchmark(workload: "timer-op-1M-pending", executor: "SerialLoop", unit: "ns/op",
              method: "schedule + cancel from a task on the loop while 1M other timers wait") { n in
        try serialLoopTimerOp(pending: 1_000_000, n)
    },
    Benchmark(workload: "timer-op-1k-pending", executor: "NIO scheduleCallback", unit: "ns/op",
              method: "inside one `eventLoop.execute`, reused Sendable handler, `eventLoop.scheduleCallback` + `.cancel()` while 1k other callbacks wait") { n in
        try nioTimerOp(pending: 1_000, n)
    },
    Benchmark(workload: "timer-op-1M-pending", executor: "NIO scheduleCallback", unit: "ns/op",
              method: "inside one `eventLoop.execute`, reused Sendable handler, `eventLoop.scheduleCallback` + `.cancel()` while 1M other callbacks wait (NIO cancels by linear search: fewer ops)") { n in
        try nioTimerOp(pending: 1_000_000, n)
    },

    // MARK: Task.sleep(1 ms) in n separate tasks, all started at once; wall ns per task
    Benchmark(workload: "task-sleep-100k", executor: "SerialLoop", unit: "ns/task",
              method: "n tasks preferring the loop, each `Task.sleep(for: 1 ms)` (the loop's own timers), awaited in order") { n in
        try withLoop { loop in
            let start = ContinuousClock.now
            let tasks = (0..<n).map { _ in Task(executorPreference: loop) { try await Task.sleep(for: .milliseconds(1)) } }
            for task in tasks { try await task.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "task-sleep-100k", executor: "default", unit: "ns/task",
              method: "n plain tasks on the global executor, each `Task.sleep(for: 1 ms)`") { n in
        try onDefaultExecutor {
            let start = ContinuousClock.now
            let tasks = (0..<n).map { _ in Task { try await Task.sleep(for: .milliseconds(1)) } }
            for task in tasks { try await task.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "task-sleep-100k", executor: "NIO", unit: "ns/task",
              method: "n `@NIOActor` tasks, each `Task.sleep(for: 1 ms)` (NIO is no SchedulingExecutor: Dispatch timers, resumed on NIO's loop)") { n in
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
    let result = Shared(0.0)
    try onNIOThread { promise in
        let loop = nioLoop          // the protocol method: faster than the isolated view (see above)
        let handler = NoopHandler()
        for i in 0..<pending { _ = try! loop.scheduleCallback(in: .seconds(farDeadlineSeconds(i)), handler: handler) }
        let start = ContinuousClock.now
        for i in 0..<n { try! loop.scheduleCallback(in: .seconds(farDeadlineSeconds(i)), handler: handler).cancel() }
        result.value = nanoseconds(since: start) / Double(n)
        promise.succeed(())
    }
    return result.value
}

/// NIO schedule + cancel at its best: one `execute` for all n operations, one Sendable handler,
/// the `EventLoop` protocol method.
func nioScheduleCancel(_ n: Int) throws -> Double {
    let result = Shared(0.0)
    try onNIOThread { promise in
        let loop = nioLoop
        let handler = NoopHandler()
        let start = ContinuousClock.now
        for _ in 0..<n { try! loop.scheduleCallback(in: .hours(1), handler: handler).cancel() }
        result.value = nanoseconds(since: start) / Double(n)
        promise.succeed(())
    }
    return result.value
}

/// The same through the isolated view, taken once (no Sendable requirement on the handler, but
/// NIO wraps each handler with the loop).
func nioScheduleCancelIsolated(_ n: Int) throws -> Double {
    let result = Shared(0.0)
    try onNIOThread { promise in
        let loop = nioLoop.assumeIsolated()
        let handler = NoopHandler()
        let start = ContinuousClock.now
        for _ in 0..<n { try! loop.scheduleCallback(in: .hours(1), handler: handler).cancel() }
        result.value = nanoseconds(since: start) / Double(n)
        promise.succeed(())
    }
    return result.value
}
