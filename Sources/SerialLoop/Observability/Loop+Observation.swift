@preconcurrency import Glibc

// The observed tick: what runs instead of the plain tick while an instrument or debug mode is
// installed. The plain tick in Loop+Tick.swift pays one branch for all of this (`isObserved`);
// the phases here are the same, in the same order, with hooks and timing around them.

/// What the loop observes while instruments or debug mode are installed. Loop thread only, so
/// the runtime's dynamic exclusivity checks are off for its properties (as for the loop's own).
///
/// The observed tick is written so that an installed instrument costs its hook calls and little
/// else: hooks are called through `InstrumentBox`es the tick borrows (no retain and release
/// around each call: ~45 instructions each), debug mode's thresholds are cached as nanoseconds,
/// and the job's site and task name are tracked only in debug mode.
final class LoopObservation {
    @exclusivity(unchecked) var instruments: [any LoopInstrument] = [] {
        didSet { instrumentsChanged = true }
    }
    @exclusivity(unchecked) private var instrumentsChanged = false
    /// The instruments of the tick in progress, boxed (each box owned by the buffer: one retain
    /// per box, released when the buffer is rebuilt). Changes to `instruments` take effect at the
    /// next tick, so an instrument never sees a `jobDidRun` without its `jobWillRun`.
    @exclusivity(unchecked) private var hooks = UnsafeMutableBufferPointer<Unmanaged<InstrumentBox>>(start: nil, count: 0)

    /// Whether the loop times jobs and ticks: debug mode is on or a `LoopTimingInstrument` is
    /// installed (as of this tick's start for instruments).
    @exclusivity(unchecked) private(set) var timesJobs = false
    @exclusivity(unchecked) private var hasTimingInstrument = false

    /// Debug mode (set it with `setDebug`), and its thresholds in nanoseconds (`.max` when off,
    /// so that the tick's comparisons need no optional check).
    @exclusivity(unchecked) var debug: DebugReporter?
    @exclusivity(unchecked) private(set) var slowJobThreshold: Int64 = .max
    @exclusivity(unchecked) private(set) var lagThreshold: Int64 = .max

    /// Debug mode only: set while `runTimed` runs a job, with what the job revealed about itself.
    @exclusivity(unchecked) var isRunningJob = false
    @exclusivity(unchecked) var jobSite: RawCallbackSite?
    @exclusivity(unchecked) var jobTaskName: String?
    /// Real time this tick spent in polls (subtracted from the tick's duration), and whether it polled.
    @exclusivity(unchecked) var polledThisTick: Int64 = 0
    @exclusivity(unchecked) var didPoll = false
    /// Where the pending scheduled callbacks were created (debug mode); swept lazily.
    @exclusivity(unchecked) var timerSites: [TimerID: RawCallbackSite] = [:]
    /// When the pending descriptor waits began (loop time), by waiter ID (debug mode); swept lazily.
    @exclusivity(unchecked) var waitStarts: [UInt64: Int64] = [:]
    /// Names of tasks seen on the loop (debug mode), by task address. Holding the
    /// `UnsafeCurrentTask` retains the task, so its address cannot be reused by another task while
    /// the entry lives; the table is cleared when it reaches `taskNameLimit`.
    @exclusivity(unchecked) var taskNames: [UnsafeRawPointer: (task: UnsafeCurrentTask, name: String)] = [:]
    static let taskNameLimit = 1024

    var isEmpty: Bool { instruments.isEmpty && debug == nil }
    var isDebugging: Bool { debug != nil }

    deinit { releaseHooks() }

    /// Turns debug mode on with `options`, changes its options, or (`nil`) turns it off.
    func setDebug(_ options: LoopDebugOptions?) {
        if let options {
            if debug != nil { debug!.options = options } else { debug = DebugReporter(options: options) }
        } else {
            debug = nil
            timerSites.removeAll()
            waitStarts.removeAll()
            taskNames.removeAll()
        }
        slowJobThreshold = options?.slowJobThreshold.saturatingNanoseconds ?? .max
        lagThreshold = options?.lagThreshold.saturatingNanoseconds ?? .max
        timesJobs = debug != nil || hasTimingInstrument
    }

    /// Tick start: box the instruments for this tick's hooks if they changed.
    @inline(__always)
    func beginTick() {
        if instrumentsChanged { rebuildHooks() }
    }

