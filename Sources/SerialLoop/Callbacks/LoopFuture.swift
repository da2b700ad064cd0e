/// Something tasks are suspended on that shutdown must resume, so none is leaked.
protocol ShutdownCancellable: AnyObject {
    /// Resumes every suspended awaiter (see `LoopContinuation.resumeForShutdown`). Returns how
    /// many there were.
    func resumeAwaitersForShutdown() -> Int
}

/// A loop-bound future (asyncio's `Future`): a value that arrives later, for bridging callback code
/// into async code.
///
/// Complete it once with ``succeed(_:)``, ``fail(_:)`` or ``complete(with:)`` — from any thread;
/// the completion happens on the loop. The first completion wins; later ones are ignored.
/// Observe it with ``whenComplete(_:)`` (done-callbacks, run on the loop in registration order,
/// each as its own callback on the ready queue, like `call_soon`) or `try await future.value`
/// (any number of awaiters, from any task).
public final class LoopFuture<Value: Sendable>: @unchecked Sendable {
    public let loop: Loop
    /// Loop thread only.
    private(set) var result: Result<Value, any Error>?
    private var callbacks: [(Result<Value, any Error>) -> Void] = []
    private var awaiters: [(id: UInt64, continuation: LoopContinuation<Value>)] = []

    init(loop: Loop) {
        self.loop = loop
    }

    /// Whether the future has a result. Loop thread only.
    public var isDone: Bool {
        loop.preconditionOnLoopThread("LoopFuture.isDone")
        return result != nil
    }

    public func succeed(_ value: Value) {
        complete(with: .success(value))
    }

    public func fail(_ error: any Error) {
        complete(with: .failure(error))
    }

    /// Completes the future with `CancellationError` (asyncio's `Future.cancel`).
    public func cancel() {
        complete(with: .failure(CancellationError()))
    }

    public func complete(with result: Result<Value, any Error>) {
        loop.onLoopThread { self.resolve(result) }
    }

    private func resolve(_ result: Result<Value, any Error>) {
        guard self.result == nil else { return }
        self.result = result
        let callbacks = self.callbacks, awaiters = self.awaiters
        self.callbacks = []
        self.awaiters = []
        if !awaiters.isEmpty { loop.pendingAwaits[ObjectIdentifier(self)] = nil }
        for callback in callbacks { loop.makeReady(.callback { callback(result) }) }
        for awaiter in awaiters { awaiter.continuation.resume(with: result) }
    }

    /// Runs `callback` with the result once the future completes (at once, on the next tick, if it
    /// already has). Loop thread only.
    public func whenComplete(_ callback: @escaping (Result<Value, any Error>) -> Void) {
        loop.preconditionOnLoopThread("LoopFuture.whenComplete(_:)")
        if let result {
            loop.makeReady(.callback { callback(result) })
        } else {
            callbacks.append(callback)
        }
    }

    /// The future's value, once it has one. Cancelling the awaiting task throws `CancellationError`
    /// in that task only; the future itself is unaffected.
    /// - Throws: the future's error; ``LoopError/loopHasShutDown(_:)`` once the loop has shut down.
    public var value: Value {
        get async throws {
            try await loop.suspend(FutureAwait(self))
        }
    }

    fileprivate func addAwaiter(_ id: UInt64, _ continuation: LoopContinuation<Value>) {
        if let result {
            continuation.resume(with: result)
            return
        }
        if awaiters.isEmpty { loop.pendingAwaits[ObjectIdentifier(self)] = self }
        awaiters.append((id, continuation))
    }

    fileprivate func cancelAwaiter(_ id: UInt64) {
        guard let index = awaiters.firstIndex(where: { $0.id == id }) else { return }
        let continuation = awaiters.remove(at: index).continuation
        if awaiters.isEmpty { loop.pendingAwaits[ObjectIdentifier(self)] = nil }
        continuation.resume(throwing: CancellationError())
    }
}

/// One `await future.value`, shared with its cancellation handler. Loop thread only.
private final class FutureAwait<Value: Sendable>: Suspension, @unchecked Sendable {
    let future: LoopFuture<Value>
    var id: UInt64 = 0
    var isCancelled = false

    init(_ future: LoopFuture<Value>) {
        self.future = future
    }

    var operation: String { "LoopFuture.value" }

    func start(on loop: Loop, _ continuation: LoopContinuation<Value>) {
        if isCancelled {
            continuation.resume(throwing: CancellationError())
            return
        }
        id = loop.makeWaiterID()
        future.addAwaiter(id, continuation)
    }

    func cancel(on loop: Loop) {
        isCancelled = true
        if id != 0 { future.cancelAwaiter(id) }
    }
}

extension LoopFuture: ShutdownCancellable, AwaiterCounting {
    var awaiterCount: Int { awaiters.count }

    func resumeAwaitersForShutdown() -> Int {
        let awaiters = self.awaiters
        self.awaiters = []
        for awaiter in awaiters { awaiter.continuation.resumeForShutdown("LoopFuture.value") }
        return awaiters.count
    }
}

extension Loop {
    /// Creates a future bound to this loop.
    public func makeFuture<Value: Sendable>(of type: Value.Type = Value.self) -> LoopFuture<Value> {
        LoopFuture(loop: self)
    }
}
