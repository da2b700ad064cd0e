@preconcurrency import Glibc
import CSerialLoopShims
import Synchronization

/// Runs `body` on a new loop on the **current thread** and returns its value (or rethrows its error).
///
/// The body runs as a task that prefers the loop, so it and everything it awaits in structured
/// form — `async let`, task-group children, nonisolated async functions, actors on the loop —
/// runs on this thread. The loop turns until the body finishes; then it shuts down (see
/// ``Loop/shutdown()``: tasks still suspended on the loop are cancelled, as `asyncio.run` does).
///
/// This blocks the calling thread. In async code, use the `async` overload instead, which runs the
/// loop on a dedicated thread and blocks no cooperative thread.
public func withLoop<T: Sendable>(_ body: sending (Loop) async throws -> T) throws -> T {
    preconditionNoLoopRunning("withLoop")
    let loop = try Loop()
    return try loop.runBody(body, cancellation: nil)
}

/// Runs `body` on a new loop on a **dedicated thread** and returns its value (or rethrows its
/// error). No cooperative thread is blocked while it runs. Cancelling the calling task cancels the
/// body's task.
public func withLoop<T: Sendable>(_ body: sending (Loop) async throws -> T) async throws -> T {
    try await runOnDedicatedThread(time: .real, body)
}

/// `withLoop` on a test loop: virtual time, same as `withLoop` otherwise. When the body finishes
/// with work still pending on the loop (sleeping tasks, descriptor waiters, timers), the call
/// throws ``LoopLeftoversError`` listing them — after the body's own error, if it threw.
public func withTestLoop<T: Sendable>(_ body: sending (Loop) async throws -> T) throws -> T {
    preconditionNoLoopRunning("withTestLoop")
    let loop = try Loop(time: .virtual)
    return try loop.runBody(body, cancellation: nil)
}

/// The async twin of `withTestLoop`: the test loop runs on a dedicated thread.
public func withTestLoop<T: Sendable>(_ body: sending (Loop) async throws -> T) async throws -> T {
    try await runOnDedicatedThread(time: .virtual, body)
}

/// The sync entry points run a loop on the calling thread. Called from inside a loop (a task or
/// callback on a loop thread) that would freeze the outer loop until the inner body returns —
/// asyncio refuses the same ("asyncio.run() cannot be called from a running event loop").
private func preconditionNoLoopRunning(_ name: String) {
    precondition(c_serial_loop_current_loop() == nil, "\(name) called on a thread that is already running a loop, which would block that loop until the body returns; use the async \(name) (own thread), or run the work on the current loop")
}

/// Thrown by `withTestLoop` when the body left work pending on the loop.
public struct LoopLeftoversError: Error, CustomStringConvertible {
    public let leftovers: LoopLeftovers
    public var description: String { "the test loop ended with work still pending: \(leftovers)" }
}

private func runOnDedicatedThread<T: Sendable>(time: Loop.TimeMode, _ body: sending (Loop) async throws -> T) async throws -> T {
    let cancellation = BodyCancellation()
    // The body is used on the loop thread while this task waits for it, and released there before
    // this task resumes: it does not really escape.
    return try await withoutActuallyEscaping(body) { body in
        let handOff = HandOff(body)
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<T, any Error>) in
                let thread = spawnThread {
                    let result = runHandedOffBody(handOff, time: time, cancellation: cancellation)
                    continuation.resume(with: result)
                }
                pthread_detach(thread)
            }
        } onCancel: {
            cancellation.cancel()
        }
    }
}

/// Runs the body on a new loop on this thread; the body is released when this returns.
private func runHandedOffBody<T: Sendable>(_ handOff: HandOff<(Loop) async throws -> T>, time: Loop.TimeMode, cancellation: BodyCancellation) -> Result<T, any Error> {
    let body = handOff.take()
    return Result {
        let loop = try Loop(time: time)
        return try loop.runBody(body, cancellation: cancellation)
    }
}

/// Moves a value to another thread exactly once; `take()` leaves nothing behind, so the sender
/// can rely on the receiver holding the only reference.
private final class HandOff<Value>: @unchecked Sendable {
    private var value: Value?
    init(_ value: Value) { self.value = value }
    func take() -> Value {
        defer { value = nil }
        return value!
    }
}

extension Result {
    func failure() -> Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// Carries a closure to the loop's thread, where it is used exactly once.
struct UnsafeTransfer<Value>: @unchecked Sendable {
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
    private let state = Lock(State.waiting)

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
    func runBody<T: Sendable>(_ body: (Loop) async throws -> T, cancellation: BodyCancellation?) throws -> T {
        // The body runs on this thread while the caller is blocked here (sync entry points), or
        // while the caller awaits the dedicated thread (async ones), and the task that runs it
        // has finished or been cancelled by shutdown before this returns: it does not escape.
        try withoutActuallyEscaping(body) { body in
            try runEscapingBody(UnsafeTransfer(body), cancellation: cancellation)
        }
    }

    private func runEscapingBody<T: Sendable>(_ body: UnsafeTransfer<(Loop) async throws -> T>, cancellation: BodyCancellation?) throws -> T {
        let finished = OutcomeBox<Void>()
        let task = Task(executorPreference: self) {
            defer { finished.result = .success(()) }
            return try await body.value(self)
        }
        if let cancellation, !cancellation.register({ task.cancel() }) {
            task.cancel()
        }
        let outcome: Result<T, any Error> = Result { try run(until: task) }
        var leftovers = timeMode == .virtual ? self.leftovers() : LoopLeftovers()
        // Task.sleep timers may belong to cancelled sleeps; shutdown tells the live ones apart.
        let liveTaskSleeps = shutdown()
        if timeMode == .virtual { leftovers.taskSleeps = liveTaskSleeps }
        // The body must be gone before the caller's closure may be released (it was only borrowed).
        // A body that never finished (a stall, a stop) is awaiting something no cancellation
        // reaches; say what, rather than trap inside withoutActuallyEscaping.
        if finished.result == nil {
            let reason = (try? outcome.get()).map { _ in "" } ?? "\((outcome.failure()).map { "\($0)" } ?? "")"
            fatalError("""
                SerialLoop: the body of withLoop/withTestLoop never finished, even after the loop \
                cancelled everything it could (\(reason)). A loop on the main thread serves the main \
                actor; a loop on another thread cannot while the main thread is blocked: if the body \
                awaits @MainActor code or DispatchQueue.main, run the loop on the main thread (sync \
                withLoop there, or Loop.runMain) or keep that work off the main actor.
                """)
        }
        let value = try outcome.get()
        if !leftovers.isEmpty { throw LoopLeftoversError(leftovers: leftovers) }
        return value
    }
}