    private func rebuildHooks() {
        instrumentsChanged = false
        releaseHooks()
        hasTimingInstrument = false
        if !instruments.isEmpty { hooks = .allocate(capacity: instruments.count) }
        for (index, instrument) in instruments.enumerated() {
            let box = InstrumentBox.boxing(instrument)
            hasTimingInstrument = hasTimingInstrument || box.isTiming
            (hooks.baseAddress! + index).initialize(to: .passRetained(box))
        }
        timesJobs = debug != nil || hasTimingInstrument
    }

    private func releaseHooks() {
        for index in 0..<hooks.count { hooks[index].release() }
        hooks.deallocate()
        hooks = .init(start: nil, count: 0)
    }

    /// Calls `hook` on each instrument of the tick, borrowing its box.
    @inline(__always)
    func forEachHook(_ hook: (InstrumentBox) -> Void) {
        let hooks = self.hooks
        for index in 0..<hooks.count { hooks[index]._withUnsafeGuaranteedRef(hook) }
    }
}

extension Loop {
    // MARK: Installing

    /// Installs `instrument`: its hooks run from the next tick on (see ``LoopInstrument`` for
    /// their order). Loop thread only; from another thread, install it in `loop.execute { }`.
    /// Installing the same instrument twice calls its hooks twice.
    /// - Parameter instrument: the instrument; a ``LoopTimingInstrument`` makes the loop time jobs
    ///   while it is installed.
    public func addInstrument(_ instrument: any LoopInstrument) {
        preconditionOnLoopThread("Loop.addInstrument(_:)")
        observation.instruments.append(instrument)
        isObserved = true
    }

    /// Removes `instrument` (every installation of it). Returns whether it was installed.
    /// Loop thread only.
    /// - Parameter instrument: the instrument to remove (compared by identity).
    @discardableResult
    public func removeInstrument(_ instrument: any LoopInstrument) -> Bool {
        preconditionOnLoopThread("Loop.removeInstrument(_:)")
        let before = observation.instruments.count
        observation.instruments.removeAll { $0 === instrument }
        isObserved = !observation.isEmpty
        return observation.instruments.count != before
    }

    /// Debug mode: `nil` (the default) is off. Setting options turns it on; see
    /// ``LoopDebugOptions``. Loop thread only; from another thread, set it in `loop.execute { }`.
    public var debug: LoopDebugOptions? {
        get {
            preconditionOnLoopThread("Loop.debug")
            return observation.debug?.options
        }
        set {
            preconditionOnLoopThread("Loop.debug")
            observation.setDebug(newValue)
            metricsStorage.capturesSites.store(newValue != nil, ordering: .relaxed)
            isObserved = !observation.isEmpty
        }
    }

    // MARK: The observed tick

    /// `tick()` with hooks, and with timing while `observation.timesJobs`: the same phases, in
    /// the same order. Two bodies, so that the untimed one (any installed plain instrument) costs
    /// its hook calls and little else: no clock reads, no timing state.
    @inline(__always)
    func observedTick(_ observation: LoopObservation) -> Bool {
        observation.beginTick()
        let goesOn = observation.timesJobs ? timedTick(observation) : hookedTick(observation)
        // The last instrument was removed during this tick: release the boxes now (the plain
        // tick never looks at them, and they keep the removed instruments alive).
        if !isObserved { observation.beginTick() }
        return goesOn
    }

    @inline(__always)
    private func hookedTick(_ observation: LoopObservation) -> Bool {
        observation.forEachHook { $0.tickWillStart() }
        if !timers.isEmpty { _ = moveDueTimersObserved(now: readClockForTick(), observation) }   // 1, 2
        drainInbox()                                                                            // 3
        let count = ready.count
        metricsStorage.noteTick(readyJobs: count)
        for _ in 0..<count {                                                                    // 4
            let work = ready.pop()
            let kind = LoopJobKind(work)
            observation.forEachHook { $0.jobWillRun(kind) }
            run(work)
            observation.forEachHook { $0.jobDidRun(kind) }
        }
        metricsStorage.publishGauges(timers: timers.count, waiters: reactor.waiterCount, futures: pendingAwaits.count)
        let goesOn = !(runState.isEnding || inbox.isStopRequested)
        if goesOn { pollAndDeliver() }                                                          // 5, 6
        observation.forEachHook { $0.tickDidEnd() }
        return goesOn
    }

