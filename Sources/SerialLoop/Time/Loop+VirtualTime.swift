/// Virtual-time control for test loops. Loop thread only.
struct VirtualClockState {
    /// Tasks waiting in `runUntilIdle()`.
    var idleWaiters: [UnsafeContinuation<Void, Never>] = []
    /// A task waiting in `advance(to:)`, and its target time.
    var advanceRequest: (target: Int64, continuation: UnsafeContinuation<Void, Never>)? = nil
    /// Whether the clock jumps to the next deadline by itself when the loop is idle.
    var autoAdvance = true
    /// Real time the loop waits for I/O in flight before it lets virtual time jump.
    var ioQuietPeriodNanoseconds: Int64 = 250_000_000
    /// Real time a test loop waits, with nothing scheduled that could ever move it, before it
    /// declares a stall (instead of hanging the test forever).
    var stallTimeoutNanoseconds: Int64 = 30_000_000_000
    /// Set when a stall was declared; `run(until:)` then throws a `LoopError` describing it.
    var stallReport: String? = nil
}

extension Loop {
    /// What a test loop does at step 5 of a tick when no work is ready. The rule, in order:
    /// 1. I/O that is ready now is work: poll without blocking first.
    /// 2. Tasks waiting in `runUntilIdle()` resume (time does not move).
    /// 3. An `advance(to:)` in progress moves the clock to the next deadline within its target, or
    ///    to the target itself and resumes its caller.
    /// 4. With auto-advance, the clock jumps to the next deadline — but if a task waits on a
    ///    descriptor or a reader/writer callback is installed (I/O in flight, e.g. the other end of a
    ///    socketpair on another thread), the loop first waits up to `ioQuietPeriod` of *real* time
    ///    for it; any readiness or cross-thread wake-up cancels the jump.
    /// 5. Otherwise nothing can move time: wait (for real) for other threads or I/O — at most
    ///    `stallTimeout`; then the loop declares a stall rather than hang: `run(until:)` (and so
    ///    `withTestLoop`) throws a `LoopError` listing what the loop was still waiting on.
    func idleOnVirtualTime() {
        if reactor.hasKernelInterest && poll(timeoutNanoseconds: 0) > 0 { return }
        if !ready.isEmpty || inbox.mayHaveWork { return }
        if !virtualClock.idleWaiters.isEmpty {
            let waiters = virtualClock.idleWaiters
            virtualClock.idleWaiters.removeAll()
            for waiter in waiters { waiter.resume() }
            return
        }
        let now = virtualNanoseconds.load(ordering: .relaxed)
        if let request = virtualClock.advanceRequest {
            if let next = timers.nextDeadline, next <= request.target {
                setVirtualNow(max(now, next))
            } else {
                setVirtualNow(max(now, request.target))
                virtualClock.advanceRequest = nil
                request.continuation.resume()
            }
            return
        }
        if virtualClock.autoAdvance, let next = timers.nextDeadline {
            if reactor.waiterCount > 0 || reactor.callbackCount > 0 {
                if parkAndPoll(timeoutNanoseconds: virtualClock.ioQuietPeriodNanoseconds) > 0 { return }
                if !ready.isEmpty || inbox.mayHaveWork { return }
            }
            setVirtualNow(max(now, next))
            return
        }
        if parkAndPoll(timeoutNanoseconds: virtualClock.stallTimeoutNanoseconds) == 0 && ready.isEmpty && !inbox.mayHaveWork {
            virtualClock.stallReport = "the test loop stalled: nothing was ready and nothing could move virtual time for \(Duration.nanoseconds(virtualClock.stallTimeoutNanoseconds)) of real time (pending: \(leftovers())); the body awaits something only another thread could complete"
            exitRequested = true
        }
    }

    private func setVirtualNow(_ nanoseconds: Int64) {
        virtualNanoseconds.store(nanoseconds, ordering: .relaxed)
    }

    private func preconditionVirtual(_ operation: String) {
        precondition(timeMode == .virtual, "Loop.\(operation) needs a test loop (virtual time); this loop runs on real time")
    }

    /// Suspends until the loop is idle: no ready work, no due timer, no ready I/O — without moving
    /// the clock. Exact quiescence, no yield counting. Test loops only.
    public func runUntilIdle() async {
        preconditionVirtual("runUntilIdle()")
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            onLoopThread { self.virtualClock.idleWaiters.append(continuation) }
        }
    }

    /// Moves virtual time forward by `duration`, firing every timer due on the way in
    /// `(deadline, sequence)` order and letting the work they wake run before the next one fires.
    /// Returns when the clock reads the target and the loop is idle. Test loops only.
    public func advance(by duration: Duration) async {
        await advance(to: now.advanced(by: duration))
    }

    /// Moves virtual time forward to `deadline` (see ``advance(by:)``). A deadline in the past
    /// only runs the loop until idle.
    public func advance(to deadline: LoopClock.Instant) async {
        preconditionVirtual("advance(to:)")
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            onLoopThread {
                precondition(self.virtualClock.advanceRequest == nil, "Loop.advance(to:) called while another advance is in progress")
                self.virtualClock.advanceRequest = (deadline.nanosecondsSinceOrigin, continuation)
            }
        }
    }

    /// Whether a test loop's clock jumps to the next deadline by itself when idle (default `true`).
    /// Turn it off to drive time only with ``advance(by:)`` / ``advance(to:)``. Loop thread only.
    public var autoAdvancesTime: Bool {
        get { preconditionOnLoopThread("Loop.autoAdvancesTime"); return virtualClock.autoAdvance }
        set { preconditionOnLoopThread("Loop.autoAdvancesTime"); virtualClock.autoAdvance = newValue }
    }

    /// How long (real time) a test loop waits, with nothing scheduled that could move it, before it
    /// declares a stall and `withTestLoop` throws (default 30 s). Loop thread only.
    public var stallTimeout: Duration {
        get { preconditionOnLoopThread("Loop.stallTimeout"); return .nanoseconds(virtualClock.stallTimeoutNanoseconds) }
        set { preconditionOnLoopThread("Loop.stallTimeout"); virtualClock.stallTimeoutNanoseconds = max(0, newValue.saturatingNanoseconds) }
    }

    /// How long (real time) a test loop waits for in-flight I/O before letting virtual time jump
    /// (default 250 ms). Raise it when the other side of a socket is slow (a child process, a
    /// loaded CI machine). Loop thread only.
    public var ioQuietPeriod: Duration {
        get { preconditionOnLoopThread("Loop.ioQuietPeriod"); return .nanoseconds(virtualClock.ioQuietPeriodNanoseconds) }
        set { preconditionOnLoopThread("Loop.ioQuietPeriod"); virtualClock.ioQuietPeriodNanoseconds = max(0, newValue.saturatingNanoseconds) }
    }
}
