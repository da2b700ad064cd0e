@preconcurrency import Glibc
import NIOCore
import NIOPosix
import SerialLoop

// Crossing loops (issue 24): what a hop from one loop of a `LoopGroup` to another costs, against the
// same work within one loop and against SwiftNIO's `MultiThreadedEventLoopGroup` of two threads.
// Every row is a chain of n strictly sequential round trips measured on the loop that starts them
// (the next round trip starts only when the previous one is back), so a figure is the latency of
// one round trip, not a throughput: across loops each leg wakes a thread that was asleep in
// `epoll_wait` (an eventfd write, a wake-up, the loop's tick), on a 2-core VM shared with other jobs.

let crossLoopBenchmarks: [Benchmark] = [
    // MARK: execute A → B → A
    Benchmark(workload: "cross-loop-execute", executor: "SerialLoop, 2 loops (A→B→A)", unit: "ns/round-trip",
              method: "`LoopGroup.start(loops: 2)`; from a callback on loop A, n × `loopB.execute { loopA.execute { next } }` (two cross-thread enqueues per round trip)") { n in
        let group = try LoopGroup.start(loops: 2)
        defer { group.shutdown() }
        let a = group.loops[0], b = group.loops[1]
        return executeChain(n, start: { a.execute($0) }, there: { b.execute($0) }, back: { a.execute($0) })
    },
    Benchmark(workload: "cross-loop-execute", executor: "SerialLoop, 1 loop (A→A→A)", unit: "ns/round-trip",
              method: "the same chain within one loop: from a callback on loop A, n × `loopA.execute { loopA.execute { next } }` (two same-thread enqueues per round trip)") { n in
        let group = try LoopGroup.start(loops: 1)
        defer { group.shutdown() }
        let a = group.loops[0]
        return executeChain(n, start: { a.execute($0) }, there: { a.execute($0) }, back: { a.execute($0) })
    },
    // NIO's cheapest way to hand work to another event loop is `EventLoop.execute` (no future or
    // promise allocated; `submit`/`flatSubmit` and `hop(to:)` are built on it and add a promise).
    Benchmark(workload: "cross-loop-execute", executor: "NIO, 2 event loops (A→B→A)", unit: "ns/round-trip",
              method: "`MultiThreadedEventLoopGroup(numberOfThreads: 2)`, loops A and B from `group.next()`; from a callback on A, n × `B.execute { A.execute { next } }` (`execute`: NIO's cheapest hand-off, no promise)") { n in
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let a = group.next(), b = group.next()
        precondition(a !== b)
        return executeChain(n, start: { a.execute($0) }, there: { b.execute($0) }, back: { a.execute($0) })
    },
    Benchmark(workload: "cross-loop-execute", executor: "NIO, 1 event loop (A→A→A)", unit: "ns/round-trip",
              method: "the same chain within one NIO event loop: from a callback on A, n × `A.execute { A.execute { next } }`") { n in
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let a = group.next()
        return executeChain(n, start: { a.execute($0) }, there: { a.execute($0) }, back: { a.execute($0) })
    },

    // MARK: a task on loop A calling an actor
    Benchmark(workload: "cross-loop-actor-call", executor: "SerialLoop, actor on loop B", unit: "ns/call",
              method: "`LoopGroup.start(loops: 2)`; a task preferring loop A (`Task(executorPreference: loopA)`) calls n × an actor whose `unownedExecutor` is `loopB.asUnownedSerialExecutor()` (each call: a job on B, then a job back on A)") { n in
        let group = try LoopGroup.start(loops: 2)
        defer { group.shutdown() }
        let a = group.loops[0], b = group.loops[1]
        return try onTask(preferring: a) { await taskActorCalls(n, on: b.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "cross-loop-actor-call", executor: "SerialLoop, actor on loop A (same loop)", unit: "ns/call",
              method: "the same task on loop A calls n × an actor whose `unownedExecutor` is `loopA.asUnownedSerialExecutor()` (no thread crossed)") { n in
        let group = try LoopGroup.start(loops: 2)
        defer { group.shutdown() }
        let a = group.loops[0]
        return try onTask(preferring: a) { await taskActorCalls(n, on: a.asUnownedSerialExecutor()) }
    },
    Benchmark(workload: "cross-loop-actor-call", executor: "default actor, from a task on loop A", unit: "ns/call",
              method: "the same task on loop A calls n × a default actor: a default actor runs on the calling task's preferred executor (SE-0417), so its code runs on loop A too; no thread crossed") { n in
        let group = try LoopGroup.start(loops: 2)
        defer { group.shutdown() }
        return try onTask(preferring: group.loops[0]) { await defaultActorCalls(n) }
    },
    Benchmark(workload: "cross-loop-actor-call", executor: "default actor, from a default task", unit: "ns/call",
              method: "a plain `Task {}` (no preference) calls n × a default actor: the global pool's own case, no loop involved") { n in
        try onDefaultExecutor { await defaultActorCalls(n) }
    },
    Benchmark(workload: "cross-loop-actor-call", executor: "NIO, actor on event loop B", unit: "ns/call",
              method: "`MultiThreadedEventLoopGroup(numberOfThreads: 2)`; a task preferring loop A through the `TaskExecutor` adapter (NIO.swift) calls n × an actor whose `unownedExecutor` is `B.executor`") { n in
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let a = group.next(), b = group.next()
        precondition(a !== b)
        return try onTask(preferring: NIOTaskExecutor(a)) { await taskActorCalls(n, on: b.executor.asUnownedSerialExecutor()) }
    },
]

/// n sequential round trips: `start` runs the first step on the home loop; each step hands the
/// next leg to `there`, which hands it home with `back`. Wall ns per round trip, timed on the home
/// loop from the first step until the n-th is back. The calling thread sleeps meanwhile.
func executeChain(
    _ n: Int,
    start: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void,
    there: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void,
    back: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void
) -> Double {
    let chain = ExecuteChain(remaining: n, there: there, back: back)
    start { chain.begin() }
    return chain.done.wait() / Double(n)
}

/// The state of one `executeChain`: touched by one leg at a time (each leg starts after the
/// previous one's enqueue), so no lock.
final class ExecuteChain: @unchecked Sendable {
    var remaining: Int
    var started = ContinuousClock.now
    let there: @Sendable (@escaping @Sendable () -> Void) -> Void
    let back: @Sendable (@escaping @Sendable () -> Void) -> Void
    let done = Latch<Double>()

    init(remaining: Int, there: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void,
         back: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) {
        self.remaining = remaining
        self.there = there
        self.back = back
    }

    func begin() {
        started = .now
        step()
    }

    func step() {
        if remaining == 0 {
            done.fulfil(nanoseconds(since: started))
            return
        }
        remaining -= 1
        there { self.back { self.step() } }
    }
}

/// Runs `body` as a task preferring `executor` and waits for its value from this thread.
func onTask<T: Sendable>(preferring executor: any TaskExecutor, _ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = Completion()
    let box = ResultBox<T>()
    Task(executorPreference: executor) {
        do { box.value = .success(try await body()) } catch { box.value = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.value!.get()
}

/// n calls from the current task to one default actor; wall ns per call.
func defaultActorCalls(_ n: Int) async -> Double {
    let ponger = DefaultPonger()
    var total = 0
    let start = ContinuousClock.now
    for _ in 0..<n { total += await ponger.ping() }
    precondition(total > 0)
    return nanoseconds(since: start) / Double(n)
}
