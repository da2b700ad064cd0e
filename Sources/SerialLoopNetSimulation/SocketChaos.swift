@preconcurrency import Glibc
import SerialLoop
import SerialLoopNet
import Synchronization

// Chaos on real sockets: seeded faults the kernel may legally produce, injected into the system
// calls of SerialLoopNet's kernel sockets (ChaosSeam.swift in SerialLoopNet is the hook; this is the
// only implementation). Kept in this product, beside the simulated network, because both are test
// tools for the same code; unlike the simulation it needs no test loop and works on any loop.

/// Seeded faults on real sockets: the system calls of the ``SerialLoopNet/TCPListener``s and
/// ``SerialLoopNet/TCPConnection``s created inside ``withSocketChaos(_:isolation:_:)`` sometimes get what
/// the kernel may legally answer instead of (or besides) what it did: `EAGAIN`, `EINTR`, short
/// reads and writes, `ECONNABORTED` on accept, `ECONNRESET` on read and write. The socket layer's
/// ordinary handling must cope: wait for readiness and retry, retry, carry on from the short count,
/// or fail with a ``SerialLoop/LoopError``.
///
/// Every decision comes from the seed: each kind of call (``Call``) draws from its own stream, so
/// the n-th decision for reads is the same in every run with the same seed, however the kernel's
/// own timing interleaves the calls. ``withSocketChaos(_:isolation:_:)`` prints the seed when its body throws;
/// ``explore(seeds:rates:isolation:_:)`` runs a scenario over many seeds and names the first that fails.
public final class SocketChaos: Sendable {
    /// The system calls faults are injected into.
    public enum Call: Int, Sendable, CaseIterable, CustomStringConvertible {
        /// `accept`: ``Fault/wouldBlock``, ``Fault/interrupted``, ``Fault/aborted``.
        case accept
        /// `connect`, after the kernel started the connection: ``Fault/wouldBlock`` (reported as
        /// `EINPROGRESS`) or ``Fault/interrupted``; the connection proceeds in the background.
        case connect
        /// `read`: ``Fault/wouldBlock``, ``Fault/interrupted``, ``Fault/short(atMost:)``, ``Fault/reset``.
        case read
        /// `send`: ``Fault/wouldBlock``, ``Fault/interrupted``, ``Fault/short(atMost:)``, ``Fault/reset``.
        case write

        /// The call's name: "accept", "connect", "read", "write".
        public var description: String { ["accept", "connect", "read", "write"][rawValue] }
    }

    /// One decision for one call.
    public enum Fault: Sendable, Hashable, CustomStringConvertible {
        /// No fault: the kernel is called as asked.
        case none
        /// `EAGAIN` without calling the kernel (for `connect`: `EINPROGRESS` after calling it).
        case wouldBlock
        /// `EINTR` without calling the kernel (for `connect`: after calling it).
        case interrupted
        /// The kernel is asked for at most this many bytes (1 to 65536): a short read or write
        /// (none if the call asked for fewer).
        case short(atMost: Int)
        /// `ECONNRESET` without calling the kernel: the read or write fails.
        case reset
        /// `ECONNABORTED` without calling the kernel: a connection that went away before it was
        /// accepted, which `accept` skips.
        case aborted

        /// E.g. "EAGAIN", "short(≤512)", "-".
        public var description: String {
            switch self {
            case .none: "-"
            case .wouldBlock: "EAGAIN"
            case .interrupted: "EINTR"
            case .short(let count): "short(≤\(count))"
            case .reset: "ECONNRESET"
            case .aborted: "ECONNABORTED"
            }
        }
    }

    /// How often each fault is injected: the probability per call of the kinds it applies to (see
    /// ``Call``). The sum should stay below 1, so that calls still reach the kernel.
    public struct Rates: Sendable, Hashable {
        /// `EAGAIN` (and `EINPROGRESS` for connect).
        public var wouldBlock: Double
        /// `EINTR`.
        public var interrupted: Double
        /// Short reads and writes.
        public var short: Double
        /// `ECONNRESET` on read and write: ends the operation with an error.
        public var reset: Double
        /// `ECONNABORTED` on accept.
        public var aborted: Double

        /// Rates for the faults the layer must absorb (no resets by default: those end connections).
        public init(wouldBlock: Double = 0.2, interrupted: Double = 0.1, short: Double = 0.3, reset: Double = 0, aborted: Double = 0.1) {
            self.wouldBlock = wouldBlock
            self.interrupted = interrupted
            self.short = short
            self.reset = reset
            self.aborted = aborted
        }
    }

    /// The seed every decision derives from.
    public let seed: UInt64
    /// How often each fault is injected.
    public let rates: Rates
    private let state: Mutex<State>

    private struct State {
        var streams: [SplitMix64]
        var log: [[Fault]]
        var counts: [Fault: Int] = [:]
    }

    /// A fault plan; sockets feel it once created inside ``withSocketChaos(_:isolation:_:)``.
    /// - Parameters:
    ///   - seed: the seed; `nil` takes `SERIAL_LOOP_SEED` from the environment if set, else 0.
    ///   - rates: how often each fault is injected.
    public init(seed: UInt64? = nil, rates: Rates = Rates()) {
        let seed = seed ?? SimulatedNetwork.environmentSeed ?? 0
        self.seed = seed
        self.rates = rates
        var root = SplitMix64(seed: seed)
        let streams = Call.allCases.map { _ in SplitMix64(seed: root.next()) }
        state = Mutex(State(streams: streams, log: Call.allCases.map { _ in [] }))
    }

