import SerialLoop
import SerialLoopNet

/// How ``HTTPClient/get(_:from:on:retrying:)`` retries: a bounded number of attempts, each with a
/// deadline, and a fixed pause between them (on the loop's clock, so virtual in a test).
public struct RetryPolicy: Sendable {
    /// Attempts in all, the first included; at least 1.
    public var attempts: Int
    /// An attempt still running after this long is cancelled and counts as failed.
    public var attemptTimeout: Duration
    /// The pause after a failed attempt, before the next one.
    public var backoff: Duration

    public init(attempts: Int, attemptTimeout: Duration, backoff: Duration) {
        precondition(attempts >= 1, "RetryPolicy needs at least one attempt, got \(attempts)")
        self.attempts = attempts
        self.attemptTimeout = attemptTimeout
        self.backoff = backoff
    }
}

/// A response that needed retries: the response, and why each earlier attempt failed.
public struct RetriedResponse: Sendable {
    public var response: HTTPResponse
    /// One entry per failed attempt, in order: when it ended (loop time) and what it threw.
    public var failures: [(endedAt: LoopClock.Instant, error: String)]
    /// Attempts made, the successful one included.
    public var attempts: Int { failures.count + 1 }
}

/// All the attempts of a retried request failed.
public struct RetriesExhausted: Error, CustomStringConvertible {
    public var request: String
    public var failures: [String]
    public var description: String { "\(request): \(failures.count) attempts failed: \(failures.joined(separator: "; "))" }
}

/// An attempt that ran past its deadline.
public struct AttemptTimedOut: Error, CustomStringConvertible {
    public var request: String
    public var after: Duration
    public var description: String { "\(request): no complete response after \(after)" }
}

extension HTTPClient {
    /// `GET target` with retries: each attempt is ``get(_:from:on:)`` (a new connection) raced
    /// against `policy.attemptTimeout`; a failed attempt (a socket error such as `ECONNRESET` or
    /// `ETIMEDOUT`, a malformed or truncated response, a timeout) is followed by `policy.backoff`
    /// and a new attempt. A response with any status is a success (the caller judges a 503).
    /// Cancelling the calling task ends it with `CancellationError`.
    /// - Throws: ``RetriesExhausted`` listing every attempt's error when none succeeded.
    public static func get(_ target: String, from address: SocketAddress, on loop: Loop, retrying policy: RetryPolicy) async throws -> RetriedResponse {
        let request = "GET \(target) from \(address)"
        var failures: [(endedAt: LoopClock.Instant, error: String)] = []
        for attempt in 1...policy.attempts {
            do {
                let response = try await withThrowingTaskGroup(of: HTTPResponse?.self) { group in
                    group.addTask { try await get(target, from: address, on: loop) }
                    group.addTask {
                        try await loop.sleep(for: policy.attemptTimeout)
                        return nil
                    }
                    defer { group.cancelAll() }
                    guard let first = try await group.next(), let response = first else {
                        throw AttemptTimedOut(request: request, after: policy.attemptTimeout)
                    }
                    return response
                }
                return RetriedResponse(response: response, failures: failures)
            } catch {
                try Task.checkCancellation()
                failures.append((loop.now, "\(error)"))
                if attempt < policy.attempts { try await loop.sleep(for: policy.backoff) }
            }
        }
        throw RetriesExhausted(request: request, failures: failures.map(\.error))
    }
}
