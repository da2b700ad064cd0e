@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop

/// Returns once `condition` holds on `loop`'s thread: re-checks it as a callback behind the loop's
/// other work (no sleep).
private func whenOnLoop(_ loop: Loop, _ condition: @escaping @Sendable () -> Bool) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        @Sendable func check() {
            if condition() { continuation.resume() } else { loop.execute(check) }
        }
        loop.execute(check)
    }
}

/// Counts the callbacks its loop runs, and whether every hook ran on the loop it was made for.
private final class CallbackCounter: LoopInstrument, @unchecked Sendable {
    // Unchecked Sendable: the counters are written on the instrument's loop only, and read by the
    // test after a round trip through that loop (or after the group shut down).
    let index: Int
    unowned let loop: Loop
    var callbacks = 0
    var hooksOffItsLoop = 0
    init(index: Int, loop: Loop) {
        self.index = index
        self.loop = loop
    }
    func jobWillRun(_ job: LoopJobKind) {
        if Loop.current !== loop { hooksOffItsLoop += 1 }
        if job == .callback { callbacks += 1 }
    }
    func tickWillStart() {
        if Loop.current !== loop { hooksOffItsLoop += 1 }
    }
}

@Suite("Loop groups: observability")
struct LoopGroupObservationTests {
    /// Different work on each loop: the group's pendingWork shows each loop's and the sums, from
    /// outside the group and from a task on one of its loops.
    @Test func pendingWorkPerLoopAndSummed() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 3)
            defer { group.shutdown() }
            let (a, b) = makeSocketPair()
            defer { close(a); close(b) }
            let (l0, l1, l2) = (group.loops[0], group.loops[1], group.loops[2])
            // Loop 0: two sleeps. Loop 1: a read wait and a sleep. Loop 2: two tasks awaiting one future.
            var tasks: [Task<Void, Never>] = []
            for _ in 0..<2 { tasks.append(Task(executorPreference: l0) { try? await l0.sleep(for: .seconds(3600)) }) }
            tasks.append(Task(executorPreference: l1) { try? await l1.readable(a) })
            tasks.append(Task(executorPreference: l1) { try? await l1.sleep(for: .seconds(3600)) })
            let future = l2.makeFuture(of: Int.self)
            for _ in 0..<2 { tasks.append(Task(executorPreference: l2) { _ = try? await future.value }) }
            await whenOnLoop(l0) { l0.leftovers().sleeps.count == 2 }
            await whenOnLoop(l1) { let left = l1.leftovers(); return left.sleeps.count == 1 && left.descriptorWaits.count == 1 }
            await whenOnLoop(l2) { l2.leftovers().futureAwaiters == 2 }

            let work = await group.pendingWork
            print(work)
            #expect(work.loops.map(\.timers.count) == [2, 1, 0])
            #expect(work.loops.map(\.descriptorWaits.count) == [0, 1, 0])
            #expect(work.loops[1].descriptorWaits.first?.fd == a)
            #expect(work.loops.map(\.futureAwaiters) == [0, 0, 2])
            #expect(work.loops.map(\.awaitedFutures) == [0, 0, 1])
            #expect(work.timers == 3 && work.descriptorWaits == 1 && work.futureAwaiters == 2 && work.awaitedFutures == 1)
            #expect(!work.isEmpty)
            #expect(work.description.contains("loop 2: pending work"))
            // The same from a task on loop 1: its own loop answers in place, the others through their inboxes.
            let fromLoop = await Task(executorPreference: l1) { await group.pendingWork }.value
            #expect(fromLoop.loops.map(\.timers.count) == [2, 1, 0])
            #expect(fromLoop.futureAwaiters == 2)

            // The work ends: the group has nothing pending.
            future.succeed(1)
            _ = write(b, "x", 1)
            for task in tasks { task.cancel() }
            for task in tasks { await task.value }
            let after = await group.pendingWork
            #expect(after.isEmpty, "\(after)")
            group.shutdown()
            let down = await group.pendingWork
            #expect(down.isEmpty && down.loops.count == 3)
        }
    }

    /// A factory-made instrument on every loop sees that loop's work, and only that; removal stops it.
    @Test func groupInstrumentSeesEveryLoopEachOnItsOwn() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 3)
            let made = Lock<[CallbackCounter?]>([nil, nil, nil])
            let installed = await group.addInstruments { index, loop in
                let counter = CallbackCounter(index: index, loop: loop)
                made.withLock { $0[index] = counter }
                return counter
            }
            let counters = made.withLock { $0 }.map { $0! }
            // 10 callbacks on loop 0, 30 on loop 2, none on loop 1 (other than the round trips below).
            for (index, count) in [(0, 10), (2, 30)] {
                let loop = group.loops[index]
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    let left = Atomic<Int>(count)
                    for _ in 0..<count {
                        loop.execute { if left.subtract(1, ordering: .relaxed).newValue == 0 { done.resume() } }
                    }
                }
            }
            await group.removeInstruments(installed)
            // After removal, more callbacks are not counted.
            let before = await withCheckedContinuation { done in
                group.loops[2].execute { done.resume(returning: counters[2].callbacks) }
            }
            for _ in 0..<5 { await withCheckedContinuation { done in group.loops[2].execute { done.resume() } } }
            group.shutdown()
            print("group instrument: callbacks per loop \(counters.map(\.callbacks))")
            #expect(counters.map(\.index) == [0, 1, 2])
            #expect(counters[0].callbacks >= 10 && counters[0].callbacks < 30)
            #expect(counters[1].callbacks < 10)
            #expect(counters[2].callbacks >= 30)
            #expect(counters[2].callbacks == before, "no hook after removal")
            #expect(counters.allSatisfy { $0.hooksOffItsLoop == 0 })
        }
    }

    /// On a group that has shut down, both calls skip the loops and return.
    @Test func observationAfterShutdownSkipsTheLoops() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 2)
            group.shutdown()
            let made = Atomic<Int>(0)
            let installed = await group.addInstruments { index, loop in
                made.add(1, ordering: .relaxed)
                return CallbackCounter(index: index, loop: loop)
            }
            await group.removeInstruments(installed)
            let count = made.load(ordering: .relaxed)
            #expect(count == 0)
            #expect(await group.pendingWork.isEmpty)
        }
    }
}
