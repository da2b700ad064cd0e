import Synchronization

/// Something tasks are suspended on that shutdown must resume, so none is leaked.
protocol ShutdownCancellable: AnyObject {
    /// Resumes every suspended awaiter (see `LoopContinuation.resumeForShutdown`). Returns how
    /// many there were.
    func resumeAwaitersForShutdown() -> Int
    /// For `pendingWork`: what the tasks await, e.g. "LoopFuture<Int> made at App.swift:42".
    var awaitDescription: String { get }
    /// Loop time when the first current awaiter began waiting.
    var awaitedSince: Int64 { get }
}

/// A loop-bound future (asyncio's `Future`): a value that arrives later, for bridging callback code
/// into async code.
///
/// Complete it once with ``succeed(_:)``, ``fail(_:)`` or ``complete(with:)`` — from any thread;
/// the completion happens on the loop. The first completion wins; later ones are ignored.
/// Observe it with ``whenComplete(_:)`` (done-callbacks, run on the loop in registration order,
/// each as its own callback on the ready queue, like `call_soon`) or `try await future.value`
/// (any number of awaiters, from any task).
///
/// A future dropped uncompleted while done-callbacks wait for it can never be completed: when the
/// last reference to it goes, it fails with a ``LoopError`` (the callbacks run with it instead of
/// never) and the drop is reported — to the debug sink in debug mode, else one line on stderr.
/// (A task awaiting `value` holds the future itself, so an awaited future is never dropped; a
/// future nobody completes shows up in ``Loop/pendingWork`` with where it was made and for how
/// long it has been awaited.)
public final class LoopFuture<Value: Sendable>: @unchecked Sendable {
    // Unchecked Sendable: both properties are immutable; `state` (not Sendable) is touched on the
    // loop's thread only — every method traps elsewhere or hops there (`succeed`, `fail`, `deinit`).
    /// The loop the future belongs to: its completion, done-callbacks and awaiters' wake-ups happen
    /// there. Any thread.
    public let loop: Loop
    /// What awaiters and the loop hold: the handle's lifetime is the user's alone, so its
    /// `deinit` means "nobody can complete this future any more".
    let state: FutureState<Value>

    init(loop: Loop, site: RawCallbackSite) {
        self.loop = loop
        self.state = FutureState(loop: loop, site: site)
    }

    deinit {
        // Nothing waits (or it completed): nothing to do, and no trip to the loop thread.
        guard state.hasWaiters.load(ordering: .acquiring) else { return }
        let state = self.state
        loop.onLoopThread { state.abandon() }
    }

    /// Whether the future has a result. Loop thread only.
    public var isDone: Bool {
        loop.preconditionOnLoopThread("LoopFuture.isDone")
        return state.result != nil
    }

    /// Completes the future with `value` (asyncio's `set_result`). Any thread; the completion
    /// happens on the loop. The first completion wins; later ones are ignored.
    /// - Parameter value: the value awaiters of ``value`` get and done-callbacks receive.
    public func succeed(_ value: Value) {
        complete(with: .success(value))
    }

    /// Completes the future with `error` (asyncio's `set_exception`). Any thread; the completion
    /// happens on the loop. The first completion wins; later ones are ignored.
    /// - Parameter error: what awaiters of ``value`` throw and done-callbacks receive.
    public func fail(_ error: any Error) {
        complete(with: .failure(error))
    }

    /// Completes the future with `CancellationError` (asyncio's `Future.cancel`).
    public func cancel() {
        complete(with: .failure(CancellationError()))
    }

    /// Completes the future with `result`. Any thread; the completion happens on the loop (at once
    /// when called there, else as the next item of the loop's inbox). The first completion wins;
    /// later ones are ignored.
    /// - Parameter result: the value or error awaiters and done-callbacks get.
    public func complete(with result: Result<Value, any Error>) {
        // On the loop thread, no closure (a capturing closure is heap-allocated even when it runs inline).
        if loop.isOnLoopThread { return state.resolve(result) }
        let state = self.state
        loop.onLoopThread { state.resolve(result) }
    }

    /// Runs `callback` with the result once the future completes (at once, on the next tick, if it
    /// already has). Loop thread only.
    public func whenComplete(_ callback: @escaping (Result<Value, any Error>) -> Void) {
        loop.preconditionOnLoopThread("LoopFuture.whenComplete(_:)")
        state.whenComplete(callback)
    }

    /// The future's value, once it has one. Cancelling the awaiting task throws `CancellationError`
    /// in that task only; the future itself is unaffected.
    /// - Throws: the future's error; ``LoopError/loopHasShutDown(_:)`` once the loop has shut down;
    ///   a ``LoopError`` if the future is deallocated uncompleted while the task awaits it.
    ///
    /// Runs on the caller's executor (`nonisolated(nonsending)`): one executor switch per await.
    nonisolated(nonsending) public var value: Value {
        get async throws {
            try await loop.suspend(FutureAwait(state))
        }
    }
}

/// A future's result, done-callbacks and awaiters. Loop thread only.
final class FutureState<Value: Sendable> {
    let loop: Loop
    /// Where the future was made, for the report if it is dropped uncompleted.
    let site: RawCallbackSite
    private(set) var result: Result<Value, any Error>?
    private var callbacks: [(Result<Value, any Error>) -> Void] = []
    private var awaiters: [(id: UInt64, continuation: LoopContinuation<Value>)] = []
    /// Loop time when the first current awaiter arrived (for `pendingWork`).
    private(set) var awaitedSince: Int64 = 0
    /// Uncompleted, with callbacks or awaiters: the handle's `deinit` (any thread) must look.
    /// Written on the loop thread while a handle is alive (every path that adds a waiter goes
    /// through one), so a `deinit` cannot race with a change from `false` to `true`.
    let hasWaiters = Atomic<Bool>(false)

