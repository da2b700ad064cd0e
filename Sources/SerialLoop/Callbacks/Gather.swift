extension Loop {
    /// Runs `operations` concurrently as tasks on this loop and returns their results in input order
    /// (asyncio's `gather`). If one throws, the others are cancelled and that first error (in time)
    /// is rethrown. Cancelling the caller cancels them all.
    ///
    /// - Complexity: O(n). Each operation is a separate task, not a task-group child: Swift's task
    ///   groups scan their children when one finishes, which turns quadratic when many finish out
    ///   of order (100k sleeping children took ~15 s); this stays linear.
    /// - Parameter operations: the operations, each run as a task that prefers this loop.
    /// - Returns: their results, in the order of `operations`.
    /// - Throws: the first error an operation threw; `CancellationError` when the caller is
    ///   cancelled. Callable from any task.
    public func gather<T: Sendable>(_ operations: [@Sendable () async throws -> T]) async throws -> [T] {
        if operations.isEmpty { return [] }
        return try await suspend(GatherState(operations, on: self))
    }

    /// Awaits every future and returns their values in order; rethrows the first failure in order.
    /// - Complexity: O(n).
    /// - Parameter futures: futures of this loop.
    /// - Returns: their values, in the order of `futures`.
    /// - Throws: the first failure in order; `CancellationError` when the caller is cancelled;
    ///   ``LoopError/loopHasShutDown(_:)`` once the loop has shut down. Callable from any task.
    public func gather<T: Sendable>(_ futures: [LoopFuture<T>]) async throws -> [T] {
        if hasShutDown { throw LoopError.loopHasShutDown("gather(_:)") }
        var values: [T] = []
        values.reserveCapacity(futures.count)
        for future in futures { values.append(try await future.value) }
        return values
    }

    /// Awaits every task and returns their values in order; rethrows the first failure in order.
    /// - Complexity: O(n).
    /// - Parameter tasks: the tasks, on any executor.
    /// - Returns: their values, in the order of `tasks`.
    /// - Throws: the first failure in order; `CancellationError` when the caller is cancelled;
    ///   ``LoopError/loopHasShutDown(_:)`` once the loop has shut down. Callable from any task.
    public func gather<T: Sendable>(_ tasks: [Task<T, any Error>]) async throws -> [T] {
        if hasShutDown { throw LoopError.loopHasShutDown("gather(_:)") }
        var values: [T] = []
        values.reserveCapacity(tasks.count)
        for task in tasks { values.append(try await task.value) }
        return values
    }
}

/// One `gather` of operations: the children's results and the caller's continuation.
/// Loop thread only (children prefer the loop).
final class GatherState<T: Sendable>: Suspension, ShutdownCancellable, @unchecked Sendable {
    // Unchecked Sendable: the cancellation handler that shares it only sends it to the loop's
    // thread (`CancellationCallback`), where all of its state is read and written.
    private var operations: [@Sendable () async throws -> T]
    private var results: [T?]
    private var remaining: Int
    private var continuation: LoopContinuation<[T]>?
    private var children: [Task<Void, Never>] = []
    private var isCancelled = false
    let loop: Loop
    private(set) var awaitedSince: Int64 = 0

    init(_ operations: [@Sendable () async throws -> T], on loop: Loop) {
        self.operations = operations
        self.loop = loop
        results = Array(repeating: nil, count: operations.count)
        remaining = operations.count
    }

    var operation: String { "gather(_:)" }
    var awaitDescription: String { "gather(_:) of \(results.count)" }

    func start(on loop: Loop, _ continuation: LoopContinuation<[T]>) {
        self.continuation = continuation
        if isCancelled {
            finish(.failure(CancellationError()))
            return
        }
        awaitedSince = loop.nowNanoseconds
        loop.pendingAwaits[ObjectIdentifier(self)] = self
        for (index, operation) in operations.enumerated() {
            children.append(Task(executorPreference: loop) {
                let result = await Result(catching: operation)
                self.record(index, result)
            })
        }
        operations = []
    }

    func cancel(on loop: Loop) {
        isCancelled = true
        finish(.failure(CancellationError()))
    }

    func resumeAwaitersForShutdown() -> Int {
        guard let continuation else { return 0 }
        self.continuation = nil
        for child in children { child.cancel() }
        children = []
        continuation.resumeForShutdown(operation)
        return 1
    }

    private func record(_ index: Int, _ result: Result<T, any Error>) {
        switch result {
        case .success(let value):
            results[index] = value
            remaining -= 1
            if remaining == 0 { finish(.success(results.map { $0! })) }
        case .failure(let error):
            finish(.failure(error))
        }
    }

    /// Resumes the caller once; on failure, cancels the children still running.
    private func finish(_ outcome: Result<[T], any Error>) {
        guard let continuation else { return }
        self.continuation = nil
        loop.pendingAwaits[ObjectIdentifier(self)] = nil
        if case .failure = outcome {
            for child in children { child.cancel() }
        }
        children = []
        continuation.resume(with: outcome)
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
