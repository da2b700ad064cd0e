import Testing
@testable import SerialLoop

/// A scheduled callback's handle is its timer slot's ID, which stays live from scheduling until the
/// callback runs or is cancelled — also after its timer fired, while it waits on the ready queue.
/// The hazard: the slot is reused once released; an old handle must never reach the new callback.
@Suite("Scheduled callbacks")
struct ScheduledCallbackTests {
    @Test func aHandleCancelledAfterItsSlotWasReusedDoesNotTouchTheNewCallback() async throws {
        let log = try await withTestLoop { loop in
            let log = LoopBox<[String]>([])
            var victim: ScheduledCallback?
            var reuser: ScheduledCallback?
            loop.schedule(after: .milliseconds(10)) {
                // The victim fired with this callback (same tick) and waits on the ready queue.
                victim?.cancel()
                #expect(victim?.isPending == false)
                // Its slot is free again: the next callback takes it.
                reuser = loop.schedule(after: .milliseconds(5)) { log.value.append("reuser") }
                #expect(reuser?.id.slot == victim?.id.slot, "the released slot was reused")
                victim?.cancel()                                    // stale: must be a no-op
                #expect(reuser?.isPending == true)
                #expect(victim?.isPending == false)
            }
            victim = loop.schedule(after: .milliseconds(10)) { log.value.append("victim") }
            try await loop.sleep(for: .milliseconds(30))
            #expect(reuser?.isPending == false)
            return log.value
        }
        #expect(log == ["reuser"])
    }

    @Test func aCallbackIsPendingUntilItRunsAndNotAfter() async throws {
        let (before, during, after) = try await withTestLoop { loop in
            var handle: ScheduledCallback?
            var during: Bool?
            handle = loop.schedule(after: .seconds(1)) { during = handle?.isPending }
            let before = handle?.isPending
            try await loop.sleep(for: .seconds(2))
            handle?.cancel()                                        // after it ran: a no-op
            return (before, during, handle?.isPending)
        }
        #expect(before == true)
        #expect(during == false, "a running callback is no longer pending")
        #expect(after == false)
    }

    /// Random schedules and cancels, some from callbacks of the same tick, against a model: every
    /// callback runs exactly when it was not cancelled first, and nothing is left behind.
    @Test func randomCancellationsMatchAModel() async throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("scheduled callback model test seed: \(seed)")
        let (ran, expected, left) = try await withTestLoop { loop in
            var random = SplitMix64(seed: seed)
            let ran = LoopBox<Set<Int>>([])
            var cancelled = Set<Int>()
            var handles: [ScheduledCallback] = []
            for index in 0..<2000 {
                let delay = Duration.milliseconds(Int64(random.next() % 50))
                let victim = Int(random.next() % UInt64(index + 1))
                let cancelsAnother = random.next() % 4 == 0
                handles.append(loop.schedule(after: delay) {
                    ran.value.insert(index)
                    if cancelsAnother && handles[victim].isPending {
                        handles[victim].cancel()
                        cancelled.insert(victim)
                    }
                })
                if random.next() % 5 == 0 {
                    let target = Int(random.next() % UInt64(index + 1))
                    if handles[target].isPending { cancelled.insert(target) }
                    handles[target].cancel()
                }
            }
            try await loop.sleep(for: .seconds(1))
            let expected = Set(0..<2000).subtracting(cancelled)
            return (ran.value, expected, loop.pendingTimerCount)
        }
        #expect(ran == expected, "seed \(seed)")
        #expect(left == 0, "seed \(seed)")
    }
}
