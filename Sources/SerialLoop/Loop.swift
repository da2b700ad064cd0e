@preconcurrency import Glibc
import Synchronization

/// A single-threaded event loop that is a native Swift executor.
///
/// Tasks that prefer the loop (`Task(executorPreference: loop)`, `withTaskExecutorPreference(loop)`,
/// their `async let`s and task-group children) and actors whose executor is the loop
/// (`loop.asUnownedSerialExecutor()`) all run on the loop's thread, one job at a time, in FIFO order.
/// Timers (`sleep`, plain `Task.sleep`, `schedule(after:)`) and descriptor readiness (`readable`,
/// `writable`, reader/writer callbacks) are driven by the same thread's epoll.
///
/// Thread-safety: `enqueue`, `execute(_:)`, `stop()`, `now`, `clock`, and every `async` method may be
/// used from any thread. Methods that return a handle synchronously (`schedule(after:)`,
/// `addReader`, …) must be called on the loop's thread, and trap with a message otherwise.
public final class Loop: TaskExecutor, SerialExecutor, @unchecked Sendable {
    /// How the loop's clock moves.
    public enum TimeMode: Sendable, Equatable {
        /// Monotonic wall time.
        case real
        /// Virtual time starting at zero: it moves only when the loop is idle (see ``withTestLoop(_:)``).
        case virtual
    }

    enum Lifecycle {
        case idle, running, shutDown
    }

    // MARK: Immutable after init (any thread)

    /// The thread that owns the loop: the only one that runs its jobs and touches loop-thread state.
    let ownerThread: pthread_t
    public let timeMode: TimeMode
    let inbox: Inbox
    /// Where jobs that arrive after shutdown run (Afterlife.swift).
    let afterlife = Afterlife()
    /// Threads for `offload` (started on demand, joined at shutdown): Offload/OffloadPool.swift.
    let offloadPool = OffloadPool()

    // MARK: Cross-thread state (atomics)

    /// Always-on metrics: written by the loop thread, read by any (Observability/LoopMetrics.swift).
    let metricsStorage = LoopMetricsStorage()
    /// Virtual time in nanoseconds (test loops). Written by the loop thread, read by any thread.
    let virtualNanoseconds = Atomic<Int64>(0)
    /// Set once shutdown has closed the inbox (Loop+Shutdown.swift).
    let isShutDown = Atomic<Bool>(false)

    // MARK: Loop-thread state
    //
    // Owned by the loop thread, which is the only thread that touches them, so the runtime's
    // dynamic exclusivity checks (swift_beginAccess on every class-property access: ~6% of a
    // socketpair round trip, measured with callgrind) are switched off for them.

    @exclusivity(unchecked) var ready = ReadyQueue()
    @exclusivity(unchecked) var timers = TimerQueue()
    @exclusivity(unchecked) var reactor: Reactor<PlatformBackend>
    @exclusivity(unchecked) private var inboxBuffer: [Work] = []
    @exclusivity(unchecked) var lifecycle = Lifecycle.idle
    /// Set by the job that completes what `run(until:)` waits for (see `requestExit(ofRun:)`).
    @exclusivity(unchecked) var exitRequested = false
    /// The `runTicks` call in progress (0: none), and the last identity handed out.
    @exclusivity(unchecked) private var currentRunID: UInt64 = 0
    @exclusivity(unchecked) private var lastRunID: UInt64 = 0
    @exclusivity(unchecked) private var nextWaiterID: UInt64 = 0
    /// Futures and gathers that tasks are suspended on, so shutdown can resume those tasks
    /// instead of leaking them.
    @exclusivity(unchecked) var pendingAwaits: [ObjectIdentifier: any ShutdownCancellable] = [:]
    /// Virtual-time control: see Loop+VirtualTime.swift.
    @exclusivity(unchecked) var virtualClock = VirtualClockState()
    /// Callbacks whose timer fired but which have not run yet: cancelling one removes it here.
    @exclusivity(unchecked) var firedCallbacks = Set<TimerID>()
    /// True while a runtime sleep job runs: its hop to the global executor comes back here.
    @exclusivity(unchecked) var isRunningSleepWake = false
    /// Whether work sent to the global executor from this loop's thread runs on the loop instead
    /// (test loops: see GlobalRouting.swift).
    @exclusivity(unchecked) var capturesEscapingWork: Bool
    /// The tasks created on this test loop's thread that it took over (GlobalRouting.swift).
    @exclusivity(unchecked) var escapedTasks = Set<UnsafeRawPointer>()
    /// Whether Dispatch's main-queue descriptor is registered with the reactor (a loop that has
    /// turned on the main thread: see Entry/MainThread.swift).
    @exclusivity(unchecked) var servesMainQueue = false
    /// Busy ticks since the main-queue descriptor was last polled (see `defersBusyPoll`).
    @exclusivity(unchecked) var busyTicksSinceMainQueuePoll = 0
    /// Instruments and debug mode; `nil` when neither is installed, which keeps the tick plain
    /// (Observability/Loop+Observation.swift).
    @exclusivity(unchecked) var observation: LoopObservation? = nil