    /// Clock reads are shared where nothing runs between them: a job's end is the next job's
    /// start, the tick's start is the first job's start when no timer fired and nothing arrived,
    /// and the last job's end is the tick's end when the tick did not poll: one read per job.
    private func timedTick(_ observation: LoopObservation) -> Bool {
        let start = monotonicNanoseconds()
        observation.polledThisTick = 0
        observation.didPoll = false
        observation.forEachHook { $0.tickWillStart() }
        let fired = moveDueTimersObserved(now: readClockForTick(), observation)                // 1, 2
        let arrived = inbox.mayHaveWork
        drainInbox()                                                                            // 3
        let count = ready.count
        metricsStorage.noteTick(readyJobs: count)
        var clock = fired || arrived ? monotonicNanoseconds() : start
        for _ in 0..<count { clock = runTimed(ready.pop(), startedAt: clock, observation) }   // 4
        metricsStorage.publishGauges(timers: timers.count, waiters: reactor.waiterCount, futures: pendingAwaits.count)
        let goesOn = !(runState.isEnding || inbox.isStopRequested)
        if goesOn { pollAndDeliver() }                                                          // 5, 6
        let end = observation.didPoll ? monotonicNanoseconds() : clock
        let busy = end - start - observation.polledThisTick
        metricsStorage.tickDuration.record(busy)
        observation.forEachHook { $0.tickDidEnd(duration: .nanoseconds(busy)) }
        return goesOn
    }

    /// - Returns: whether any timer fired.
    private func moveDueTimersObserved(now: Int64, _ observation: LoopObservation) -> Bool {
        var fired = false
        var late = 0
        var worst: Int64 = 0
        while let (deadline, id, payload) = timers.popDue(now: now, holdingSlotIf: TimerPayload.holdsSlotWhenDue) {
            fired = true
            let lag = now.saturatingSubtract(deadline)
            metricsStorage.noteTimerFired(lag: lag)
            observation.forEachHook {
                $0.timerDidFire(deadline: LoopClock.Instant(nanosecondsSinceOrigin: deadline), lag: .nanoseconds(lag))
            }
            if lag >= observation.lagThreshold {
                late += 1
                worst = max(worst, lag)
            }
            activate(payload, id: id)
        }
        if late > 0 {
            observation.debug?.deliver(LoopDebugReport(kind: .lateTimers, duration: .zero, lag: .nanoseconds(worst), lateTimers: late, suppressed: 0))
        }
        return fired
    }

    /// Runs one job that started at `start` (the previous clock read). Returns when it ended.
    @inline(__always)
    private func runTimed(_ work: Work, startedAt start: Int64, _ observation: LoopObservation) -> Int64 {
        let kind = LoopJobKind(work)
        observation.forEachHook { $0.jobWillRun(kind) }
        // Debug mode: for a task job, the job is the task: its address is the key of `taskNames`.
        let taskAddress = observation.isDebugging ? beginDebuggedJob(work, observation) : nil
        run(work)
        let end = monotonicNanoseconds()
        observation.isRunningJob = false
        let duration = end - start
        metricsStorage.jobDuration.record(duration)
        observation.forEachHook { $0.jobDidRun(kind, duration: .nanoseconds(duration)) }
        if duration >= observation.slowJobThreshold {
            reportSlowJob(kind, taskAddress: taskAddress, start: start, end: end, observation)
        }
        return end
    }

    @inline(never)
    private func beginDebuggedJob(_ work: Work, _ observation: LoopObservation) -> UnsafeRawPointer? {
        observation.jobSite = nil
        observation.jobTaskName = nil
        observation.isRunningJob = true
        guard case .task(let job) = work else { return nil }
        return unsafeBitCast(job, to: UnsafeRawPointer.self)
    }

    @inline(never)
    private func reportSlowJob(_ kind: LoopJobKind, taskAddress: UnsafeRawPointer?, start: Int64, end: Int64, _ observation: LoopObservation) {
        // The lag this job caused: how late the earliest timer is now, counted from when the
        // job started if it was due before (real time: a test loop's clock stands still in a job).
        var caused: Int64 = 0
        if timeMode == .real, let next = timers.nextDeadline { caused = max(0, end - max(next, start)) }
        observation.debug?.deliver(LoopDebugReport(
            kind: .slowJob, job: kind, taskName: observation.jobTaskName ?? taskAddress.flatMap { observation.taskNames[$0]?.name }, site: observation.jobSite?.site,
            duration: .nanoseconds(end - start), lag: .nanoseconds(caused), lateTimers: 0, suppressed: 0))
    }

