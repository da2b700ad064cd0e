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
    return try loop.runBody(body)
}

/// Runs `body` on a new loop on a **dedicated thread** and returns its value (or rethrows its
/// error). No cooperative thread is blocked while it runs.
///
/// The body is part of the calling task, not a new task: it runs under
/// `withTaskExecutorPreference(loop)`, so the caller's task-locals (logging metadata, tracing,
/// Swift Testing's `Test.current`) are visible in it and in the tasks it creates, cancelling the
/// caller cancels it, and its priority is the caller's. When the body returns, the loop shuts down
/// (tasks still suspended on it are cancelled) and its thread ends before this returns.
public func withLoop<T: Sendable>(_ body: sending (Loop) async throws -> T) async throws -> T {
    try await runOnDedicatedThread(make: { () throws(LoopError) in try Loop() }, body)
}

/// `withLoop` on a ``TestLoop``: virtual time, and the body gets the controls (``TestLoop/advance(by:)``,
/// ``TestLoop/runUntilIdle()``, …); the same as `withLoop` otherwise. When the body finishes with
/// work still pending on the loop (sleeping tasks, descriptor waiters, timers), the call throws
/// ``LoopLeftoversError`` listing them — after the body's own error, if it threw.
public func withTestLoop<T: Sendable>(_ body: sending (TestLoop) async throws -> T) throws -> T {
    preconditionNoLoopRunning("withTestLoop")
    let loop = try TestLoop()
    return try loop.runBody { _ in try await body(loop) }
}

/// The async twin of `withTestLoop`: the test loop runs on a dedicated thread, and the body is
/// part of the calling task, as in the async ``withLoop(_:)-7y525`` (task-locals and
/// `Test.current` are visible in it, so a failing `#expect` is attributed to its test).
public func withTestLoop<T: Sendable>(_ body: sending (TestLoop) async throws -> T) async throws -> T {
    try await runOnDedicatedThread(make: { () throws(LoopError) in try TestLoop() }, body)
}

/// The sync entry points run a loop on the calling thread. Called from inside a loop (a task or
/// callback on a loop thread) that would freeze the outer loop until the inner body returns —
/// asyncio refuses the same ("asyncio.run() cannot be called from a running event loop").
func preconditionNoLoopRunning(_ name: String) {
    misuseCheck(c_serial_loop_current_loop() == nil, "\(name) called on a thread that is already running a loop, which would block that loop until the body returns; use the async \(name) (own thread), or run the work on the current loop")
}

/// Thrown by `withTestLoop` when the body left work pending on the loop.
public struct LoopLeftoversError: Error, CustomStringConvertible {
    /// What was still pending when the body finished.
    public let leftovers: LoopLeftovers
    /// "the test loop ended with work still pending: " followed by the leftovers.
    public var description: String { "the test loop ended with work still pending: \(leftovers)" }
}

/// The async entry points: a loop on a new thread, the body run in the caller's own task with the
/// loop as its task executor.
///
/// Order of events: the thread creates the loop and hands it over; the caller's task moves onto
/// it (`withTaskExecutorPreference`) and runs the body; the body's end, on the loop thread, ends
/// the loop's run; the thread collects leftovers, shuts the loop down and reports; the caller,
/// back on its own executor, waits for that report. A run that ends first (a test loop's stall,
/// `stop()`) shuts the loop down while the body is still suspended: shutdown resumes its waits, so
/// it unwinds, and the run's error is what the call throws.
private func runOnDedicatedThread<L: Loop, T: Sendable>(
    make: @escaping @Sendable () throws(LoopError) -> L,
    _ body: sending (L) async throws -> T
) async throws -> T {
    let host = try await DedicatedLoop.start(make: make)
    let loop = unsafeDowncast(host.loop, to: L.self)
    let outcome: Result<T, any Error>
    do {
        let value = try await withTaskExecutorPreference(loop) {
            defer { host.bodyFinished() }
            return try await body(loop)
        }
        outcome = .success(value)
    } catch {
        outcome = .failure(error)
    }
    return try await host.outcome(afterBody: outcome)
}

