import SerialLoop

// Task workloads: yield ping, spawn + await, actor ping-pong. Wall-clock ns per operation.

let taskBenchmarks: [Benchmark] = [
    // MARK: yield ping: 1 task, n × `await Task.yield()`
    Benchmark(workload: "yield", executor: "SerialLoop", unit: "ns/yield") { n in
        try withLoop { _ in await yieldPing(n) }
    },
    Benchmark(workload: "yield", executor: "floor", unit: "ns/yield") { n in
        try Floor.run { _ in await yieldPing(n) }
    },
    Benchmark(workload: "yield", executor: "default", unit: "ns/yield") { n in
        try onDefaultExecutor { await yieldPing(n) }
    },
    // NIO's loop is not a TaskExecutor: the yield runs in an actor on it (see NIOWorker).
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
        try withLoop { loop in await actorPingPong(n, on: loop.asUnownedSerialExecutor()) }
    },
    // A task that prefers the loop calling an actor on the loop (the other common hop).
    Benchmark(workload: "task-actor-call", executor: "SerialLoop", unit: "ns/call") { n in
        try withLoop { loop in await taskActorCalls(n, on: loop.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "task-actor-call", executor: "floor", unit: "ns/call") { n in
        try Floor.run { floor in await taskActorCalls(n, on: floor.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "actor-ping-pong", executor: "floor", unit: "ns/call") { n in
        try Floor.run { floor in await actorPingPong(n, on: floor.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "actor-ping-pong", executor: "default", unit: "ns/call") { n in
        try onDefaultExecutor {
            let pinger = DefaultPinger(), ponger = DefaultPonger()
            let start = ContinuousClock.now
            _ = await pinger.run(n, against: ponger)
            return nanoseconds(since: start) / Double(n)
        }
    },
    // Started from a task without an executor preference (NIO cannot be one).
    Benchmark(workload: "actor-ping-pong", executor: "NIO", unit: "ns/call") { n in
        try onDefaultExecutor { await actorPingPong(n, on: nioLoop.executor.asUnownedSerialExecutor()) }
    },
]

func yieldPing(_ n: Int) async -> Double {
    let start = ContinuousClock.now
    for _ in 0..<n { await Task.yield() }
    return nanoseconds(since: start) / Double(n)
}

func actorPingPong(_ n: Int, on executor: UnownedSerialExecutor) async -> Double {
    let pinger = Pinger(executor), ponger = Ponger(executor)
    let start = ContinuousClock.now
    _ = await pinger.run(n, against: ponger)
    return nanoseconds(since: start) / Double(n)
}

func taskActorCalls(_ n: Int, on executor: UnownedSerialExecutor) async -> Double {
    let ponger = Ponger(executor)
    var total = 0
    let start = ContinuousClock.now
    for _ in 0..<n { total += await ponger.ping() }
    precondition(total > 0)
    return nanoseconds(since: start) / Double(n)
}

/// Actors pinned to a given serial executor (SerialLoop, the floor, NIO).
actor Ponger {
    let executor: UnownedSerialExecutor
    init(_ executor: UnownedSerialExecutor) { self.executor = executor }
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor }
    private var count = 0
    @inline(never) func ping() -> Int { count += 1; return count }
}

actor Pinger {
    let executor: UnownedSerialExecutor
    init(_ executor: UnownedSerialExecutor) { self.executor = executor }
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor }
    func run(_ n: Int, against other: Ponger) async -> Int {
        var total = 0
        for _ in 0..<n { total += await other.ping() }
        return total
    }
}

/// The same pair as default actors, for Swift's global executor.
actor DefaultPonger {
    private var count = 0
    @inline(never) func ping() -> Int { count += 1; return count }
}

actor DefaultPinger {
    func run(_ n: Int, against other: DefaultPonger) async -> Int {
        var total = 0
        for _ in 0..<n { total += await other.ping() }
        return total
    }
}

