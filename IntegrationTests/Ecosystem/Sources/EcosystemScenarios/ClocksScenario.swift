@preconcurrency import Glibc
import Clocks
import SerialLoop
import Synchronization

/// The code under test: retry with exponential backoff (1, 2, 4, 8 s between attempts), written
/// against `some Clock` — the shape pointfree's swift-clocks asks for (inject the clock).
func retryWithBackoff<C: Clock>(
    clock: C,
    attempts: Int,
    operation: (Int) async -> Bool
) async throws -> (attempt: Int, waited: Duration) where C.Duration == Duration {
    let start = clock.now
    var delay = Duration.seconds(1)
    for attempt in 1...attempts {
        if await operation(attempt) { return (attempt, start.duration(to: clock.now)) }
        if attempt < attempts {
            try await clock.sleep(for: delay)
            delay *= 2
        }
    }
    return (attempts + 1, start.duration(to: clock.now))
}

/// The same code with the clock hard-wired (no injection): `Task.sleep`.
func retryWithBackoffNoInjection(attempts: Int, operation: (Int) async -> Bool) async throws -> Int {
    var delay = Duration.seconds(1)
    for attempt in 1...attempts {
        if await operation(attempt) { return attempt }
        if attempt < attempts {
            try await Task.sleep(for: delay)
            delay *= 2
        }
    }
    return attempts + 1
}

/// swift-clocks' TestClock and SerialLoop's test loop, side by side, on the same code: succeed on
/// the 5th attempt after 1 + 2 + 4 + 8 = 15 s of backoff.
func runClocks() async throws {
    print("clocks: the same `some Clock` retry code under pointfree's TestClock and under withTestLoop")
    let realStart = ContinuousClock.now

    // A. TestClock: inject it, run the code in a task, and drive time from outside.
    let clock = TestClock()
    let attemptsA = Locked(0)
    let task = Task {
        try await retryWithBackoff(clock: clock, attempts: 6) { attempt in
            attemptsA.withLock { $0 = attempt }
            return attempt == 5
        }
    }
    await clock.advance(by: .seconds(1))            // attempt 2
    let afterOne = attemptsA.withLock { $0 }
    await clock.advance(by: .seconds(2))            // attempt 3
    await clock.run()                               // the rest: until no sleeper is left
    let resultA = try await task.value
    // TestClock.advance lets the woken sleeper run by yielding a fixed number of times
    // (`Task.megaYield`), which is not a guarantee under load: noted, not checked.
    Check.note("TestClock: after advance(by: 1 s) the code had made \(afterOne) attempt(s) (2 expected; advance yields, it does not wait)")
    Check.that(resultA.attempt == 5 && resultA.waited == .seconds(15), "TestClock: succeeded on attempt \(resultA.attempt) after \(resultA.waited) of test-clock time (expected 5 after 15 s)")

    // B. withTestLoop: the same function, given the loop's clock; nothing drives time — the loop
    // jumps to the next deadline whenever every task is waiting.
    let resultB = try await withTestLoop { loop in
        try await retryWithBackoff(clock: loop.clock, attempts: 6) { attempt in attempt == 5 }
    }
    Check.that(resultB.attempt == 5 && resultB.waited == .seconds(15), "withTestLoop + loop.clock: attempt \(resultB.attempt) after \(resultB.waited) virtual (expected 5 after 15 s)")

    // C. withTestLoop also makes the standard clocks virtual on its thread: the same function given
    // `ContinuousClock()`, and the version that hard-wires `Task.sleep`, both finish at once.
    let (resultC, loopTimeC) = try await withTestLoop { loop in
        let start = loop.now
        let result = try await retryWithBackoff(clock: ContinuousClock(), attempts: 6) { attempt in attempt == 5 }
        return (result, start.duration(to: loop.now))
    }
    Check.that(resultC.attempt == 5 && loopTimeC == .seconds(15), "withTestLoop + ContinuousClock(): attempt \(resultC.attempt), \(loopTimeC) of loop time (expected 15 s)")
    let (resultD, loopTimeD) = try await withTestLoop { loop in
        let start = loop.now
        let result = try await retryWithBackoffNoInjection(attempts: 6) { attempt in attempt == 5 }
        return (result, start.duration(to: loop.now))
    }
    Check.that(resultD == 5 && loopTimeD == .seconds(15), "withTestLoop + hard-wired Task.sleep (no injection): attempt \(resultD), \(loopTimeD) of loop time")

    let real = realStart.duration(to: .now)
    Check.that(real < .seconds(5), "4 × 15 s of backoff took \(format(milliseconds(real))) ms of real time")
    Check.note("TestClock needs the clock injected and time driven by the test (advance/run); the hard-wired Task.sleep version cannot be tested with it")
    Check.note("withTestLoop needs neither: injected loop.clock, ContinuousClock() and Task.sleep are all virtual on the test loop")
}
