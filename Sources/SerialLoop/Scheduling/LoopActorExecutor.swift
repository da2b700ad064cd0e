/// An opt-in serial executor for actors that mostly call *each other* on the loop: a second
/// executor object over the loop's one ready queue.
///
/// The runtime calls the same `enqueue` for both executor roles of one object, so an actor whose
/// executor is the loop itself (`loop.asUnownedSerialExecutor()`, the default) cannot be told from
/// a task, and every job runs `on:` the loop as task executor. That is the cheapest shape for tasks
/// calling actors (the call switches in place), but every call from one such actor to another is
/// an enqueued job. With this object as the actors' executor, their jobs run `isolatedTo:` it with
/// the loop as task executor, and one actor calls another on it in place, with no job at all.
/// The price is the other way round: a call into these actors from a task that prefers the loop
/// becomes a job each way. Measured (Benchmarks rows actor-ping-pong / task-actor-call, callgrind
/// instructions per call): actor → actor 1,012 → 310 (the two-object floor's figure); task → actor
/// 1,284 → 2,254. Choose per actor:
///
/// ```swift
/// actor Cache {
///     nonisolated let unownedExecutor: UnownedSerialExecutor
///     init(loop: Loop) { unownedExecutor = loop.actorExecutor.asUnownedSerialExecutor() }
/// }
/// ```
///
/// Both objects are the loop's thread for isolation checks, and everything else about the loop
/// holds for these actors (shutdown, the afterlife, debug mode).
public final class LoopActorExecutor: SerialExecutor, @unchecked Sendable {
    // Unchecked Sendable: its one stored property, `loop`, is written once in the loop's init,
    // before either object is shared, and only read afterwards.
    /// The loop owns this object; it refers back without a reference count. Set once, at the end
    /// of the loop's init, before the loop is visible to anyone.
    unowned(unsafe) var loop: Loop!

    init() {}

    /// Takes a job of an actor on this executor: the runtime calls this. Any thread, as the
    /// loop's own ``Loop/enqueue(_:)``: the job joins the loop's one FIFO ready queue.
    public func enqueue(_ job: consuming ExecutorJob) {
        loop.submit(.actor(UnownedJob(job)))
    }

    /// The executor for an actor's `unownedExecutor`:
    /// `loop.actorExecutor.asUnownedSerialExecutor()`. Any thread.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Traps with a message unless the caller is on the loop's thread (the loop's
    /// ``Loop/checkIsolated()``).
    public func checkIsolated() {
        loop.checkIsolated()
    }

    /// Whether the caller runs on the loop's thread. Any thread.
    public func isIsolatingCurrentContext() -> Bool? {
        loop.isOnLoopThread
    }
}
