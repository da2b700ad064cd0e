import SerialLoop

/// Runs `body` with a fresh simulated network on a fresh test loop (its own thread, as the async
/// `withTestLoop`), and shuts the network down afterwards so the loop ends with nothing pending.
///
/// ```swift
/// try await withSimulatedNetwork(seed: 7) { network in
///     let server = try network.host("server", address: "10.0.0.1")
///     // …
/// }
/// ```
/// - Parameters:
///   - seed: the network's seed (see ``SimulatedNetwork/init(loop:seed:defaultLink:)``: `nil`
///     reads `SERIAL_LOOP_SEED`, else 0).
///   - defaultLink: the conditions of every link not configured otherwise.
///   - body: the scenario, on the loop's thread (`network.loop` is the loop).
/// - Returns: what `body` returns.
/// - Throws: what `body` throws, or what `withTestLoop` throws (a stall, leftovers).
public func withSimulatedNetwork<T: Sendable>(
    seed: UInt64? = nil,
    defaultLink: SimulatedNetwork.LinkConditions = SimulatedNetwork.LinkConditions(),
    _ body: sending (SimulatedNetwork) async throws -> T
) async throws -> T {
    try await withTestLoop { loop in
        let network = SimulatedNetwork(loop: loop, seed: seed, defaultLink: defaultLink)
        defer { network.shutdown() }
        return try await body(network)
    }
}

/// A scenario failed for one seed (thrown by ``SimulatedNetwork/explore(seeds:defaultLink:_:)``).
public struct SimulationFailure: Error, CustomStringConvertible {
    /// The seed that failed: replay it alone with `SERIAL_LOOP_SEED=<seed>`.
    public let seed: UInt64
    /// What the scenario threw.
    public let error: any Error
    /// The network's trace up to the failure.
    public let trace: [String]

    /// "seed 17 failed (replay with SERIAL_LOOP_SEED=17): " and the error, then the trace's last lines.
    public var description: String {
        "seed \(seed) failed (replay with SERIAL_LOOP_SEED=\(seed)): \(error)\nlast events:\n"
            + trace.suffix(20).joined(separator: "\n")
    }
}

extension SimulatedNetwork {
    /// Runs `scenario` once per seed, each on a fresh test loop and network, and stops at the
    /// first seed whose run throws, throwing a ``SimulationFailure`` that names it (and printing
    /// it). With `SERIAL_LOOP_SEED` set in the environment, runs that seed alone.
    ///
    /// ```swift
    /// try await SimulatedNetwork.explore(seeds: 0..<100) { network in
    ///     network.defaultLink = .init(latency: .milliseconds(5), jitter: .milliseconds(20))
    ///     try await myScenario(network)     // throws when an expectation fails
    /// }
    /// ```
    /// - Parameters:
    ///   - seeds: the seeds to try, in order.
    ///   - defaultLink: the conditions of every link not configured otherwise.
    ///   - scenario: one run; it fails by throwing (`try #require(...)` in Swift Testing).
    /// - Returns: the seeds run.
    /// - Throws: ``SimulationFailure`` for the first failing seed.
    @discardableResult
    public static func explore(
        seeds: Range<UInt64>,
        defaultLink: LinkConditions = LinkConditions(),
        _ scenario: @escaping @Sendable (SimulatedNetwork) async throws -> Void
    ) async throws -> [UInt64] {
        let chosen = environmentSeed.map { [$0] } ?? Array(seeds)
        for seed in chosen {
            let outcome: (error: (any Error)?, trace: [String]) = try await withTestLoop { loop in
                let network = SimulatedNetwork(loop: loop, seed: seed, defaultLink: defaultLink)
                defer { network.shutdown() }
                do {
                    try await scenario(network)
                    return (nil, [])
                } catch {
                    return (error, network.trace)
                }
            }
            if let error = outcome.error {
                let failure = SimulationFailure(seed: seed, error: error, trace: outcome.trace)
                print(failure)
                throw failure
            }
        }
        return chosen
    }
}
