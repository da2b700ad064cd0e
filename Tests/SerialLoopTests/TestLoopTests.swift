@preconcurrency import Glibc
import Testing
@testable import SerialLoop

/// The test loop's clock rules beyond the basics in VirtualTimeTests: every kind of sleep, dead
/// `Task.sleep`s, time holds, cross-thread quiet periods, leftovers and stalls.
@Suite("Test loop: clock rules")
struct TestLoopClockRuleTests {
    @Test(.disabled(if: underSanitizer, "real-time bounds do not hold under a sanitizer's slowdown"))
    func everyKindOfSleepObeysVirtualTime() async throws {
        let wallStart = ContinuousClock.now
        let (stamps, total) = try await withTestLoop { loop in
            let start = loop.now
            var stamps: [Duration] = []
            func stamp() { stamps.append(start.duration(to: loop.now)) }
            try await loop.sleep(for: .seconds(600)); stamp()
            try await loop.clock.sleep(for: .seconds(600)); stamp()
            try await Task.sleep(for: .seconds(600)); stamp()
            try await Task.sleep(for: .seconds(600), clock: .suspending); stamp()
            try await ContinuousClock().sleep(for: .seconds(600)); stamp()
            try await Task.sleep(nanoseconds: 600_000_000_000); stamp()
            return (stamps, start.duration(to: loop.now))
        }
        let wall = wallStart.duration(to: .now)
        print("six 10-minute sleeps of six kinds took \(wall) of wall time")
        #expect(stamps == (1...6).map { .seconds(600 * $0) })
        #expect(total == .seconds(3600))
        #expect(wall < .seconds(30), "the sleeps were real, not virtual")   // an hour if real; see anHourOfTaskSleepTakesMicroseconds
    }

    @Test func cancellingATaskSleepDoesNotMoveTheClockToItsDeadline() async throws {
        // The runtime leaves a cancelled Task.sleep's wake-up job in the loop's timer queue. With
        // nothing else scheduled, an auto-advancing loop must not jump to that dead deadline while
        // the body waits for another thread.
        let (afterCancel, afterForeignWork, afterSleep) = try await withTestLoop { loop in
            let start = loop.now
            let sleeper = Task(executorPreference: loop) { try await Task.sleep(for: .seconds(3600)) }
            await loop.runUntilIdle()
            sleeper.cancel()
            #expect(await sleeper.result.failure() is CancellationError)
            let afterCancel = start.duration(to: loop.now)
            await answerFromAnotherThreadWatchingTheClock(of: loop)
            let afterForeignWork = start.duration(to: loop.now)
            try await Task.sleep(for: .seconds(2))
            return (afterCancel, afterForeignWork, start.duration(to: loop.now))
        }
        #expect(afterCancel == .zero)
        #expect(afterForeignWork == .zero, "the clock jumped to a cancelled Task.sleep's deadline")
        #expect(afterSleep == .seconds(2))
    }

    @Test func cancelledTaskSleepsInATimeoutLoopNeverSetTheClock() async throws {
        // The classic timeout race, 50 times: the work (1 s) wins, the 30.3 s Task.sleep timeout is
        // cancelled, leaving dead wake-up jobs at 30.3 s, 31.3 s, … 79.3 s. Then the body waits for
        // another thread: the clock must stay at exactly 50 s, not jump to 50.3 s.
        let (elapsed, afterForeignWork) = try await withTestLoop { loop in
            let start = loop.now
            for _ in 0..<50 {
                let value = try await withThrowingTaskGroup(of: Int?.self) { group in
                    group.addTask { try await Task.sleep(for: .milliseconds(30_300)); return nil }
                    group.addTask { try await Task.sleep(for: .seconds(1)); return 1 }
                    let first = try await group.next()!
                    group.cancelAll()
                    return first
                }
                #expect(value == 1)
            }
            await loop.runUntilIdle()                             // the group's last jobs ran
            let elapsed = start.duration(to: loop.now)
            await answerFromAnotherThreadWatchingTheClock(of: loop)
            return (elapsed, start.duration(to: loop.now))
        }
        #expect(elapsed == .seconds(50))
        #expect(afterForeignWork == .seconds(50))
    }

    @Test func advanceStepsOverCancelledTaskSleeps() async throws {
        let fired = try await withTestLoop { loop in
            loop.autoAdvancesTime = false
            let fired = LoopBox<[Duration]>([])
            let start = loop.now
            let sleeper = Task(executorPreference: loop) { try await Task.sleep(for: .seconds(1)) }
            await loop.runUntilIdle()
            sleeper.cancel()
            _ = await sleeper.result
            loop.schedule(after: .seconds(2)) { fired.value.append(start.duration(to: loop.now)) }
            await loop.advance(by: .seconds(3))
            #expect(loop.pendingTimerCount == 0, "the dead sleep's job ran once the clock passed it")
            return fired.value
        }
        #expect(fired == [.seconds(2)])
    }

