import NIOCore
import NIOPosix
import SerialLoop

/// SwiftNIO's event loop: one `SelectableEventLoop` thread, used as a serial executor for actors
/// (NIO 2.101 has no `TaskExecutor` conformance) and through its own `execute`/`scheduleTask`.
let nioGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let nioLoop = nioGroup.next()

/// A global actor whose executor is NIO's event loop, so `Task { @NIOActor in … }` starts there.
@globalActor actor NIOActor {
    static let shared = NIOActor()
    nonisolated var unownedExecutor: UnownedSerialExecutor { nioLoop.executor.asUnownedSerialExecutor() }
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

/// Runs `body` on NIO's loop thread (as an NIOActor task) and waits for it from this thread.
func onNIO<T: Sendable>(_ body: @escaping @NIOActor @Sendable () async throws -> T) throws -> T {
    try onDefaultExecutor { try await body() }
}

/// Runs `body` on NIO's loop thread as a plain callback; it completes `promise` when done.
func onNIOThread(_ body: @escaping @Sendable (EventLoopPromise<Void>) -> Void) throws {
    let promise = nioLoop.makePromise(of: Void.self)
    nioLoop.execute { body(promise) }
    try promise.futureResult.wait()
}

/// A NIO scheduled-callback handler that counts firings and completes a promise at `target`.
struct CountingHandler: NIOScheduledCallbackHandler, Sendable {
    let counter: Shared<Int>
    let target: Int
    let promise: EventLoopPromise<Void>
    func handleScheduledCallback(eventLoop: some EventLoop) {
        counter.value += 1
        if counter.value == target { promise.succeed(()) }
    }
}

struct NoopHandler: NIOScheduledCallbackHandler, Sendable {
    func handleScheduledCallback(eventLoop: some EventLoop) {}
}

/// Work that must stay on NIO's loop: written as actor-isolated methods, so the only hops are the
/// ones the workload asks for (nonisolated async code would run on the global pool, because NIO's
/// loop is not a `TaskExecutor`).
actor NIOWorker {
    nonisolated var unownedExecutor: UnownedSerialExecutor { nioLoop.executor.asUnownedSerialExecutor() }

    func yieldLoop(_ n: Int) async -> Double {
        let start = ContinuousClock.now
        for _ in 0..<n { await Task.yield() }
        return nanoseconds(since: start) / Double(n)
    }
}