/// A loop on a thread of its own, serving one body that runs in another task (the caller's).
private final class DedicatedLoop: @unchecked Sendable {
    // Safe: `runID` and `bodyHasFinished` are read and written on the loop's thread only; the loop
    // itself crosses to the caller through `handedOver`, whose lock also orders everything the
    // loop's thread wrote while creating it before the caller's first use (ThreadSanitizer sees
    // that edge; it does not see the one a continuation's resume makes inside the runtime);
    // `report` is a `RunReport`.
    private let handedOver = Lock<Loop?>(nil)
    private var runID: UInt64 = 0
    private var bodyHasFinished = false
    private let report = RunReport()

    /// The loop, once `start` has returned. Any thread.
    var loop: Loop { handedOver.withLock { $0! } }

    /// Starts the thread and returns once its loop exists.
    static func start(make: @escaping @Sendable () throws(LoopError) -> Loop) async throws -> DedicatedLoop {
        let host = DedicatedLoop()
        try await withUnsafeThrowingContinuation { (started: UnsafeContinuation<Void, any Error>) in
            pthread_detach(spawnThread {
                let loop: Loop
                do { loop = try make() } catch {
                    return started.resume(throwing: error)
                }
                host.runID = loop.nextRunID()
                host.handedOver.withLock { $0 = loop }
                started.resume()
                host.serve(loop)
            })
        }
        return host
    }

    /// On the loop's thread: turns the loop until the body finishes (or a stall, or a stop), then
    /// collects leftovers, shuts down and reports.
    private func serve(_ loop: Loop) {
        let end = loop.runTicks(operation: "run(until:)", id: runID)
        var result: Result<LoopLeftovers, any Error>
        switch end {
        case .completed:
            result = .success(loop.timeMode == .virtual ? loop.leftovers() : LoopLeftovers())
        case .stalled(let report):
            result = .failure(LoopError(.stalled, operation: "run(until:)", reason: report))
        case .stopped:
            result = .failure(LoopError(.stopped, operation: "run(until:)", reason: "stop() was called before the body finished"))
        }
        // Task.sleep timers may belong to cancelled sleeps; shutdown tells the live ones apart.
        let liveTaskSleeps = loop.shutdown()
        if case .success(var leftovers) = result, loop.timeMode == .virtual {
            leftovers.taskSleeps = liveTaskSleeps
            result = .success(leftovers)
        }
        if !bodyHasFinished {
            // Shutdown resumed every wait on the loop; the body still awaits something outside it.
            // It is the caller's task: it ends when that completes (its loop calls fail from now on).
            fputs("""
                SerialLoop: the loop of withLoop/withTestLoop shut down (\((try? result.get()).map { _ in "its run ended" } ?? "\(result.failure()!)")) \
                while the body still awaits something outside the loop; the call returns when that \
                completes. If the body awaits @MainActor code or DispatchQueue.main while the main \
                thread is blocked, run the loop on the main thread (sync withLoop there, or \
                Loop.runMain) or keep that work off the main actor.\n
                """, stderr)
        }
        report.deliver(result)
    }

    /// On the loop's thread, as the body returns or throws: the run ends after this tick's jobs.
    func bodyFinished() {
        bodyHasFinished = true
        loop.requestExit(ofRun: runID)
    }

    /// The call's outcome, once the thread has shut the loop down (`RunReport.outcome(afterBody:)`).
    func outcome<T>(afterBody body: Result<T, any Error>) async throws -> T {
        try await report.outcome(afterBody: body)
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
    // Unchecked Sendable, by purpose: the sender gives the value up, the loop's thread uses it once.
    let value: Value
    init(_ value: Value) { self.value = value }
}

extension Loop {
    /// Runs `body` as a task preferring this loop, turns the loop until it finishes, shuts down.
    func runBody<T: Sendable>(_ body: (Loop) async throws -> T) throws -> T {
        // The body runs on this thread while the caller is blocked here (sync entry points), or
        // while the caller awaits the dedicated thread (async ones), and the task that runs it
        // has finished or been cancelled by shutdown before this returns: it does not escape.
        try withoutActuallyEscaping(body) { body in
            try runEscapingBody(UnsafeTransfer(body))
        }
    }

    private func runEscapingBody<T: Sendable>(_ body: UnsafeTransfer<(Loop) async throws -> T>) throws -> T {
        let finished = OutcomeBox<Void>()
        let task = Task(executorPreference: self) {
            defer { finished.result = .success(()) }
            return try await body.value(self)
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