    /// Creates a loop owned by the calling thread. Run it on this thread with ``run()`` or
    /// ``run(until:)-(Task<T,any Error>)``, or use ``withLoop(_:)``, which does both.
    public init(time: TimeMode = .real) throws(LoopError) {
        ownerThread = pthread_self()
        timeMode = time
        capturesEscapingWork = time == .virtual
        reactor = Reactor(backend: try PlatformBackend())
        inbox = Inbox(wake: reactor.waker)
        installGlobalRouting()
    }

    deinit {
        guard lifecycle != .shutDown else { return }
        reportAbandonedWork()
        reactor.close()
    }

    /// Whether the caller is on the loop's thread.
    public var isOnLoopThread: Bool {
        pthread_equal(pthread_self(), ownerThread) != 0
    }

    package func preconditionOnLoopThread(_ operation: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
        precondition(isOnLoopThread, "\(operation()) must be called on the loop's thread; use loop.execute { } to hop there", file: file, line: line)
    }

    /// Runs `body` on the loop thread: now if the caller is there, else as the next inbox item.
    /// Internal plumbing (cancellation, completions, releases): on a loop that has shut down, an
    /// off-thread `body` is dropped without a word — there is nothing left for it to act on.
    @inline(__always)
    func onLoopThread(_ body: @escaping () -> Void) {
        if isOnLoopThread { body() } else { inbox.push(.callback(body)) }
    }

    /// `onLoopThread` for a cancellation handler's `@Sendable` closure.
    @inline(__always)
    func sendToLoop(_ body: @escaping @Sendable () -> Void) {
        onLoopThread(body)
    }

    // MARK: Time

    /// The loop's current time: monotonic in real mode, virtual on a test loop.
    public var now: LoopClock.Instant {
        LoopClock.Instant(nanosecondsSinceOrigin: nowNanoseconds)
    }

    @inline(__always)
    var nowNanoseconds: Int64 {
        timeMode == .virtual ? virtualNanoseconds.load(ordering: .relaxed) : monotonicNanoseconds()
    }

    /// The loop's clock, for any API that takes `some Clock`.
    public var clock: LoopClock { LoopClock(loop: self) }

    // MARK: Enqueueing

    /// The single entry point for work. Same thread: a ring-buffer push (no lock, no allocation once
    /// the buffer has grown, no syscall). Other threads: the locked inbox, waking a parked loop.
    /// After shutdown, jobs run in the loop's afterlife (Afterlife.swift); callbacks are dropped
    /// with a warning (once per process).
    @inline(__always)
    func submit(_ work: Work) {
        if isOnLoopThread && lifecycle != .shutDown {
            ready.push(work)
        } else if !inbox.push(work) {
            switch work {
            case .task(let job), .global(let job), .sleepWake(let job): runAfterShutdown(job)
            case .suspension(let start): start(false)
            case .callback, .timerCallback, .resume: reportWorkAfterShutdown()
            }
        }
    }

