@preconcurrency import Glibc
import Synchronization

// Graceful shutdown of a group: stop accepting, let in-flight work finish within a deadline, then
// cancel (NIO's `shutdownGracefully`, ServiceLifecycle's graceful shutdown).
//
// 1. The request: `isShuttingDownGracefully` turns true and every handler registered with
//    `onGracefulShutdown(on:_:)` is queued on its loop (the program stops accepting there).
// 2. The grace period: an `IdleMonitor` instrument on every loop reports, under `GracefulShutdown`'s
//    mutex, whether the loop has no pending work (`LoopPendingWork.isEmpty`: no ready job, timer,
//    descriptor wait or awaited future) each time it is about to poll and at the end of each tick,
//    and that it is busy again when a tick begins. The caller waits on a condition variable until
//    every loop reports idle with an empty inbox, `shutdown()` is called, or the deadline passes.
// 3. The hard shutdown, as `shutdown()`: whatever is still pending is cancelled, threads joined.
//
// Why "idle flags and empty inboxes", checked under the mutex, cannot declare a group drained while
// work still moves between loops: a loop that sends work to another pushes it onto that loop's
// inbox before it reports itself idle (program order, published by the mutex). If the receiver
// has not begun its next tick, the push is still in its inbox, which the check reads; if it has,
// its tick began by reporting busy (under the same mutex), and it reports idle again only from a
// state with nothing pending. A flag is false until its loop's first report, so a loop that was
// never seen idle holds the grace period open.

extension LoopGroup {
    /// What ``shutdownGracefully(within:)`` saw.
    public struct GracefulShutdownReport: Sendable, CustomStringConvertible {
        /// Whether every loop ran out of pending work before the deadline, so the hard shutdown
        /// that followed had nothing to cancel on the loops. `false` when the deadline passed,
        /// when ``LoopGroup/shutdown()`` cut the grace period short, or when the group had already
        /// shut down.
        public var drained: Bool
        /// The loops (indexes into ``LoopGroup/loops``) that still had pending work when the grace
        /// period ended, or were never seen without: the hard shutdown cancelled their waits.
        public var loopsNotDrained: [Int]
        /// How long the grace period lasted (real time), from the request to the hard shutdown.
        public var gracePeriod: Duration
        /// The errors the graceful-shutdown handlers threw, in the order they were thrown. A
        /// handler that throws does not stop the shutdown.
        public var handlerErrors: [any Error]

        /// `drained in 12.3 ms` or `loops [0, 2] not drained after 1.0 s (cancelled)`, with the
        /// handlers' errors.
        public var description: String {
            var text = drained ? "drained in \(gracePeriod.diagnosticText)" : "loops \(loopsNotDrained) not drained after \(gracePeriod.diagnosticText) (cancelled)"
            if !handlerErrors.isEmpty { text += "; handler errors: \(handlerErrors.map { "\($0)" })" }
            return text
        }
    }

    /// Identifies a handler registered with ``onGracefulShutdown(on:_:)``, to remove it with
    /// ``removeGracefulShutdownHandler(_:)``.
    public struct GracefulShutdownHandlerID: Hashable, Sendable {
        let value: UInt64
    }

    /// Whether a graceful shutdown has begun (``shutdownGracefully(within:)`` or
    /// ``syncShutdownGracefully(within:)`` was called); it stays `true`. Any thread, lock-free.
    ///
    /// Code that keeps work going on its own checks it at its natural stopping points: a
    /// keep-alive connection closes after the response in progress instead of reading another
    /// request, a loop of jobs stops taking new ones.
    public var isShuttingDownGracefully: Bool {
        graceful.requested.load(ordering: .acquiring)
    }

