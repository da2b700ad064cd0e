/// How a run on a thread of its own reports to the task that awaits it (the async `withLoop` /
/// `withTestLoop`, and `withTestLoopGroup`): the thread delivers the outcome once, the task takes it
/// once, in either order — whichever comes second completes the hand-off. Behind a pthread lock,
/// which ThreadSanitizer sees, unlike the edge a continuation's resume makes inside the runtime.
final class RunReport: Sendable {
    typealias Outcome = Result<LoopLeftovers, any Error>

    private let state = Lock(State.pending)

    private enum State {
        case pending
        case awaited(UnsafeContinuation<Outcome, Never>)
        case ready(Outcome)
        case taken
    }

    /// The thread's side, once, after the run has shut down.
    func deliver(_ outcome: Outcome) {
        let waiting: UnsafeContinuation<Outcome, Never>? = state.withLock { state in
            if case .awaited(let continuation) = state {
                state = .taken
                return continuation
            }
            state = .ready(outcome)
            return nil
        }
        waiting?.resume(returning: outcome)
    }

    /// The task's side, once: the outcome, when the thread has delivered it.
    func end() async -> Outcome {
        await withUnsafeContinuation { continuation in
            let ready: Outcome? = state.withLock { state in
                if case .ready(let outcome) = state {
                    state = .taken
                    return outcome
                }
                state = .awaited(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// The task's side, once, after the body ended with `body`: its value, or why the call fails —
    /// the run's error first (a stall or a `stop()` ended the run before the body finished: that is
    /// the cause of whatever the body then threw, usually the `CancellationError` shutdown gave
    /// it), then the body's error, then the leftovers (``LoopLeftoversError``).
    func outcome<T>(afterBody body: Result<T, any Error>) async throws -> T {
        switch await end() {
        case .failure(let runError):
            throw runError
        case .success(let leftovers):
            let value = try body.get()
            if !leftovers.isEmpty { throw LoopLeftoversError(leftovers: leftovers) }
            return value
        }
    }
}
