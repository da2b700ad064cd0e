@preconcurrency import Glibc

// The observed tick: the tick's one body (Loop+Tick.swift) with an observer that calls the
// instruments' hooks, and times jobs and ticks for timing instruments and debug mode. The plain
// tick pays one branch for all of this (`isObserved`).

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

/// The tick observed by plain instruments: each hook called on every instrument, nothing timed.
/// (Debug mode is off here, so no timer can be late by its threshold.)
struct InstrumentObserver: TickObserver {
    @inline(__always) func tickWillStart(_ loop: Loop) { loop.observation.forEachHook { $0.tickWillStart() } }

    @inline(__always) func timerDidFire(deadline: Int64, lag: Int64, _ loop: Loop) {
        loop.observation.forEachHook { $0.timerDidFire(deadline: LoopClock.Instant(nanosecondsSinceOrigin: deadline), lag: .nanoseconds(lag)) }
    }

    @inline(__always) func dueTimersDidMove(_ loop: Loop) {}
    @inline(__always) func jobsWillRun(afterArrivals arrived: Bool, _ loop: Loop) {}

    @inline(__always) func run(_ work: Work, on loop: Loop) {
        let kind = LoopJobKind(work)
        loop.observation.forEachHook { $0.jobWillRun(kind) }
        loop.run(work)
        loop.observation.forEachHook { $0.jobDidRun(kind) }
    }

    @inline(__always) func tickDidEnd(_ loop: Loop) { loop.observation.forEachHook { $0.tickDidEnd() } }
}

/// The tick observed by timing instruments and debug mode: hooks with durations, the metrics'
/// job and tick distributions, and debug mode's slow-job and late-timer reports.
///
/// Clock reads are shared where nothing runs between them: a job's end is the next job's start,
/// the tick's start is the first job's start when no timer fired and nothing arrived, and the last
/// job's end is the tick's end when the tick did not poll: one read per job.
struct TimingObserver: TickObserver {
    /// When the tick began, and the last clock read since (the end of the last job).
    private var start: Int64 = 0
    private var clock: Int64 = 0
    private var fired = false
    /// Timers that fired at least `lagThreshold` late this tick, and the worst lag (debug mode).
    private var late = 0
    private var worstLag: Int64 = 0

    @inline(__always)
    mutating func tickWillStart(_ loop: Loop) {
        start = monotonicNanoseconds()
        loop.observation.polledThisTick = 0
        loop.observation.didPoll = false
        loop.observation.forEachHook { $0.tickWillStart() }
    }

    @inline(__always)
    mutating func timerDidFire(deadline: Int64, lag: Int64, _ loop: Loop) {
        fired = true
        loop.observation.forEachHook { $0.timerDidFire(deadline: LoopClock.Instant(nanosecondsSinceOrigin: deadline), lag: .nanoseconds(lag)) }
        if lag >= loop.observation.lagThreshold {
            late += 1
            worstLag = max(worstLag, lag)
        }
    }

    @inline(__always)
    func dueTimersDidMove(_ loop: Loop) {
        guard late > 0 else { return }
        loop.observation.debug?.deliver(LoopDebugReport(kind: .lateTimers, duration: .zero, lag: .nanoseconds(worstLag), lateTimers: late, suppressed: 0))
    }

    @inline(__always)
    mutating func jobsWillRun(afterArrivals arrived: Bool, _ loop: Loop) {
        clock = fired || arrived ? monotonicNanoseconds() : start
    }

    @inline(__always)
    mutating func run(_ work: Work, on loop: Loop) {
        clock = loop.runTimed(work, startedAt: clock)
    }

    @inline(__always)
    func tickDidEnd(_ loop: Loop) {
        let end = loop.observation.didPoll ? monotonicNanoseconds() : clock
        let busy = end - start - loop.observation.polledThisTick
        loop.metricsStorage.tickDuration.record(busy)
        loop.observation.forEachHook { $0.tickDidEnd(duration: .nanoseconds(busy)) }
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

    /// Turns observed ticks while an instrument or debug mode stays installed: one call from the
    /// run loop for many ticks. Kept out of the run loop's function: inlined there, the observed
    /// bodies made it so large that the optimiser stopped inlining the plain tick into it (+21
    /// instructions per plain tick); called once per tick, the call cost the observed tick ~25
    /// (callgrind).
    /// - Returns: `false` when the loop should stop turning.
    @inline(never)
    func observedTicks() -> Bool {
        repeat {
            guard observedTickBody(polls: true) else { return false }
            if isObserved { checkInvariantsInDebugBuilds() }
        } while isObserved
        return true
    }

    /// One observed tick (shutdown's drain).
    @inline(never)
    func observedTick(polls: Bool) -> Bool {
        observedTickBody(polls: polls)
    }

    /// The tick while an instrument or debug mode is installed: the same body (Loop+Tick.swift),
    /// observed untimed (plain instruments only: their hook calls and little else, no clock reads)
    /// or timed (a timing instrument or debug mode).
    @inline(__always)
    private func observedTickBody(polls: Bool) -> Bool {
        observation.beginTick()
        let goesOn: Bool
        if observation.timesJobs {
            goesOn = timedTick(polls: polls)
        } else {
            var observer = InstrumentObserver()
            goesOn = tick(&observer, polls: polls)
        }
        // The last instrument was removed during this tick: release the boxes now (the plain
        // tick never looks at them, and they keep the removed instruments alive).
        if !isObserved { observation.beginTick() }
        return goesOn
    }

    private func timedTick(polls: Bool) -> Bool {
        var observer = TimingObserver()
        return tick(&observer, polls: polls)
    }

    /// Runs one job that started at `start` (the previous clock read). Returns when it ended.
    @inline(__always)
    fileprivate func runTimed(_ work: Work, startedAt start: Int64) -> Int64 {
        runTimed(work, startedAt: start, observation)
    }

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
