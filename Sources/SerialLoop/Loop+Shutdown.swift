@preconcurrency import Glibc

/// What was still pending on a loop when its body finished, before shutdown cancelled it.
public struct LoopLeftovers: Sendable, CustomStringConvertible {
    /// Tasks suspended in `loop.sleep` / `loop.clock` sleeps, with their deadlines.
    public var sleeps: [LoopClock.Instant] = []
    /// `Task.sleep` / `ContinuousClock` / `SuspendingClock` sleeps of tasks on the loop.
    public var taskSleeps: [LoopClock.Instant] = []
    /// Callbacks from `schedule(after:)` / `schedule(at:)` that had not run.
    public var scheduledCallbacks: [LoopClock.Instant] = []
    /// Descriptors with tasks suspended in `readable` / `writable`.
    public var descriptorWaits: [(fd: Int32, readers: Int, writers: Int)] = []
    /// Tasks awaiting a `LoopFuture` that was never completed.
    public var futureAwaiters = 0

    /// Whether nothing was left pending.
    public var isEmpty: Bool {
        sleeps.isEmpty && taskSleeps.isEmpty && scheduledCallbacks.isEmpty && descriptorWaits.isEmpty && futureAwaiters == 0
    }

    /// One line listing what was left, e.g. `1 Task.sleep(s) waking at 30.0 seconds; fd 7: 1
    /// readable() and 0 writable() waiter(s)`.
    public var description: String {
        var parts: [String] = []
        func instants(_ list: [LoopClock.Instant]) -> String {
            list.sorted().prefix(5).map { $0.nanosecondsSinceOrigin == .max ? "never" : "\(Duration.nanoseconds($0.nanosecondsSinceOrigin))" }.joined(separator: ", ") + (list.count > 5 ? ", …" : "")
        }
        if !sleeps.isEmpty { parts.append("\(sleeps.count) loop.sleep(s) waking at \(instants(sleeps))") }
        if !taskSleeps.isEmpty { parts.append("\(taskSleeps.count) Task.sleep(s) waking at \(instants(taskSleeps))") }
        if !scheduledCallbacks.isEmpty { parts.append("\(scheduledCallbacks.count) scheduled callback(s) due at \(instants(scheduledCallbacks))") }
        for wait in descriptorWaits {
            parts.append("fd \(wait.fd): \(wait.readers) readable() and \(wait.writers) writable() waiter(s)")
        }
        if futureAwaiters > 0 { parts.append("\(futureAwaiters) task(s) awaiting an uncompleted LoopFuture") }
        return parts.isEmpty ? "nothing left" : parts.joined(separator: "; ")
    }
}

extension Loop {
    /// What is pending right now. Loop thread only. (Timestamps are loop time.)
    public func leftovers() -> LoopLeftovers {
        preconditionOnLoopThread("Loop.leftovers()")
        var leftovers = LoopLeftovers()
        timers.forEach { deadline, _, payload in
            let instant = LoopClock.Instant(nanosecondsSinceOrigin: deadline)
            switch payload {
            case .resume: leftovers.sleeps.append(instant)
            case .sleepWake: leftovers.taskSleeps.append(instant)
            case .scheduledCallback: leftovers.scheduledCallbacks.append(instant)
            }
        }
        leftovers.descriptorWaits = reactor.waitingDescriptors()
        leftovers.futureAwaiters = pendingAwaits.values.reduce(0) { $0 + (($1 as? any AwaiterCounting)?.awaiterCount ?? 0) }
        return leftovers
    }