    @Test func aTimeHoldKeepsTheClockStillWhileOffLoopWorkRuns() async throws {
        // A helper thread (standing for Dispatch, a C library, another process) takes 30 ms of
        // real time to answer. The heuristics are off (quiet period zero): only the hold stops the
        // 5 s virtual timeout from firing while the helper works.
        let (answer, elapsed) = try await withTestLoop { loop in
            loop.ioQuietPeriod = .zero
            let start = loop.now
            let answer = try await loop.holdingTime {
                try await withThrowingTaskGroup(of: String?.self) { group in
                    group.addTask { try await Task.sleep(for: .seconds(5)); return nil }
                    group.addTask {
                        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
                            let thread = spawnThread {
                                usleep(30_000)                       // the helper works
                                continuation.resume(returning: "answer")
                            }
                            pthread_detach(thread)
                        }
                    }
                    let first = try await group.next()!
                    group.cancelAll()
                    return first
                }
            }
            #expect(!loop.isTimeHeld)
            return (answer, start.duration(to: loop.now))
        }
        #expect(answer == "answer")
        #expect(elapsed == .zero)
    }

    @Test func timeHoldsNestAndReleaseFromAnyThread() async throws {
        try await withTestLoop { loop in
            let outer = loop.holdTime()
            let inner = loop.holdTime()
            #expect(loop.isTimeHeld)
            inner.release()
            inner.release()                                       // idempotent
            #expect(loop.isTimeHeld)
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let thread = spawnThread {
                    outer.release()
                    continuation.resume()
                }
                pthread_detach(thread)
            }
            await loop.runUntilIdle()
            #expect(!loop.isTimeHeld)
        }
    }

    @Test func advanceMovesTimeEvenWhileHeld() async throws {
        let elapsed = try await withTestLoop { loop in
            let start = loop.now
            return await loop.holdingTime {
                await loop.advance(by: .seconds(10))
                return start.duration(to: loop.now)
            }
        }
        #expect(elapsed == .seconds(10))
    }

    @Test func aTimeHoldCoversACrossThreadProducer() async throws {
        // A helper thread sends five messages 10 ms apart into the loop (`execute`, no descriptor
        // involved). Arrivals from other threads do not hold time by themselves; the test says it
        // waits for the producer by holding time, so the 5 s virtual timeout cannot fire while the
        // messages keep coming.
        let (received, elapsed) = try await withTestLoop { loop in
            loop.ioQuietPeriod = .zero
            let received = LoopBox<[Int]>([])
            let first = loop.makeFuture(of: Void.self)
            let all = loop.makeFuture(of: Void.self)
            let start = loop.now
            let complete = try await loop.holdingTime {
                let thread = spawnThread {
                    for message in 0..<5 {
                        if message > 0 { usleep(10_000) }                 // the producer works
                        loop.execute {
                            received.value.append(message)
                            if message == 0 { first.succeed(()) }
                            if message == 4 { all.succeed(()) }
                        }
                    }
                }
                pthread_detach(thread)
                try await first.value
                return try await withThrowingTaskGroup(of: Bool.self) { group in
                    group.addTask { try await Task.sleep(for: .seconds(5)); return false }
                    group.addTask { try await all.value; return true }
                    let first = try await group.next()!
                    group.cancelAll()
                    return first
                }
            }
            #expect(complete)
            return (received.value, start.duration(to: loop.now))
        }
        #expect(received == [0, 1, 2, 3, 4])
        #expect(elapsed == .zero)
    }

    @Test func aHeldClockThatNobodyReleasesIsReportedAsAStall() async throws {
        do {
            try await withTestLoop { loop in
                loop.stallTimeout = .milliseconds(50)
                _ = loop.holdTime()
                try await loop.sleep(for: .seconds(1))
            }
            Issue.record("expected a stall error")
        } catch let error as LoopError {
            #expect(error.reason.contains("the test loop stalled"))
            #expect(error.reason.contains("time is held by 1 TimeHold(s)"))
            #expect(error.reason.contains("1 loop.sleep(s) waking at 1.0 seconds"))
        }
    }

    @Test func leftoverSleepsAndCallbacksAreReportedWithTheirDeadlines() async throws {
        do {
            try await withTestLoop { loop in
                Task(executorPreference: loop) { try await loop.sleep(for: .seconds(90)) }
                Task(executorPreference: loop) { try await loop.clock.sleep(for: .seconds(5)) }
                loop.schedule(after: .seconds(7)) {}
                await loop.runUntilIdle()
            }
            Issue.record("expected LoopLeftoversError")
        } catch let error as LoopLeftoversError {
            #expect(error.leftovers.sleeps.sorted() == [.init(nanosecondsSinceOrigin: 5_000_000_000), .init(nanosecondsSinceOrigin: 90_000_000_000)])
            #expect(error.leftovers.scheduledCallbacks == [.init(nanosecondsSinceOrigin: 7_000_000_000)])
            #expect(error.description.contains("2 loop.sleep(s) waking at 5.0 seconds, 90.0 seconds"))
            #expect(error.description.contains("1 scheduled callback(s) due at 7.0 seconds"))
        }
    }

    @Test func aBodyErrorWinsOverLeftovers() async throws {
        struct BodyFailure: Error {}
        await #expect(throws: BodyFailure.self) {
            try await withTestLoop { loop in
                Task(executorPreference: loop) { try await loop.sleep(for: .seconds(90)) }
                await loop.runUntilIdle()
                throw BodyFailure()
            }
        }
    }

    @Test func aCleanTestLoopReportsNoLeftovers() async throws {
        let value = try await withTestLoop { loop in
            let sleeper = Task(executorPreference: loop) { try await Task.sleep(for: .seconds(90)) }
            let timer = loop.schedule(after: .seconds(7)) {}
            await loop.runUntilIdle()
            sleeper.cancel()
            timer.cancel()
            _ = await sleeper.result
            return 7
        }
        #expect(value == 7)
    }
}

