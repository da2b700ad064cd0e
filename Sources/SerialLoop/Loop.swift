@preconcurrency import Glibc
import Synchronization
import CSerialLoopShims

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
///
/// `Loop` is `public`, not `open`: its one subclass is ``TestLoop``, a loop on virtual time with the
/// test-only controls. Every member declared in this class's body is `final` (extension members
/// are anyway), so the subclass changes no dispatch.
public class Loop: TaskExecutor, SerialExecutor, @unchecked Sendable {
    // Unchecked Sendable: the sections below say which thread owns each property: immutable after
    // init (any thread), atomics (any thread), loop-thread state (the owner thread only, checked by
    // `preconditionOnLoopThread` on every synchronous API).
    // MARK: Immutable after init (any thread)

    /// The thread that owns the loop (the one that created it): the only one that runs its jobs and
    /// touches loop-thread state. Its `c_serial_loop_thread_token()`, not its `pthread_t`: a
    /// `pthread_t` is reused once its thread ends, a token never is (see `isOnLoopThread`).
    let ownerThread: UInt64
    /// The loop's clock, real or virtual: the only part that reads a system clock (Time/LoopTime.swift).
    let time: LoopTime
    let inbox: Inbox
    /// Where jobs that arrive after shutdown run (Afterlife.swift).
    let afterlife = Afterlife()
    /// Threads for `offload` (started on demand, joined at shutdown): Offload/OffloadPool.swift.
    let offloadPool = OffloadPool()
    /// The opt-in executor for actors that mostly call each other (Scheduling/LoopActorExecutor.swift).
    public let actorExecutor = LoopActorExecutor()

    // MARK: Cross-thread state (atomics)

    /// Always-on metrics: written by the loop thread, read by any (Observability/LoopMetrics.swift).
    let metricsStorage = LoopMetricsStorage()
    /// Set once shutdown has closed the inbox (Loop+Shutdown.swift).
    let isShutDown = Atomic<Bool>(false)

    // MARK: Loop-thread state
    //
    // Owned by the loop thread, which is the only thread that touches them, so the runtime's
    // dynamic exclusivity checks (swift_beginAccess on every class-property access: ~6% of a
    // socketpair round trip, measured with callgrind) are switched off for them.

    @exclusivity(unchecked) final var ready = ReadyQueue()
    @exclusivity(unchecked) final var timers = TimerQueue()
    @exclusivity(unchecked) final var reactor: Reactor<PlatformBackend>
    /// Scratch for the tick's inbox drain (its capacity is kept, so draining does not allocate).
    @exclusivity(unchecked) final var inboxBuffer = ReadyQueue(initialCapacity: 64)
    /// Idle, running (and which run), ending (and why), or shut down: see `RunState` (Loop+Running.swift).
    @exclusivity(unchecked) final var runState = RunState.idle
    /// The last run identity handed out (`nextRunID`).
    @exclusivity(unchecked) final var lastRunID: UInt64 = 0
    @exclusivity(unchecked) final var nextWaiterID: UInt64 = 0
    /// Futures and gathers that tasks are suspended on, so shutdown can resume those tasks
    /// instead of leaking them.
    @exclusivity(unchecked) final var pendingAwaits: [ObjectIdentifier: any ShutdownCancellable] = [:]
    /// True while a runtime sleep job runs: its hop to the global executor comes back here.
    @exclusivity(unchecked) final var isRunningSleepWake = false
    /// Whether work sent to the global executor from this loop's thread runs on the loop instead
    /// (test loops: see GlobalRouting.swift).
    @exclusivity(unchecked) final var capturesEscapingWork: Bool
    /// Whether this loop is the program's default executor (`Loop.runMain`): a runtime sleep's
    /// wake-up then resumes its sleeper without a hop to a global executor (Loop+Shutdown.swift).
    @exclusivity(unchecked) final var wakeUpsResumeSleepersDirectly = false
    /// The tasks created on this test loop's thread that it took over (GlobalRouting.swift).
    @exclusivity(unchecked) final var escapedTasks = Set<UnsafeRawPointer>()
    /// Whether Dispatch's main-queue descriptor is registered with the reactor (a loop that has
    /// turned on the main thread: see Entry/MainThread.swift).
    @exclusivity(unchecked) final var servesMainQueue = false
    /// Busy ticks since the main-queue descriptor was last polled (see `defersBusyPoll`).
    @exclusivity(unchecked) final var busyTicksSinceMainQueuePoll = 0
    /// Instruments and debug mode (Observability/Loop+Observation.swift). A constant, so the tick
    /// borrows it without a retain and a job that removes the last instrument cannot free it
    /// under the tick; `isObserved` is false while neither is installed, which keeps the tick plain.
    let observation = LoopObservation()
    @exclusivity(unchecked) final var isObserved = false

