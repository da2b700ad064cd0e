@_spi(ExperimentalScheduling) @_spi(ExperimentalCustomExecutors) import _Concurrency

extension Loop {
    /// Suspends the calling task for `duration` of loop time.
    ///
    /// Never returns early. Throws `CancellationError` as soon as the task is cancelled, and the
    /// timer is removed then (nothing is left behind). Callable from any task; the timer lives on
    /// the loop and the task resumes on its own executor.
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now.advanced(by: duration))
    }

    /// Suspends the calling task until the loop's clock reaches `deadline`.
    /// A deadline in the past resumes on the next tick.
    /// - Throws: `CancellationError` when the task is cancelled; ``LoopError/loopHasShutDown(_:)``
    ///   when the loop has shut down (or shuts down while a task of another executor sleeps).
    public func sleep(until deadline: LoopClock.Instant) async throws {
        try await suspend(PendingSleep(deadline: deadline.nanosecondsSinceOrigin))
    }

    // MARK: Callbacks on timers (call_later / call_at)

    /// Runs `callback` on the loop after `delay` (asyncio's `call_later`). Never early; equal
    /// deadlines run in scheduling order.
    /// - Precondition: called on the loop's thread.
    /// - Complexity: O(log n) in the number of pending timers.
    @discardableResult
    public func schedule(after delay: Duration, _ callback: @escaping () -> Void, file: StaticString = #fileID, line: UInt = #line) -> ScheduledCallback {
        schedule(at: now.advanced(by: delay), callback, file: file, line: line)
    }

    /// Runs `callback` on the loop when its clock reaches `deadline` (asyncio's `call_at`).
    /// - Precondition: called on the loop's thread.
    @discardableResult
    public func schedule(at deadline: LoopClock.Instant, _ callback: @escaping () -> Void, file: StaticString = #fileID, line: UInt = #line) -> ScheduledCallback {
        preconditionOnLoopThread("Loop.schedule(at:)")
        let id = timers.reserveID()
        timers.schedule(at: deadline.nanosecondsSinceOrigin, .timerCallback(id, tagged(callback, file: file, line: line)), id: id)
        if observation != nil { noteTimerSite(id, file: file, line: line) }
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

/// One `loop.sleep`, shared by the sleeping side and its cancellation handler. Loop thread only.
final class PendingSleep: Suspension, @unchecked Sendable {
    enum State {
        case notStarted
        case scheduled(TimerID)
        case cancelled
    }
    let deadline: Int64
    @exclusivity(unchecked) var state = State.notStarted

    init(deadline: Int64) {
        self.deadline = deadline
    }

    var operation: String { "sleep(until:)" }

    func start(on loop: Loop, _ continuation: LoopContinuation<Void>) {
        guard case .notStarted = state else {
            continuation.resume(throwing: CancellationError())
            return
        }
        state = .scheduled(loop.timers.schedule(at: deadline, .resume(continuation)))
    }

    func cancel(on loop: Loop) {
        if case .scheduled(let id) = state, case .resume(let continuation)? = loop.timers.cancel(id) {
            loop.metricsStorage.timersCancelled.add(1)
            continuation.resume(throwing: CancellationError())
        }
        state = .cancelled
    }
}

/// A callback scheduled with ``Loop/schedule(after:_:)``; cancel it to make sure it never runs.
public struct ScheduledCallback: Sendable {
    let loop: Loop
    let id: TimerID

    /// Removes the callback if it has not run yet (O(log n), nothing left behind). Any thread:
    /// from another thread the removal happens on the loop's next tick.
    public func cancel() {
        loop.onLoopThread {
            if self.loop.timers.cancel(self.id) != nil || self.loop.firedCallbacks.remove(self.id) != nil {
                self.loop.metricsStorage.timersCancelled.add(1)
            }
        }
    }

    /// Whether the callback is still waiting to run. Loop thread only.
    public var isPending: Bool {
        loop.preconditionOnLoopThread("ScheduledCallback.isPending")
        return loop.timers.contains(id) || loop.firedCallbacks.contains(id)
    }
}

// MARK: - Task.sleep on the loop's timers

/// With this conformance, `Task.sleep`, `ContinuousClock().sleep` and `SuspendingClock` sleeps in
/// tasks on the loop land on the loop's own timer queue — and so obey virtual time on a test loop.
@_spi(ExperimentalScheduling)
extension Loop: SchedulingExecutor {
    public func enqueue<C: Clock>(_ job: consuming ExecutorJob, at instant: C.Instant, tolerance: C.Duration?, clock: C) {
        scheduleRuntimeJob(.sleepWake(UnownedJob(job)), deadline: deadline(for: instant, clock: clock))
    }

    public func enqueue<C: Clock>(_ job: consuming ExecutorJob, after delay: C.Duration, tolerance: C.Duration?, clock: C) {
        scheduleRuntimeJob(.sleepWake(UnownedJob(job)), deadline: deadline(after: delay, clock: clock))
    }
}

extension Loop {
    func scheduleRuntimeJob(_ work: Work, deadline: Int64) {
        guard case .sleepWake(let job) = work else { preconditionFailure("runtime timers carry sleep jobs") }
        if isOnLoopThread && lifecycle != .shutDown {
            let id = timers.schedule(at: deadline, work)
            // The runtime calls this inside the sleeping task's job: remember that task, so a test
            // loop can tell a cancelled sleep's leftover job from a live one (Loop+VirtualTime.swift).
            if timeMode == .virtual { noteRuntimeSleep(id) }
        } else if !inbox.push(.suspension({ isLoopAlive in
            if isLoopAlive { self.timers.schedule(at: deadline, work) } else { self.runAfterShutdown(job, deadline: deadline) }
        })) {
            runAfterShutdown(job, deadline: deadline)
        }
    }

    /// Converts another clock's instant to a loop deadline: `now + (instant - clock.now)`, both
    /// "now"s read on the calling thread.
    ///
    /// Exact on a test loop. There the runtime calls this on the loop's thread, where
    /// `ContinuousClock.now` and `SuspendingClock.now` read `origin + virtualNow` (see
    /// Loop+VirtualTime.swift), and where the runtime computed the instant with the same reading:
    /// `Task.sleep(for: d)` hands us `origin + virtualNow + d`, and this returns `virtualNow + d` —
    /// that is, `instant - origin` — to the nanosecond, under any load. On another thread the
    /// instant and `clock.now` are both real, and their difference is the real time remaining.
    /// A deadline past `Int64.max` saturates to "never" (see `neverDeadline`).
    func deadline<C: Clock>(for instant: C.Instant, clock: C) -> Int64 {
        let remaining: Duration
        if let instant = instant as? ContinuousClock.Instant {
            remaining = ContinuousClock.now.duration(to: instant)
        } else if let instant = instant as? SuspendingClock.Instant {
            remaining = SuspendingClock.now.duration(to: instant)
        } else if let instant = instant as? LoopClock.Instant {
            return instant.nanosecondsSinceOrigin
        } else if let duration = clock.now.duration(to: instant) as? Duration {
            remaining = duration
        } else {
            remaining = .zero
        }
        return nowNanoseconds.saturatingAdd(max(0, remaining.saturatingNanoseconds))
    }

    func deadline<C: Clock>(after delay: C.Duration, clock: C) -> Int64 {
        let nanoseconds = (delay as? Duration)?.saturatingNanoseconds ?? 0
        return nowNanoseconds.saturatingAdd(max(0, nanoseconds))
    }
}
