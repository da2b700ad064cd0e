import Glibc
import Testing
@testable import SerialLoop

/// A default actor (no custom executor): called from tasks on the loop, it runs on the loop too.
private actor Tally {
    var count = 0
    func bump() -> Int { count += 1; return count }
}

/// Same program, same trace: a seeded scenario that mixes everything a test might do on a test
/// loop, recorded with virtual timestamps and tick numbers, replayed and compared entry by entry.
@Suite("Test loop: determinism (replay)")
struct DeterminismReplayTests {
    /// What watches the loop while the scenario runs (installed by the body's first job).
    enum Observer: Sendable {
        case nothing
        /// A plain instrument that records every hook into the box.
        case instrument(LoopBox<[String]>)
        /// A timing instrument that records the same hooks (without durations) into the box.
        case timingInstrument(LoopBox<[String]>)
        /// Debug mode with every threshold at zero (every job slow, every timer late), its
        /// reports counted in the box.
        case debug(LoopBox<Int>)
    }

    /// 64 tasks, 8 steps each, chosen by the seed (the harness: Determinism.swift): `loop.sleep`,
    /// `Task.sleep`, `ContinuousClock` and `SuspendingClock` sleeps, yields, hops to an actor on the
    /// loop and to a default actor, task groups, escaped `Task {}`s, scheduled callbacks,
    /// cancellation of a sleeping task (both `loop.sleep` and `Task.sleep`), readiness on a
    /// socketpair (the byte written before or after the reader waits), and work from another
    /// thread (callbacks, a task and a future's completion, all submitted while the loop waits in a
    /// job for that thread to end, so they reach the inbox at a fixed point). Returns the trace, one
    /// line per event, each stamped with the virtual time and the tick (counted from the body's
    /// first).
    static func trace(seed: UInt64, observedBy observer: Observer = .nothing) async throws -> [String] {
        let instrument: HookRecorder? = switch observer {
        case .instrument(let hooks): HookRecorder(hooks)
        case .timingInstrument(let hooks): TimingHookRecorder(hooks)
        case .nothing, .debug: nil
        }
        return try await Determinism.trace(
            seed: seed, tasks: 64, steps: 8,
            prepare: { loop in
                if let instrument { loop.addInstrument(instrument) }
                if case .debug(let reports) = observer {
                    loop.debug = LoopDebugOptions(slowJobThreshold: .zero, lagThreshold: .zero, maximumReportsPerSecond: .max) { _ in reports.value += 1 }
                }
            },
            setUp: { loop in (tally: Tally(), victims: LoopBox<[Task<Void, Never>]>([]), firstTick: loop.metrics.ticks) },
            step: { loop, ledger, run, step in
                @Sendable func log(_ entry: String) async {
                    await ledger.record("\(entry)@\(loop.now.nanosecondsSinceOrigin)#\(loop.metrics.ticks - run.firstTick)")
                }
                let value = step.value
                let amount = Int(value >> 8 % 5000)
                let tag = step.tag
                // Runtime sleeps (Task.sleep, ContinuousClock, SuspendingClock) read the
                // virtual clock on the loop's thread: exact for any duration, so odd ones.
                switch value % 13 {
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
                case 10:
                    let (a, b) = makeSocketPair()
                    let reader = Task(executorPreference: loop) {
                        try await loop.readable(b)
                        var byte: UInt8 = 0
                        await log("\(tag) read \(read(b, &byte, 1)) \(byte)")
                    }
                    if value & 2 == 0 { await Task.yield() }      // the reader waits first
                    var byte = UInt8(truncatingIfNeeded: amount)
                    _ = write(a, &byte, 1)
                    try await reader.value
                    try loop.close(a)
                    try loop.close(b)
                case 11:
                    let future = loop.makeFuture(of: Int.self)
                    let thread = spawnThread {
                        for j in 0..<3 { loop.execute { Task(executorPreference: loop) { await log("\(tag) execute \(j)") } } }
                        Task(executorPreference: loop) { await log("\(tag) foreign task") }
                        future.succeed(amount)
                    }
                    pthread_join(thread, nil)
                    await log("\(tag) future \(try await future.value)")
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
                if let instrument { _ = loop.removeInstrument(instrument) }
            })
    }

    @Test func aRandomizedScenarioReplaysExactly() async throws {
        let seed = Determinism.seed(for: "DeterminismReplayTests")
        let first = try await Determinism.expectReplays(seed: seed, runs: 2) { try await Self.trace(seed: $0) }
        #expect(first.count >= 64 * 8)
        #expect(!first.contains { $0.contains("(wrong)") })
        // The trace depends on the seed, so the comparison above is not comparing two constants.
        let other = try await Self.trace(seed: seed &+ 1)
        #expect(other != first)
    }

    /// The tick has one body, whatever observes it: the same scenario gives the same trace — the
    /// same events in the same ticks at the same virtual times — with nothing installed, a plain
    /// instrument, a timing instrument and debug mode (every job slow, every timer late, so its
    /// reports are made); and the two instruments see the same hooks in the same order.
    @Test func observersDoNotChangeTheTrace() async throws {
        let seed = Determinism.seed(for: "DeterminismReplayTests observers")
        func trace(_ observer: Observer) async throws -> [String] {
            try await withWatchdog("the scenario, observed by \(observer)", limit: .seconds(60)) {
                try await Self.trace(seed: seed, observedBy: observer)
            }?.get() ?? []
        }
        let unobserved = try await trace(.nothing)
        let hooks = LoopBox<[String]>([]), timedHooks = LoopBox<[String]>([]), reports = LoopBox(0)
        let instrumented = try await trace(.instrument(hooks))
        let timed = try await trace(.timingInstrument(timedHooks))
        let debugged = try await trace(.debug(reports))

        // Not trivially equal: every kind of event happened, over many ticks.
        #expect(unobserved.count >= 64 * 8)
        for event in [" read 1 ", " execute 2@", " foreign task@", " future ", " victim cancelled@", " callback@",
                      " group ", " tally ", " escaped ran@"] {
            #expect(unobserved.contains { $0.contains(event) }, "seed \(seed): no \"\(event)\" in the trace")
        }
        let lastTick = unobserved.last.flatMap { $0.split(separator: "#").last.flatMap { Int($0) } } ?? 0
        #expect(lastTick > 100)
        expectSameTrace(instrumented, as: unobserved, "plain instrument", seed: seed)
        expectSameTrace(timed, as: unobserved, "timing instrument", seed: seed)
        expectSameTrace(debugged, as: unobserved, "debug mode", seed: seed)

        expectSameTrace(timedHooks.value, as: hooks.value, "hooks of a timing instrument", seed: seed)
        for hook in ["tick", "end", "run task", "ran callback", "run Task.sleep wake-up", "run global job", "run scheduled callback", "polled 1"] {
            #expect(hooks.value.contains(hook), "seed \(seed): no \"\(hook)\" hook")
        }
        #expect(hooks.value.contains { $0.hasPrefix("timer ") })
        #expect(reports.value > 0)
    }
}

/// Records every hook of the loop, without durations, so a plain and a timing instrument's
/// records compare line by line.
// Unchecked Sendable: the harness's closures capture it; the loop calls it on its own thread only,
// and the test reads its box after the run.
private class HookRecorder: LoopInstrument, @unchecked Sendable {
    let hooks: LoopBox<[String]>
    init(_ hooks: LoopBox<[String]>) { self.hooks = hooks }
    func tickWillStart() { hooks.value.append("tick") }
    func timerDidFire(deadline: LoopClock.Instant, lag: Duration) { hooks.value.append("timer \(deadline.nanosecondsSinceOrigin) late \(lag)") }
    func jobWillRun(_ job: LoopJobKind) { hooks.value.append("run \(job)") }
    func jobDidRun(_ job: LoopJobKind) { hooks.value.append("ran \(job)") }
    func pollWillStart(timeout: Duration?) { hooks.value.append("poll \(timeout.map { "\($0)" } ?? "nil")") }
    func pollDidEnd(events: Int, blocked: Duration) { hooks.value.append("polled \(events)") }
    func tickDidEnd() { hooks.value.append("end") }
}

private final class TimingHookRecorder: HookRecorder, LoopTimingInstrument {
    func jobDidRun(_ job: LoopJobKind, duration: Duration) { jobDidRun(job) }
    func tickDidEnd(duration: Duration) { tickDidEnd() }
}

/// Records an issue naming the first entry where `trace` differs from `expected`.
private func expectSameTrace(_ trace: [String], as expected: [String], _ what: String, seed: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
    if let index = zip(expected, trace).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
        Issue.record("seed \(seed), \(what): traces diverge at entry \(index): \(expected[index]) vs \(trace[index])", sourceLocation: sourceLocation)
    } else if trace.count != expected.count {
        Issue.record("seed \(seed), \(what): \(trace.count) entries, expected \(expected.count)", sourceLocation: sourceLocation)
    }
}
