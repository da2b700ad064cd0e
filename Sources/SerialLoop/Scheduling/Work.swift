/// One item on the ready queue.
///
/// Jobs are stored as `UnownedJob` (no allocation per job). The loop is one object in both executor
/// roles, and every job — task or actor — runs `on:` the loop as task executor: measured, that is the
/// fewest jobs per `await` for tasks, and lets an actor on the loop be entered in place from a task
/// that prefers the loop (~100 ns per actor call instead of ~250 ns with a separate serial-executor
/// object, whose jobs must be enqueued).
///
/// Every item reaches the ready queue through one door: `Loop.submit` (any thread), or
/// `Loop.makeReady` on the loop thread (Loop+Enqueue.swift). What a timer carries is a
/// ``TimerPayload``, not a `Work`: a fired timer becomes work (or resumes its task) in the tick.
///
/// `@unchecked Sendable`: callbacks that cross threads enter through ``Loop/execute(_:file:line:)``, which takes
/// `@Sendable` closures; callbacks created on the loop thread never leave it.
enum Work: @unchecked Sendable {
    /// A task or actor job (actors whose executor is the loop itself).
    case task(UnownedJob)
    /// A job of an actor on the loop's separate actor executor (LoopActorExecutor.swift): it runs
    /// isolated to that executor, so such actors call each other in place.
    case actor(UnownedJob)
    /// A runtime sleep job (`Task.sleep` & co., via `SchedulingExecutor`) whose timer fired. The
    /// runtime's sleep wake-up is a tiny task with no executor preference, which would hop to the
    /// global executor before resuming the sleeper; while it runs, such hops are routed back onto
    /// the loop.
    case sleepWake(UnownedJob)
    /// A job headed for Swift's global executor that the loop took instead (see `GlobalRouting.swift`).
    case global(UnownedJob)
    /// A `schedule(after:)`/`schedule(at:)` callback whose timer fired. It runs only if it was not
    /// cancelled in between: due timers are collected before any of their work runs, so a callback
    /// of the same tick may cancel it after it left the timer queue. Its timer's slot says which:
    /// it stays held, and its ID live, until the callback runs or is cancelled (TimerQueue.swift).
    case scheduledCallback(TimerID, () -> Void)
    /// A plain callback (`execute`, `callSoon`, reader/writer callbacks, future callbacks).
    case callback(() -> Void)
    /// The start of a wait requested from another thread (see Suspension.swift): called with
    /// `true` to start it, or with `false` by shutdown, which rejects it (its caller fails).
    case suspension((_ isLoopAlive: Bool) -> Void)
}

/// What a pending timer carries. Loop thread only.
enum TimerPayload {
    /// A task suspended in `loop.sleep`: resumed when the timer fires (that enqueues the task).
    case resume(LoopContinuation<Void>)
    /// A `schedule(after:)`/`schedule(at:)` callback: queued when the timer fires (its slot held).
    case scheduledCallback(() -> Void)
    /// A runtime sleep's wake-up job (`Task.sleep` & co.): queued when the timer fires.
    case sleepWake(UnownedJob)

    /// Whether a fired timer with this payload keeps its slot (and ID) live until its work runs:
    /// a scheduled callback does, so that cancelling it after it fired still stops it.
    @inline(__always)
    static func holdsSlotWhenDue(_ payload: TimerPayload) -> Bool {
        if case .scheduledCallback = payload { return true }
        return false
    }
}