    /// Registers `handler` to run on `loop` when a graceful shutdown begins: the place to stop
    /// accepting new work (close a listener, stop a consumer) so that the loop can run out of
    /// pending work. Any thread.
    ///
    /// ```swift
    /// let listener = try TCPListener(on: loop, address: address, reusePort: true)
    /// group.onGracefulShutdown(on: loop) { try listener.close() }
    /// ```
    ///
    /// Handlers run once, on their loop's thread, as callbacks queued in registration order when
    /// the shutdown begins; registered after it began (or on a group already shut down), a
    /// handler is queued at once (runs at once on its loop's thread), or not at all once `loop` has
    /// shut down. An error a handler throws is reported in
    /// ``GracefulShutdownReport/handlerErrors`` and the shutdown goes on. A handler that blocks
    /// holds up its loop, and the shutdown waits for it to return (a callback cannot be
    /// interrupted). The group keeps handlers until they run, are removed, or it shuts down: a
    /// handler that captures the group keeps it alive until then (dropping the group then does
    /// not shut it down; capture what the handler closes, not the group).
    /// - Parameters:
    ///   - loop: one of the group's loops, where `handler` runs.
    ///   - handler: stops accepting new work; may throw.
    /// - Returns: an identifier for ``removeGracefulShutdownHandler(_:)`` (for a handler that
    ///   belongs to something shorter-lived than the group, such as a connection).
    /// - Precondition: `loop` is one of the group's loops (traps with a message).
    @discardableResult
    public func onGracefulShutdown(on loop: Loop, _ handler: @escaping @Sendable () throws -> Void) -> GracefulShutdownHandlerID {
        misuseCheck(loops.contains { $0 === loop }, "LoopGroup.onGracefulShutdown(on:): the loop is not one of the group's loops")
        let (id, runNow) = graceful.withLock { state -> (UInt64, Bool) in
            state.nextHandlerID += 1
            if state.phase == .running && !state.handlersDropped {
                state.handlers.append((state.nextHandlerID, loop, handler))
                return (state.nextHandlerID, false)
            }
            return (state.nextHandlerID, true)
        }
        if runNow { graceful.run(handler, on: loop) }
        return GracefulShutdownHandlerID(value: id)
    }

    /// Removes a handler registered with ``onGracefulShutdown(on:_:)`` that has not run yet.
    /// Any thread.
    /// - Returns: whether it was still registered (`false` once it has been queued to run).
    @discardableResult
    public func removeGracefulShutdownHandler(_ id: GracefulShutdownHandlerID) -> Bool {
        graceful.withLock { state in
            guard let index = state.handlers.firstIndex(where: { $0.id == id.value }) else { return false }
            state.handlers.remove(at: index)
            return true
        }
    }

    /// Shuts the group down gracefully: stops accepting, lets the work in flight finish within
    /// `timeout`, then cancels the rest and joins the threads as ``shutdown()`` does. Returns once
    /// the group is down, with what happened.
    ///
    /// 1. ``isShuttingDownGracefully`` turns `true`, and every handler registered with
    ///    ``onGracefulShutdown(on:_:)`` is queued on its loop.
    /// 2. The grace period: the call waits until no loop has work in flight, or `timeout` passes,
    ///    or ``shutdown()`` is called. Work in flight is a loop's ``Loop/pendingWork``: ready jobs,
    ///    timers (sleeps, `Task.sleep`s, scheduled callbacks), tasks waiting in `readable` or
    ///    `writable` (a read, an accept), awaited futures and gathers, and callbacks queued on it by
    ///    other threads or loops. Work that moves between loops keeps the period open until it
    ///    lands and ends. Not counted: what a task awaits elsewhere (an `offload` closure, a task
    ///    or actor on another executor, a continuation another thread resumes), reader/writer
    ///    callbacks and signal listeners: those do not hold the grace period open.
    /// 3. ``shutdown()``: every wait still pending is resumed with cancellation, queued jobs run,
    ///    threads are joined. A timeout of `.zero` runs the handlers (they are queued before the
    ///    loops stop) and then goes straight to this step.
    ///
    /// A server whose idle keep-alive connections wait in `read` holds the period open until
    /// the deadline unless it closes them too (from a handler, or by checking
    /// ``isShuttingDownGracefully`` between requests).
    ///
    /// Idempotent: a concurrent or later call waits for the same shutdown and returns the same
    /// report (the first call's `timeout` governs). ``shutdown()`` during the grace period ends it
    /// at once. Any task but one on a group loop.
    /// - Parameter timeout: the longest the grace period may last (real time).
    /// - Returns: whether the work in flight finished in time, and the handlers' errors.
    /// - Precondition: not called from a group loop (traps with a message), `timeout >= .zero`.
    @discardableResult
    public func shutdownGracefully(within timeout: Duration) async -> GracefulShutdownReport {
        checkNotOnGroupLoop("LoopGroup.shutdownGracefully(within:)")
        // The wait blocks a thread: one of its own, not a cooperative one.
        return await withUnsafeContinuation { (done: UnsafeContinuation<GracefulShutdownReport, Never>) in
            pthread_detach(spawnThread {
                done.resume(returning: self.syncShutdownGracefully(within: timeout))
            })
        }
    }

