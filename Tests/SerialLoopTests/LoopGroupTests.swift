@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop

/// Runs `body` on `loop`'s thread and returns its value: a round trip through `execute`.
private func onLoop<T: Sendable>(_ loop: Loop, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        loop.execute { continuation.resume(returning: body()) }
    }
}

/// Returns once `condition` holds on `loop`'s thread: re-checks it as a callback behind the loop's
/// other work (no sleep), so it returns once what was queued before has run.
private func whenOnLoop(_ loop: Loop, _ condition: @escaping @Sendable () -> Bool) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        @Sendable func check() {
            if condition() { continuation.resume() } else { loop.execute(check) }
        }
        loop.execute(check)
    }
}

private actor PinnedCounter {
    let loop: Loop
    var threads: [pthread_t] = []
    init(loop: Loop) { self.loop = loop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    func record() -> Bool {
        threads.append(pthread_self())
        return loop.isOnLoopThread && Loop.current === loop
    }
}

@Suite("Loop groups")
struct LoopGroupTests {
    @Test func defaultGroupHasALoopPerOnlineProcessorEachOnItsOwnThread() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start()
            #expect(group.loops.count == max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
            var threads: [pthread_t] = []
            for loop in group.loops {
                threads.append(await onLoop(loop) { pthread_self() })
            }
            #expect(Set(threads.map { UInt($0) }).count == group.loops.count)
            #expect(!threads.contains(pthread_self()))
            group.shutdown()
            let allDown = group.loops.allSatisfy { $0.hasShutDown }
            #expect(allDown)
            group.shutdown()  // idempotent
        }
    }

    @Test func aGroupOfNoLoopsTraps() async {
        await #expect(processExitsWith: .failure) {
            _ = try LoopGroup.start(loops: 0)
        }
    }

    @Test func concurrentShutdownsAllReturnOnceTheGroupIsDown() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 3)
            for loop in group.loops { loop.execute {} }
            let sawAllDown = Lock([Bool]())
            let threads = (0..<4).map { _ in
                spawnThread {
                    group.shutdown()
                    let down = group.loops.allSatisfy { $0.hasShutDown }
                    sawAllDown.withLock { $0.append(down) }
                }
            }
            for thread in threads { pthread_join(thread, nil) }
            #expect(sawAllDown.withLock { $0 } == [true, true, true, true])
        }
    }

    @Test func droppingTheGroupShutsItDown() async throws {
        try await withWatchdog(seconds: 30) {
            var group: LoopGroup? = try LoopGroup.start(loops: 2)
            let loops = group!.loops
            #expect(await onLoop(loops[1]) { true })
            group = nil
            let allDown = loops.allSatisfy { $0.hasShutDown }
            #expect(allDown)
        }
    }

    @Test func nextIsRoundRobinFromAnyThread() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 3)
            defer { group.shutdown() }
            for round in 0..<9 {
                #expect(group.next() === group.loops[round % 3])
            }
            // From 4 threads at once: every loop is handed out the same number of times.
            let counts = Lock([Int](repeating: 0, count: 3))
            let threads = (0..<4).map { _ in
                spawnThread {
                    for _ in 0..<3_000 {
                        let loop = group.next()
                        let index = group.loops.firstIndex { $0 === loop }!
                        counts.withLock { $0[index] += 1 }
                    }
                }
            }
            for thread in threads { pthread_join(thread, nil) }
            #expect(counts.withLock { $0 } == [4_000, 4_000, 4_000])
        }
    }

    @Test func currentIsTheRunningLoopAndNilElsewhere() async throws {
        try await withWatchdog(seconds: 30) {
            #expect(Loop.current == nil)
            let group = try LoopGroup.start(loops: 2)
            defer { group.shutdown() }
            for loop in group.loops {
                #expect(await onLoop(loop) { Loop.current === loop })
                let inTask = await Task(executorPreference: loop) { Loop.current === loop }.value
                #expect(inTask)
            }
            let onGlobal = await Task.detached { Loop.current == nil }.value
            #expect(onGlobal)
            let spawned = Atomic<Bool>(false)
            pthread_join(spawnThread { spawned.store(Loop.current == nil, ordering: .relaxed) }, nil)
            let spawnedSawNil = spawned.load(ordering: .relaxed)
            #expect(spawnedSawNil)
        }
    }

    @Test func workPinnedToALoopRunsOnThatLoopsThread() async throws {
        try await withWatchdog(seconds: 30) {
            try await withLoopGroup(loops: 3) { group in
                // A task pinned to next().
                for _ in 0..<6 {
                    let loop = group.next()
                    let here = await Task(executorPreference: loop) {
                        loop.isOnLoopThread && Loop.current === loop
                    }.value
                    #expect(here)
                }
                // An actor on a chosen loop.
                let actor = PinnedCounter(loop: group.loops[2])
                for _ in 0..<5 { #expect(await actor.record()) }
                // execute from each loop onto each other loop runs on the target.
                for source in group.loops {
                    for target in group.loops where target !== source {
                        let ranOnTarget = await withCheckedContinuation { continuation in
                            source.execute {
                                target.execute {
                                    continuation.resume(returning: target.isOnLoopThread && !source.isOnLoopThread && Loop.current === target)
                                }
                            }
                        }
                        #expect(ranOnTarget)
                    }
                }
            }
        }
    }

    @Test func shardByKeyIsStableAndSpreadsKeysOverEveryLoop() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 4)
            defer { group.shutdown() }
            let chosen = group.loop(forKey: "user-42")
            for _ in 0..<10_000 { #expect(group.loop(forKey: "user-42") === chosen) }
            for _ in 0..<10_000 { #expect(group.loop(forKey: 1_234_567) === group.loop(forKey: 1_234_567)) }
            // Stable across runs and builds, not only within the process: the hash is FNV-1a over
            // the bytes, not Hasher (seeded per process). Pinned values.
            #expect(LoopGroup.shardHash(of: "") == FNV1a().mixed)
            #expect(LoopGroup.shardHash(of: "user-42") == LoopGroup.shardHash(of: Substring("user-42")))
            #expect(LoopGroup.shardHash(of: 7 as Int) == LoopGroup.shardHash(of: 7 as UInt8))
            // 1,000 distinct keys, strings and then integers: 250 per loop expected, binomial
            // standard deviation ~13.7; every loop must get between 175 and 325 (5.5 sigma).
            for keys in [(0..<1_000).map { AnyHashable("key-\($0)") }, (0..<1_000).map { AnyHashable($0) }] {
                var perLoop = [Int](repeating: 0, count: 4)
                for key in keys {
                    let loop = key.base is String ? group.loop(forKey: key.base as! String) : group.loop(forKey: key.base as! Int)
                    perLoop[group.loops.firstIndex { $0 === loop }!] += 1
                }
                print("shard spread of 1,000 \(keys[0].base is String ? "string" : "integer") keys over 4 loops: \(perLoop)")
                #expect(perLoop.allSatisfy { (175...325).contains($0) }, "spread \(perLoop)")
            }
        }
    }

    @Test func shardHashIsPinnedAcrossRuns() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; the splitmix64 finaliser is applied on top.
        var fnv = FNV1a()
        fnv.add(UInt8(ascii: "a"))
        var z: UInt64 = 0xaf63_dc4c_8601_ec8c
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        z = z ^ (z >> 31)
        #expect(fnv.mixed == z)
        #expect(LoopGroup.shardHash(of: "a") == z)
    }

    @Test func withLoopGroupShutsTheGroupDownAfterTheBodyAlsoWhenItThrows() async throws {
        struct Boom: Error {}
        try await withWatchdog(seconds: 30) {
            let kept = Lock<LoopGroup?>(nil)
            let value = try await withLoopGroup(loops: 2) { group in
                kept.withLock { $0 = group }
                return group.loops.count
            }
            #expect(value == 2)
            let firstDown = kept.withLock { $0! }.loops.allSatisfy { $0.hasShutDown }
            #expect(firstDown)
            await #expect(throws: Boom.self) {
                try await withLoopGroup(loops: 2) { group in
                    kept.withLock { $0 = group }
                    throw Boom()
                }
            }
            let allDown = kept.withLock { $0! }.loops.allSatisfy { $0.hasShutDown }
            #expect(allDown)
        }
    }

    @Test func shutdownOnAGroupLoopTrapsWithAMessage() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let group = try LoopGroup.start(loops: 2)
            let done = Latch<Void>()
            group.loops[1].execute {
                group.shutdown()
                done.fulfil(())
            }
            done.wait()
        }
        let stderrText = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(stderrText.contains("LoopGroup.shutdown() called on one of the group's own loops"), "\(stderrText)")
    }

    @Test func shutdownWithWorkInFlightOnEveryLoopResumesEveryWait() async throws {
        try await withWatchdog(seconds: 60) {
            let loopCount = 3, executesPerLoop = 500
            let group = try LoopGroup.start(loops: loopCount)
            let pairs = (0..<loopCount).map { _ in makeSocketPair() }
            // On every loop: a task of the loop sleeping an hour, one waiting for a socket that
            // never becomes readable, and two foreign waits (tasks on the global executor) on the same.
            var pinned: [Task<(any Error)?, Never>] = []
            var foreign: [Task<(any Error)?, Never>] = []
            for (index, loop) in group.loops.enumerated() {
                let fd = pairs[index].0
                pinned.append(Task(executorPreference: loop) {
                    do { try await loop.sleep(for: .seconds(3600)); return nil } catch { return error }
                })
                pinned.append(Task(executorPreference: loop) {
                    do { try await loop.readable(fd); return nil } catch { return error }
                })
                foreign.append(Task.detached {
                    do { try await loop.sleep(for: .seconds(3600)); return nil } catch { return error }
                })
                foreign.append(Task.detached {
                    do { try await loop.readable(fd); return nil } catch { return error }
                })
            }
            // Every wait is registered before shutdown begins.
            for loop in group.loops {
                await whenOnLoop(loop) {
                    let left = loop.leftovers()
                    return left.sleeps.count == 2 && left.descriptorWaits.first.map { $0.readers } == 2
                }
            }
            // Queued executes: each loop is held by a gate while they pile up in its inbox, and is
            // asked to stop before the gate opens, so they are still queued when its run ends.
            let ran = Atomic<Int>(0)
            let gates = group.loops.map { _ in Latch<Void>() }
            let held = group.loops.map { _ in Latch<Void>() }
            for (index, loop) in group.loops.enumerated() {
                loop.execute {
                    held[index].fulfil(())
                    gates[index].wait()
                }
                held[index].wait()
                for _ in 0..<executesPerLoop { loop.execute { ran.add(1, ordering: .relaxed) } }
                loop.stop()
            }
            let shutDown = Latch<Void>()
            pthread_detach(spawnThread {
                group.shutdown()
                shutDown.fulfil(())
            })
            for gate in gates { gate.fulfil(()) }
            shutDown.wait()
            let allDown = group.loops.allSatisfy { $0.hasShutDown }
            #expect(allDown)
            print("group shutdown: \(ran.load(ordering: .relaxed)) of \(loopCount * executesPerLoop) queued executes ran")
            #expect(ran.load(ordering: .relaxed) == loopCount * executesPerLoop)
            for task in pinned {
                let error = await task.value
                #expect(error is CancellationError, "a task of the loop is resumed with CancellationError, got \(String(describing: error))")
            }
            for task in foreign {
                let error = await task.value
                #expect((error as? LoopError)?.kind == .shutDown, "a foreign wait is resumed with the shutdown error, got \(String(describing: error))")
            }
            for (a, b) in pairs { close(a); close(b) }
        }
    }

    @Test func groupMetricsAreTheLoopsMetricsAddedUp() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 3)
            for (index, loop) in group.loops.enumerated() {
                for _ in 0..<(10 * (index + 1)) {
                    await onLoop(loop) {}
                }
            }
            // Stop the loops so the counters no longer move, then compare.
            group.shutdown()
            let perLoop = group.loops.map(\.metrics)
            let total = group.metrics
            #expect(perLoop.map(\.callbacks).allSatisfy { $0 >= 10 })
            #expect(total.callbacks == perLoop.map(\.callbacks).reduce(0, +))
            #expect(total.jobs == perLoop.map(\.jobs).reduce(0, +))
            #expect(total.ticks == perLoop.map(\.ticks).reduce(0, +))
            #expect(total.polls == perLoop.map(\.polls).reduce(0, +))
            #expect(total.crossThreadArrivals == perLoop.map(\.crossThreadArrivals).reduce(0, +))
            #expect(total.crossThreadArrivals >= 60)
            #expect(total.readyHighWaterMark == perLoop.map(\.readyHighWaterMark).max())
            #expect(total.pollBlocked.count == perLoop.map(\.pollBlocked.count).reduce(0, +))
            #expect(total.pollBlocked.total == perLoop.map(\.pollBlocked.total).reduce(.zero, +))
            #expect(total.pollBlocked.max == perLoop.map(\.pollBlocked.max).max())
        }
    }
}
