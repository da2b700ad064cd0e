import NIOCore
import NIOPosix

/// SwiftNIO's event loop: one `SelectableEventLoop` thread, used as a serial executor for actors
/// (NIO 2.101 has no `TaskExecutor` conformance) and through its own `execute`/`scheduleTask`.
let nioGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let nioLoop = nioGroup.next()

/// A global actor whose executor is NIO's event loop, so `Task { @NIOActor in … }` starts there.
@globalActor actor NIOActor {
    static let shared = NIOActor()
    nonisolated var unownedExecutor: UnownedSerialExecutor { nioLoop.executor.asUnownedSerialExecutor() }
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

/// On NIO's loop thread: runs `setUp`, then `operation(i)` for `i` in `0..<n`; returns wall-clock
/// nanoseconds per operation (set-up excluded).
func onNIOThreadTimed(_ n: Int, setUp: @escaping @Sendable () -> Void = {}, _ operation: @escaping @Sendable (Int) -> Void) throws -> Double {
    let result = Shared(0.0)
    try onNIOThread { promise in
        setUp()
        let start = ContinuousClock.now
        for i in 0..<n { operation(i) }
        result.value = nanoseconds(since: start) / Double(n)
        promise.succeed(())
    }
    return result.value
}

/// NIO's loop as a `TaskExecutor` (issue 12: NIO at its best for task rows). NIO 2.101 ships no
/// `TaskExecutor` conformance, but a user can write this adapter in a few lines with public API
/// only: every job is handed to `eventLoop.execute` and run with the adapter as task executor, so
/// a task that prefers it (`Task(executorPreference:)`, `withTaskExecutorPreference`) keeps its
/// nonisolated code — `Task.yield()`, awaiting a child — on the NIO thread, with no hop to the
/// global pool. What one job costs here is NIO's `execute` plus its loop's per-task work.
final class NIOTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop
    init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }
}

let nioTaskExecutor = NIOTaskExecutor(nioLoop)

/// Runs `body` as a task preferring the NIO adapter (so it starts and stays on NIO's thread) and
/// waits for it from this thread.
func onNIOTaskExecutor<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = Completion()
    let box = ResultBox<T>()
    Task(executorPreference: nioTaskExecutor) {
        do { box.value = .success(try await body()) } catch { box.value = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.value!.get()
}