    init(loop: Loop, site: RawCallbackSite) {
        self.loop = loop
        self.site = site
    }

    func resolve(_ result: Result<Value, any Error>) {
        guard self.result == nil else { return }
        self.result = result
        let callbacks = self.callbacks, awaiters = self.awaiters
        self.callbacks = []
        self.awaiters = []
        hasWaiters.store(false, ordering: .releasing)
        if !awaiters.isEmpty { loop.pendingAwaits[ObjectIdentifier(self)] = nil }
        for callback in callbacks { loop.makeReady(.callback { callback(result) }) }
        for awaiter in awaiters { awaiter.continuation.resume(with: result) }
    }

    func whenComplete(_ callback: @escaping (Result<Value, any Error>) -> Void) {
        if let result {
            loop.makeReady(.callback { callback(result) })
        } else {
            callbacks.append(callback)
            hasWaiters.store(true, ordering: .releasing)
        }
    }

    func addAwaiter(_ id: UInt64, _ continuation: LoopContinuation<Value>) {
        if let result {
            continuation.resume(with: result)
            return
        }
        if awaiters.isEmpty {
            loop.pendingAwaits[ObjectIdentifier(self)] = self
            awaitedSince = loop.nowNanoseconds
        }
        awaiters.append((id, continuation))
        hasWaiters.store(true, ordering: .releasing)
    }

    /// Takes awaiter `id` back (its task was cancelled): its continuation, not resumed, or `nil`
    /// if the future completed meanwhile and resumed it.
    func removeAwaiter(_ id: UInt64) -> LoopContinuation<Value>? {
        guard let index = awaiters.firstIndex(where: { $0.id == id }) else { return nil }
        let continuation = awaiters.remove(at: index).continuation
        if awaiters.isEmpty { loop.pendingAwaits[ObjectIdentifier(self)] = nil }
        return continuation
    }

    /// The last handle went away. Uncompleted with callbacks (or awaiters, which in practice hold
    /// the handle): it fails, since nothing could complete it any more, and the drop is reported.
    func abandon() {
        guard result == nil, !awaiters.isEmpty || !callbacks.isEmpty else { return }
        let tasks = awaiters.count, callbacks = self.callbacks.count
        let error = LoopError(.futureAbandoned, operation: "LoopFuture.value", reason: "the LoopFuture<\(Value.self)> made at \(site.site) was deallocated without being completed, so nothing could complete it")
        resolve(.failure(error))
        loop.reportDroppedFuture(type: "\(Value.self)", site: site.site, awaitingTasks: tasks, callbacks: callbacks)
    }
}

/// One `await future.value`: an entry in the future's awaiters (the state machine: ``SingleWait``).
private final class FutureAwait<Value: Sendable>: SingleWait, @unchecked Sendable {
    // Unchecked Sendable: shared with the cancellation handler, which only sends it to the loop's
    // thread (`CancellationCallback`); `phase` is read and written there only.
    let future: FutureState<Value>
    @exclusivity(unchecked) var phase = WaitPhase.idle

    init(_ future: FutureState<Value>) {
        self.future = future
    }

    var loop: Loop { future.loop }

    var operation: String { "LoopFuture.value" }

    func register(_ continuation: LoopContinuation<Value>, on loop: Loop) -> UInt64? {
        let id = loop.makeWaiterID()
        future.addAwaiter(id, continuation)
        return id
    }

    func withdraw(_ id: UInt64, on loop: Loop) -> LoopContinuation<Value>? {
        future.removeAwaiter(id)
    }
}

extension FutureState: ShutdownCancellable, AwaiterCounting {
    var awaiterCount: Int { awaiters.count }
    var awaitDescription: String { "LoopFuture<\(Value.self)> made at \(site.site)" }

    func resumeAwaitersForShutdown() -> Int {
        let awaiters = self.awaiters
        self.awaiters = []
        for awaiter in awaiters { awaiter.continuation.resumeForShutdown("LoopFuture.value") }
        return awaiters.count
    }
}

extension Loop {
    /// Creates a future bound to this loop.
    /// `file` and `line` name the future in the report if it is dropped uncompleted while awaited.
    /// Any thread.
    /// - Parameters:
    ///   - type: the value's type, when the context does not say it.
    ///   - file: where the future is made (leave the default).
    ///   - line: the line (leave the default).
    public func makeFuture<Value: Sendable>(of type: Value.Type = Value.self, file: StaticString = #fileID, line: UInt = #line) -> LoopFuture<Value> {
        LoopFuture(loop: self, site: RawCallbackSite(fileID: file, line: line))
    }

    /// A future was dropped uncompleted while something waited for it (see `reportBug`).
    func reportDroppedFuture(type: String, site: LoopCallbackSite, awaitingTasks: Int, callbacks: Int) {
        var report = LoopDebugReport(kind: .droppedFuture, job: nil, taskName: nil, site: site, duration: .zero, lag: .zero,
                                     lateTimers: 0, suppressed: 0)
        report.pending = "\(awaitingTasks) awaiting task(s), \(callbacks) done-callback(s)"
        report.futureType = type
        reportBug(report)
    }
}