    /// Runs `callback` on the loop after the work already queued (asyncio's `call_soon_threadsafe`).
    /// Any thread; from another thread it wakes a parked loop. After shutdown the callback is
    /// dropped with a warning on stderr (see ``hasShutDown``).
    /// In debug mode the callback remembers its creation site (`file`, `line`) for slow-job reports.
    public func execute(_ callback: @escaping @Sendable () -> Void, file: StaticString = #fileID, line: UInt = #line) {
        submit(.callback(taggedSendable(callback, file: file, line: line)))
    }

    /// Whether the loop has shut down: its `withLoop` returned, or its `LoopThread` was shut down.
    /// Any thread. From then on every `async` loop API throws ``LoopError/loopHasShutDown(_:)``.
    public var hasShutDown: Bool { isShutDown.load(ordering: .acquiring) }

    /// Runs `callback` on the loop after the work already queued (asyncio's `call_soon`). Unlike
    /// ``execute(_:file:line:)`` the closure need not be `Sendable`, because it never leaves the loop thread.
    /// - Precondition: called on the loop's thread.
    public func callSoon(_ callback: @escaping () -> Void, file: StaticString = #fileID, line: UInt = #line) {
        preconditionOnLoopThread("Loop.callSoon(_:)")
        ready.push(.callback(tagged(callback, file: file, line: line)))
    }

