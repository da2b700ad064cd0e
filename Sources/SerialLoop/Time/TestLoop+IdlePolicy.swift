@preconcurrency import Glibc
import CSerialLoopShims

// When a test loop's clock may jump, and when a test loop gives up (a stall); how it moves the
// clock; and which runtime sleeps are dead (why they exist: Loop+RuntimeSleeps.swift). Members of
// `TestLoop`: only a test loop has a virtual clock (its state: VirtualClock.swift).
//
// The rule has no open-ended heuristics. What stops a jump:
// - ready work and ready I/O (they run first: time never moves under them);
// - a time hold (`holdTime()` / `holdingTime { }`, and offloaded work, which holds time while it
//   runs): the test says "work I started elsewhere will come back; do not jump until I release";
// - I/O in flight, for a bounded while: a descriptor waiter or a reader/writer callback means
//   another thread or process may be about to answer, and a jump now would fire the test's
//   timeout early. The loop waits until the descriptors have been quiet for `ioQuietPeriod` of
//   *real* time (readiness restarts the period).
// What does not: work arriving from other threads (`execute`, continuations resumed elsewhere).
// It runs, but it neither delays nor cancels a jump: a heartbeat from another thread every 50 ms
// must not freeze the clock. Off-loop work the test waits for is made explicit with a hold.
//
// Bounded by construction: the real time the loop spends parked while virtual time cannot move —
// for a quiet period that keeps being restarted, a hold nobody releases, or nothing scheduled at
// all — is summed until virtual time moves again, whatever work ran in between. When it reaches
// `stallTimeout`, the loop declares a stall that names what kept it (the descriptors, the hold,
// the arrivals from other threads) and `run(until:)` (so `withTestLoop`) throws.

extension TestLoop {
    /// What a test loop does at step 5 of a tick when no work is ready. The rule, in order:
    /// 1. I/O that is ready now is work: poll without blocking first.
    /// 2. Tasks waiting in `runUntilIdle()` resume (time does not move).
    /// 3. Runtime sleeps of cancelled tasks at the head of the timer queue are set aside: they are
    ///    not deadlines anyone waits for. "Never" deadlines are not deadlines either.
    /// 4. An `advance(to:)` in progress moves the clock to the next deadline within its target, or
    ///    to the target itself and resumes its caller. (Explicit: holds and quiet periods do not
    ///    apply.)
    /// 5. With auto-advance and no time hold, the clock jumps to the next live deadline — once I/O
    ///    in flight, if any, has been quiet for `ioQuietPeriod`.
    /// 6. Otherwise nothing can move time: park until other threads or I/O bring work.
    /// Waiting in 5 and 6 counts towards `stallTimeout` (see the note at the top of this file).
    func idleOnVirtualTime() {
        if reactor.hasKernelInterest && poll(timeoutNanoseconds: 0) > 0 { return }
        if !ready.isEmpty || inbox.mayHaveWork { return }
        if !virtualClock.idleWaiters.isEmpty {
            let waiters = virtualClock.idleWaiters
            virtualClock.idleWaiters.removeAll()
            virtualClock.noteProgress()
            for waiter in waiters { waiter.resume() }
            return
        }
        let deadSleeps = setAsideDeadRuntimeSleeps()
        defer { reinstate(deadSleeps) }
        let now = virtualClock.now
        let next = timers.nextDeadline.flatMap { $0 < neverDeadline ? $0 : nil }
        if let request = virtualClock.advanceRequest {
            if let next, next <= request.target {
                setVirtualNow(max(now, next))
            } else {
                // A target of "never" fires every finite timer and leaves the clock at the last.
                if request.target < neverDeadline { setVirtualNow(max(now, request.target)) } else { virtualClock.noteProgress() }
                virtualClock.advanceRequest = nil
                request.continuation.resume()
            }
            return
        }
        if virtualClock.autoAdvance && virtualClock.holdCount <= 0, let next {
            if waitForQuietIO(before: next) { setVirtualNow(max(now, next)) }
            return
        }
        virtualClock.quietPeriodStart = nil
        if !parkCountingTowardsStall(timeoutNanoseconds: nil) {
            declareStall("virtual time could not move (\(whyTimeCannotMove()))")
        }
    }

