import SerialLoop

// Task workloads: yield ping, spawn + await, actor ping-pong, task → actor calls. Wall-clock ns per
// operation. Each peer runs the way its own docs allow that is fastest (issue 12, "Peers at their
// best"); `method` says how.

let taskBenchmarks: [Benchmark] = [
    // MARK: yield ping: 1 task, n × `await Task.yield()`
    Benchmark(workload: "yield", executor: "SerialLoop", unit: "ns/yield",
              method: "one task preferring the loop (`withLoop`), n × `Task.yield()`") { n in
        try withLoop { _ in await yieldPing(n) }
    },
    Benchmark(workload: "yield", executor: "floor", unit: "ns/yield",
              method: "one task preferring the one-object floor (Floor.swift), n × `Task.yield()`") { n in
        try Floor.run { _ in await yieldPing(n) }
    },
    Benchmark(workload: "yield", executor: "default", unit: "ns/yield",
              method: "one plain `Task {}` on Swift's global executor, n × `Task.yield()`") { n in
        try onDefaultExecutor { await yieldPing(n) }
    },
    // NIO at its best: a task that prefers NIO's loop through a TaskExecutor adapter (NIO.swift),
    // so every job stays on the NIO thread.
    Benchmark(workload: "yield", executor: "NIO TaskExecutor adapter", unit: "ns/yield",
              method: "one task with `Task(executorPreference:)` a `TaskExecutor` adapter whose `enqueue` is `eventLoop.execute { job.runSynchronously(on: adapter) }`, n × `Task.yield()`") { n in
        try onNIOTaskExecutor { await yieldPing(n) }
    },
    // The pattern the earlier table measured, kept for contrast and labelled: without a TaskExecutor
    // the yield in an actor on NIO leaves for the global pool and comes back (two thread hops).
    Benchmark(workload: "yield", executor: "NIO actor (hops to global pool)", unit: "ns/yield",
              method: "NOT NIO at its best: `Task.yield()` inside an actor whose executor is NIO's loop, called from the default executor; each yield hops to the global pool and back") { n in
        try onDefaultExecutor { await NIOWorker().yieldLoop(n) }
    },

    // MARK: spawn + await a child task
    Benchmark(workload: "spawn-await", executor: "SerialLoop", unit: "ns/task",
              method: "from a task on the loop, n × `await Task(executorPreference: loop) { i }.value`") { n in
        try withLoop { loop in
            let start = ContinuousClock.now
            for i in 0..<n { _ = await Task(executorPreference: loop) { i }.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "spawn-await", executor: "floor", unit: "ns/task",
              method: "from a task on the one-object floor, n × `await Task(executorPreference: floor) { i }.value`") { n in
        try Floor.run { floor in
            let start = ContinuousClock.now
            for i in 0..<n { _ = await Task(executorPreference: floor) { i }.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "spawn-await", executor: "default", unit: "ns/task",
              method: "from a plain task on the global executor, n × `await Task { i }.value`") { n in
        try onDefaultExecutor {
            let start = ContinuousClock.now
            for i in 0..<n { _ = await Task { i }.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "spawn-await", executor: "NIO TaskExecutor adapter", unit: "ns/task",
              method: "from a task preferring the NIO `TaskExecutor` adapter, n × `await Task(executorPreference: adapter) { i }.value` (parent and child stay on the NIO thread)") { n in
        try onNIOTaskExecutor {
            let start = ContinuousClock.now
            for i in 0..<n { _ = await Task(executorPreference: nioTaskExecutor) { i }.value }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "spawn-await", executor: "NIO actor (hops to global pool)", unit: "ns/task",
              method: "NOT NIO at its best: from a `@NIOActor` task, n × `await Task { @NIOActor in i }.value`; awaiting `.value` hops to the global pool and back") { n in
        try onNIO {
            let start = ContinuousClock.now
            for i in 0..<n { _ = await Task { @NIOActor in i }.value }
            return nanoseconds(since: start) / Double(n)
        }
    },

    // MARK: actor ping-pong: two actors on one executor, n calls
    Benchmark(workload: "actor-ping-pong", executor: "SerialLoop", unit: "ns/call",
              method: "two actors whose `unownedExecutor` is the loop, started from a task preferring the loop; n calls from one to the other") { n in
        try withLoop { loop in await actorPingPong(n, on: loop.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "actor-ping-pong", executor: "SerialLoop actor executor", unit: "ns/call",
              method: "two actors whose `unownedExecutor` is the loop's opt-in `actorExecutor` (actor jobs run `isolatedTo:` it, calls switch in place), started from a task preferring the loop") { n in
        try withLoop { loop in await actorPingPong(n, on: loop.actorExecutor.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "actor-ping-pong", executor: "floor", unit: "ns/call",
              method: "the same on the one-object floor (actor jobs run `on:` the floor as task executor: one job per call)") { n in
        try Floor.run { floor in await actorPingPong(n, on: floor.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "actor-ping-pong", executor: "floor (two objects)", unit: "ns/call",
              method: "the same on the two-object floor: task prefers its `TaskExecutor`, actors use its separate `SerialExecutor`, actor jobs run `isolatedTo: serial, taskExecutor: task` (calls switch in place)") { n in
        try TwoObjectFloor.run { floor in await actorPingPong(n, on: floor.serialExecutor.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "actor-ping-pong", executor: "default", unit: "ns/call",
              method: "two default actors, started from a plain task (no executor preference)") { n in
        try onDefaultExecutor {
            let pinger = DefaultPinger(), ponger = DefaultPonger()
            let start = ContinuousClock.now
            _ = await pinger.run(n, against: ponger)
            return nanoseconds(since: start) / Double(n)
        }
    },
    // Started from a task without an executor preference: NIO's fastest case (a preference would
    // add the runtime's preferred-executor lookup on every switch).
    Benchmark(workload: "actor-ping-pong", executor: "NIO", unit: "ns/call",
              method: "two actors whose `unownedExecutor` is `eventLoop.executor`, started from a task without preference (the fastest: no preferred-executor lookup)") { n in
        try onDefaultExecutor { await actorPingPong(n, on: nioLoop.executor.asUnownedSerialExecutor()) }
    },

    // MARK: task → actor call: a task calling an actor on the same executor, n calls
    Benchmark(workload: "task-actor-call", executor: "SerialLoop", unit: "ns/call",
              method: "a task preferring the loop calls an actor whose `unownedExecutor` is the loop, n times") { n in
        try withLoop { loop in await taskActorCalls(n, on: loop.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "task-actor-call", executor: "SerialLoop actor executor", unit: "ns/call",
              method: "a task preferring the loop calls an actor on the loop's opt-in `actorExecutor` (a different executor object: a job each way)") { n in
        try withLoop { loop in await taskActorCalls(n, on: loop.actorExecutor.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "task-actor-call", executor: "floor", unit: "ns/call",
              method: "the same on the one-object floor") { n in
        try Floor.run { floor in await taskActorCalls(n, on: floor.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "task-actor-call", executor: "floor (two objects)", unit: "ns/call",
              method: "a task preferring the two-object floor's `TaskExecutor` calls an actor on its `SerialExecutor` (the return to the task's nonisolated code changes executor identity: a job)") { n in
        try TwoObjectFloor.run { floor in await taskActorCalls(n, on: floor.serialExecutor.asUnownedSerialExecutor()) }
    },
    // NIO at its best for this shape: the caller is itself isolated to NIO's loop (`@NIOActor`),
    // so calling another actor on the same loop switches in place.
    Benchmark(workload: "task-actor-call", executor: "NIO (@NIOActor task)", unit: "ns/call",
              method: "a task isolated to a global actor whose executor is NIO's loop calls an actor on the same loop (same serial executor: in-place switch)") { n in
        // The loop is written inline: a nonisolated async function called from here would run on
        // the global pool (Swift 6 default), not on the caller's actor.
        try onNIO {
            let ponger = Ponger(nioLoop.executor.asUnownedSerialExecutor())
            var total = 0
            let start = ContinuousClock.now
            for _ in 0..<n { total += await ponger.ping() }
            precondition(total > 0)
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "task-actor-call", executor: "NIO TaskExecutor adapter", unit: "ns/call",
              method: "a task preferring the NIO `TaskExecutor` adapter calls an actor whose executor is NIO's loop (two executor identities: a job each way, all on the NIO thread)") { n in
        try onNIOTaskExecutor { await taskActorCalls(n, on: nioLoop.executor.asUnownedSerialExecutor()) }
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