    private func reportWorkAfterShutdown() {
        enum Once { nonisolated(unsafe) static var reported = false }
        if !Once.reported {
            Once.reported = true
            fputs("SerialLoop: a callback was sent to a loop that has shut down; it will not run (it outlived its loop)\n", stderr)
        }
    }

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
        if let observation { return observedTick(observation) }
        let now = readClockForTick()                         // 1
        moveDueTimers(now: now)                             // 2
        drainInbox()                                         // 3
        let count = ready.count
        metricsStorage.noteTick(readyJobs: count)
        runReady(count: count)                               // 4
        metricsStorage.publishGauges(timers: timers.count, waiters: reactor.waiterCount, futures: pendingAwaits.count)
        if exitRequested || inbox.isStopRequested { return false }
        pollAndDeliver()                                     // 5, 6
        return true
    }

    @inline(__always)
    func readClockForTick() -> Int64 {
        if timeMode == .virtual { return virtualNanoseconds.load(ordering: .relaxed) }
        return timers.isEmpty ? 0 : monotonicNanoseconds()
    }

    @inline(__always)
    func moveDueTimers(now: Int64) {
        while let (deadline, work) = timers.popDue(now: now) {
            metricsStorage.noteTimerFired(lag: now.saturatingSubtract(deadline))
            activate(work)
        }
    }

    /// Puts a fired timer's work on the ready queue. Resuming a continuation only enqueues its task.
    @inline(__always)
    func activate(_ work: Work) {
        switch work {
        case .resume(let continuation):
            continuation.resume()
        case .timerCallback(let id, _):
            firedCallbacks.insert(id)
            ready.push(work)
        default:
            ready.push(work)
        }
    }

    @inline(__always)
    func drainInbox() {
        guard inbox.mayHaveWork else { return }
        // Arrivals a time hold accounts for (offload outcomes) do not restart the quiet period.
        inbox.take(into: &inboxBuffer)
        metricsStorage.crossThreadArrivals.add(inboxBuffer.count)
        if timeMode == .virtual && !inboxBuffer.isEmpty { noteCrossThreadArrival() }
        for work in inboxBuffer { ready.push(work) }
        inboxBuffer.removeAll(keepingCapacity: true)
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
        case .timerCallback(let id, let body):
            if firedCallbacks.remove(id) != nil {
                metricsStorage.callbacks.add(1)
                body()
            }
        case .resume(let continuation):
            continuation.resume()
        }
    }

    func pollAndDeliver() {
        if !ready.isEmpty || inbox.mayHaveWork {
            // Work is waiting: peek at I/O without blocking, and skip the syscall when no
            // descriptor is watched (the wake-up eventfd matters only to a parked loop).
            if reactor.hasKernelInterest && !defersBusyPoll() { poll(timeoutNanoseconds: 0) }
            return
        }
        if timeMode == .virtual {
            idleOnVirtualTime()
            return
        }
        var timeout: Int64? = nil
        if let deadline = timers.nextDeadline {
            timeout = max(0, deadline.saturatingSubtract(monotonicNanoseconds()))
            if timeout == 0 {
                if reactor.hasKernelInterest { poll(timeoutNanoseconds: 0) }
                return
            }
        }
        parkAndPoll(timeoutNanoseconds: timeout)
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
            let count = poll(timeoutNanoseconds: slice)
            if count > 0 { return count }
            now = monotonicNanoseconds()
            if let end, now >= end { return 0 }
        }
    }

    /// Polls once, delivering readiness (with the instruments' hooks around it, if any).
    @discardableResult
    func poll(timeoutNanoseconds: Int64?) -> Int {
        if let observation { return observedPoll(timeoutNanoseconds: timeoutNanoseconds, observation) }
        return pollOnce(timeoutNanoseconds: timeoutNanoseconds)
    }

    /// Polls once, delivering readiness. Poll failures other than EINTR are loop bugs, not user errors.
    /// A poll that may block is timed (two clock reads next to a syscall that parks the thread).
    func pollOnce(timeoutNanoseconds: Int64?) -> Int {
        let blocks = LoopMetricsStorage.isCompiledIn && timeoutNanoseconds != 0
        let start = blocks ? monotonicNanoseconds() : 0
        do {
            let (events, woke) = try reactor.poll(timeoutNanoseconds: timeoutNanoseconds) { callback in
                self.ready.push(.callback(callback))
            }
            if woke { inbox.wakeConsumed() }
            metricsStorage.polls.add(1)
            if woke { metricsStorage.wakeUps.add(1) }
            if blocks {
                metricsStorage.blockingPolls.add(1)
                metricsStorage.pollBlocked.record(monotonicNanoseconds() - start)
            }
            let count = events + (woke ? 1 : 0)
            guard reactor.mayNeedVerification else { return count }
            return count + reactor.verifyIfDue(now: monotonicNanoseconds())
        } catch {
            fatalError("SerialLoop: polling failed, which the loop cannot recover from: \(error)")
        }
    }

    // MARK: Running

    /// Runs the loop until ``stop()`` is called (asyncio's `run_forever`).
    /// - Precondition: called on the loop's thread, the loop is not already running, and it has
    ///   not shut down.
    public func run() {
        if lifecycle == .shutDown { preconditionFailure("Loop.run() called on a loop that has shut down") }
        runTicks(operation: "run()", id: nextRunID())
    }

    /// A fresh identity for one call of `runTicks`: completions of what an earlier `run(until:)`
    /// waited for (it may have ended by `stop()`) must not end a later run.
    func nextRunID() -> UInt64 {
        lastRunID &+= 1
        return lastRunID
    }

    /// Ends the run `id` after the current tick's jobs, if it is still the one turning.
    func requestExit(ofRun id: UInt64) {
        if currentRunID == id { exitRequested = true }
    }

    /// Turns the loop until `exitRequested` or a stop.
    /// - Returns: `true` if it ended because of `exitRequested`, `false` for `stop()`.
    @discardableResult
    func runTicks(operation: String, id: UInt64) -> Bool {
        preconditionOnLoopThread("Loop.\(operation)")
        switch lifecycle {
        case .idle: break
        case .running: preconditionFailure("Loop.\(operation) called while the loop is already running (nested run)")
        case .shutDown: preconditionFailure("Loop.\(operation) called on a loop that has shut down")
        }
        lifecycle = .running
        currentRunID = id
        exitRequested = false
        serveMainQueueIfOnMainThread()
        let previous = enterThread()
        while tick() {}
        leaveThread(restoring: previous)
        lifecycle = .idle
        currentRunID = 0
        let exited = exitRequested
        exitRequested = false
        // Stops requested until now ended this run (they coalesce); later ones end the next.
        inbox.consumeStop()
        return exited
    }

    /// Makes ``run()`` (or a `run(until:)`) return after the current tick's jobs. Any thread.
    public func stop() {
        inbox.requestStop()
    }

    /// Runs the loop until `task` completes and returns its value or rethrows its error
    /// (asyncio's `run_until_complete`). The task may run anywhere; the loop turns until it is done.
    /// - Throws: the task's error; a ``LoopError`` naming `run(until:)` if ``stop()`` was called
    ///   first, if a test loop stalled, or if the loop has shut down.
    public func run<T: Sendable>(until task: Task<T, any Error>) throws -> T {
        try runUntil(describing: "task") { id, outcome in
            Task(executorPreference: self) {
                outcome.result = await task.result
                self.requestExit(ofRun: id)
            }
        }
    }

    /// Runs the loop until `task` completes and returns its value.
    public func run<T: Sendable>(until task: Task<T, Never>) throws -> T {
        try runUntil(describing: "task") { id, outcome in
            Task(executorPreference: self) {
                outcome.result = .success(await task.value)
                self.requestExit(ofRun: id)
            }
        }
    }

    /// Runs the loop until `future` is complete and returns its value or rethrows its error.
    /// - Precondition: called on the loop's thread.
    public func run<T: Sendable>(until future: LoopFuture<T>) throws -> T {
        try runUntil(describing: "future") { id, outcome in
            future.whenComplete { result in
                outcome.result = result
                self.requestExit(ofRun: id)
            }
        }
    }

    /// The one implementation of `run(until:)`: `watch` arranges for the outcome to be stored and
    /// the run (by its id) to be ended; the loop turns until then, a stop, or a stall.
    private func runUntil<T>(describing what: String, watch: (UInt64, OutcomeBox<T>) -> Void) throws -> T {
        preconditionOnLoopThread("Loop.run(until:)")
        if lifecycle == .shutDown { throw LoopError.loopHasShutDown("run(until:)") }
        let outcome = OutcomeBox<T>()
        let id = nextRunID()
        watch(id, outcome)
        let exited = runTicks(operation: "run(until:)", id: id)
        if let stall = virtualClock.stallReport {
            virtualClock.stallReport = nil
            throw LoopError(operation: "run(until:)", reason: stall)
        }
        guard exited, let result = outcome.result else {
            throw LoopError(operation: "run(until:)", reason: "stop() was called before the \(what) completed")
        }
        return try result.get()
    }

    // MARK: Identifiers

    func makeWaiterID() -> UInt64 {
        nextWaiterID &+= 1
        return nextWaiterID
    }

    // MARK: Executor conformance

    public func enqueue(_ job: consuming ExecutorJob) {
        if metricsStorage.capturesSites.load(ordering: .relaxed) { noteTaskName() }
        submit(.task(UnownedJob(job)))
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// The serial executor for actors that should run on this loop:
    /// `nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }`.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Code on the loop thread is isolated to the loop: nothing else can run there concurrently.
    /// This is what lets `actor.assumeIsolated` work in plain callbacks and epoll handlers.
    public func checkIsolated() {
        precondition(isOnLoopThread, "expected to be on the SerialLoop thread, but running on another thread")
    }

    public func isIsolatingCurrentContext() -> Bool? {
        isOnLoopThread
    }
}

/// A result slot written on the loop thread and read after the loop stopped turning.
final class OutcomeBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}