    /// Waits, if I/O is in flight, until it has been quiet for `ioQuietPeriod` of real time.
    /// - Returns: `true` when the jump may happen now; `false` when work arrived (run it first, then
    ///   come back: the quiet period goes on unless it was readiness) or a stall was declared.
    private func waitForQuietIO(before deadline: Int64) -> Bool {
        let quiet = virtualClock.ioQuietPeriodNanoseconds
        // The main-queue descriptor of a loop on the main thread is the loop's own, not I/O in flight.
        guard quiet > 0, reactor.waiterCount > 0 || reactor.callbackCount > (servesMainQueue ? 1 : 0) else { return true }
        let start = virtualClock.quietPeriodStart ?? monotonicNanoseconds()
        virtualClock.quietPeriodStart = start
        while true {
            let remaining = quiet - (monotonicNanoseconds() - start)
            if remaining <= 0 { return true }
            guard parkCountingTowardsStall(timeoutNanoseconds: remaining) else {
                declareStall("I/O in flight kept virtual time from jumping to \(Duration.nanoseconds(deadline)) (\(reactor.descriptorsInFlight()); ioQuietPeriod \(Duration.nanoseconds(quiet)))")
                return false
            }
            // Readiness delivered by that poll is on the ready queue now: the descriptors are not
            // quiet, so the period starts over after it runs. Arrivals from other threads run too,
            // but the period goes on.
            if !ready.isEmpty { virtualClock.quietPeriodStart = nil; return false }
            if inbox.mayHaveWork || inbox.isStopRequested { return false }
        }
    }

    /// Parks until work arrives or `timeoutNanoseconds` (nil: no limit) of real time passes,
    /// bounded by what is left of the stall budget, and charges the time parked to it.
    /// - Returns: `false`, without parking, when the budget is spent: the caller declares a stall.
    private func parkCountingTowardsStall(timeoutNanoseconds: Int64?) -> Bool {
        let budget = virtualClock.stallTimeoutNanoseconds - virtualClock.waitedWithoutMoving
        if budget <= 0 { return false }
        let start = monotonicNanoseconds()
        parkAndPoll(timeoutNanoseconds: min(timeoutNanoseconds ?? budget, budget))
        virtualClock.waitedWithoutMoving += max(0, monotonicNanoseconds() - start)
        return true
    }

    private func declareStall(_ why: String) {
        let arrivals = virtualClock.crossThreadArrivals
        let fromOtherThreads = arrivals > 0 ? "; \(arrivals) work item(s) arrived from other threads meanwhile, which do not hold time: use holdTime() for off-loop work the test waits for" : ""
        endRunStalled("the test loop stalled: \(why) for \(Duration.nanoseconds(virtualClock.stallTimeoutNanoseconds)) of real time spent waiting\(fromOtherThreads); pending: \(leftovers()). The body awaits something only another thread could complete\(mainActorStallHint)")
    }

    private func whyTimeCannotMove() -> String {
        if virtualClock.holdCount > 0 { return "time is held by \(virtualClock.holdCount) TimeHold(s)" }
        if !virtualClock.autoAdvance { return "autoAdvancesTime is off and no advance(by:) is running" }
        if let next = timers.nextDeadline, next == neverDeadline { return "only 'never' deadlines are pending" }
        return "no live timer"
    }
}

extension TestLoop {
    /// Moves virtual time. Loop thread only, while the loop runs on it (the thread-local copy the
    /// runtime's clocks read is this thread's).
    /// - Precondition: `nanoseconds` is not "never" and not in the past.
    func setVirtualNow(_ nanoseconds: Int64) {
        assert(nanoseconds < neverDeadline && nanoseconds >= virtualClock.now, "virtual time must move forward and never reach 'never'")
        assert(c_serial_loop_current_loop() == Unmanaged.passUnretained(self).toOpaque(), "virtual time set off the thread the loop runs on: the runtime's clocks there would not follow")
        virtualClock.nanoseconds.store(nanoseconds, ordering: .relaxed)
        c_serial_loop_set_thread_virtual_nanoseconds(nanoseconds)
        virtualClock.noteProgress()
    }
}

extension TestLoop {
    // MARK: Runtime sleeps of cancelled tasks

    /// Records the current task as the owner of the runtime sleep `id`. Loop thread, test loops.
    /// - Complexity: amortised O(1): fired sleeps' entries are swept when the table has grown to
    ///   twice the pending timers.
    func noteRuntimeSleep(_ id: TimerID) {
        guard let owner = withUnsafeCurrentTask(body: { $0 }) else { return }
        runtimeSleepOwners.sweepWhenGrown(liveCount: timers.count) { { self.timers.contains($0) } }
        runtimeSleepOwners[id] = owner
    }

    /// Removes, from the head of the timer queue, every runtime sleep whose task is cancelled.
    func setAsideDeadRuntimeSleeps() -> [(deadline: Int64, payload: TimerPayload, owner: UnsafeCurrentTask)] {
        var dead: [(deadline: Int64, payload: TimerPayload, owner: UnsafeCurrentTask)] = []
        while let (deadline, id) = timers.first, let owner = runtimeSleepOwners[id], owner.isCancelled {
            runtimeSleepOwners[id] = nil
            dead.append((deadline, timers.cancel(id)!, owner))
        }
        return dead
    }

    /// Puts set-aside sleeps back with their own deadlines: those the clock has passed fire on the
    /// next tick (a no-op for a cancelled sleep), the others wait, still known to be dead.
    func reinstate(_ dead: [(deadline: Int64, payload: TimerPayload, owner: UnsafeCurrentTask)]) {
        for (deadline, payload, owner) in dead {
            runtimeSleepOwners[timers.schedule(at: deadline, payload)] = owner
        }
    }
}
