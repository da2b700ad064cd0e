extension Loop {
    // MARK: Running

    /// Runs the loop until ``stop()`` is called (asyncio's `run_forever`).
    /// - Precondition: called on the loop's thread, the loop is not already running, and it has
    ///   not shut down.
    public func run() {
        if lifecycle == .shutDown { preconditionFailure("Loop.run() called on a loop that has shut down") }
        runTicks(operation: "run()", id: nextRunID())
    }

    /// A fresh identity for one call of `runTicks`: completions of what an earlier `run(until:)`
    /// waited for (it may have ended by `stop()`) must not end a later run.
    func nextRunID() -> UInt64 {
        lastRunID &+= 1
        return lastRunID
    }

    /// Ends the run `id` after the current tick's jobs, if it is still the one turning.
    func requestExit(ofRun id: UInt64) {
        if currentRunID == id { exitRequested = true }
    }

    /// Turns the loop until `exitRequested` or a stop.
    /// - Returns: `true` if it ended because of `exitRequested`, `false` for `stop()`.
    @discardableResult
    func runTicks(operation: String, id: UInt64) -> Bool {
        preconditionOnLoopThread("Loop.\(operation)")
        switch lifecycle {
        case .idle: break
        case .running: preconditionFailure("Loop.\(operation) called while the loop is already running (nested run)")
        case .shutDown: preconditionFailure("Loop.\(operation) called on a loop that has shut down")
        }
        lifecycle = .running
        currentRunID = id
        exitRequested = false
        serveMainQueueIfOnMainThread()
        let previous = enterThread()
        while tick() {}
        leaveThread(restoring: previous)
        lifecycle = .idle
        currentRunID = 0
        let exited = exitRequested
        exitRequested = false
        // Stops requested until now ended this run (they coalesce); later ones end the next.
        inbox.consumeStop()
        return exited
    }

    /// Makes ``run()`` (or a `run(until:)`) return after the current tick's jobs. Any thread.
    public func stop() {
        inbox.requestStop()
    }

    /// Runs the loop until `task` completes and returns its value or rethrows its error
    /// (asyncio's `run_until_complete`). The task may run anywhere; the loop turns until it is done.
    /// - Throws: the task's error; a ``LoopError`` naming `run(until:)` if ``stop()`` was called
    ///   first, if a test loop stalled, or if the loop has shut down.
    public func run<T: Sendable>(until task: Task<T, any Error>) throws -> T {
        try runUntil(describing: "task") { id, outcome in
            Task(executorPreference: self) {
                outcome.result = await task.result
                self.requestExit(ofRun: id)
            }
        }
    }

    /// Runs the loop until `task` completes and returns its value.
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
        if lifecycle == .shutDown { throw LoopError.loopHasShutDown("run(until:)") }
        let outcome = OutcomeBox<T>()
        let id = nextRunID()
        watch(id, outcome)
        let exited = runTicks(operation: "run(until:)", id: id)
        if let stall = time.virtual.stallReport {
            time.virtual.stallReport = nil
            throw LoopError(operation: "run(until:)", reason: stall)
        }
        guard exited, let result = outcome.result else {
            throw LoopError(operation: "run(until:)", reason: "stop() was called before the \(what) completed")
        }
        return try result.get()
    }
}

/// A result slot written on the loop thread and read after the loop stopped turning.
final class OutcomeBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}
