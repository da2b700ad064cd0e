@preconcurrency import Glibc
import CBenchmarkShims
import NIOCore
import NIOPosix
import SerialLoop
import Synchronization

// Every benchmark returns nanoseconds per operation (wall clock) unless its unit says otherwise.

nonisolated(unsafe) let benchmarks: [Benchmark] = [
    // MARK: yield ping: 1 task, n × `await Task.yield()`
    Benchmark(workload: "yield", executor: "SerialLoop", unit: "ns/yield") { n in
        try withLoop { _ in
            let start = ContinuousClock.now
            for _ in 0..<n { await Task.yield() }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "yield", executor: "floor", unit: "ns/yield") { n in
        try Floor.run { _ in
            let start = ContinuousClock.now
            for _ in 0..<n { await Task.yield() }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "yield", executor: "default", unit: "ns/yield") { n in
        try onDefaultExecutor {
            let start = ContinuousClock.now
            for _ in 0..<n { await Task.yield() }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "yield", executor: "NIO", unit: "ns/yield") { n in
        try onDefaultExecutor { await NIOWorker().yieldLoop(n) }
    },

    // MARK: spawn + await a child task
    Benchmark(workload: "spawn-await", executor: "SerialLoop", unit: "ns/task") { n in
        try withLoop { loop in
            let start = ContinuousClock.now
            for i in 0..<n { _ = await Task(executorPreference: loop) { i }.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "spawn-await", executor: "floor", unit: "ns/task") { n in
        try Floor.run { floor in
            let start = ContinuousClock.now
            for i in 0..<n { _ = await Task(executorPreference: floor) { i }.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "spawn-await", executor: "default", unit: "ns/task") { n in
        try onDefaultExecutor {
            let start = ContinuousClock.now
            for i in 0..<n { _ = await Task { i }.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "spawn-await", executor: "NIO", unit: "ns/task") { n in
        try onNIO {
            let start = ContinuousClock.now
            for i in 0..<n { _ = await Task { @NIOActor in i }.value }
            return nanoseconds(since: start) / Double(n)
        }
    },

    // MARK: actor ping-pong: two actors on one executor, n calls
    Benchmark(workload: "actor-ping-pong", executor: "SerialLoop", unit: "ns/call") { n in
        try withLoop { loop in
            let pinger = Pinger(loop.asUnownedSerialExecutor()), ponger = Ponger(loop.asUnownedSerialExecutor())
            let start = ContinuousClock.now
            _ = await pinger.run(n, against: ponger)
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "actor-ping-pong", executor: "floor", unit: "ns/call") { n in
        try Floor.run { floor in
            let pinger = Pinger(floor.asUnownedSerialExecutor()), ponger = Ponger(floor.asUnownedSerialExecutor())
            let start = ContinuousClock.now
            _ = await pinger.run(n, against: ponger)
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "actor-ping-pong", executor: "default", unit: "ns/call") { n in
        try onDefaultExecutor {
            let pinger = DefaultPinger(), ponger = DefaultPonger()
            let start = ContinuousClock.now
            _ = await pinger.run(n, against: ponger)
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "actor-ping-pong", executor: "NIO", unit: "ns/call") { n in
        try onDefaultExecutor {
            let executor = nioLoop.executor.asUnownedSerialExecutor()
            let pinger = Pinger(executor), ponger = Ponger(executor)
            let start = ContinuousClock.now
            _ = await pinger.run(n, against: ponger)
            return nanoseconds(since: start) / Double(n)
        }
    },

    // MARK: n timers scheduled and fired (deadlines spread over 1 ms); CPU time per timer
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

    // MARK: n × (schedule a timer an hour out, cancel it)
    Benchmark(workload: "schedule-cancel", executor: "SerialLoop", unit: "ns/op") { n in
        try withLoop { loop in
            let start = ContinuousClock.now
            for _ in 0..<n { loop.schedule(after: .seconds(3600)) {}.cancel() }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "schedule-cancel", executor: "NIO scheduleTask", unit: "ns/op") { n in
        let result = Shared(0.0)
        try onNIOThread { promise in
            let start = ContinuousClock.now
            for _ in 0..<n { nioLoop.scheduleTask(in: .hours(1)) {}.cancel() }
            result.value = nanoseconds(since: start) / Double(n)
            promise.succeed(())
        }
        return result.value
    },
    Benchmark(workload: "schedule-cancel", executor: "NIO scheduleCallback", unit: "ns/op") { n in
        let result = Shared(0.0)
        try onNIOThread { promise in
            let start = ContinuousClock.now
            for _ in 0..<n { try! nioLoop.assumeIsolated().scheduleCallback(in: .hours(1), handler: NoopHandler()).cancel() }
            result.value = nanoseconds(since: start) / Double(n)
            promise.succeed(())
        }
        return result.value
    },

    // MARK: timer cost with many timers pending: schedule + cancel with 1k or 1M others waiting
    Benchmark(workload: "timer-op-1k-pending", executor: "SerialLoop", unit: "ns/op") { n in
        try timerOpCost(pending: 1_000, n)
    },
    Benchmark(workload: "timer-op-1M-pending", executor: "SerialLoop", unit: "ns/op") { n in
        try timerOpCost(pending: 1_000_000, n)
    },

    // MARK: Task.sleep(1 ms) in n separate tasks
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

    // MARK: socketpair ping-pong: one byte each way per round trip
    Benchmark(workload: "socketpair-ping-pong", executor: "SerialLoop", unit: "ns/round-trip") { n in
        try withLoop { loop in
            let (a, b) = socketPair()
            let echo = Task(executorPreference: loop) {
                var byte: UInt8 = 0
                for _ in 0..<n {
                    try await loop.readable(b)
                    _ = read(b, &byte, 1)
                    _ = write(b, &byte, 1)
                }
            }
            var byte: UInt8 = 1
            let start = ContinuousClock.now
            for _ in 0..<n {
                _ = write(a, &byte, 1)
                try await loop.readable(a)
                _ = read(a, &byte, 1)
            }
            let result = nanoseconds(since: start) / Double(n)
            try await echo.value
            try loop.close(a)
            try loop.close(b)
            return result
        }
    },
    Benchmark(workload: "socketpair-ping-pong", executor: "raw epoll", unit: "ns/round-trip") { n in
        rawEpollPingPong(n)
    },

    // MARK: two producer threads enqueue n callbacks in total; ns per callback until all ran
    Benchmark(workload: "cross-thread-enqueue", executor: "SerialLoop", unit: "ns/job") { n in
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let loop = thread.loop
        let done = Mutex(false), ran = Shared(0)
        let start = ContinuousClock.now
        let producers = (0..<2).map { _ in
            startThread {
                for _ in 0..<n / 2 {
                    loop.execute { ran.value += 1; if ran.value == n / 2 * 2 { done.withLock { $0 = true } } }
                }
            }
        }
        for producer in producers { pthread_join(producer, nil) }
        while !done.withLock({ $0 }) { sched_yield() }
        return nanoseconds(since: start) / Double(n / 2 * 2)
    },
    Benchmark(workload: "cross-thread-enqueue", executor: "floor", unit: "ns/job") { n in
        let floorBox = Latch<Floor>()
        let done = Mutex(false), ran = Shared(0)
        let runner = startThread {
            let floor = Floor()
            floorBox.fulfil(floor)
            floor.run()
        }
        let floor = floorBox.wait()
        let start = ContinuousClock.now
        let producers = (0..<2).map { _ in
            startThread {
                for _ in 0..<n / 2 {
                    floor.executeFromAnyThread { ran.value += 1; if ran.value == n / 2 * 2 { done.withLock { $0 = true } } }
                }
            }
        }
        for producer in producers { pthread_join(producer, nil) }
        while !done.withLock({ $0 }) { sched_yield() }
        let result = nanoseconds(since: start) / Double(n / 2 * 2)
        floor.executeFromAnyThread { floor.finished = true }
        pthread_join(runner, nil)
        return result
    },
    Benchmark(workload: "cross-thread-enqueue", executor: "NIO", unit: "ns/job") { n in
        let done = Mutex(false), ran = Shared(0)
        let start = ContinuousClock.now
        let producers = (0..<2).map { _ in
            startThread {
                for _ in 0..<n / 2 {
                    nioLoop.execute { ran.value += 1; if ran.value == n / 2 * 2 { done.withLock { $0 = true } } }
                }
            }
        }
        for producer in producers { pthread_join(producer, nil) }
        while !done.withLock({ $0 }) { sched_yield() }
        return nanoseconds(since: start) / Double(n / 2 * 2)
    },

    // MARK: memory per sleeping task (RSS growth / n)
    Benchmark(workload: "memory-per-sleeper", executor: "SerialLoop loop.sleep", unit: "bytes/task") { n in
        try withLoop { loop in
            let before = residentBytes()
            let tasks = (0..<n).map { _ in Task(executorPreference: loop) { try await loop.sleep(for: .seconds(3600)) } }
            try await loop.sleep(for: .milliseconds(1))        // every task is now asleep
            let perTask = (residentBytes() - before) / Double(n)
            for task in tasks { task.cancel() }
            return perTask
        }
    },
    Benchmark(workload: "memory-per-sleeper", executor: "SerialLoop Task.sleep", unit: "bytes/task") { n in
        try withLoop { loop in
            let before = residentBytes()
            let tasks = (0..<n).map { _ in Task(executorPreference: loop) { try await Task.sleep(for: .seconds(3600)) } }
            try await loop.sleep(for: .milliseconds(1))
            let perTask = (residentBytes() - before) / Double(n)
            for task in tasks { task.cancel() }
            return perTask
        }
    },
    Benchmark(workload: "memory-per-sleeper", executor: "default Task.sleep", unit: "bytes/task") { n in
        try onDefaultExecutor {
            let before = residentBytes()
            let tasks = (0..<n).map { _ in Task { try await Task.sleep(for: .seconds(3600)) } }
            try await Task.sleep(for: .milliseconds(200))
            let perTask = (residentBytes() - before) / Double(n)
            for task in tasks { task.cancel() }
            return perTask
        }
    },

    // MARK: heap allocations per same-thread enqueue (one preallocated closure, n executes)
    Benchmark(workload: "allocations-per-enqueue", executor: "SerialLoop", unit: "allocs/enqueue") { n in
        try withLoop { loop in
            let done = loop.makeFuture(of: Void.self)
            let count = Shared(0)
            let callback: @Sendable () -> Void = { count.value += 1; if count.value == n { done.succeed(()) } }
            // Warm up: let the ready queue grow to size first (growth is amortised, not per enqueue).
            for _ in 0..<n { loop.execute {} }
            try await loop.sleep(for: .zero)
            bench_reset_allocation_count()
            bench_count_allocations(1)
            for _ in 0..<n { loop.execute(callback) }
            bench_count_allocations(0)
            let allocations = Double(bench_allocation_count())
            try await done.value
            return allocations / Double(n)
        }
    },
    Benchmark(workload: "allocations-per-enqueue", executor: "NIO", unit: "allocs/enqueue") { n in
        let result = Shared(0.0)
        try onNIOThread { promise in
            let callback: @Sendable () -> Void = {}
            for _ in 0..<n { nioLoop.execute {} }
            bench_reset_allocation_count()
            bench_count_allocations(1)
            for _ in 0..<n { nioLoop.execute(callback) }
            bench_count_allocations(0)
            result.value = Double(bench_allocation_count()) / Double(n)
            nioLoop.execute { promise.succeed(()) }
        }
        return result.value
    },

    // MARK: the talk's three (asyncio / uvloop figures come from python/talk_benchmarks.py)
    Benchmark(workload: "run-until-complete-sleep0", executor: "SerialLoop", unit: "ns/run") { n in
        let loop = try Loop()
        let start = ContinuousClock.now
        for _ in 0..<n {
            _ = try loop.run(until: Task<Void, any Error>(executorPreference: loop) { try await loop.sleep(for: .zero) })
        }
        let result = nanoseconds(since: start) / Double(n)
        return result
    },
    Benchmark(workload: "call_soon", executor: "SerialLoop", unit: "ns/callback") { n in
        try withLoop { loop in
            let done = loop.makeFuture(of: Void.self)
            let count = Shared(0)
            let start = ContinuousClock.now
            for _ in 0..<n { loop.callSoon { count.value += 1; if count.value == n { done.succeed(()) } } }
            try await done.value
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "call_later(0)", executor: "SerialLoop", unit: "ns/callback") { n in
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

/// Schedule + cancel one timer while `pending` others wait (deadlines spread, far in the future).
func timerOpCost(pending: Int, _ n: Int) throws -> Double {
    try withLoop { loop in
        var handles: [ScheduledCallback] = []
        handles.reserveCapacity(pending)
        for i in 0..<pending { handles.append(loop.schedule(after: .seconds(3600 + i % 100_000)) {}) }
        let start = ContinuousClock.now
        for i in 0..<n { loop.schedule(after: .seconds(3600 + i % 100_000)) {}.cancel() }
        let result = nanoseconds(since: start) / Double(n)
        for handle in handles { handle.cancel() }
        return result
    }
}

/// The physical limit: one thread, epoll, two descriptors, no executor, no tasks.
func rawEpollPingPong(_ rounds: Int) -> Double {
    let (a, b) = socketPair()
    let epollFD = epoll_create1(0)
    var event = epoll_event()
    event.events = EPOLLIN.rawValue
    event.data.fd = a
    epoll_ctl(epollFD, EPOLL_CTL_ADD, a, &event)
    event.data.fd = b
    epoll_ctl(epollFD, EPOLL_CTL_ADD, b, &event)
    var events = [epoll_event](repeating: epoll_event(), count: 8)
    var byte: UInt8 = 1
    let start = ContinuousClock.now
    _ = write(a, &byte, 1)
    var done = 0
    while done < rounds {
        let count = epoll_wait(epollFD, &events, 8, -1)
        for index in 0..<Int(max(count, 0)) {
            let fd = events[index].data.fd
            guard read(fd, &byte, 1) == 1 else { continue }
            if fd == b {
                _ = write(b, &byte, 1)
            } else {
                done += 1
                if done < rounds { _ = write(a, &byte, 1) }
            }
        }
    }
    let result = nanoseconds(since: start) / Double(rounds)
    close(a); close(b); close(epollFD)
    return result
}

/// A one-shot hand-off between threads.
final class Latch<Value: Sendable>: @unchecked Sendable {
    private let state = Mutex<Value?>(nil)
    func fulfil(_ value: Value) { state.withLock { $0 = value } }
    func wait() -> Value {
        while true {
            if let value = state.withLock({ $0 }) { return value }
            sched_yield()
        }
    }
}
