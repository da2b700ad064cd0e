@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop

/// Sized for CI; `SERIALLOOP_STRESS=large swift test --filter Stress` runs the full sizes.
let largeStress = ProcessInfoLite.environment("SERIALLOOP_STRESS") == "large"

enum ProcessInfoLite {
    static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}

@Suite("Stress")
struct StressTests {
    @Test func eightThreadsEnqueueEveryJobRunsExactlyOnce() async throws {
        let threads = 8, perThread = largeStress ? 1_000_000 : 50_000
        let seen = try await withLoop { loop in
            let total = threads * perThread
            let runs = LoopBox([UInt8](repeating: 0, count: total))
            let counter = LoopBox(0)
            let done = loop.makeFuture(of: Void.self)
            let producers = (0..<threads).map { thread in
                spawnThread {
                    for i in 0..<perThread {
                        let id = thread * perThread + i
                        loop.execute {
                            runs.value[id] &+= 1
                            counter.value += 1
                            if counter.value == total { done.succeed(()) }
                        }
                    }
                }
            }
            try await done.value
            for producer in producers { pthread_join(producer, nil) }
            return runs.value
        }
        print("stress: \(threads) threads × \(perThread) cross-thread enqueues; all run exactly once: \(seen.allSatisfy { $0 == 1 })")
        #expect(seen.allSatisfy { $0 == 1 })
    }

    @Test func manyConcurrentSleepersAllWakeAndLeaveNoTimers() async throws {
        let count = largeStress ? 1_000_000 : 100_000
        let (woken, pending) = try await withTestLoop { loop in
            let woken = LoopBox(0)
            let tasks = (0..<count).map { i in
                Task(executorPreference: loop) {
                    try await loop.sleep(for: .milliseconds(i % 997))
                    woken.value += 1
                }
            }
            for task in tasks { try await task.value }
            return (woken.value, loop.pendingTimerCount)
        }
        print("stress: \(count) concurrent sleepers woke: \(woken)")
        #expect(woken == count)
        #expect(pending == 0)
    }

    @Test func manySocketpairsWithWaiters() async throws {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let wanted = largeStress ? 10_000 : 1_000
        // Each pair costs two descriptors; stay well inside the process limit shared with other tests.
        let pairs = min(wanted, Int(limit.rlim_cur) / 4)
        let woken = try await withLoop { loop in
            var sockets: [(Int32, Int32)] = []
            for _ in 0..<pairs { sockets.append(makeSocketPair()) }
            let woken = LoopBox(0)
            let waiters = sockets.map { pair in
                Task(executorPreference: loop) { try await loop.readable(pair.1); woken.value += 1 }
            }
            await loop.idleTick()
            #expect(loop.pendingWaiterCount == pairs)
            for pair in sockets { writeAll(pair.0, "x") }
            for waiter in waiters { try await waiter.value }
            for pair in sockets { try loop.close(pair.0); try loop.close(pair.1) }
            #expect(loop.watchedDescriptorCount == 0)
            return woken.value
        }
        print("stress: \(pairs) socketpairs (fd limit \(limit.rlim_cur)), waiters woken: \(woken)")
        #expect(woken == pairs)
    }

    @Test func cancellingMidSleepAndMidReadableLeavesNothingBehind() async throws {
        let count = largeStress ? 100_000 : 20_000
        let (timers, waiters, cancelled) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let cancelled = LoopBox(0)
            let tasks = (0..<count).map { i in
                Task(executorPreference: loop) {
                    do {
                        if i % 2 == 0 { try await loop.sleep(for: .seconds(3600)) } else { try await loop.readable(b) }
                    } catch is CancellationError {
                        cancelled.value += 1
                    }
                }
            }
            await loop.idleTick()
            #expect(loop.pendingTimerCount == count / 2)
            #expect(loop.pendingWaiterCount == count / 2)
            for task in tasks { task.cancel() }
            for task in tasks { _ = await task.result }
            let result = (loop.pendingTimerCount, loop.pendingWaiterCount, cancelled.value)
            try loop.close(a); try loop.close(b)
            return result
        }
        print("stress: \(count) tasks cancelled mid-sleep/mid-readable: \(cancelled); timers left \(timers), waiters left \(waiters)")
        #expect(cancelled == count)
        #expect(timers == 0)
        #expect(waiters == 0)
    }

    /// The timer queue against a sorted-array model under random schedule, cancel, pop and release:
    /// some fired timers keep their slots held (as scheduled callbacks do), stale IDs must match
    /// nothing, and the queue starts at capacity 1 so its buffers grow (and move) many times.
    @Test func timerQueueMatchesAReferenceModel() {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("timer queue model test seed: \(seed)")
        var random = SplitMix64(seed: seed)
        var queue = TimerQueue(initialCapacity: 1)
        var model: [(deadline: Int64, sequence: Int, id: TimerID)] = []
        var held: [TimerID] = []
        var stale: [TimerID] = []
        func retire(_ id: TimerID) {
            if stale.count < 100 { stale.append(id) } else { stale[Int(random.next() % 100)] = id }
        }
        var sequence = 0
        var now: Int64 = 0
        for step in 0..<(largeStress ? 1_000_000 : 100_000) {
            switch random.next() % 12 {
            case 0...4:
                let deadline = now + Int64(random.next() % 1000)
                let id = queue.schedule(at: deadline, .scheduledCallback {})
                model.append((deadline, sequence, id))
                sequence += 1
            case 5...6:
                guard !model.isEmpty else { continue }
                let victim = model.remove(at: Int(random.next() % UInt64(model.count)))
                let cancelled = queue.cancel(victim.id) != nil
                let cancelledTwice = queue.cancel(victim.id) != nil
                let live = queue.contains(victim.id)
                #expect(cancelled && !cancelledTwice && !live, "seed \(seed)")
                retire(victim.id)
            case 7:
                guard !held.isEmpty else { continue }
                let id = held.remove(at: Int(random.next() % UInt64(held.count)))
                let cancelled = queue.cancel(id) != nil
                let released = queue.releaseHeld(id)
                let releasedTwice = queue.releaseHeld(id)
                let live = queue.contains(id)
                #expect(!cancelled && released && !releasedTwice && !live, "a held timer is released once, not cancelled; seed \(seed)")
                retire(id)
            case 8:
                guard !stale.isEmpty else { continue }
                let id = stale[Int(random.next() % UInt64(stale.count))]
                let matches = queue.cancel(id) != nil || queue.releaseHeld(id) || queue.contains(id)
                #expect(!matches, "a stale ID matches nothing; seed \(seed)")
            default:
                now += Int64(random.next() % 300)
                model.sort { ($0.deadline, $0.sequence) < ($1.deadline, $1.sequence) }
                let hold = random.next() % 2 == 0
                while let (deadline, id, _) = queue.popDue(now: now, holdingSlotIf: { _ in hold }) {
                    let expected = model.removeFirst()
                    #expect(deadline == expected.deadline && id == expected.id, "seed \(seed)")
                    let live = queue.contains(id)
                    #expect(live == hold, "seed \(seed)")
                    if hold { held.append(id) } else { retire(id) }
                }
                #expect(model.first.map { $0.deadline > now } ?? true, "seed \(seed)")
            }
            #expect(queue.count == model.count, "seed \(seed)")
            if step % 1000 == 0 { queue.checkInvariants() }
        }
        for id in held {
            let released = queue.releaseHeld(id)
            #expect(released, "seed \(seed)")
        }
        queue.checkInvariants()
    }
}
