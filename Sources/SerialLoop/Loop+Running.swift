/// Where the loop is in its life and, while a run ends, why. Loop thread only. One value, so no
/// combination of flags can contradict another. (The cross-thread `stop()` is not here: it is an
/// atomic in the inbox, consumed when a run ends — see Inbox.swift.)
enum RunState {
    /// Not turning: created, or between runs.
    case idle
    /// Turning, in the run with this identity (see `nextRunID`).
    case running(run: UInt64)
    /// Still in the run `run`, which ends after the current tick's jobs, for `reason`.
    case ending(run: UInt64, reason: RunEnd)
    /// Shut down (Loop+Shutdown.swift): it never turns again.
    case shutDown

    var isShutDown: Bool {
        if case .shutDown = self { return true }
        return false
    }

    /// Whether the run in progress has been asked to end (by what it waited for, or a stall).
    var isEnding: Bool {
        if case .ending = self { return true }
        return false
    }

    /// The run in progress, if the loop is turning.
    var currentRun: UInt64? {
        switch self {
        case .running(let run), .ending(let run, _): return run
        case .idle, .shutDown: return nil
        }
    }
}

/// Why a run of the loop ended.
enum RunEnd {
    /// `stop()` was called.
    case stopped
    /// What `run(until:)` waited for completed.
    case completed
    /// A test loop stalled (TestLoop+IdlePolicy.swift): the report names what kept it.
    case stalled(String)
}

extension Loop {
    // MARK: Running

    /// Runs the loop until ``stop()`` is called (asyncio's `run_forever`).
    /// - Precondition: called on the loop's thread, the loop is not already running, and it has
    ///   not shut down.
    public func run() {
        if runState.isShutDown { misuse("Loop.run() called on a loop that has shut down") }
        runTicks(operation: "run()", id: nextRunID())
    }

    /// A fresh identity for one call of `runTicks`: completions of what an earlier `run(until:)`
    /// waited for (it may have ended by `stop()`) must not end a later run.
    func nextRunID() -> UInt64 {
        lastRunID &+= 1
        return lastRunID
    }

    /// Ends the run `id` after the current tick's jobs, if it is still the one turning (and not
    /// already ending: a stall declared first is what the run reports).
    func requestExit(ofRun id: UInt64) {
        if case .running(id) = runState { runState = .ending(run: id, reason: .completed) }
    }

    /// Ends the run in progress after the current tick's jobs because a test loop stalled.
    func endRunStalled(_ report: String) {
        guard let run = runState.currentRun else { return }
        runState = .ending(run: run, reason: .stalled(report))
    }

    /// Turns the loop until the run is asked to end or `stop()` is called.
    /// - Returns: why it ended.
    @discardableResult
    func runTicks(operation: String, id: UInt64) -> RunEnd {
        preconditionOnLoopThread("Loop.\(operation)")
        switch runState {
        case .idle: break
        case .running, .ending: misuse("Loop.\(operation) called while the loop is already running (nested run)")
        case .shutDown: misuse("Loop.\(operation) called on a loop that has shut down")
        }
        runState = .running(run: id)
        serveMainQueueIfOnMainThread()
        let previous = enterThread()
        while isObserved ? observedTicks() : plainTick() { checkInvariantsInDebugBuilds() }
        leaveThread(restoring: previous)
        let end: RunEnd
        if case .ending(_, let reason) = runState { end = reason } else { end = .stopped }
        runState = .idle
        // Stops requested until now ended this run (they coalesce); later ones end the next.
        inbox.consumeStop()
        return end
    }

    /// Makes ``run()`` (or a `run(until:)`) return after the current tick's jobs. Any thread.
    /// Called while no run is turning, it ends the next run after its first tick's jobs
    /// (asyncio's `stop()`). Stops not yet seen by a run coalesce: they end one run, not several.
    public func stop() {
        inbox.requestStop()
    }

    /// Runs the loop until `task` completes and returns its value or rethrows its error
    /// (asyncio's `run_until_complete`). The task may run anywhere; the loop turns until it is done.
    /// - Throws: the task's error; a ``LoopError`` naming `run(until:)` if ``stop()`` was called
    ///   first, if a test loop stalled, or if the loop has shut down.
    /// - Precondition: called on the loop's thread, the loop not already running.
    /// - Parameter task: the task to wait for, on any executor.
    public func run<T: Sendable>(until task: Task<T, any Error>) throws -> T {
        try runUntil(describing: "task") { id, outcome in
            Task(executorPreference: self) {
                outcome.result = await task.result
                self.requestExit(ofRun: id)
            }
        }
    }

    /// Runs the loop until `task` completes and returns its value.
    /// - Parameter task: the task to wait for, on any executor.
    /// - Throws: a ``LoopError`` naming `run(until:)` if ``stop()`` was called first, if a test loop
    ///   stalled, or if the loop has shut down.
    /// - Precondition: called on the loop's thread, the loop not already running.
    public func run<T: Sendable>(until task: Task<T, Never>) throws -> T {
        try runUntil(describing: "task") { id, outcome in
            Task(executorPreference: self) {
                outcome.result = .success(await task.value)
                self.requestExit(ofRun: id)
            }
        }
    }

    /// Runs the loop until `future` is complete and returns its value or rethrows its error.
    /// - Precondition: called on the loop's thread.
    /// - Parameter future: a future of this loop.
    /// - Throws: the future's error; a ``LoopError`` naming `run(until:)` if ``stop()`` was called
    ///   first, if a test loop stalled, or if the loop has shut down.
    public func run<T: Sendable>(until future: LoopFuture<T>) throws -> T {
        try runUntil(describing: "future") { id, outcome in
            future.whenComplete { result in
                outcome.result = result
                self.requestExit(ofRun: id)
            }
        }
    }

    /// The one implementation of `run(until:)`: `watch` arranges for the outcome to be stored and
    /// the run (by its id) to be ended; the loop turns until then, a stop, or a stall.
    private func runUntil<T>(describing what: String, watch: (UInt64, OutcomeBox<T>) -> Void) throws -> T {
        preconditionOnLoopThread("Loop.run(until:)")
        if runState.isShutDown { throw LoopError.loopHasShutDown("run(until:)") }
        let outcome = OutcomeBox<T>()
        let id = nextRunID()
        watch(id, outcome)
        switch runTicks(operation: "run(until:)", id: id) {
        case .stalled(let report):
            throw LoopError(.stalled, operation: "run(until:)", reason: report)
        case .completed:
            if let result = outcome.result { return try result.get() }
            fallthrough
        case .stopped:
            throw LoopError(.stopped, operation: "run(until:)", reason: "stop() was called before the \(what) completed")
        }
    }
}

/// A result slot written on the loop thread and read after the loop stopped turning.
final class OutcomeBox<T>: @unchecked Sendable {
    // Unchecked Sendable: written on the loop's thread by the work it runs, read on the same thread
    // once the loop stopped turning.
    var result: Result<T, any Error>?
}
