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

    /// `saturatingNanoseconds` has a fast path (a shift and a 64-bit division) for non-negative
    /// durations under ~4,700 s: it must agree with the definition through `components` everywhere,
    /// at the boundary of the fast path and far beyond it.
    @Test func saturatingNanosecondsAgreesWithComponentsOnEitherSideOfTheFastPath() {
        func reference(_ duration: Duration) -> Int64 {
            let (seconds, attoseconds) = duration.components
            let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
            if overflow { return seconds < 0 ? .min : .max }
            let (sum, overflow2) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
            if overflow2 { return seconds < 0 ? .min : .max }
            return sum
        }
        let boundary = Int128(Int64.max) << 9
        var fixed: [Int128] = [0, 1, 511, 512, 999_999_999, 1_000_000_000, 1_000_000_001, boundary - 1, boundary, boundary + 1,
                               boundary + 512, Int128(Int64.max) * 1_000_000_000, Int128(Int64.max) * 1_000_000_000 + 999_999_999]
        fixed += fixed.map { -$0 }
        var random = SplitMix64(seed: 0x5EED_0009)
        print("saturatingNanoseconds: seed 0x5EED0009")
        for _ in 0..<20_000 {
            let magnitude = Int128(random.next() >> (random.next() % 64)) * Int128(random.next() % 2_000_000_000_000)
            fixed.append(random.next() % 2 == 0 ? magnitude : -magnitude)
        }
        for attoseconds in fixed {
            let duration = Duration(attoseconds: attoseconds)
            #expect(duration.saturatingNanoseconds == reference(duration), "\(attoseconds) as")
        }
        #expect(Duration.seconds(3600).saturatingNanoseconds == 3_600_000_000_000)
        #expect(Duration.seconds(Int64.max).saturatingNanoseconds == .max)
        #expect(Duration.seconds(Int64.min).saturatingNanoseconds == .min)
    }
}