    /// Ends the loop's life (asyncio.run's cleanup, adapted). `withLoop` and
    /// `LoopThread.shutdown()` call it for you; call it yourself on a loop you created with
    /// `Loop()` and drove with ``run()`` / `run(until:)`, once it stopped. Idempotent.
    /// - Precondition: called on the loop's thread, while the loop is not running.
    ///
    /// What happens to work still pending, in rounds until nothing is left (at most 100 rounds, and
    /// fewer when the same work keeps coming back: see below):
    /// 1. ready work runs (without blocking, without moving time);
    /// 2. every task suspended on the loop — `loop.sleep`, `readable`/`writable`, `future.value`,
    ///    `gather`, `runUntilIdle`/`advance` — is resumed: tasks of the loop with
    ///    `CancellationError`, so they unwind normally; foreign tasks (they suspended from another
    ///    thread) with ``LoopError/loopHasShutDown(_:)``;
    /// 3. `Task.sleep`s of tasks on the loop are woken early (the runtime gives no way to cancel
    ///    them from here, and dropping their jobs would leak the tasks); scheduled callbacks are
    ///    dropped without running;
    /// 4. once nothing else is left: signal listeners end (their sequences finish, dispositions
    ///    are restored), then the offload pool closes — queued closures are withdrawn (callers get
    ///    `CancellationError`), running ones finish and report, its threads are joined.
    /// Then the loop is marked shut down and its inbox closed: waits that other threads requested
    /// meanwhile are rejected (their callers fail with the shutdown error), and so is every later
    /// one (see Suspension.swift). Work that keeps coming back — two rounds in a row that resume
    /// no fewer suspensions than the round before them, so nothing ended — is abandoned with a
    /// warning on stderr, but every suspended caller is still resumed (with the shutdown error; its
    /// task continues in the loop's afterlife, where every loop API fails at once). Last, the epoll and
    /// eventfd descriptors are closed.
    /// - Returns: the deadlines of the `Task.sleep`s that were still live (not cancelled) when
    ///   shutdown woke them: what a test loop reports as leftover task sleeps.
    @discardableResult
    public func shutdown() -> [LoopClock.Instant] {
        preconditionOnLoopThread("Loop.shutdown()")
        switch runState {
        case .idle: break
        case .shutDown: return []
        case .running, .ending: misuse("Loop.shutdown() called while the loop is running; call stop() and shut down after run() returns")
        }
        let previous = enterThread()
        defer { leaveThread(restoring: previous) }
        var liveTaskSleeps: [LoopClock.Instant] = []
        var rounds = 0
        var previouslyResumed = Int.max
        var roundsWithoutProgress = 0
        while rounds < 100 {
            rounds += 1
            drainWithoutBlocking()
            let resumed = cancelSuspensions(liveTaskSleeps: &liveTaskSleeps)
            // Last, with nothing else left: signal listeners end, offload threads are joined.
            if resumed == 0 && ready.isEmpty && !inbox.mayHaveWork && shutDownServices() == 0 { break }
            // Work that comes back as often as it is cancelled (a task retrying `Task.sleep`
            // forever) ends nothing: two rounds in a row that resume no fewer suspensions than the
            // round before end the rounds (a task may legitimately await once more while it
            // unwinds: one such round is allowed).
            roundsWithoutProgress = resumed > 0 && resumed >= previouslyResumed ? roundsWithoutProgress + 1 : 0
            if roundsWithoutProgress == 2 { break }
            previouslyResumed = resumed
        }
        runState = .shutDown
        isShutDown.store(true, ordering: .sequentiallyConsistent)
        var abandonedJobs = ready.count
        for work in inbox.close() {
            switch work {
            case .suspension(let start): start(false)
            case .task, .actor, .global, .sleepWake: abandonedJobs += 1
            case .callback, .scheduledCallback: break
            }
        }
        // Whatever kept rescheduling is not run again, but no suspended caller is left behind.
        let abandonedWaits = timers.count + reactor.waiterCount
        _ = cancelSuspensions(liveTaskSleeps: &liveTaskSleeps)
        if abandonedJobs + abandonedWaits > 0 {
            fputs("SerialLoop: shutdown abandoned \(abandonedJobs) job(s) and \(abandonedWaits) timer(s)/wait(s) that kept coming back after cancellation\n", stderr)
        }
        // Before the escaped tasks are released: releasing one may run deinits (user code).
        checkInvariantsInDebugBuilds(atShutdown: true)
        releaseEscapedTasks()
        reactor.close()
        return liveTaskSleeps
    }

    /// Turns the loop until no work is ready (bounded): ticks like a run's, observed like them,
    /// except that they never wait (with nothing ready, this peeks at I/O instead, and stops if
    /// none is ready) and no run is in progress to end (`stop()` is not consulted).
    private func drainWithoutBlocking() {
        var ticks = 0
        while ticks < 10_000 {
            ticks += 1
            if ready.isEmpty && !inbox.mayHaveWork {
                if !reactor.hasKernelInterest || poll(timeoutNanoseconds: 0) == 0 { break }
            }
            _ = tick(polls: false)
        }
    }

    /// Step 2 and 3 of shutdown. Returns how many suspensions it ended.
    private func cancelSuspensions(liveTaskSleeps: inout [LoopClock.Instant]) -> Int {
        var count = 0
        for waiter in reactor.removeAllWaiters() {
            waiter.continuation.resumeForShutdown(waiter.operation)
            count += 1
        }
        for (deadline, payload) in timers.removeAll() {
            switch payload {
            case .resume(let continuation): continuation.resumeForShutdown("sleep(until:)")
            case .sleepWake(let job):
                if !runState.isShutDown, wakeRuntimeSleepResumedASleeper(job) {
                    liveTaskSleeps.append(LoopClock.Instant(nanosecondsSinceOrigin: deadline))
                }
            case .scheduledCallback: break
            }
            count += 1
        }
        for pending in pendingAwaits.values { count += pending.resumeAwaitersForShutdown() }
        pendingAwaits.removeAll()
        count += time.virtual?.resumeSteppingWaitersForShutdown() ?? 0
        return count
    }
}

extension Loop {
    /// Runs a runtime sleep's wake-up now and tells whether it resumed a sleeping task.
    ///
    /// The runtime gives no way to see that a `Task.sleep` was cancelled: its wake-up job stays in
    /// the timer queue until its deadline. But a cancelled sleep's wake-up resumes nobody, while a
    /// live one resumes its sleeper, whose job lands on the ready queue. So, with the ready queue
    /// empty, wake it and look. (Its hop to the global executor is routed back here first.)
    fileprivate func wakeRuntimeSleepResumedASleeper(_ job: UnownedJob) -> Bool {
        guard ready.isEmpty else {
            makeReady(.sleepWake(job))
            return true
        }
        run(.sleepWake(job))
        // The program's default executor (`runMain`): the wake-up is already on its executor and
        // resumes the sleeper directly, whose job is then all that is ready. Running it would run
        // the sleeper, not a hop.
        if wakeUpsResumeSleepersDirectly { return !ready.isEmpty }
        // Run only the wake-up's own hop(s) to the global executor: a sleeper resumed by them is
        // live, whether its job is a loop task or an escaped task's (also a global job).
        for _ in 0..<ready.count where ready.nextIsGlobalJob { run(ready.pop()) }
        return !ready.isEmpty
    }
}

/// Lets leftovers count a future's awaiters without knowing its value type.
protocol AwaiterCounting {
    var awaiterCount: Int { get }
}
