@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop

@Suite("Cross-thread entry")
struct CrossThreadTests {
    @Test func fourThreadsTimesHundredThousandExecutesNoneLost() async throws {
        let producers = 4, perProducer = 100_000
        let (count, perThreadInOrder) = try await withLoop { loop in
            let total = producers * perProducer
            let done = loop.makeFuture(of: Void.self)
            let counter = LoopBox(0)
            // Each producer's jobs must also arrive in that producer's order.
            let lastSeen = LoopBox([Int](repeating: -1, count: producers))
            let ordered = LoopBox(true)
            let threads = (0..<producers).map { producer in
                spawnThread {
                    for i in 0..<perProducer {
                        loop.execute {
                            if lastSeen.value[producer] != i - 1 { ordered.value = false }
                            lastSeen.value[producer] = i
                            counter.value += 1
                            if counter.value == total { done.succeed(()) }
                        }
                    }
                }
            }
            try await done.value
            for thread in threads { pthread_join(thread, nil) }
            return (counter.value, ordered.value)
        }
        #expect(count == producers * perProducer)
        #expect(perThreadInOrder)
    }

    @Test func stopFromAnotherThreadEndsRun() throws {
        let thread = try Loop.startThread()
        let loop = thread.loop
        let ran = Atomic<Bool>(false)
        let latch = Latch<Bool>()
        loop.execute { ran.store(true, ordering: .relaxed); latch.fulfil(true) }
        #expect(latch.wait())
        thread.shutdown()          // stop() from this thread, then join
        let didRun = ran.load(ordering: .relaxed)
        #expect(didRun)
    }

    @Test func redundantWakeUpsAreCoalesced() {
        let wakes = Atomic<Int>(0)
        let inbox = Inbox(wake: { wakes.add(1, ordering: .relaxed) })
        // Loop busy (not parking): enqueues never write the eventfd.
        for _ in 0..<100 { inbox.push(.callback {}) }
        #expect(wakes.load(ordering: .relaxed) == 0)
        var taken = ReadyQueue(initialCapacity: 64)
        inbox.take(into: &taken)
        #expect(taken.count == 100)
        // Loop parked: the first enqueue wakes it, the next 999 ride on that wake-up.
        #expect(inbox.beginParking())
        for _ in 0..<1000 { inbox.push(.callback {}) }
        #expect(wakes.load(ordering: .relaxed) == 1)
        // After the loop consumed the wake-up and parks again, one more wake-up is sent.
        inbox.endParking()
        inbox.wakeConsumed()
        while !taken.isEmpty { _ = taken.pop() }
        inbox.take(into: &taken)
        #expect(inbox.beginParking())
        inbox.push(.callback {})
        #expect(wakes.load(ordering: .relaxed) == 2)
        // Work that arrived before parking makes the loop skip the block instead.
        inbox.endParking()
        inbox.wakeConsumed()
        #expect(inbox.beginParking() == false)
    }

    /// The inbox's ring buffers trade places on every take (the loop's scratch becomes the inbox's
    /// storage): batches of changing sizes make both rings grow and wrap around, and every item
    /// still comes out once, in push order.
    @Test func inboxTakesAreFIFOAcrossGrowthAndWrapAround() {
        let inbox = Inbox(wake: {})
        var scratch = ReadyQueue(initialCapacity: 64)
        let seen = LoopBox<[Int]>([])
        var next = 0
        for batch in [3, 60, 70, 1, 200, 64, 65, 5, 500, 2] {
            for _ in 0..<batch {
                let value = next
                next += 1
                inbox.push(.callback { seen.value.append(value) })
            }
            inbox.take(into: &scratch)
            #expect(scratch.count == batch)
            while !scratch.isEmpty {
                guard case .callback(let body) = scratch.pop() else {
                    Issue.record("a callback came out as another kind of work")
                    continue
                }
                body()
            }
        }
        #expect(seen.value == Array(0..<next))
        inbox.push(.callback {})
        #expect(inbox.close().count == 1)
        #expect(inbox.push(.callback {}) == false)
    }

    @Test func manyCrossThreadEnqueuesToAParkedLoopAllRun() async throws {
        // Many enqueues while the loop is parked cause far fewer eventfd writes than enqueues.
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let loop = thread.loop
        let done = Latch<Int>()
        let counter = Mutex(0)
        for _ in 0..<10_000 {
            loop.execute {
                let value = counter.withLock { $0 += 1; return $0 }
                if value == 10_000 { done.fulfil(value) }
            }
        }
        #expect(done.wait() == 10_000)
    }
}
