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
    ///
    /// Turned by the run loop (`runTicks`: plain ticks while nothing observes the loop,
    /// `observedTicks()` while an instrument or debug mode does) and by shutdown's drain (this).
    /// - Parameter polls: `false` skips phases 5–6 (shutdown's drain, which peeks at I/O itself
    ///   and must never wait).
    /// - Returns: `false` when the loop should stop turning.
    @inline(__always)
    func tick(polls: Bool) -> Bool {
        if isObserved { return observedTick(polls: polls) }
        return plainTick(polls: polls)
    }

    /// A tick that nothing observes.
    @inline(__always)
    func plainTick(polls: Bool = true) -> Bool {
        var unobserved = Unobserved()
        return tick(&unobserved, polls: polls)
    }

    /// The tick's one body, whatever observes it: `Unobserved` (the plain tick), or an instrument
    /// or timing observer (Loop+Observation.swift). Inlined into each caller and specialised per
    /// observer, so the plain tick's empty hooks compile to nothing.
    @inline(__always)
    func tick<Observer: TickObserver>(_ observer: inout Observer, polls: Bool) -> Bool {
        observer.tickWillStart(self)
        let now = readClockForTick()                                 // 1
        if !timers.isEmpty { moveDueTimers(now: now, &observer) }    // 2
        let arrived = drainInbox()                                   // 3
        let count = ready.count
        metricsStorage.noteTick(readyJobs: count)
        observer.jobsWillRun(afterArrivals: arrived, self)
        for _ in 0..<count { observer.run(ready.pop(), on: self) }   // 4
        metricsStorage.publishGauges(timers: timers.count, waiters: reactor.waiterCount, futures: pendingAwaits.count)
        let goesOn = !(runState.isEnding || inbox.isStopRequested)
        if goesOn && polls { pollAndDeliver() }                      // 5, 6
        observer.tickDidEnd(self)
        return goesOn
    }

    @inline(__always)
    func readClockForTick() -> Int64 {
        time.nowForTick(hasTimers: !timers.isEmpty)
    }

    /// Out of line (specialised per observer): inlined into the run loop, the timer heap's sift
    /// cost each fired timer ~16 more instructions there (register pressure in a large function).
    @inline(never)
    func moveDueTimers<Observer: TickObserver>(now: Int64, _ observer: inout Observer) {
        while let (deadline, id, payload) = timers.popDue(now: now, holdingSlotIf: TimerPayload.holdsSlotWhenDue) {
            let lag = now.saturatingSubtract(deadline)
            metricsStorage.noteTimerFired(lag: lag)
            observer.timerDidFire(deadline: deadline, lag: lag, self)
            activate(payload, id: id)
        }
        observer.dueTimersDidMove(self)
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

    /// - Returns: whether the inbox had work (it may turn out empty).
    @inline(__always)
    @discardableResult
    func drainInbox() -> Bool {
        guard inbox.mayHaveWork else { return false }
        // Arrivals a time hold accounts for (offload outcomes) do not restart the quiet period.
        inbox.take(into: &inboxBuffer)
        metricsStorage.crossThreadArrivals.add(inboxBuffer.count)
        if !inboxBuffer.isEmpty { time.noteCrossThreadArrival() }
        // Popping moves each item out of the ring (no retain/release per item; Inbox.swift).
        while !inboxBuffer.isEmpty { makeReady(inboxBuffer.pop()) }
        return true
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

// MARK: What observes a tick

/// What watches the tick's phases (`tick(_:polls:)`): the tick calls these at fixed points and the
/// observer adds its hooks and timing. Each gets the loop (borrowed: an observer that stored it, or
/// its `observation`, retained and released that around every hook loop). Three conform: `Unobserved` here (the plain tick), and
/// `InstrumentObserver` and `TimingObserver` (Loop+Observation.swift).
protocol TickObserver {
    /// A tick begins, before the clock is read.
    mutating func tickWillStart(_ loop: Loop)
    /// A timer due at `deadline` fired `lag` late (loop time): called before its work is activated.
    mutating func timerDidFire(deadline: Int64, lag: Int64, _ loop: Loop)
    /// Phase 2 is over: every due timer fired.
    mutating func dueTimersDidMove(_ loop: Loop)
    /// Phase 4 begins; `arrived`: whether phase 3 found the inbox with work.
    mutating func jobsWillRun(afterArrivals arrived: Bool, _ loop: Loop)
    /// Runs one job of phase 4 (`loop.run(work)`, with whatever the observer puts around it).
    mutating func run(_ work: Work, on loop: Loop)
    /// The tick has ended (after phases 5–6, if it polled).
    mutating func tickDidEnd(_ loop: Loop)
}

/// The plain tick's observer: nothing. Every hook is empty and inlined away.
struct Unobserved: TickObserver {
    @inline(__always) func tickWillStart(_ loop: Loop) {}
    @inline(__always) func timerDidFire(deadline: Int64, lag: Int64, _ loop: Loop) {}
    @inline(__always) func dueTimersDidMove(_ loop: Loop) {}
    @inline(__always) func jobsWillRun(afterArrivals arrived: Bool, _ loop: Loop) {}
    @inline(__always) func run(_ work: Work, on loop: Loop) { loop.run(work) }
    @inline(__always) func tickDidEnd(_ loop: Loop) {}
}