/// Suspends until a helper thread answers. The helper first watches the loop's clock for up to
/// 100 ms of real time and answers as soon as it moves: a loop that wrongly jumps while the body
/// waits is caught every time, a correct one costs the full 100 ms.
private func answerFromAnotherThreadWatchingTheClock(of loop: Loop) async {
    let before = loop.now
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let thread = spawnThread {
            for _ in 0..<100 where loop.now == before { usleep(1_000) }
            continuation.resume()
        }
        pthread_detach(thread)
    }
}

@Suite("Test loop: Task.sleep durations")
struct TaskSleepDurationTests {
    /// Spins for `duration` of real time (work the job does before it sleeps). On the loop's
    /// thread `ContinuousClock.now` is virtual, and would never get there.
    private func spin(for duration: Duration) {
        let end = realNanoseconds() + duration.saturatingNanoseconds
        while realNanoseconds() < end {}
    }

    @Test func aTaskSleepAfterCPUWorkInTheSameJobKeepsItsDuration() async throws {
        let elapsed = try await withTestLoop { loop in
            var elapsed: [Duration] = []
            for requested in [17, 893, 5] {
                let start = loop.now
                spin(for: .milliseconds(5))
                try await Task.sleep(for: .milliseconds(requested))
                elapsed.append(start.duration(to: loop.now))
            }
            return elapsed
        }
        #expect(elapsed == [.milliseconds(17), .milliseconds(893), .milliseconds(5)])
    }

    @Test func aTaskSleepAfterTheThreadWasOffTheCPUKeepsItsDuration() async throws {
        // Blocking (or being preempted) before the sleep must not lengthen it.
        let elapsed = try await withTestLoop { loop in
            var elapsed: [Duration] = []
            for requested in [17, 250, 3] {
                let start = loop.now
                usleep(3_333)                                      // off the CPU before the sleep
                try await Task.sleep(for: .milliseconds(requested))
                elapsed.append(start.duration(to: loop.now))
            }
            return elapsed
        }
        #expect(elapsed == [.milliseconds(17), .milliseconds(250), .milliseconds(3)])
    }

}

/// Virtual time belongs to `TestLoop`, the loop type that has the test-only controls: every entry
/// point that asks for virtual time hands one out, every real one a plain `Loop`. (That a real loop
/// has no controls is checked by the compiler: `Loop().advance(by:)` does not compile.)
@Suite("Test loop: the type that owns virtual time")
struct TestLoopTypeTests {
    @Test func virtualTimeComesOnlyWithATestLoop() async throws {
        let real = try Loop()
        #expect(!(real is TestLoop) && real.timeMode == .real && real.time.virtual == nil)
        real.shutdown()
        let test = try TestLoop()
        #expect(test.timeMode == .virtual && test.time.virtual != nil)
        test.shutdown()
        for time in [Loop.TimeMode.real, .virtual] {
            let thread = try Loop.startThread(time: time)
            #expect((thread.loop is TestLoop) == (time == .virtual) && thread.loop.timeMode == time)
            thread.shutdown()
        }
        let fromWithLoop = try await withLoop { loop in loop is TestLoop }
        #expect(!fromWithLoop)
        let fromWithTestLoop = try await withTestLoop { loop in loop.timeMode }
        #expect(fromWithTestLoop == .virtual)
    }

    /// The controls work from a `Loop`-typed reference once it is known to be a test loop, and
    /// the settings are the loop's own: changing them on one test loop leaves another's alone.
    @Test func controlsAreReachableThroughADowncastAndBelongToTheirLoop() async throws {
        let (elapsed, otherDefaults) = try await withTestLoop { test in
            let loop: Loop = test
            let again = try #require(loop as? TestLoop)
            again.autoAdvancesTime = false
            again.ioQuietPeriod = .zero
            let start = again.now
            let sleeper = Task(executorPreference: again) { try await again.sleep(for: .seconds(2)) }
            await again.advance(by: .seconds(2))
            try await sleeper.value
            let other = try await withTestLoop { other in (other.autoAdvancesTime, other.ioQuietPeriod, other.stallTimeout) }
            return (start.duration(to: again.now), other)
        }
        #expect(elapsed == .seconds(2))
        #expect(otherDefaults == (true, .milliseconds(250), .seconds(30)))
    }
}
