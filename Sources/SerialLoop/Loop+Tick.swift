@preconcurrency import Glibc

extension Loop {
    // MARK: The tick

    /// One turn of the loop. The phases, in order:
    /// 1. read the clock once;
    /// 2. move due timers to the ready queue in `(deadline, sequence)` order (no user code runs);
    /// 3. drain the cross-thread inbox;
    /// 4. run the jobs that were ready when the tick began (new ones wait, so I/O is never starved);
    /// 5. poll for I/O — without blocking if work is ready, else until the next deadline, else until
    ///    woken (a test loop never waits for time: it jumps its clock instead);
    /// 6. deliver readiness: resume waiters, queue reader/writer callbacks.
    /// - Returns: `false` when the loop should stop turning.
    @inline(__always)
    func tick() -> Bool {
        if isObserved { return observedTick(observation) }
        let now = readClockForTick()                         // 1
        moveDueTimers(now: now)                             // 2
        drainInbox()                                         // 3
        let count = ready.count
        metricsStorage.noteTick(readyJobs: count)
        runReady(count: count)                               // 4
        metricsStorage.publishGauges(timers: timers.count, waiters: reactor.waiterCount, futures: pendingAwaits.count)
        if runState.isEnding || inbox.isStopRequested { return false }
        pollAndDeliver()                                     // 5, 6
        return true
    }

    @inline(__always)
    func readClockForTick() -> Int64 {
        time.nowForTick(hasTimers: !timers.isEmpty)
    }

    @inline(__always)
    func moveDueTimers(now: Int64) {
        while let (deadline, id, payload) = timers.popDue(now: now, holdingSlotIf: TimerPayload.holdsSlotWhenDue) {
            metricsStorage.noteTimerFired(lag: now.saturatingSubtract(deadline))
            activate(payload, id: id)
        }
    }

    /// Puts a fired timer's work on the ready queue. Resuming a continuation only enqueues its task.
    @inline(__always)
    func activate(_ payload: TimerPayload, id: TimerID) {
        switch payload {
        case .resume(let continuation):
            continuation.resume()
        case .scheduledCallback(let body):
            makeReady(.scheduledCallback(id, body))
        case .sleepWake(let job):
            makeReady(.sleepWake(job))
        }
    }

    @inline(__always)
    func drainInbox() {
        guard inbox.mayHaveWork else { return }
        // Arrivals a time hold accounts for (offload outcomes) do not restart the quiet period.
        inbox.take(into: &inboxBuffer)
        metricsStorage.crossThreadArrivals.add(inboxBuffer.count)
        if !inboxBuffer.isEmpty { time.noteCrossThreadArrival() }
        // Popping moves each item out of the ring (no retain/release per item; Inbox.swift).
        while !inboxBuffer.isEmpty { makeReady(inboxBuffer.pop()) }
    }

    @inline(__always)
    func runReady(count: Int) {
        for _ in 0..<count {
            run(ready.pop())
        }
    }