    /// ``shutdownGracefully(within:)`` for synchronous code: blocks the calling thread until the
    /// group is down. Any thread but a group loop's own or its `offload` threads (see
    /// ``shutdown()``).
    /// - Parameter timeout: the longest the grace period may last (real time).
    /// - Returns: whether the work in flight finished in time, and the handlers' errors.
    /// - Precondition: not called on a group loop (traps with a message), `timeout >= .zero`.
    @discardableResult
    public func syncShutdownGracefully(within timeout: Duration) -> GracefulShutdownReport {
        checkNotOnGroupLoop("LoopGroup.syncShutdownGracefully(within:)")
        misuseCheck(timeout >= .zero, "LoopGroup.shutdownGracefully(within: \(timeout)): the timeout cannot be negative")
        let start = monotonicNanoseconds()
        let handlers: [GracefulShutdown.Handler]? = graceful.withLock { state in
            guard state.phase == .running else { return nil }
            state.phase = .draining
            graceful.requested.store(true, ordering: .releasing)
            let handlers = state.handlers
            state.handlers = []
            state.idle = Array(repeating: false, count: loops.count)
            // `shutdown()` has begun (or ended): no grace period, nothing drained.
            if state.handlersDropped { state.cutShort = Array(loops.indices) }
            return handlers
        }
        guard let handlers else { return graceful.waitForReport() }
        // Monitors first: each loop's flag stays false until its monitor reports, so the handlers,
        // queued behind, run before any loop can count as drained.
        for (index, loop) in loops.enumerated() {
            let monitor = IdleMonitor(loop: loop, index: index, state: graceful)
            loop.onLiveLoop({
                loop.addInstrument(monitor)
                // Instruments take effect from the next tick: make sure there is one.
                loop.execute {}
            }, orElse: {})
        }
        for handler in handlers { graceful.run(handler.body, on: handler.loop) }
        let deadline = start.saturatingAdd(timeout.clampedNanoseconds)
        let notDrained = graceful.waitUntilDrained(loops, deadline: deadline)
        let end = monotonicNanoseconds()
        shutdown()
        return graceful.finish(GracefulShutdownReport(drained: notDrained.isEmpty, loopsNotDrained: notDrained,
                                                      gracePeriod: .nanoseconds(end - start), handlerErrors: []))
    }

    /// Traps when called on one of the group's loops, which cannot wait for itself to end.
    func checkNotOnGroupLoop(_ api: String) {
        // By the thread's current loop: it is set only on a thread that runs a loop, while it runs
        // or shuts down, so a thread the loop no longer runs on (after a concurrent shutdown joined
        // it) is never taken for the loop.
        let current = Loop.current
        misuseCheck(current == nil || !loops.contains { $0 === current }, "\(api) called on one of the group's own loops, which cannot wait for itself to end; call it from outside the group (e.g. the code that started it), or call stop() on the loops")
    }
}

/// A group's graceful-shutdown state: the handlers, the phase, and each loop's last idle report,
/// under one mutex with a condition variable on the monotonic clock (the grace period's deadline).
final class GracefulShutdown: @unchecked Sendable {
    // Unchecked Sendable: `state` is read and written only under `mutex`.
    typealias Handler = (id: UInt64, loop: Loop, body: @Sendable () throws -> Void)

    enum Phase { case running, draining, finished }

    struct State {
        var phase = Phase.running
        var handlers: [Handler] = []
        var nextHandlerID: UInt64 = 0
        /// Set by the hard shutdown: later handlers are not kept (they run at once, or not).
        var handlersDropped = false
        /// Per loop: whether its monitor last saw it with nothing pending.
        var idle: [Bool] = []
        /// Once the grace period has ended (drained, deadline, or `shutdown()`): the loops that
        /// were not drained then.
        var cutShort: [Int]?
        var errors: [any Error] = []
        var report: LoopGroup.GracefulShutdownReport?
    }

    /// Whether a graceful shutdown has begun (read lock-free by `isShuttingDownGracefully`).
    let requested = Atomic<Bool>(false)
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var state = State()

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func withLock<T>(_ body: (inout State) throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }

    /// Runs `handler` on `loop`'s thread while the loop lives, recording what it throws.
    func run(_ handler: @escaping @Sendable () throws -> Void, on loop: Loop) {
        loop.onLiveLoop({
            do {
                try handler()
            } catch {
                let kept = self.withLock { state -> Bool in
                    guard state.phase != .finished else { return false }
                    state.errors.append(error)
                    return true
                }
                if !kept { fputs("SerialLoop: a graceful-shutdown handler threw after the shutdown ended: \(error)\n", stderr) }
            }
        }, orElse: {})
    }

