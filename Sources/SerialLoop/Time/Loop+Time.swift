@_spi(ExperimentalScheduling) @_spi(ExperimentalCustomExecutors) import _Concurrency

extension Loop {
    /// Suspends the calling task for `duration` of loop time.
    ///
    /// Never returns early. Throws `CancellationError` as soon as the task is cancelled, and the
    /// timer is removed then (nothing is left behind). Callable from any task; the timer lives on
    /// the loop and the task resumes on its own executor. Runs on the caller's executor
    /// (`nonisolated(nonsending)`), so it costs one executor switch, as ``readable(_:)`` does.
    /// - Parameter duration: how long to sleep, in loop time (virtual on a test loop); zero or
    ///   negative resumes on the next tick, `.seconds(Int64.max)` never.
    /// - Throws: `CancellationError` when the task is cancelled; ``LoopError/loopHasShutDown(_:)``
    ///   when the loop has shut down (or shuts down while a task of another executor sleeps).
    nonisolated(nonsending) public func sleep(for duration: Duration) async throws {
        try await sleep(until: now.advanced(by: duration))
    }

    /// Suspends the calling task until the loop's clock reaches `deadline`.
    /// A deadline in the past resumes on the next tick. Callable from any task; the task resumes on
    /// its own executor.
    /// - Throws: `CancellationError` when the task is cancelled; ``LoopError/loopHasShutDown(_:)``
    ///   when the loop has shut down (or shuts down while a task of another executor sleeps).
    /// - Parameter deadline: the loop time to wake at (``now`` plus a duration, or an instant from
    ///   ``clock``).
    nonisolated(nonsending) public func sleep(until deadline: LoopClock.Instant) async throws {
        try await suspend(PendingSleep(deadline: deadline.nanosecondsSinceOrigin, on: self))
    }

    // MARK: Callbacks on timers (call_later / call_at)

    /// Runs `callback` on the loop after `delay` (asyncio's `call_later`). Never early; equal
    /// deadlines run in scheduling order.
    /// - Precondition: called on the loop's thread.
    /// - Complexity: O(log n) in the number of pending timers.
    /// - Parameters:
    ///   - delay: how long from ``now``; zero or negative runs on the next tick.
    ///   - callback: the code to run, on the loop's thread.
    ///   - file: the call site, for debug-mode reports and ``pendingWork`` (leave the default).
    ///   - line: the call site's line (leave the default).
    /// - Returns: a handle; ``ScheduledCallback/cancel()`` withdraws the callback (from any thread).
    ///   Dropping the handle does not cancel.
    @discardableResult
    public func schedule(after delay: Duration, _ callback: @escaping () -> Void, file: StaticString = #fileID, line: UInt = #line) -> ScheduledCallback {
        schedule(at: now.advanced(by: delay), callback, file: file, line: line)
    }

    /// Runs `callback` on the loop when its clock reaches `deadline` (asyncio's `call_at`). Never
    /// early; equal deadlines run in scheduling order.
    /// - Precondition: called on the loop's thread.
    /// - Parameters:
    ///   - deadline: the loop time to run at; a past deadline runs on the next tick.
    ///   - callback: the code to run, on the loop's thread.
    ///   - file: the call site, for debug-mode reports and ``pendingWork`` (leave the default).
    ///   - line: the call site's line (leave the default).
    /// - Returns: a handle; ``ScheduledCallback/cancel()`` withdraws the callback (from any thread).
    @discardableResult
    public func schedule(at deadline: LoopClock.Instant, _ callback: @escaping () -> Void, file: StaticString = #fileID, line: UInt = #line) -> ScheduledCallback {
        preconditionOnLoopThread("Loop.schedule(at:)")
        let id = timers.schedule(at: deadline.nanosecondsSinceOrigin, .scheduledCallback(tagged(callback, file: file, line: line)))
        if isObserved { noteTimerSite(id, file: file, line: line) }
        return ScheduledCallback(loop: self, id: id)
    }

    /// How many timers are pending (sleeps, scheduled callbacks, `Task.sleep`s). Loop thread only.
    public var pendingTimerCount: Int {
        preconditionOnLoopThread("Loop.pendingTimerCount")
        return timers.count
    }

    /// The earliest pending deadline, if any. Loop thread only.
    public var nextDeadline: LoopClock.Instant? {
        preconditionOnLoopThread("Loop.nextDeadline")
        return timers.nextDeadline.map(LoopClock.Instant.init(nanosecondsSinceOrigin:))
    }
}

/// One `loop.sleep`: a timer that resumes the task (the state machine: ``SingleWait``).
final class PendingSleep: SingleWait, @unchecked Sendable {
    // Unchecked Sendable: shared with the cancellation handler, which only sends it to the loop's
    // thread (`CancellationCallback`); `phase` is read and written there only.
    typealias Value = Void
    let deadline: Int64
    let loop: Loop
    @exclusivity(unchecked) var phase = WaitPhase.idle

    init(deadline: Int64, on loop: Loop) {
        self.deadline = deadline
        self.loop = loop
    }

    var operation: String { "sleep(until:)" }

    @inline(__always)
    func register(_ continuation: LoopContinuation<Void>, on loop: Loop) -> UInt64? {
        loop.timers.schedule(at: deadline, .resume(continuation)).token
    }

    func withdraw(_ token: UInt64, on loop: Loop) -> LoopContinuation<Void>? {
        guard case .resume(let continuation)? = loop.timers.cancel(TimerID(token: token)) else { return nil }
        loop.metricsStorage.timersCancelled.add(1)
        return continuation
    }
}

/// A callback scheduled with ``Loop/schedule(after:_:file:line:)``; cancel it to make sure it never runs.
public struct ScheduledCallback: Sendable {
    let loop: Loop
    // The callback's timer slot stays live from scheduling until the callback runs or is cancelled
    // — also between its timer firing and its turn on the ready queue — so the slot alone says
    // whether it may still run (TimerQueue.swift); a stale ID (the slot was reused) matches nothing.
    let id: TimerID

    /// Removes the callback if it has not run yet (O(log n), nothing left behind). Any thread:
    /// from another thread the removal happens on the loop's next tick.
    public func cancel() {
        loop.onLoopThread(with: self) { callback in
            // Pending: out of the heap. Fired, not run yet: its held slot is released, so it will not run.
            let loop = callback.loop
            if loop.timers.cancel(callback.id) != nil || loop.timers.releaseHeld(callback.id) {
                loop.metricsStorage.timersCancelled.add(1)
            }
        }
    }

    /// Whether the callback is still waiting to run. Loop thread only.
    public var isPending: Bool {
        loop.preconditionOnLoopThread("ScheduledCallback.isPending")
        return loop.timers.contains(id)
    }
}