    @inline(__always)
    func run(_ work: Work) {
        switch work {
        case .task(let job):
            job.runSynchronously(on: asUnownedTaskExecutor())
        case .actor(let job):
            job.runSynchronously(isolatedTo: actorExecutor.asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
        case .sleepWake(let job):
            isRunningSleepWake = true
            job.runSynchronously(on: asUnownedTaskExecutor())
            isRunningSleepWake = false
        case .global(let job):
            // On the loop as its task executor, so the job's `Task.sleep`s land on the loop's
            // timers (virtual on a test loop) instead of the global executor's (see GlobalRouting.swift).
            job.runSynchronously(on: asUnownedTaskExecutor())
        case .callback(let body):
            metricsStorage.callbacks.add(1)
            body()
        case .suspension(let start):
            start(true)
        case .scheduledCallback(let id, let body):
            if timers.releaseHeld(id) {
                metricsStorage.callbacks.add(1)
                body()
            }
        }
    }

    func pollAndDeliver() {
        if !ready.isEmpty || inbox.mayHaveWork {
            // Work is waiting: peek at I/O without blocking, and skip the syscall when no
            // descriptor is watched (the wake-up eventfd matters only to a parked loop).
            if reactor.hasKernelInterest && !defersBusyPoll() { poll(timeoutNanoseconds: 0) }
            return
        }
        time.waitWhenIdle(on: self)
    }

    /// Blocks in the backend until I/O, a wake-up, or the timeout — unless work arrived meanwhile.
    /// - Returns: how many events (including a wake-up) arrived.
    @discardableResult
    func parkAndPoll(timeoutNanoseconds: Int64?) -> Int {
        guard inbox.beginParking() else {
            return 1 + (reactor.hasKernelInterest ? poll(timeoutNanoseconds: 0) : 0)
        }
        defer { inbox.endParking() }
        guard reactor.mayNeedVerification else { return poll(timeoutNanoseconds: timeoutNanoseconds) }
        return parkInSlices(timeoutNanoseconds: timeoutNanoseconds)
    }

    /// Parks for `timeoutNanoseconds` (`nil`: until woken), waking up whenever the reactor has a
    /// descriptor check due (see "Descriptors closed behind the loop's back" in Reactor+Verification.swift).
    private func parkInSlices(timeoutNanoseconds: Int64?) -> Int {
        var now = monotonicNanoseconds()
        let end = timeoutNanoseconds.map { now.saturatingAdd($0) }
        while true {
            var slice = end.map { max(0, $0.saturatingSubtract(now)) }
            if let check = reactor.timeUntilVerification(now: now) { slice = min(slice ?? .max, check) }
            let count = poll(timeoutNanoseconds: slice, startedAt: now)
            if count > 0 { return count }
            now = monotonicNanoseconds()
            if let end, now >= end { return 0 }
        }
    }

    /// Polls once, delivering readiness (with the instruments' hooks around it, if any).
    /// `startedAt`: a clock reading the caller took just before, if it has one (saves a read).
    @discardableResult
    func poll(timeoutNanoseconds: Int64?, startedAt: Int64? = nil) -> Int {
        if isObserved { return observedPoll(timeoutNanoseconds: timeoutNanoseconds, observation) }
        return pollOnce(timeoutNanoseconds: timeoutNanoseconds, startedAt: startedAt)
    }

    /// Polls once, delivering readiness. Poll failures other than EINTR are loop bugs, not user errors.
    /// A poll that may block is timed (two clock reads next to a syscall that parks the thread; the
    /// first is the caller's `startedAt` when it has one, the second serves the descriptor check
    /// too), so that the always-on `pollBlocked` metric adds no clock read to a parking loop that
    /// checks descriptors.
    func pollOnce(timeoutNanoseconds: Int64?, startedAt: Int64? = nil) -> Int {
        let blocks = LoopMetricsStorage.isCompiledIn && timeoutNanoseconds != 0
        let start = blocks ? (startedAt ?? monotonicNanoseconds()) : 0
        do {
            // The loop reached through an unretained reference, borrowed: the closure does not
            // outlive this call. A strong capture retained and released the loop around every
            // poll, and an `unowned(unsafe)` one still around every callback it queued (`addReader`
            // round trip 1,828 -> 1,632 instructions).
            let loop = Unmanaged.passUnretained(self)
            let (events, woke) = try reactor.poll(timeoutNanoseconds: timeoutNanoseconds) { callback in
                loop._withUnsafeGuaranteedRef { $0.makeReady(.callback(callback)) }
            }
            if woke { inbox.wakeConsumed() }
            metricsStorage.polls.add(1)
            if woke { metricsStorage.wakeUps.add(1) }
            var end: Int64? = nil
            if blocks {
                metricsStorage.blockingPolls.add(1)
                // The reading first: reading the histogram before the clock call retained it around that call.
                let now = monotonicNanoseconds()
                end = now
                metricsStorage.pollBlocked.record(now - start)
            }
            let count = events + (woke ? 1 : 0)
            guard reactor.mayNeedVerification else { return count }
            return count + reactor.verifyIfDue(now: end ?? monotonicNanoseconds())
        } catch {
            fatalError("SerialLoop: polling failed, which the loop cannot recover from: \(error)")
        }
    }
}