    /// `poll` with hooks.
    /// Timed when the poll could block, or when the loop times jobs.
    func observedPoll(timeoutNanoseconds: Int64?, _ observation: LoopObservation) -> Int {
        observation.forEachHook { $0.pollWillStart(timeout: timeoutNanoseconds.map { .nanoseconds($0) }) }
        let timed = timeoutNanoseconds != 0 || observation.timesJobs
        let start = timed ? monotonicNanoseconds() : 0
        let events = pollOnce(timeoutNanoseconds: timeoutNanoseconds)
        let blocked = timed ? monotonicNanoseconds() - start : 0
        observation.polledThisTick += blocked
        observation.didPoll = true
        observation.forEachHook { $0.pollDidEnd(events: events, blocked: .nanoseconds(blocked)) }
        return events
    }

    // MARK: What jobs reveal about themselves (debug mode)

    /// Wraps a loop-thread callback so that, in debug mode, it names its creation site when it runs.
    @inline(__always)
    func tagged(_ callback: @escaping () -> Void, file: StaticString, line: UInt) -> () -> Void {
        guard metricsStorage.capturesSites.load(ordering: .relaxed) else { return callback }
        let site = RawCallbackSite(fileID: file, line: line)
        return { [weak self] in
            self?.observation.jobSite = site
            callback()
        }
    }

    /// `tagged` for `execute`'s `@Sendable` callbacks (any thread).
    @inline(__always)
    func taggedSendable(_ callback: @escaping @Sendable () -> Void, file: StaticString, line: UInt) -> @Sendable () -> Void {
        guard metricsStorage.capturesSites.load(ordering: .relaxed) else { return callback }
        let site = RawCallbackSite(fileID: file, line: line)
        return { [weak self] in
            self?.observation.jobSite = site
            callback()
        }
    }

    /// Remembers a scheduled callback's creation site for `pendingWork` (debug mode).
    func noteTimerSite(_ id: TimerID, file: StaticString, line: UInt) {
        guard observation.isDebugging else { return }
        observation.timerSites.sweepWhenGrown(liveCount: timers.count) { { self.timers.contains($0) } }
        observation.timerSites[id] = RawCallbackSite(fileID: file, line: line)
    }

    /// Called (in debug mode) where the runtime or a task calls into the loop from inside a task's
    /// job: an enqueue (a yield, an actor hop, a task completing for an awaiter on the loop, a child
    /// task) or a suspension on a loop API. The executor cannot ask a job for its task's name, but
    /// code running inside the job can: `Task.name` there is the running task's.
    ///
    /// The name is kept for the job itself and, by the task's address, for the task's later jobs.
    /// A task whose only job is the slow one and that neither enqueues nor suspends on the loop
    /// within it stays unnamed: once a task completes, the runtime has dropped its name.
    func noteTaskName() {
        guard isOnLoopThread, isObserved else { return }
        withUnsafeCurrentTask { task in
            guard let task else { return }
            let address = unsafeBitCast(task, to: UnsafeRawPointer.self)
            if let known = observation.taskNames[address] {
                if observation.isRunningJob && observation.jobTaskName == nil { observation.jobTaskName = known.name }
                return
            }
            guard let name = Task.name else { return }
            if observation.isRunningJob && observation.jobTaskName == nil { observation.jobTaskName = name }
            if observation.taskNames.count >= LoopObservation.taskNameLimit { observation.taskNames.removeAll() }
            observation.taskNames[address] = (task, name)
        }
    }
}

extension Loop {
    /// A loop deallocated without `shutdown()` (see `deinit`): if work was still pending, its
    /// suspended tasks are lost without a word — say so, through the debug sink in debug mode,
    /// else on stderr (it is always a bug).
    func reportAbandonedWork() {
        let timers = self.timers.count, waiters = reactor.waiterCount, futures = pendingAwaits.count, jobs = ready.count
        guard timers + waiters + futures + jobs > 0 else { return }
        let pending = "\(timers) timer(s), \(waiters) descriptor waiter(s), \(futures) awaited future(s)/gather(s), \(jobs) ready job(s)"
        let report = LoopDebugReport(kind: .abandonedWork, job: nil, taskName: nil, site: nil, duration: .zero, lag: .zero,
                                     lateTimers: 0, suppressed: 0, pending: pending)
        reportBug(report)
    }

    /// Reports something that is always a bug (abandoned work, a dropped future): through the
    /// debug sink in debug mode, else one line on stderr. Never rate-limited: each is rare.
    func reportBug(_ report: LoopDebugReport) {
        if let options = observation.debug?.options {
            options.sink(report)
        } else {
            fputs("SerialLoop: \(report)\n", stderr)
        }
    }
}
