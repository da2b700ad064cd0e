@preconcurrency import Glibc

// Blocking work off the loop: `try await loop.offload { … }`
//
// asyncio's `run_in_executor` / `to_thread`, tokio's `spawn_blocking`. The closure runs on the
// loop's own small pool (OffloadPool.swift); its outcome comes back as a callback through the
// loop's cross-thread inbox — the same door as `execute` — and the caller resumes from the loop
// thread, in FIFO order with the loop's other work.
//
// Cancellation. Nothing can interrupt a blocking call, so the rule is about what the caller sees:
// - cancelled before a pool thread took the closure: the closure is withdrawn (it never runs) and
//   `offload` throws `CancellationError` at once;
// - cancelled after: `offload` waits for the closure to finish, discards its value or error, and
//   throws `CancellationError`.
// So `offload` throws `CancellationError` exactly when its task is cancelled by the time it
// returns — the same outcome whatever the pool was doing — and it never returns while the closure
// still runs. That second property is why the closure need not be `@escaping`: it can borrow the
// caller's state, as `withLoop`'s body does. The price is that a cancelled caller waits for a
// closure that was already running (a timeout racing an offload returns when the closure does).
// Returning at once instead (asyncio's choice) would leave work running behind the caller's back,
// unjoined by anything but shutdown, with its result silently dropped.
//
// Virtual time. On a test loop each offload holds the clock (a `TimeHold`) from submission until
// its outcome is delivered on the loop thread — exactly, not by the real-time quiet period: the
// clock cannot jump while the closure runs; the hold ends when the outcome is delivered.
//
// Shutdown. When nothing else is left to cancel, the loop closes its pool: queued closures are
// withdrawn (their callers get `CancellationError`), running ones finish and report, the threads
// are joined, and later calls throw a `LoopError` naming `offload`.

extension Loop {
    /// Runs the blocking closure `body` on one of the loop's offload threads and returns its value
    /// or rethrows its error; the caller resumes on the loop (asyncio's `run_in_executor`, tokio's
    /// `spawn_blocking`). Use it for work that would stall the loop: a blocking read, hashing a
    /// file, a CPU-heavy computation, a blocking C library call.
    ///
    /// ```swift
    /// let digest = try await loop.offload { try hashFile(at: path) }   // blocking reads, off the loop
    /// ```
    ///
    /// At most ``offloadThreadLimit`` closures run at once; the others wait in FIFO order. Threads
    /// start on first use and are joined when the loop shuts down.
    ///
    /// Cancellation does not interrupt `body`: if no thread has taken it yet it is withdrawn and
    /// never runs; if it is running, the call waits for it to finish. Either way a cancelled caller
    /// gets `CancellationError` (the closure's value or error is discarded), so the outcome does not
    /// depend on how busy the pool was, and the call never returns while `body` still runs.
    ///
    /// On a test loop, virtual time does not move while an offload is in flight (see
    /// ``TestLoop/holdTime()``): `body`'s real duration takes no virtual time.
    ///
    /// - Throws: what `body` throws; `CancellationError` (see above); a ``LoopError`` naming
    ///   `offload` when the loop has shut down. Any thread.
    /// - Parameters:
    ///   - isolation: the caller's isolation (leave the default): the caller resumes there.
    ///   - body: the blocking work, run once on a pool thread; it may borrow the caller's state.
    /// - Returns: what `body` returned.
    public func offload<T: Sendable>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: sending () throws -> T
    ) async throws -> T {
        if offloadPool.isClosed { throw LoopError.offloadAfterShutdown }
        try Task.checkCancellation()
        // `body` is only borrowed: the job releases it before reporting, and this call does not
        // return before the report (or the withdrawal, after which nothing runs it).
        return try await withoutActuallyEscaping(body) { body in
            try await runOffloaded(UnsafeTransfer(body))
        }
    }

    private func runOffloaded<T: Sendable>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: UnsafeTransfer<() throws -> T>
    ) async throws -> T {
        let slot = OffloadSlot()
        let value = try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<T, any Error>) in
                let hold = time.isVirtual ? unsafeDowncast(self, to: TestLoop.self).holdTime() : nil
                let job = OffloadJob(
                    run: { [self] in
                        let outcome = Result { try body.value() }
                        return { self.deliverOffloadOutcome { hold?.release(); continuation.resume(with: outcome) } }
                    },
                    reportWithdrawn: { [self] in
                        deliverOffloadOutcome { hold?.release(); continuation.resume(throwing: CancellationError()) }
                    })
                let cancelledAlready = slot.state.withLock { state in
                    state.job = job
                    return state.isCancelled
                }
                if cancelledAlready || !offloadPool.submit(job) {
                    offloadPool.discard(job)            // releases the borrowed closure
                    hold?.release()
                    if cancelledAlready || offloadPool.isWithdrawn(job) {
                        continuation.resume(throwing: CancellationError())     // cancelled just now
                    } else {
                        continuation.resume(throwing: LoopError.offloadAfterShutdown)
                    }
                }
            }
        } onCancel: {
            // Any thread. A job no thread has taken is withdrawn and reports at once; a running
            // one reports when it ends. One submitted a moment later sees `.withdrawn` and fails.
            let job = slot.state.withLock { state in
                state.isCancelled = true
                return state.job
            }
            if let job, offloadPool.withdraw(job) { job.reportWithdrawn() }
        }
        // Cancelled while the closure ran (or while its outcome was on its way): discard it.
        try Task.checkCancellation()
        return value
    }

    /// Runs `report` (which resumes an offload's caller) on the loop thread: inline when already
    /// there, else through the inbox. Shutdown joins the pool before it closes the inbox, so a
    /// refused push cannot normally happen; if it did, the caller is resumed from here rather than
    /// left waiting (a task of the loop then continues in the loop's afterlife).
    private func deliverOffloadOutcome(_ report: @escaping () -> Void) {
        if isOnLoopThread {
            report()
        } else if !inbox.push(.callback(report)) {
            report()
        }
    }

    /// How many offloaded closures may run at once: the size of the loop's offload pool (default:
    /// the number of online processors; at least 1). Raising it lets more start at once; lowering
    /// it only stops new threads from starting. Any thread.
    public var offloadThreadLimit: Int {
        get { offloadPool.limit }
        set { offloadPool.limit = newValue }
    }

    /// How many offload threads have started (they start on demand and stay until shutdown).
    /// Any thread.
    public var offloadThreadCount: Int { offloadPool.threadCount }

    /// Shutdown's last step before the loop closes (see `Loop+Shutdown.swift`): once nothing else is
    /// left, end signal listeners, then close the offload pool (withdraw queued closures, let running
    /// ones finish, join the threads). Outcomes arrive through the inbox, so shutdown keeps draining.
    /// - Returns: how many waiters were ended or will be resumed (0: nothing left to do).
    func shutDownServices() -> Int {
        let listeners = endSignalListenersForShutdown()
        if listeners > 0 { return listeners }
        let reported = offloadPool.close()
        // A closure that finished just before `close()` may have reported after shutdown last
        // looked at the inbox (and no longer counts as running). Every thread is joined now, so
        // every report is in the inbox: look again, or its caller would never resume.
        return reported + (inbox.mayHaveWork ? 1 : 0)
    }
}

/// Shares the job with the cancellation handler, which may run on any thread, before or after the
/// job exists.
private final class OffloadSlot: Sendable {
    let state = Lock<(job: OffloadJob?, isCancelled: Bool)>((nil, false))
}

extension LoopError {
}
