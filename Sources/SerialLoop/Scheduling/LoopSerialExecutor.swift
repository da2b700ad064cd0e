/// The loop's executor for actors: a second object over the loop's one ready queue.
///
/// The runtime calls the same `enqueue` for both executor roles of one object, so a loop that is
/// its own serial executor cannot tell an actor's job from a task's and must run every job one way.
/// Running all of them `on:` the loop as task executor costs an enqueued job for every call from
/// one actor on the loop to another. With this object as the actors' serial executor, the loop
/// knows: task jobs (enqueued on the loop) run `on:` it as task executor, actor jobs (enqueued
/// here) run `isolatedTo:` this executor with the loop as task executor — and then an actor calls
/// another actor on the loop in place, with no job at all (measured: Benchmarks/NOTES.md).
///
/// `Loop.asUnownedSerialExecutor()` hands out this object; both objects are the loop's thread
/// for isolation checks.
final class LoopSerialExecutor: SerialExecutor, @unchecked Sendable {
    /// Set once, in the loop's init. The loop owns this object, and actors on it hold only
    /// unowned references, as they do to the loop itself.
    unowned(unsafe) var loop: Loop!

    init() {}

    func enqueue(_ job: consuming ExecutorJob) {
        loop.submit(.actor(UnownedJob(job)))
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    func checkIsolated() {
        loop.checkIsolated()
    }

    func isIsolatingCurrentContext() -> Bool? {
        loop.isOnLoopThread
    }
}
