import Glibc
import Synchronization
import Testing
@testable import SerialLoop

// The one determinism harness. A seeded scenario — `tasks` tasks on a fresh test loop, each taking
// `steps` steps whose values come from the seed — records a trace (one line per event, with the
// virtual timestamps the scenario chooses to log); the same seed must give the same trace, entry
// by entry, however often it runs and whatever load the machine is under. The suites that use it
// (DeterminismTests, DeterminismReplayTests, DeterminismUnderLoadTests) differ only in what a step
// does and how many times they replay.

/// An actor on a test loop: where a scenario's tasks record its trace.
actor Ledger {
    let loop: Loop
    var entries: [String] = []
    init(loop: Loop) { self.loop = loop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    func record(_ entry: String) { entries.append(entry) }
}

/// One step of one task of a seeded scenario.
struct ScenarioStep: Sendable {
    /// The task's index (`0..<tasks`) and the step's (`0..<steps`).
    let task: Int, step: Int
    /// The step's draw from the seed.
    let value: UInt64
    /// "t<task>.<step>", for trace lines.
    var tag: String { "t\(task).\(step)" }
}

enum Determinism {
    /// The seed of a randomised determinism test: `SERIAL_LOOP_SEED` from the environment (to
    /// replay a printed one), else a random one. Printed either way.
    static func seed(for test: String) -> UInt64 {
        let seed = ProcessInfoSeed.value ?? UInt64.random(in: 0...UInt64.max)
        print("\(test) seed: \(seed) (replay with SERIAL_LOOP_SEED=\(seed))")
        return seed
    }

    /// Runs a seeded scenario on a fresh test loop and returns its trace.
    ///
    /// The seed draws every task's `steps` values, task after task (`SplitMix64`), before anything
    /// runs; then `setUp` makes the run's shared state on the loop, each task runs on the loop
    /// doing `step` for each of its steps, and `finish` runs once every task has ended (for work
    /// the steps left behind: callbacks, victims). The trace is what `step` and `finish` recorded
    /// in the ledger, in order.
    /// - Parameters:
    ///   - prepare: configures the loop before anything runs (instruments, settings).
    static func trace<Run: Sendable>(
        seed: UInt64,
        tasks: Int,
        steps: Int,
        prepare: @escaping @Sendable (TestLoop) -> Void = { _ in },
        setUp: @escaping @Sendable (TestLoop) -> Run,
        step: @escaping @Sendable (TestLoop, Ledger, Run, ScenarioStep) async throws -> Void,
        finish: @escaping @Sendable (TestLoop, Ledger, Run) async throws -> Void = { _, _, _ in }
    ) async throws -> [String] {
        try await withTestLoop { loop in
            prepare(loop)
            var generator = SplitMix64(seed: seed)
            let plans = (0..<tasks).map { _ in (0..<steps).map { _ in generator.next() } }
            let ledger = Ledger(loop: loop)
            let run = setUp(loop)
            let running = plans.enumerated().map { task, plan in
                Task(executorPreference: loop) {
                    for (index, value) in plan.enumerated() {
                        try await step(loop, ledger, run, ScenarioStep(task: task, step: index, value: value))
                    }
                }
            }
            for task in running { try await task.value }
            try await finish(loop, ledger, run)
            return await ledger.entries
        }
    }

    /// Runs `trace` `runs` times (each under a 60 s watchdog) and expects every trace to equal the
    /// first, recording the first diverging entry and the seed when one does not. Returns the
    /// first trace, for the caller's own checks.
    @discardableResult
    static func expectReplays(
        seed: UInt64,
        runs: Int = 2,
        _ trace: @escaping @Sendable (UInt64) async throws -> [String]
    ) async throws -> [String] {
        let first = try await withWatchdog(.seconds(60)) { try await trace(seed) }
        for run in 2...max(2, runs) {
            let again = try await withWatchdog(.seconds(60)) { try await trace(seed) }
            if let index = zip(first, again).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
                Issue.record("seed \(seed), run \(run): traces diverge at entry \(index): \(first[index]) vs \(again[index])")
                break
            }
            #expect(again == first, "seed \(seed), run \(run)")
        }
        return first
    }
}

extension Determinism {
    /// Runs `body` while `burners` threads spin on the CPU, so the replays under test are
    /// preempted and their thread hops land at other times than in a quiet run. One such test at a
    /// time in the process (the others wait their turn): four busy threads on two cores, from three
    /// suites at once, starved the cooperative pool of the suites running beside them past their
    /// watchdogs.
    static func underCPULoad<T>(burners: Int, isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T) async throws -> T {
        await CPULoadTurn.shared.enter()
        let stop = StopFlag()
        let threads = (0..<burners).map { _ in
            spawnThread {
                var x: UInt64 = 1
                while !stop.isSet { for _ in 0..<10_000 { x = x &* 6364136223846793005 &+ 1 } }
                if x == 0 { print("unreachable") }
            }
        }
        let outcome: Result<T, any Error>
        do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        stop.set()
        for thread in threads { pthread_join(thread, nil) }
        await CPULoadTurn.shared.leave()
        return try outcome.get()
    }
}

/// A flag one thread sets and another polls.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}

/// Whose turn it is to load the CPU (see `Determinism.underCPULoad`).
private actor CPULoadTurn {
    static let shared = CPULoadTurn()
    private var isTaken = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func enter() async {
        guard isTaken else {
            isTaken = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func leave() {
        if waiting.isEmpty { isTaken = false } else { waiting.removeFirst().resume() }
    }
}

/// `SERIAL_LOOP_SEED` from the environment, to replay a printed seed.
enum ProcessInfoSeed {
    static var value: UInt64? {
        getenv("SERIAL_LOOP_SEED").flatMap { UInt64(String(cString: $0)) }
    }
}
