extension Loop {
    /// Runs `operations` concurrently as tasks on this loop and returns their results in input order
    /// (asyncio's `gather`). If one throws, the others are cancelled and that first error (in time)
    /// is rethrown. Cancelling the caller cancels them all.
    ///
    /// - Complexity: O(n). Each operation is a separate task, not a task-group child: Swift's task
    ///   groups scan their children when one finishes, which turns quadratic when many finish out
    ///   of order (100k sleeping children took ~15 s); this stays linear.
    public func gather<T: Sendable>(_ operations: [@Sendable () async throws -> T]) async throws -> [T] {
        if operations.isEmpty { return [] }
        let state = GatherState<T>(count: operations.count)
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<[T], any Error>) in
                onLoopThread {
                    state.continuation = continuation
                    if state.isCancelled {
                        state.finish(.failure(CancellationError()))
                        return
                    }
                    for (index, operation) in operations.enumerated() {
                        state.children.append(Task(executorPreference: self) {
                            let result = await Result(catching: operation)
                            state.record(index, result)
                        })
                    }
                }
            }
        } onCancel: {
            onLoopThread {
                state.isCancelled = true
                state.finish(.failure(CancellationError()))
            }
        }
    }

    /// Awaits every future and returns their values in order; rethrows the first failure in order.
    /// - Complexity: O(n).
    public func gather<T: Sendable>(_ futures: [LoopFuture<T>]) async throws -> [T] {
        var values: [T] = []
        values.reserveCapacity(futures.count)
        for future in futures { values.append(try await future.value) }
        return values
    }

    /// Awaits every task and returns their values in order; rethrows the first failure in order.
    /// - Complexity: O(n).
    public func gather<T: Sendable>(_ tasks: [Task<T, any Error>]) async throws -> [T] {
        var values: [T] = []
        values.reserveCapacity(tasks.count)
        for task in tasks { values.append(try await task.value) }
        return values
    }
}

/// Results of one `gather`, filled in by its children. Loop thread only (children prefer the loop).
final class GatherState<T: Sendable>: @unchecked Sendable {
    var results: [T?]
    var remaining: Int
    var continuation: UnsafeContinuation<[T], any Error>?
    var children: [Task<Void, Never>] = []
    var isCancelled = false

    init(count: Int) {
        results = Array(repeating: nil, count: count)
        remaining = count
    }

    func record(_ index: Int, _ result: Result<T, any Error>) {
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
    func finish(_ outcome: Result<[T], any Error>) {
        guard let continuation else { return }
        self.continuation = nil
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
