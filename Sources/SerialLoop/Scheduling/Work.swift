/// One unit of work on the ready queue.
///
/// Jobs are stored as `UnownedJob` (no allocation per job). Task jobs (enqueued on the loop) run
/// `on:` the loop as task executor: the fewest jobs per `await` for tasks. Actor jobs (enqueued on
/// the loop's separate serial executor, LoopSerialExecutor.swift) run isolated to that executor,
/// so calls between actors on the loop switch in place.
///
/// `@unchecked Sendable`: callbacks that cross threads enter through ``Loop/execute(_:)``, which takes
/// `@Sendable` closures; callbacks created on the loop thread never leave it.
enum Work: @unchecked Sendable {
    /// A task job, or a job of something that uses the loop itself as its serial executor (the
    /// main actor in whole-program mode).
    case task(UnownedJob)
    /// A job of an actor whose executor is `loop.asUnownedSerialExecutor()`.
    case actor(UnownedJob)
    /// A runtime sleep job (`Task.sleep` & co., via `SchedulingExecutor`). The runtime's sleep
    /// wake-up is a tiny task with no executor preference, which would hop to the global executor
    /// before resuming the sleeper; while it runs, such hops are routed back onto the loop.
    case sleepWake(UnownedJob)
    /// A job headed for Swift's global executor that the loop took instead (see `GlobalRouting.swift`).
    case global(UnownedJob)
    /// A `schedule(after:)`/`schedule(at:)` callback whose timer fired. It runs only if it was not
    /// cancelled in between: due timers are collected before any of their work runs, so a callback
    /// of the same tick may cancel it after it left the timer queue.
    case timerCallback(TimerID, () -> Void)
    /// A plain callback (`execute`, `schedule(after:)`, reader/writer callbacks, future callbacks).
    case callback(() -> Void)
    /// The start of a wait requested from another thread (see Suspension.swift): called with
    /// `true` to start it, or with `false` by shutdown, which rejects it (its caller fails).
    case suspension((_ isLoopAlive: Bool) -> Void)
    /// Resume a `loop.sleep` continuation (a timer's payload; never on the ready queue).
    case resume(LoopContinuation<Void>)
}
