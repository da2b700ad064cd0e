/// Hooks around each phase of the loop (Trio's `Instrument`): install one with
/// ``Loop/addInstrument(_:)``, remove it with ``Loop/removeInstrument(_:)``.
///
/// Every hook is called on the loop's thread, synchronously, inside the tick: keep them short.
/// All have empty default implementations. An instrument that wants to know how long jobs and
/// ticks took conforms to ``LoopTimingInstrument`` instead: the loop then reads the clock around
/// every job (and so does debug mode). A plain instrument costs its hook calls and nothing else.
///
/// ## The order hooks fire in
/// For each tick (see `Loop.tick()`):
/// 1. `tickWillStart()`;
/// 2. `timerDidFire(deadline:lag:)` for each due timer, in `(deadline, sequence)` order (phase 2);
/// 3. for each job that was ready when the tick began, in FIFO order: `jobWillRun(_:)`, the job,
///    `jobDidRun(_:)` (phase 4);
/// 4. if the tick polls for I/O (it may not: work is ready and no descriptor is watched):
///    `pollWillStart(timeout:)`, the poll, `pollDidEnd(events:blocked:)` (phases 5–6; a blocking
///    wait that wakes up to check descriptors polls more than once);
/// 5. `tickDidEnd()`.
///
/// A tick that ends the run (after `stop()`, or when `run(until:)` is done) skips step 4.
/// Instruments added or removed during a tick (by a hook or a job) take effect from the next tick:
/// a removed instrument still gets the rest of the current tick's hooks. Shutdown's drain turns
/// the loop in ticks like any other, with the same hooks, but they skip step 4: with nothing
/// ready, shutdown peeks at I/O between ticks instead (those polls call the poll hooks too).
public protocol LoopInstrument: AnyObject {
    /// A tick begins (before the clock is read). Loop thread, like every hook.
    func tickWillStart()
    /// A timer fired: `deadline` is when it was due, `lag` how late it fired (loop time).
    func timerDidFire(deadline: LoopClock.Instant, lag: Duration)
    /// A job of the kind `job` is about to run.
    func jobWillRun(_ job: LoopJobKind)
    /// The job announced by ``jobWillRun(_:)`` has returned (not called for timing instruments,
    /// which get ``LoopTimingInstrument/jobDidRun(_:duration:)`` instead).
    func jobDidRun(_ job: LoopJobKind)
    /// `timeout`: `nil` waits until woken, `.zero` only peeks.
    func pollWillStart(timeout: Duration?)
    /// `events`: descriptors ready plus one for a wake-up. `blocked`: real time spent in a poll
    /// that could block (a timeout other than zero); `.zero` for a peek, unless the loop is
    /// timing jobs (a ``LoopTimingInstrument`` or debug mode is installed), when every poll is timed.
    func pollDidEnd(events: Int, blocked: Duration)
    /// The tick has ended (not called for timing instruments, which get
    /// ``LoopTimingInstrument/tickDidEnd(duration:)`` instead).
    func tickDidEnd()
}

extension LoopInstrument {
    /// Does nothing: implement the hooks you need.
    public func tickWillStart() {}
    /// Does nothing: implement the hooks you need.
    public func timerDidFire(deadline: LoopClock.Instant, lag: Duration) {}
    /// Does nothing: implement the hooks you need.
    public func jobWillRun(_ job: LoopJobKind) {}
    /// Does nothing: implement the hooks you need.
    public func jobDidRun(_ job: LoopJobKind) {}
    /// Does nothing: implement the hooks you need.
    public func pollWillStart(timeout: Duration?) {}
    /// Does nothing: implement the hooks you need.
    public func pollDidEnd(events: Int, blocked: Duration) {}
    /// Does nothing: implement the hooks you need.
    public func tickDidEnd() {}
}

/// An instrument that receives durations: `jobDidRun(_:duration:)` and `tickDidEnd(duration:)`
/// are called *instead of* `jobDidRun(_:)` and `tickDidEnd()`, in the same places.
///
/// While one is installed the loop times every job: one clock read per job (a job's end is the
/// next one's start), and the metrics' `jobDuration` and `tickDuration` distributions fill.
public protocol LoopTimingInstrument: LoopInstrument {
    /// `duration`: real time the job ran.
    func jobDidRun(_ job: LoopJobKind, duration: Duration)
    /// `duration`: real time the tick ran, not counting time blocked in polls.
    func tickDidEnd(duration: Duration)
}

extension LoopTimingInstrument {
    /// Does nothing: implement the hooks you need.
    public func jobDidRun(_ job: LoopJobKind, duration: Duration) {}
    /// Does nothing: implement the hooks you need.
    public func tickDidEnd(duration: Duration) {}
}

/// What kind of work a job is.
public enum LoopJobKind: Sendable, Equatable, CustomStringConvertible {
    /// A task or actor job.
    case task
    /// The wake-up of a `Task.sleep` (or another runtime-clock sleep).
    case taskSleepWakeUp
    /// A job headed for the global executor that a test loop ran instead.
    case globalJob
    /// A callback: `execute`, `callSoon`, reader/writer callbacks, future callbacks.
    case callback
    /// A `schedule(after:)`/`schedule(at:)` callback whose timer fired.
    case scheduledCallback
    /// The start of a wait requested from another thread.
    case waitStart
    /// A continuation resumed from the ready queue. (No longer produced: a fired `loop.sleep`
    /// resumes its task directly, whose job is then a `.task`.)
    case resumption

    init(_ work: Work) {
        switch work {
        case .task, .actor: self = .task
        case .sleepWake: self = .taskSleepWakeUp
        case .global: self = .globalJob
        case .callback: self = .callback
        case .scheduledCallback: self = .scheduledCallback
        case .suspension: self = .waitStart
        }
    }

    /// A short name for reports: `task`, `Task.sleep wake-up`, `callback`, …
    public var description: String {
        switch self {
        case .task: "task"
        case .taskSleepWakeUp: "Task.sleep wake-up"
        case .globalJob: "global job"
        case .callback: "callback"
        case .scheduledCallback: "scheduled callback"
        case .waitStart: "wait start"
        case .resumption: "resumption"
        }
    }
}

/// Where a callback was created: captured by `execute`, `schedule(after:)`/`schedule(at:)`,
/// `addReader`/`addWriter` while debug mode is on.
public struct LoopCallbackSite: Sendable, Hashable, CustomStringConvertible {
    /// The `#fileID` of the call, e.g. `MyApp/Server.swift`.
    public let fileID: String
    /// The line of the call.
    public let line: UInt

    /// A site from a file ID and a line (the loop makes these itself from `#fileID`/`#line`).
    public init(fileID: String, line: UInt) {
        self.fileID = fileID
        self.line = line
    }

    /// `fileID:line`, as reports print it.
    public var description: String { "\(fileID):\(line)" }
}