    /// Creates a loop owned by the calling thread, on real time. Run it on this thread with
    /// ``run()`` or ``run(until:)-(Task<T,Error>)``, or use ``withLoop(_:)-4snyu``, which does both.
    /// A loop on virtual time is a ``TestLoop``.
    /// - Throws: ``LoopError`` if the kernel refuses the epoll or eventfd descriptor.
    public convenience init() throws(LoopError) {
        try self.init(virtualClock: nil)
    }

    /// The one designated initializer. `virtualClock`: a test loop's clock (its own, or the one
    /// the loops of a test group share: Group/TestLoopGroup.swift); `nil` on a real loop.
    init(virtualClock: VirtualClock?) throws(LoopError) {
        // The clock follows the dynamic type: a virtual clock exists exactly when this is a
        // `TestLoop` (LoopTime relies on it to reach the idle policy).
        precondition((virtualClock != nil) == (Self.self == TestLoop.self), "a virtual clock exactly on a TestLoop")
        ownerThread = c_serial_loop_thread_token()
        self.time = LoopTime(virtual: virtualClock)
        capturesEscapingWork = virtualClock != nil
        reactor = Reactor(backend: try PlatformBackend())
        inbox = Inbox(wake: reactor.waker)
        installGlobalRouting()
        actorExecutor.loop = self
    }

    /// A loop on `time`: a ``TestLoop`` for `.virtual`. For the entry points that take a mode.
    static func make(time: TimeMode) throws(LoopError) -> Loop {
        time == .virtual ? try TestLoop() : try Loop()
    }

    deinit {
        guard !runState.isShutDown else { return }
        reportAbandonedWork()
        reactor.close()
    }

