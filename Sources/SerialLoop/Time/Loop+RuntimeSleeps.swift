@_spi(ExperimentalScheduling) @_spi(ExperimentalCustomExecutors) import _Concurrency

// Plain `Task.sleep` on the loop, and the bookkeeping of its sleeps on a test loop.
//
// The runtime computes the sleep's instant (`clock.now + d`) and hands the loop only that, as a
// `SchedulingExecutor`: `deadline(for:clock:)` converts it to loop time (exact on a test loop,
// whose thread reads virtual time through the C shim: VirtualClock.swift), and the wake-up job
// is filed as a `.sleepWake` timer. When it fires, the job runs and its hop to the global executor
// comes straight back (GlobalRouting.swift).
//
// Dead sleeps are not reasons to move. When a task sleeping in plain `Task.sleep` is cancelled,
// the runtime resumes it at once but leaves its wake-up job in our timer queue (there is no API to
// withdraw it). The loop records which task each runtime sleep belongs to (the runtime schedules
// the sleep from inside that task's job) and, before a jump, sets aside every sleep at the head of
// the queue whose task is cancelled, so the clock goes to the next *live* deadline
// (TestLoop+IdlePolicy.swift). Their jobs
// still run (dropping them would leak the runtime's sleep task), once the clock has passed their
// deadlines, where running them is a no-op. A cancelled task's sleep can never be live:
// cancellation resumes every sleep of the task, and a new sleep in a cancelled task throws at once.

/// With this conformance, `Task.sleep`, `ContinuousClock().sleep` and `SuspendingClock` sleeps in
/// tasks on the loop land on the loop's own timer queue — and so obey virtual time on a test loop.
@_spi(ExperimentalScheduling)
extension Loop: SchedulingExecutor {
    public func enqueue<C: Clock>(_ job: consuming ExecutorJob, at instant: C.Instant, tolerance: C.Duration?, clock: C) {
        scheduleRuntimeJob(UnownedJob(job), deadline: deadline(for: instant, clock: clock))
    }

    public func enqueue<C: Clock>(_ job: consuming ExecutorJob, after delay: C.Duration, tolerance: C.Duration?, clock: C) {
        scheduleRuntimeJob(UnownedJob(job), deadline: deadline(after: delay, clock: clock))
    }
}

extension Loop {
    func scheduleRuntimeJob(_ job: UnownedJob, deadline: Int64) {
        if isOnLoopThread && !runState.isShutDown {
            let id = timers.schedule(at: deadline, .sleepWake(job))
            // The runtime calls this inside the sleeping task's job: remember that task, so a test
            // loop can tell a cancelled sleep's leftover job from a live one (below).
            if time.isVirtual { unsafeDowncast(self, to: TestLoop.self).noteRuntimeSleep(id) }
        } else if !inbox.push(.suspension({ isLoopAlive in
            if isLoopAlive { self.timers.schedule(at: deadline, .sleepWake(job)) } else { self.runAfterShutdown(job, deadline: deadline) }
        })) {
            runAfterShutdown(job, deadline: deadline)
        }
    }

    /// Converts another clock's instant to a loop deadline: `now + (instant - clock.now)`, both
    /// "now"s read on the calling thread.
    ///
    /// Exact on a test loop. There the runtime calls this on the loop's thread, where
    /// `ContinuousClock.now` and `SuspendingClock.now` read `origin + virtualNow` (see
    /// VirtualClock.swift), and where the runtime computed the instant with the same reading:
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
