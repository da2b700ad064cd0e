import Testing
@testable import SerialLoop

@Suite("Time: sleep, clock, Task.sleep on the loop's timers")
struct TimeTests {
    @Test func sleepNeverReturnsEarly() async throws {
        let elapsed = try await withLoop { loop in
            var shortest = Duration.seconds(1)
            for _ in 0..<20 {
                let start = ContinuousClock.now
                try await loop.sleep(for: .milliseconds(2))
                shortest = min(shortest, start.duration(to: .now))
            }
            return shortest
        }
        #expect(elapsed >= .milliseconds(2))
    }

    @Test func scheduledCallbacksNeverFireEarly() async throws {
        let lateness = try await withLoop { loop in
            let future = loop.makeFuture(of: [Duration].self)
            let log = LoopBox<[Duration]>([])
            for i in 1...20 {
                let requested = Duration.microseconds(i * 300)
                let start = loop.now
                loop.schedule(after: requested) {
                    log.value.append(start.duration(to: loop.now) - requested)
                    if log.value.count == 20 { future.succeed(log.value) }
                }
            }
            return try await future.value
        }
        #expect(lateness.allSatisfy { $0 >= .zero })
    }

    @Test func taskSleepLandsOnTheLoopsTimers() async throws {
        let (pending, deadline, start) = try await withTestLoop { loop in
            let sleeper = Task(executorPreference: loop) { try await Task.sleep(for: .seconds(100)) }
            await loop.runUntilIdle()
            let observed = (loop.pendingTimerCount, loop.nextDeadline, loop.now)
            try await sleeper.value
            return observed
        }
        #expect(pending == 1)
        #expect(deadline == start.advanced(by: .seconds(100)))
    }

    @Test(arguments: ["continuous", "suspending", "loopClock"])
    func everyClockSleepsOnVirtualTime(clockName: String) async throws {
        let (elapsed, wall) = try await withTestLoop { loop in
            let wallStart = realNanoseconds()                // ContinuousClock.now is virtual here
            let start = loop.now
            switch clockName {
            case "continuous": try await ContinuousClock().sleep(for: .seconds(3600))
            case "suspending": try await SuspendingClock().sleep(for: .seconds(3600))
            default: try await loop.clock.sleep(for: .seconds(3600))
            }
            return (start.duration(to: loop.now), Duration.nanoseconds(realNanoseconds() - wallStart))
        }
        #expect(elapsed == .seconds(3600))
        #expect(wall < .seconds(1))
    }

    @Test(arguments: bothClocks) func cancellingASleepThrowsAtOnceAndRemovesItsTimer(time: Loop.TimeMode) async throws {
        let (outcome, pendingAfter, clockMoved) = try await withLoop(time: time) { loop in
            let start = loop.now
            let sleeper = Task(executorPreference: loop) { try await loop.sleep(for: .seconds(60)) }
            await loop.settle()
            #expect(loop.pendingTimerCount == 1)
            sleeper.cancel()
            let outcome = await sleeper.result
            return (outcome, loop.pendingTimerCount, start.duration(to: loop.now))
        }
        #expect(throws: CancellationError.self) { try outcome.get() }
        #expect(pendingAfter == 0)
        if time == .virtual { #expect(clockMoved == .zero) }
    }

    @Test(arguments: bothClocks) func cancellationBeforeTheSleepStartsThrowsImmediately(time: Loop.TimeMode) async throws {
        let outcome = try await withLoop(time: time) { loop in
            let task = Task(executorPreference: loop) {
                withUnsafeCurrentTask { $0?.cancel() }
                try await loop.sleep(for: .seconds(60))
            }
            return await task.result
        }
        #expect(throws: CancellationError.self) { try outcome.get() }
    }

    @Test func hugeAndNegativeDurationsNeitherTrapNorFireEarly() async throws {
        let result = try await withTestLoop { loop in
            try await loop.sleep(for: .seconds(-5))           // in the past: next tick
            let never = loop.schedule(after: .seconds(Int64.max)) { Issue.record("must not fire") }
            let far = loop.now.advanced(by: .seconds(Int64.max))
            #expect(far.nanosecondsSinceOrigin == Int64.max)
            never.cancel()
            return loop.pendingTimerCount
        }
        #expect(result == 0)
    }

    @Test func loopClockWorksAsAGenericClock() async throws {
        func measure<C: Clock>(_ clock: C, _ body: () async throws -> Void) async rethrows -> C.Duration {
            let start = clock.now
            try await body()
            return start.duration(to: clock.now)
        }
        let elapsed = try await withTestLoop { loop in
            try await measure(loop.clock) { try await Task.sleep(for: .milliseconds(1500), clock: loop.clock) }
        }
        #expect(elapsed == .milliseconds(1500))
    }
}