    /// A loop's monitor: `idle` is whether the loop has nothing pending now. Loop thread.
    func report(loop index: Int, idle: Bool) {
        withLock { state in
            guard state.cutShort == nil, index < state.idle.count else { return }
            state.idle[index] = idle
            if idle { pthread_cond_broadcast(condition) }
        }
    }

    /// `shutdown()` was called: the grace period (if any) ends now, with the loops not drained at
    /// this moment (the hard shutdown is about to empty them); handlers are released.
    func noteHardShutdown(_ loops: [Loop]) {
        withLock { state in
            if state.phase == .draining && state.cutShort == nil { state.cutShort = notDrained(loops, state) }
            state.handlersDropped = true
            state.handlers = []
            pthread_cond_broadcast(condition)
        }
    }

    /// The loops not seen idle, or with work on their inbox. Under the mutex.
    private func notDrained(_ loops: [Loop], _ state: State) -> [Int] {
        loops.indices.filter { !state.idle[$0] || loops[$0].inbox.mayHaveWork }
    }

    /// Waits until every loop is idle with an empty inbox, a hard shutdown is requested, or the
    /// monotonic clock reaches `deadline`. Returns the indexes of the loops not seen drained.
    func waitUntilDrained(_ loops: [Loop], deadline: Int64) -> [Int] {
        var until = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        // Not inside `withLock`: its `inout` access to `state` would span the waits, and the
        // optimiser may keep that access's value in registers across them (exclusive access
        // says nobody else writes it) — seen in release builds, where this loop never saw the
        // `cutShort` that `shutdown()` set. Each read here is an access of its own.
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while true {
            if let cutShort = state.cutShort { return cutShort }
            let notDrained = notDrained(loops, state)
            if notDrained.isEmpty || monotonicNanoseconds() >= deadline {
                // Frozen: what the loops report from now on (the hard shutdown's cancellations
                // empty them) no longer counts.
                state.cutShort = notDrained
                return notDrained
            }
            _ = pthread_cond_timedwait(condition, mutex, &until)
        }
    }

    /// The first call's end: publishes the report (with the handlers' errors so far) to the
    /// concurrent and later callers, and returns it.
    func finish(_ report: LoopGroup.GracefulShutdownReport) -> LoopGroup.GracefulShutdownReport {
        withLock { state in
            var report = report
            report.handlerErrors = state.errors
            state.report = report
            state.phase = .finished
            pthread_cond_broadcast(condition)
            return report
        }
    }

    /// A concurrent or later call: the first call's report, once it is there.
    func waitForReport() -> LoopGroup.GracefulShutdownReport {
        // Not inside `withLock`, for the reason `waitUntilDrained` gives.
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while state.report == nil { pthread_cond_wait(condition, mutex) }
        return state.report!
    }
}

/// Reports its loop's idleness to the group's graceful shutdown (installed when it begins):
/// busy when a tick begins, idle when the loop is about to poll or ends a tick with nothing
/// pending. Only changes are reported, so a busy loop takes the mutex twice per idle period.
private final class IdleMonitor: LoopInstrument {
    /// Unowned: the loop owns its instruments, and the hooks run on it.
    unowned let loop: Loop
    let index: Int
    let state: GracefulShutdown
    private var reportedIdle = false

    init(loop: Loop, index: Int, state: GracefulShutdown) {
        self.loop = loop
        self.index = index
        self.state = state
    }

    func tickWillStart() {
        guard reportedIdle else { return }
        reportedIdle = false
        state.report(loop: index, idle: false)
    }

    func pollWillStart(timeout: Duration?) { check() }
    func tickDidEnd() { check() }

    private func check() {
        guard !reportedIdle, loop.hasNoPendingWork else { return }
        reportedIdle = true
        state.report(loop: index, idle: true)
    }
}

extension Loop {
    /// ``pendingWork`` would be empty, and nothing is queued on the inbox. Loop thread.
    var hasNoPendingWork: Bool {
        ready.isEmpty && !inbox.mayHaveWork && timers.isEmpty && reactor.waiterCount == 0 && pendingAwaits.isEmpty
    }
}

extension Duration {
    /// Whole nanoseconds, saturating at `Int64.max`.
    var clampedNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        guard seconds < Int64.max / 1_000_000_000 else { return .max }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
