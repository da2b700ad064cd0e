import Glibc
import Testing
@testable import SerialLoop

/// A default actor (no custom executor): called from tasks on the loop, it runs on the loop too.
private actor Tally {
    var count = 0
    func bump() -> Int { count += 1; return count }
}

/// Same program, same trace: a seeded scenario that mixes everything a test might do on a test
/// loop, recorded with virtual timestamps, replayed and compared entry by entry.
@Suite("Test loop: determinism (replay)")
struct DeterminismReplayTests {
    /// 64 tasks, 8 steps each, chosen by the seed (the harness: Determinism.swift): `loop.sleep`,
    /// `Task.sleep`, `ContinuousClock` and `SuspendingClock` sleeps, yields, hops to an actor on the
    /// loop and to a default actor, task groups, escaped `Task {}`s, scheduled callbacks, and
    /// cancellation of a sleeping task (both `loop.sleep` and `Task.sleep`). Returns the trace, one
    /// line per event.
    static func trace(seed: UInt64) async throws -> [String] {
        try await Determinism.trace(
            seed: seed, tasks: 64, steps: 8,
            setUp: { _ in (tally: Tally(), victims: LoopBox<[Task<Void, Never>]>([])) },
            step: { loop, ledger, run, step in
                @Sendable func log(_ entry: String) async {
                    await ledger.record("\(entry)@\(loop.now.nanosecondsSinceOrigin)")
                }
                let value = step.value
                let amount = Int(value >> 8 % 5000)
                let tag = step.tag
                // Runtime sleeps (Task.sleep, ContinuousClock, SuspendingClock) read the
                // virtual clock on the loop's thread: exact for any duration, so odd ones.
                switch value % 10 {
                case 0: try await loop.sleep(for: .microseconds(amount * 97))
                case 1: try await Task.sleep(for: .nanoseconds(amount * 1_000_003))
                case 2: try await ContinuousClock().sleep(for: .microseconds(amount % 300 * 1_001))
                case 3: try await Task.sleep(for: .microseconds(amount % 700 * 999), clock: .suspending)
                case 4: await Task.yield()
                case 5: await log("\(tag) tally \(await run.tally.bump())")
                case 6:
                    let sum = try await withThrowingTaskGroup(of: Int.self) { group in
                        for child in 0..<3 {
                            group.addTask { try await Task.sleep(for: .microseconds(child * 10_007 + amount % 50 * 101)); return child }
                        }
                        return try await group.reduce(0, +)
                    }
                    await log("\(tag) group \(sum)")
                case 7:
                    let escaped = Task { await log("\(tag) escaped ran") }
                    await escaped.value
                case 8:
                    let delay = Duration.milliseconds(amount % 900)
                    loop.schedule(after: delay) { Task(executorPreference: loop) { await log("\(tag) callback") } }
                default:
                    let victim = Task(executorPreference: loop) {
                        do {
                            if value & 1 == 0 { try await loop.sleep(for: .seconds(3600)) } else { try await Task.sleep(for: .seconds(3600)) }
                            await log("\(tag) victim woke (wrong)")
                        } catch {
                            await log("\(tag) victim cancelled")
                        }
                    }
                    run.victims.value.append(victim)
                    try await loop.sleep(for: .milliseconds(amount % 100))
                    victim.cancel()
                }
                await log(tag)
            },
            finish: { loop, _, run in
                for victim in run.victims.value { await victim.value }
                try await loop.sleep(for: .seconds(1))                 // let the last callbacks run
            })
    }

    @Test func aRandomizedScenarioReplaysExactly() async throws {
        let seed = Determinism.seed(for: "DeterminismReplayTests")
        let first = try await Determinism.expectReplays(seed: seed, runs: 2, Self.trace)
        #expect(first.count >= 64 * 8)
        #expect(!first.contains { $0.contains("(wrong)") })
        // The trace depends on the seed, so the comparison above is not comparing two constants.
        let other = try await Self.trace(seed: seed &+ 1)
        #expect(other != first)
    }
}