    /// Every decision taken so far for `call`, in order (``Fault/none`` where nothing was injected).
    /// The same seed gives the same sequence; a run that made more calls has a longer one.
    public func decisions(for call: Call) -> [Fault] {
        state.withLock { $0.log[call.rawValue] }
    }

    /// How many times each fault was injected so far (``Fault/short(atMost:)`` counted per size).
    public var injectedCounts: [Fault: Int] {
        state.withLock { $0.counts }
    }

    /// The next decision for `call`: one draw from the call's stream, a second for a short count.
    func decide(_ call: Call) -> Fault {
        state.withLock { state in
            let draw = Double(state.streams[call.rawValue].next() >> 11) / Double(1 << 53)
            var fault = Fault.none
            var threshold = 0.0
            func within(_ rate: Double) -> Bool {
                threshold += rate
                return draw < threshold
            }
            switch call {
            case .accept:
                if within(rates.wouldBlock) { fault = .wouldBlock }
                else if within(rates.interrupted) { fault = .interrupted }
                else if within(rates.aborted) { fault = .aborted }
            case .connect:
                if within(rates.wouldBlock) { fault = .wouldBlock }
                else if within(rates.interrupted) { fault = .interrupted }
            case .read, .write:
                if within(rates.wouldBlock) { fault = .wouldBlock }
                else if within(rates.interrupted) { fault = .interrupted }
                else if within(rates.reset) { fault = .reset }
                else if within(rates.short) {
                    // 1 byte to 64 KiB, each power of two alike: tiny counts are as likely as large.
                    fault = .short(atMost: 1 << Int(state.streams[call.rawValue].next() % 17))
                }
            }
            state.log[call.rawValue].append(fault)
            if fault != .none { state.counts[fault, default: 0] += 1 }
            return fault
        }
    }
}

extension SocketChaos: SocketFaultInjector {
    package func fault(for call: SocketCall, fd: Int32) -> SocketFault? {
        let kind = Call(rawValue: call.rawValue)!
        switch decide(kind) {
        case .none: return nil
        case .wouldBlock: return .fail(errno: kind == .connect ? EINPROGRESS : EAGAIN)
        case .interrupted: return .fail(errno: EINTR)
        case .short(let count): return .shorten(to: count)
        case .reset: return .fail(errno: ECONNRESET)
        case .aborted: return .fail(errno: ECONNABORTED)
        }
    }
}

/// Runs `body` with `chaos` injected into every kernel socket created inside it (listeners,
/// connections it connects, and the connections those listeners accept, for their whole life).
/// Sockets created elsewhere, and sockets on a simulated host, are untouched. When `body` throws,
/// prints the seed (to replay it: `SERIAL_LOOP_SEED=<seed>` with `SocketChaos(seed: nil)`) and rethrows.
///
/// ```swift
/// let chaos = SocketChaos(seed: 7, rates: .init(wouldBlock: 0.3, short: 0.3))
/// try await withSocketChaos(chaos) {
///     try await transferAndCheck(on: loop)       // same code as without chaos
/// }
/// print(chaos.injectedCounts)
/// ```
/// - Parameters:
///   - chaos: the fault plan (and its record).
///   - isolation: the caller's isolation, which the body keeps (leave the default).
///   - body: the code whose sockets get the faults.
/// - Returns: what `body` returns.
/// - Throws: what `body` throws.
public func withSocketChaos<T>(
    _ chaos: SocketChaos, isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T
) async rethrows -> T {
    do {
        return try await SocketChaosContext.$current.withValue(chaos) { try await body() }
    } catch {
        fputs("socket chaos: seed \(chaos.seed) failed (replay with SERIAL_LOOP_SEED=\(chaos.seed)): \(error)\n", stderr)
        throw error
    }
}

extension SocketChaos {
    /// Runs `scenario` once per seed, each under a fresh ``SocketChaos`` with `rates`, and stops at
    /// the first seed whose run throws, rethrowing its error (``withSocketChaos(_:isolation:_:)`` has printed
    /// the seed). With `SERIAL_LOOP_SEED` set in the environment, runs that seed alone.
    /// - Parameters:
    ///   - seeds: the seeds to try, in order.
    ///   - rates: how often each fault is injected.
    ///   - isolation: the caller's isolation, which the scenario keeps (leave the default).
    ///   - scenario: the code under chaos; it gets the run's ``SocketChaos`` (for its record).
    /// - Returns: the runs' plans, in seed order (their records hold the decisions taken).
    /// - Throws: the first failing run's error.
    @discardableResult
    public static func explore(
        seeds: some Sequence<UInt64>, rates: Rates = Rates(), isolation: isolated (any Actor)? = #isolation,
        _ scenario: (SocketChaos) async throws -> Void
    ) async throws -> [SocketChaos] {
        let seeds = SimulatedNetwork.environmentSeed.map { [$0] } ?? Array(seeds)
        var runs: [SocketChaos] = []
        for seed in seeds {
            let chaos = SocketChaos(seed: seed, rates: rates)
            try await withSocketChaos(chaos) { try await scenario(chaos) }
            runs.append(chaos)
        }
        return runs
    }
}
