@preconcurrency import Glibc
import Synchronization

/// Runs `body` on a new loop on the **current thread** and returns its value (or rethrows its error).
///
/// The body runs as a task that prefers the loop, so it and everything it awaits in structured
/// form — `async let`, task-group children, nonisolated async functions, actors on the loop —
/// runs on this thread. The loop turns until the body finishes; then it shuts down (see
/// ``Loop/shutDown()``: tasks still suspended on the loop are cancelled, as `asyncio.run` does).
///
/// This blocks the calling thread. In async code, use the `async` overload instead, which runs the
/// loop on a dedicated thread and blocks no cooperative thread.
public func withLoop<T: Sendable>(_ body: sending @escaping (Loop) async throws -> T) throws -> T {
    let loop = try Loop()
    return try loop.runBody(body, cancellation: nil)
}

/// Runs `body` on a new loop on a **dedicated thread** and returns its value (or rethrows its
/// error). No cooperative thread is blocked while it runs. Cancelling the calling task cancels the
/// body's task.
public func withLoop<T: Sendable>(_ body: sending @escaping (Loop) async throws -> T) async throws -> T {
    try await runOnDedicatedThread(time: .real, body)
}

/// `withLoop` on a test loop: virtual time, same as `withLoop` otherwise. When the body finishes
/// with work still pending on the loop (sleeping tasks, descriptor waiters, timers), the call
/// throws ``LoopLeftoversError`` listing them — after the body's own error, if it threw.
public func withTestLoop<T: Sendable>(_ body: sending @escaping (Loop) async throws -> T) throws -> T {
    let loop = try Loop(time: .virtual)
    return try loop.runBody(body, cancellation: nil)
}

/// The async twin of `withTestLoop`: the test loop runs on a dedicated thread.
public func withTestLoop<T: Sendable>(_ body: sending @escaping (Loop) async throws -> T) async throws -> T {
    try await runOnDedicatedThread(time: .virtual, body)
}

/// Thrown by `withTestLoop` when the body left work pending on the loop.
public struct LoopLeftoversError: Error, CustomStringConvertible {
    public let leftovers: LoopLeftovers
    public var description: String { "the test loop ended with work still pending: \(leftovers)" }
}

private func runOnDedicatedThread<T: Sendable>(time: Loop.TimeMode, _ body: sending @escaping (Loop) async throws -> T) async throws -> T {
    let cancellation = BodyCancellation()
    let transfer = UnsafeTransfer(body)
    return try await withTaskCancellationHandler {
        try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<T, any Error>) in
            let thread = spawnThread {
                continuation.resume(with: Result {
                    let loop = try Loop(time: time)
                    return try loop.runBody(transfer.value, cancellation: cancellation)
                })
            }
            pthread_detach(thread)
        }
    } onCancel: {
        cancellation.cancel()
    }
}

/// Carries a `sending` closure to the loop's thread, where it is used exactly once.
private struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Forwards cancellation of an async `withLoop` caller to the body's task, whenever it exists.
final class BodyCancellation: Sendable {
    private enum State {
        case waiting
        case running(cancelBody: @Sendable () -> Void)
        case cancelled
    }
    private let state = Mutex(State.waiting)

    /// Any thread. `Task.cancel()` is thread-safe, so the body is cancelled directly.
    func cancel() {
        let cancelBody: (@Sendable () -> Void)? = state.withLock { state in
            defer { state = .cancelled }
            if case .running(let cancelBody) = state { return cancelBody }
            return nil
        }
        cancelBody?()
    }

    /// Registers how to cancel the body. Returns `false` if cancellation came first.
    func register(_ cancelBody: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { state in
            if case .cancelled = state { return false }
            state = .running(cancelBody: cancelBody)
            return true
        }
    }
}

extension Loop {
    /// Runs `body` as a task preferring this loop, turns the loop until it finishes, shuts down.
    func runBody<T: Sendable>(_ body: sending @escaping (Loop) async throws -> T, cancellation: BodyCancellation?) throws -> T {
        let task = Task(executorPreference: self) { try await body(self) }
        if let cancellation, !cancellation.register({ task.cancel() }) {
            task.cancel()
        }
        let outcome: Result<T, any Error> = Result { try run(until: task) }
        let leftovers = timeMode == .virtual ? self.leftovers() : LoopLeftovers()
        shutDown()
        let value = try outcome.get()
        if !leftovers.isEmpty { throw LoopLeftoversError(leftovers: leftovers) }
        return value
    }
}