    /// The loop the calling code runs on: while a loop runs (its jobs, callbacks and shutdown),
    /// the loop; on any other thread, or on a loop's thread between runs, `nil`. Any thread. Reads
    /// the thread-local the loop sets as its run starts (`enterThread()`), so it costs a
    /// thread-local load and adds nothing to the loop's own paths.
    ///
    /// A task that prefers a loop, or an actor on it, sees that loop; a task on the global
    /// executor sees `nil`. On a ``TestLoop``, `TestLoop.current` gives the same loop typed
    /// `TestLoop`.
    // A `class var`, the one overridable member: `TestLoop` narrows it to `TestLoop?`.
    public class var current: Loop? {
        c_serial_loop_current_loop().map { Unmanaged<Loop>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Whether the calling code may use the loop's loop-thread-only APIs: it runs on this loop (a
    /// job, callback or shutdown of the loop), or on the thread that created the loop while no loop
    /// runs there (before and between runs). `false` on any other thread, and in code running on
    /// another loop — also when that loop shares the thread, as the loops of
    /// ``withTestLoopGroup(loops:seed:_:)-11qmk`` do: code on loop A that uses loop B hops to B,
    /// exactly as it would in a group of threads.
    public final var isOnLoopThread: Bool {
        // The thread-local current loop first: on the hot paths (enqueue, schedule, cancel from
        // the loop's own code) it decides alone. Only a thread running no loop compares thread
        // tokens, which (unlike `pthread_t`s) are never reused: a new thread that got the
        // `pthread_t` of a loop's ended thread is not that loop's.
        let running = c_serial_loop_current_loop()
        if running == Unmanaged.passUnretained(self).toOpaque() { return true }
        return running == nil && c_serial_loop_thread_token() == ownerThread
    }

    /// Traps unless the caller is on the loop's thread, with a message that names `operation` and
    /// how to get there. A `fatalError`, not a `precondition`: `-O` strips precondition messages,
    /// and release builds must say what was wrong too.
    @inline(__always)
    package final func preconditionOnLoopThread(_ operation: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
        if !isOnLoopThread { wrongThread(operation(), file: file, line: line) }
    }

    @inline(never)
    private final func wrongThread(_ operation: String, file: StaticString, line: UInt) -> Never {
        if let running = Loop.current, running !== self {
            // Another loop's code, perhaps on this very thread (a test loop group): say so, since
            // "the loop's thread" alone would read as a contradiction there.
            fatalError("\(operation) must be called by code running on this loop, and the caller runs on another loop (loops never share loop-thread state, even when a test loop group runs them on one thread). "
                + "Hop onto this loop: Task(executorPreference: loop) { … }, withTaskExecutorPreference(loop) { … } or loop.execute { … }", file: file, line: line)
        }
        fatalError(Loop.wrongThreadMessage(operation), file: file, line: line)
    }

    /// What a loop-thread-only API says when called elsewhere.
    package static func wrongThreadMessage(_ operation: String) -> String {
        "\(operation) must be called on the loop's thread. From async code, run the caller on the loop: "
            + "Task(executorPreference: loop) { … } or withTaskExecutorPreference(loop) { … } "
            + "(a plain Task {} or Task.detached does not run there); from other threads, use loop.execute { … }"
    }

    /// Runs `body` on the loop thread: now if the caller is there, else as the next inbox item.
    /// Internal plumbing (cancellation, completions, releases): on a loop that has shut down, an
    /// off-thread `body` is dropped without a word — there is nothing left for it to act on.
    @inline(__always)
    final func onLoopThread(_ body: @escaping () -> Void) {
        if isOnLoopThread { body() } else { inbox.push(.callback(body)) }
    }

    /// `onLoopThread` for hot paths: `body` should capture nothing (pass what it needs as
    /// `context`), so the common case — already on the loop thread — allocates no closure context;
    /// only a hop from another thread builds one. (A capturing closure passed to `onLoopThread`
    /// is heap-allocated even when it runs inline: ~120 instructions per `ScheduledCallback.cancel`.)
    @inline(__always)
    final func onLoopThread<Context>(with context: Context, _ body: @escaping (Context) -> Void) {
        if isOnLoopThread { body(context) } else { inbox.push(.callback { body(context) }) }
    }

    /// `onLoopThread` for a cancellation handler's `@Sendable` closure.
    @inline(__always)
    final func sendToLoop(_ body: @escaping @Sendable () -> Void) {
        onLoopThread(body)
    }

    // MARK: Time

    // Forced inline: `schedule(after:)` reads it, and left to the inliner it became a call once the
    // virtual clock moved behind a reference (callgrind, schedule + cancel: 369 instead of 361
    // instructions).
    /// The loop's current time: monotonic in real mode, virtual on a test loop.
    @inline(__always)
    public final var now: LoopClock.Instant {
        LoopClock.Instant(nanosecondsSinceOrigin: nowNanoseconds)
    }

    @inline(__always)
    final var nowNanoseconds: Int64 {
        time.now()
    }

    /// The loop's clock, for any API that takes `some Clock`.
    public final var clock: LoopClock { LoopClock(loop: self) }

    // MARK: Identifiers

    final func makeWaiterID() -> UInt64 {
        nextWaiterID &+= 1
        return nextWaiterID
    }
}
