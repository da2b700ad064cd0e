/// Something that must fail its waiting tasks when the loop shuts down, so none is leaked.
protocol ShutdownCancellable: AnyObject {
    /// Fails every suspended awaiter with `CancellationError`. Returns how many there were.
    func cancelAwaitersForShutdown() -> Int
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
    private var awaiters: [(id: UInt64, continuation: UnsafeContinuation<Value, any Error>)] = []

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
        if !awaiters.isEmpty { loop.awaitedFutures[ObjectIdentifier(self)] = nil }
        for callback in callbacks { loop.ready.push(.callback { callback(result) }) }
        for awaiter in awaiters { awaiter.continuation.resume(with: result) }
    }

    /// Runs `callback` with the result once the future completes (at once, on the next tick, if it
    /// already has). Loop thread only.
    public func whenComplete(_ callback: @escaping (Result<Value, any Error>) -> Void) {
        loop.preconditionOnLoopThread("LoopFuture.whenComplete(_:)")
        if let result {
            loop.ready.push(.callback { callback(result) })
        } else {
            callbacks.append(callback)
        }
    }

    /// The future's value, once it has one. Cancelling the awaiting task throws `CancellationError`
    /// in that task only; the future itself is unaffected.
    public var value: Value {
        get async throws {
            let id = UnsafeIdentifier()
            return try await withTaskCancellationHandler {
                try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Value, any Error>) in
                    loop.onLoopThread { self.addAwaiter(id, continuation) }
                }
            } onCancel: {
                loop.onLoopThread { self.cancelAwaiter(id) }
            }
        }
    }

    private func addAwaiter(_ id: UnsafeIdentifier, _ continuation: UnsafeContinuation<Value, any Error>) {
        if let result {
            continuation.resume(with: result)
        } else if id.isCancelled || loop.lifecycle == .shutDown {
            continuation.resume(throwing: CancellationError())
        } else {
            id.value = loop.makeWaiterID()
            if awaiters.isEmpty { loop.awaitedFutures[ObjectIdentifier(self)] = self }
            awaiters.append((id.value, continuation))
        }
    }

    private func cancelAwaiter(_ id: UnsafeIdentifier) {
        id.isCancelled = true
        guard let index = awaiters.firstIndex(where: { $0.id == id.value }) else { return }
        let continuation = awaiters.remove(at: index).continuation
        if awaiters.isEmpty { loop.awaitedFutures[ObjectIdentifier(self)] = nil }
        continuation.resume(throwing: CancellationError())
    }
}

extension LoopFuture: ShutdownCancellable, AwaiterCounting {
    var awaiterCount: Int { awaiters.count }

    func cancelAwaitersForShutdown() -> Int {
        let awaiters = self.awaiters
        self.awaiters = []
        for awaiter in awaiters { awaiter.continuation.resume(throwing: CancellationError()) }
        return awaiters.count
    }
}

/// An awaiter's identity, shared with its cancellation handler. Loop thread only.
final class UnsafeIdentifier: @unchecked Sendable {
    var value: UInt64 = 0
    var isCancelled = false
}

extension Loop {
    /// Creates a future bound to this loop.
    public func makeFuture<Value: Sendable>(of type: Value.Type = Value.self) -> LoopFuture<Value> {
        LoopFuture(loop: self)
    }
}
