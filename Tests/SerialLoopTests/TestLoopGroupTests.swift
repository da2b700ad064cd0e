@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop

/// An actor bound to one loop of a group: calls from the other loops hop to it.
private actor Tally {
    let loop: Loop
    var count = 0
    init(loop: Loop) { self.loop = loop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    /// Whether the call runs on the actor's loop, as that loop's code.
    func bump() -> Bool {
        count += 1
        return Loop.current === loop && loop.isOnLoopThread
    }
}

/// "L<i>": the index of the loop the calling code runs on, in `group`.
private func here(_ group: LoopGroup) -> String {
    "L\(group.loops.firstIndex { $0 === Loop.current }.map(String.init) ?? "-")"
}

@Suite("Test loop groups")
struct TestLoopGroupTests {
    /// Sharded code on a group of three test loops: six tasks pinned two per loop, each taking
    /// four steps — an `execute` onto the next loop and an escaping `Task {}`, a call to an actor
    /// on another loop, a plain `Task.sleep`, a `loop.sleep` — each logged with the loop it ran on
    /// and the loop's time.
    static func shardedTrace(seed: UInt64) async throws -> [String] {
        try await withTestLoopGroup(loops: 3, seed: seed) { group in
            let trace = Lock([String]())
            @Sendable func log(_ line: String) { trace.withLock { $0.append(line) } }
            let tallies = group.loops.map { Tally(loop: $0) }
            let tasks = (0..<6).map { i in
                let loop = group.loops[i % 3]
                let next = group.loops[(i + 1) % 3]
                let tally = tallies[(i + 2) % 3]
                return Task(executorPreference: loop) {
                    for step in 0..<4 {
                        log("t\(i).\(step) \(here(group)) @\(loop.now.nanosecondsSinceOrigin)")
                        switch step {
                        case 0:
                            next.execute { log("t\(i).x \(here(group))") }
                            Task { log("t\(i).e \(here(group))") }   // escaping: the creating loop runs it
                        case 1: log("t\(i).a \(await tally.bump()) \(here(group))")
                        case 2: try await Task.sleep(for: .milliseconds(i + 1))
                        default: try await loop.sleep(for: .microseconds(500 * (i + 1)))
                        }
                    }
                    log("t\(i).end \(here(group)) @\(loop.now.nanosecondsSinceOrigin)")
                }
            }
            for task in tasks { try await task.value }
            await try #require(TestLoop.current).runUntilIdle()
            return trace.withLock { $0 }
        }
    }

    /// What every legal interleaving of `shardedTrace` shows for task `i`: its own lines in order,
    /// on its own loop, at exact virtual times (the `execute` and the `Task {}` it started are
    /// checked separately: where they land in the trace depends on the interleaving).
    static func expectedLines(ofTask i: Int) -> [String] {
        let sleptTo = Int64(i + 1) * 1_000_000
        return [
            "t\(i).0 L\(i % 3) @0",
            "t\(i).1 L\(i % 3) @0",
            "t\(i).a true L\(i % 3)",
            "t\(i).2 L\(i % 3) @0",
            "t\(i).3 L\(i % 3) @\(sleptTo)",
            "t\(i).end L\(i % 3) @\(sleptTo + Int64(500_000 * (i + 1)))",
        ]
    }

    static func expectLegal(_ trace: [String], seed: UInt64) {
        #expect(trace.count == 6 * 8, "seed \(seed): \(trace)")
        for i in 0..<6 {
            let own = trace.filter { $0.hasPrefix("t\(i).") && !$0.hasPrefix("t\(i).x ") && !$0.hasPrefix("t\(i).e ") }
            #expect(own == expectedLines(ofTask: i), "seed \(seed), task \(i)")
            #expect(trace.filter { $0.hasPrefix("t\(i).x ") } == ["t\(i).x L\((i + 1) % 3)"], "seed \(seed), task \(i)")
            #expect(trace.filter { $0.hasPrefix("t\(i).e ") } == ["t\(i).e L\(i % 3)"], "seed \(seed), task \(i)")
            // The execute is sent at step 0 and cannot run before it was sent.
            let sent = trace.firstIndex(of: "t\(i).0 L\(i % 3) @0")!
            #expect(trace.firstIndex(of: "t\(i).x L\((i + 1) % 3)")! > sent, "seed \(seed), task \(i)")
        }
    }

    @Test func oneSeedGivesOneTraceFiftyTimesUnderCPULoad() async throws {
        let seed = Determinism.seed(for: "TestLoopGroupTests")
        let start = ContinuousClock.now
        let first = try await Determinism.underCPULoad(burners: 1) {
            try await Determinism.expectReplays(seed: seed, runs: 50, Self.shardedTrace)
        }
        print("TestLoopGroupTests: 50 replays of seed \(seed) in \(start.duration(to: .now)) under load")
        Self.expectLegal(first, seed: seed)
    }

    @Test func otherSeedsGiveOtherLegalInterleavings() async throws {
        try await withWatchdog(seconds: 120) {
            var traces: [UInt64: [String]] = [:]
            for seed: UInt64 in 1...8 {
                let trace = try await Self.shardedTrace(seed: seed)
                Self.expectLegal(trace, seed: seed)
                traces[seed] = trace
            }
            let distinct = Set(traces.values)
            #expect(distinct.count >= 2, "8 seeds gave \(distinct.count) interleaving(s)")
            print("TestLoopGroupTests: seeds 1...8 gave \(distinct.count) distinct traces")
        }
    }

    @Test func eachLoopsCodeSeesItsOwnLoopAndTheyShareOneThread() async throws {
        try await withWatchdog(seconds: 30) {
            try await withTestLoopGroup(loops: 3, seed: 11) { group in
                var threads = Set<UInt>()
                for (index, loop) in group.loops.enumerated() {
                    let (isCurrent, onThread, thread) = await Task(executorPreference: loop) {
                        (Loop.current === loop, group.loops.map(\.isOnLoopThread), UInt(pthread_self()))
                    }.value
                    #expect(isCurrent)
                    #expect(onThread == group.loops.indices.map { $0 == index }, "on loop \(index)")
                    threads.insert(thread)
                }
                #expect(threads.count == 1)
                #expect(group.loops.allSatisfy { $0 is TestLoop })
                // An actor on loop 2, called from loop 0's code: it runs as loop 2's code.
                #expect(await Tally(loop: group.loops[2]).bump())
                #expect(Loop.current === group.loops[0])
            }
        }
    }

    @Test func anHourOnOneLoopPassesInstantlyOnTheSharedClock() async throws {
        try await withWatchdog(seconds: 30) {
            let realStart = ContinuousClock.now
            try await withTestLoopGroup(loops: 3, seed: 5) { group in
                let hour = Task(executorPreference: group.loops[1]) { () throws -> Int64 in
                    try await group.loops[1].sleep(for: .seconds(3600))
                    return group.loops[1].now.nanosecondsSinceOrigin
                }
                let plain = Task(executorPreference: group.loops[2]) { () throws -> Int64 in
                    try await Task.sleep(for: .seconds(1800))
                    return group.loops[2].now.nanosecondsSinceOrigin
                }
                #expect(try await plain.value == 1_800_000_000_000)
                #expect(try await hour.value == 3_600_000_000_000)
                #expect(group.loops.allSatisfy { $0.now.nanosecondsSinceOrigin == 3_600_000_000_000 })
                // The controls of any member act on the one clock and every loop's timers.
                let fired = Lock([Int]())
                for (index, loop) in group.loops.enumerated() {
                    loop.execute { _ = loop.schedule(after: .seconds(index + 1)) { fired.withLock { $0.append(index) } } }
                }
                let control = try #require(TestLoop.current)
                control.autoAdvancesTime = false
                await control.advance(by: .seconds(10))
                #expect(fired.withLock { $0 } == [0, 1, 2])
                #expect(group.loops.allSatisfy { $0.now.nanosecondsSinceOrigin == 3_610_000_000_000 })
            }
            #expect(realStart.duration(to: .now) < .seconds(20))
        }
    }

    /// Every loop has tasks suspended in `loop.sleep`, `Task.sleep`, `readable` and in awaiting
    /// another loop's task when the body returns: the leftovers are reported together, and every
    /// task ends. The loops shut down one after another, as a group's do in parallel: a task whose
    /// loop is already down when another loop's shutdown resumes it continues in its loop's
    /// afterlife (<doc:Guarantees>), so it is awaited, not counted, after the call.
    @Test func shutdownWithWorkInFlightOnEveryLoopResumesEverything() async throws {
        try await withWatchdog(seconds: 60) {
            let (a, b) = makeSocketPair()
            defer { close(a); close(b) }
            let resumed = Lock(0)
            let tasks = Lock([Task<Void, Never>]())
            let error = await #expect(throws: LoopLeftoversError.self) {
                try await withTestLoopGroup(loops: 3, seed: 2) { group in
                    for (index, loop) in group.loops.enumerated() {
                        let next = group.loops[(index + 1) % 3]
                        let started = [
                            Task(executorPreference: loop) {
                                _ = try? await loop.sleep(for: .seconds(3600))
                                resumed.withLock { $0 += 1 }
                            },
                            Task(executorPreference: loop) {
                                _ = try? await Task.sleep(for: .seconds(7200))
                                resumed.withLock { $0 += 1 }
                            },
                            Task(executorPreference: loop) {
                                _ = try? await loop.readable(a)
                                resumed.withLock { $0 += 1 }
                            },
                            // A task on this loop awaiting the next loop's code.
                            Task(executorPreference: loop) {
                                _ = try? await Task(executorPreference: next) { try await next.sleep(for: .seconds(60)) }.value
                                resumed.withLock { $0 += 1 }
                            },
                        ]
                        tasks.withLock { $0 += started }
                    }
                    await try #require(TestLoop.current).runUntilIdle()
                }
            }
            // The waits on each task's own loop were resumed by that loop's shutdown.
            #expect(resumed.withLock { $0 } >= 9)
            for task in tasks.withLock({ $0 }) { await task.value }
            #expect(resumed.withLock { $0 } == 12)
            let leftovers = try #require(error).leftovers
            #expect(leftovers.sleeps.count == 6)
            #expect(leftovers.taskSleeps.count == 3)
            #expect(leftovers.descriptorWaits.count == 3)
        }
    }

    @Test func aStallIsReportedAsForOneTestLoop() async throws {
        try await withWatchdog(seconds: 30) {
            let error = await #expect(throws: LoopError.self) {
                try await withTestLoopGroup(loops: 2, seed: 3) { group in
                    let loop = try #require(TestLoop.current)
                    loop.stallTimeout = .milliseconds(200)
                    let hold = loop.holdTime()
                    defer { hold.release() }
                    try await group.loops[1].sleep(for: .seconds(1))
                }
            }
            #expect(error?.kind == .stalled)
            let text = "\(error.map { "\($0)" } ?? "")"
            #expect(text.contains("time is held by 1 TimeHold"), "\(text)")
            #expect(text.contains("loop 1: 1 loop.sleep(s) waking at 1.0 seconds"), "\(text)")
        }
    }

    /// `LoopGroup.shutdown()` from another thread ends a test group's run as `stop()` ends a test
    /// loop's: the parked group wakes, every loop shuts down, the call returns once they have.
    @Test func shutdownFromAnotherThreadEndsTheRunAsStopped() async throws {
        try await withWatchdog(seconds: 30) {
            let stopper = Lock<pthread_t?>(nil)
            let error = await #expect(throws: LoopError.self) {
                try await withTestLoopGroup(loops: 2, seed: 6) { group in
                    let loop = try #require(TestLoop.current)
                    let hold = loop.holdTime()                   // the group parks: nothing can move
                    defer { hold.release() }
                    stopper.withLock { $0 = spawnThread { group.shutdown() } }
                    try await group.loops[1].sleep(for: .seconds(1))
                }
            }
            #expect(error?.kind == .stopped)
            if let thread = stopper.withLock({ $0 }) { pthread_join(thread, nil) }
        }
    }

    @Test func realDescriptorsWorkAcrossTheGroupsLoops() async throws {
        try await withWatchdog(seconds: 30) {
            let (a, b) = makeSocketPair()
            defer { close(a); close(b) }
            let got = try await withTestLoopGroup(loops: 2, seed: 9) { group in
                try #require(TestLoop.current).ioQuietPeriod = .milliseconds(20)
                let reader = Task(executorPreference: group.loops[1]) { () throws -> (UInt8, Int64) in
                    try await group.loops[1].readable(a)
                    var byte: UInt8 = 0
                    #expect(read(a, &byte, 1) == 1)
                    return (byte, group.loops[1].now.nanosecondsSinceOrigin)
                }
                try await group.loops[0].sleep(for: .seconds(5))
                var byte: UInt8 = 42
                #expect(write(b, &byte, 1) == 1)
                return try await reader.value
            }
            #expect(got.0 == 42)
            #expect(got.1 == 5_000_000_000)
        }
    }

    @Test func theGroupAPIWorksOnATestGroupAndTheSyncFormRunsOnTheCallersThread() throws {
        let caller = UInt(pthread_self())
        let (keyed, ticks, thread) = try withTestLoopGroup(loops: 4, seed: 4) { group in
            let firstRound = (0..<4).map { _ in group.next() }
            #expect(Set(firstRound.map { ObjectIdentifier($0) }).count == 4)
            let keyed = group.loop(forKey: "user-42")
            #expect(group.loop(forKey: "user-42") === keyed)
            for loop in group.loops { loop.execute {} }
            await try #require(TestLoop.current).runUntilIdle()
            return (group.loops.firstIndex { $0 === keyed }!, group.metrics.ticks, UInt(pthread_self()))
        }
        #expect(keyed == Int(LoopGroup.shardHash(of: "user-42") % 4))
        #expect(ticks >= 4)
        #expect(thread == caller)
    }

    @Test func aLoopOnlyAPIOfAnotherLoopOfTheGroupTrapsSayingSo() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            try withTestLoopGroup(loops: 2, seed: 1) { group in
                _ = group.loops[1].schedule(after: .seconds(1)) {}
            }
        }
        let stderrText = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(stderrText.contains("Loop.schedule(at:) must be called by code running on this loop, and the caller runs on another loop"), "\(stderrText)")
    }
}

@Suite("Thread identity")
struct ThreadIdentityTests {
    /// glibc hands a new thread the `pthread_t` of one that ended (it caches thread stacks): a
    /// check by `pthread_t` took such a thread for the loop's owner. The thread token is never
    /// reused.
    @Test func aNewThreadWithAnEndedOwnersPthreadIsNotTheLoopsThread() throws {
        let made = Lock<(Loop, UInt)?>(nil)
        pthread_join(spawnThread { made.withLock { $0 = (try! Loop(), UInt(pthread_self())) } }, nil)
        let (loop, owner) = try #require(made.withLock { $0 })
        let seen = Lock<(Bool, UInt)?>(nil)
        pthread_join(spawnThread { seen.withLock { $0 = (loop.isOnLoopThread, UInt(pthread_self())) } }, nil)
        let (onLoop, later) = try #require(seen.withLock { $0 })
        #expect(!onLoop)
        print("ThreadIdentityTests: the later thread \(later == owner ? "got" : "did not get") the ended owner's pthread_t")
        #expect(!loop.isOnLoopThread)
    }
}
