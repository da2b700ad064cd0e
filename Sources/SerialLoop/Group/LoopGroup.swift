@preconcurrency import Glibc
import Synchronization

/// A group of loops, one per thread, for a program that needs more than one core: each member is
/// a full ``Loop`` (executor, timers, reactor, offload, metrics) on a thread of its own.
///
/// Spread work over the loops with ``next()`` (round robin) or ``loop(forKey:)`` (the same key
/// always lands on the same loop, so per-key state stays on one thread and needs no lock), and
/// hand it to the chosen loop as to any loop: `Task(executorPreference: loop)`, `loop.execute { }`,
/// or an actor whose `unownedExecutor` is `loop.asUnownedSerialExecutor()`.
///
/// ```swift
/// let group = try LoopGroup.start(loops: 4)
/// defer { group.shutdown() }
/// let loop = group.loop(forKey: "user-42")
/// Task(executorPreference: loop) { /* runs on that loop's thread */ }
/// ```
///
/// ``shutdown()`` ends every loop with a single loop's outcomes and joins every thread; dropping
/// the last reference to the group does the same. ``shutdownGracefully(within:)`` first runs the
/// ``onGracefulShutdown(on:_:)`` handlers (stop accepting) and lets the work in flight finish
/// within a deadline. ``pendingWork`` and ``addInstruments(_:)`` observe every loop. ``withLoopGroup(loops:isolation:_:)`` scopes a group to
/// a body. The article <doc:LoopGroups> says what crossing loops costs and how shutdown goes.
public final class LoopGroup: Sendable {
    /// The group's loops, in a fixed order: `loops[i]` is the same loop for the group's life. Hand
    /// any of them work from any thread; use their loop-thread-only APIs from code running on them.
    public let loops: [Loop]
    /// How the loops are hosted (a thread each). Internal, so a host that runs every loop on one
    /// thread for deterministic tests can take its place without changing the group's API.
    private let host: any LoopGroupHost
    /// The round-robin cursor of ``next()``.
    private let cursor = Atomic<Int>(0)
    /// Whether ``shutdown()`` has run; held while it runs, so a concurrent call returns only once
    /// the group is down. A `Lock`, not a `Mutex`: ThreadSanitizer sees through pthread mutexes.
    private let hasShutDown = Lock(false)
    /// The graceful shutdown's handlers and grace period (LoopGroup+GracefulShutdown.swift).
    let graceful = GracefulShutdown()

    init(host: any LoopGroupHost) {
        self.host = host
        self.loops = host.loops
    }

