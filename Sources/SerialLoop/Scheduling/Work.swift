/// One unit of work on the ready queue.
///
/// Jobs are stored as `UnownedJob` (no allocation per job); the role they arrived in decides how they
/// run, because one `enqueue` entry point per role is what lets task jobs run
/// `on: taskExecutor` (fewer jobs per `await`) while actor jobs run `isolatedTo:` the loop.
///
/// `@unchecked Sendable`: callbacks that cross threads enter through ``Loop/execute(_:)``, which takes
/// `@Sendable` closures; callbacks created on the loop thread never leave it.
enum Work: @unchecked Sendable {
    /// A task job that arrived through the loop's `TaskExecutor` role.
    case task(UnownedJob)
    /// An actor job that arrived through the loop's `SerialExecutor` role.
    case actor(UnownedJob)
    /// A runtime sleep job (`Task.sleep` & co., via `SchedulingExecutor`). The runtime's sleep
    /// wake-up is a tiny task with no executor preference, which would hop to the global executor
    /// before resuming the sleeper; while it runs, such hops are routed back onto the loop.
    case sleepWake(UnownedJob)
    /// A job headed for Swift's global executor that the loop took instead (see `GlobalRouting.swift`).
    case global(UnownedJob)
    /// A plain callback (`execute`, `schedule(after:)`, reader/writer callbacks, future callbacks).
    case callback(() -> Void)
    /// Resume a `loop.sleep` continuation (a timer's payload; never on the ready queue).
    case resume(UnsafeContinuation<Void, any Error>)
}