    /// The number of online processors (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1: the default
    /// size of a group, a loop per core.
    public static var defaultLoopCount: Int {
        max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// Starts `loops` loops, each on a new thread, and returns once all of them exist.
    /// - Parameter loops: how many loops; at least 1. Defaults to ``defaultLoopCount``.
    /// - Throws: ``LoopError`` if the kernel refuses a loop's descriptors; the loops already
    ///   started are shut down first.
    /// - Precondition: `loops >= 1`.
    public static func start(loops: Int = LoopGroup.defaultLoopCount) throws(LoopError) -> LoopGroup {
        misuseCheck(loops >= 1, "LoopGroup.start(loops: \(loops)): a group needs at least one loop")
        return LoopGroup(host: try ThreadPerLoop(count: loops))
    }

    /// The next loop in round-robin order. Any thread; lock-free (one atomic increment).
    public func next() -> Loop {
        let ticket = cursor.wrappingAdd(1, ordering: .relaxed).oldValue
        return loops[Int(UInt(bitPattern: ticket) % UInt(loops.count))]
    }

    /// The loop for `key`: the same key gives the same loop for the life of the process, so state
    /// kept per key on its loop needs no lock. Any thread.
    ///
    /// `String`, `Substring` and integer keys are hashed with FNV-1a (64-bit, with a final mix)
    /// over their UTF-8 bytes or 64-bit value: the same key picks the same loop index in every run
    /// of every build, for a group of the same size. Any other key uses its `hashValue`, which Swift
    /// seeds per process: stable within the process, a different spread in the next run (unless
    /// `SWIFT_DETERMINISTIC_HASHING` is set). To shard such keys stably across runs, pass a
    /// string or integer derived from them.
    public func loop(forKey key: some Hashable) -> Loop {
        loops[Int(LoopGroup.shardHash(of: key) % UInt64(loops.count))]
    }

    /// The 64-bit hash ``loop(forKey:)`` reduces modulo the loop count.
    static func shardHash(of key: some Hashable) -> UInt64 {
        var hash = FNV1a()
        if let string = key as? String {
            for byte in string.utf8 { hash.add(byte) }
        } else if let substring = key as? Substring {
            for byte in substring.utf8 { hash.add(byte) }
        } else if let integer = key as? any BinaryInteger {
            hash.add(UInt64(truncatingIfNeeded: integer))
        } else {
            hash.add(UInt64(bitPattern: Int64(key.hashValue)))
        }
        return hash.mixed
    }

    /// Shuts every loop down and joins every thread; returns once all are down. Each loop ends as
    /// one loop does (``LoopThread/shutdown()``): tasks suspended on it are resumed (cancelled;
    /// its `async` APIs throw ``LoopError`` of kind ``LoopError/Kind/shutDown``), its queued jobs
    /// and callbacks run or are dropped as a loop's shutdown says, nothing is left hanging.
    /// The loops are all asked to stop first, so they shut down in parallel.
    ///
    /// Called during a graceful shutdown's grace period (``shutdownGracefully(within:)``), it ends
    /// the period at once. To let work in flight finish first, call that instead.
    ///
    /// Idempotent: later calls return at once, concurrent ones once the group is down. Any thread
    /// but a group loop's own (a loop cannot wait for itself to end) and the loops' `offload`
    /// threads (a loop's shutdown waits for the offload closures running: calling this from one
    /// deadlocks; it is not detected).
    /// - Precondition: not called on one of the group's loops (traps with a message).
    public func shutdown() {
        checkNotOnGroupLoop("LoopGroup.shutdown()")
        graceful.noteHardShutdown(loops)
        hasShutDown.withLock { done in
            guard !done else { return }
            host.shutDownAll()
            done = true
        }
    }

    /// The group's metrics: every loop's counters, gauges and distributions summed (the
    /// high-water mark is the highest of any loop's). Any thread; each loop is read as
    /// ``Loop/metrics`` reads it, one value at a time. Per loop: `group.loops[i].metrics`.
    public var metrics: LoopMetrics {
        LoopMetricsStorage.combined(loops.map(\.metricsStorage))
    }
}

/// Runs `body` with a new group of `loops` loops, then shuts the group down (also when `body`
/// throws) and returns `body`'s value or rethrows its error.
///
/// The body runs in the caller's task, on the caller's executor: hand work to the group's loops
/// from it (`Task(executorPreference: group.next())`, `withTaskExecutorPreference(group.next())`).
/// The shutdown waits for the group's threads on a thread of its own, so no cooperative thread
/// blocks; tasks still suspended on the loops are resumed as ``LoopGroup/shutdown()`` says.
/// - Parameters:
///   - loops: how many loops; at least 1. Defaults to ``LoopGroup/defaultLoopCount``.
///   - isolation: the caller's isolation, which the body keeps (leave the default).
///   - body: the work to do with the group.
public func withLoopGroup<T: Sendable>(
    loops: Int = LoopGroup.defaultLoopCount,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (LoopGroup) async throws -> T
) async throws -> T {
    let group = try LoopGroup.start(loops: loops)
    let outcome: Result<T, any Error>
    do {
        outcome = .success(try await body(group))
    } catch {
        outcome = .failure(error)
    }
    await withUnsafeContinuation { (done: UnsafeContinuation<Void, Never>) in
        pthread_detach(spawnThread {
            group.shutdown()
            done.resume()
        })
    }
    return try outcome.get()
}

/// Where a group's loops live and how they all end: the seam between ``LoopGroup`` (API, picking
/// loops, metrics) and the threads. Today a thread per loop; a deterministic test host would run
/// every loop on one thread and one virtual clock instead.
protocol LoopGroupHost: Sendable {
    /// The loops, in the group's order.
    var loops: [Loop] { get }
    /// Ends every loop with a loop's shutdown outcomes and returns once all have ended. Called
    /// once, never on one of the loops.
    func shutDownAll()
}

/// A loop per thread, each started by `Loop.startThread()`.
private final class ThreadPerLoop: LoopGroupHost {
    let threads: [LoopThread]
    let loops: [Loop]

    init(count: Int) throws(LoopError) {
        var threads: [LoopThread] = []
        threads.reserveCapacity(count)
        do {
            for _ in 0..<count { threads.append(try Loop.startThread()) }
        } catch {
            for thread in threads { thread.loop.stop() }
            for thread in threads { thread.shutdown() }
            throw error
        }
        self.threads = threads
        self.loops = threads.map(\.loop)
    }

    func shutDownAll() {
        // Stop them all first: they shut down in parallel, and a loop's shutdown never waits for
        // another's (a task on one loop awaiting another is resumed by whichever ends first).
        for thread in threads { thread.loop.stop() }
        for thread in threads { thread.shutdown() }
    }
}

/// FNV-1a, 64-bit, with a final avalanche (splitmix64's) so that the low bits a modulo keeps depend
/// on every input byte: consecutive integer keys spread over loops instead of striding.
struct FNV1a {
    private var state: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ byte: UInt8) {
        state = (state ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }

    mutating func add(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { add(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    var mixed: UInt64 {
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
