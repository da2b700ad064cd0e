import ScenarioCheck
import AsyncAlgorithms
import SerialLoop

/// swift-async-algorithms operators driven by `loop.clock`: on a real loop (real time, on the loop
/// thread) and on a test loop (virtual time: exact instants, an hour in milliseconds).
func runAlgorithms() throws {
    print("algorithms: AsyncTimerSequence and debounce(for:clock:) on loop.clock")
    let realStart = ContinuousClock.now

    // 1. Real time: a 20 ms timer sequence, consumed by a task on the loop.
    let (offsets, allOnLoop) = try withLoop { loop in
        var instants: [LoopClock.Instant] = [loop.now]
        var onLoop = true
        for await instant in AsyncTimerSequence(interval: .milliseconds(20), clock: loop.clock).prefix(5) {
            instants.append(instant)
            onLoop = onLoop && loop.isOnLoopThread
        }
        return (instants.dropFirst().map { milliseconds(instants[0].duration(to: $0)) }, onLoop)
    }
    Check.that(offsets.count == 5, "real loop: AsyncTimerSequence(interval: 20 ms, clock: loop.clock).prefix(5) ticked 5 times")
    // The sequence is fixed-rate (each deadline is the previous deadline + 20 ms): tick i is due
    // at start + 20·i, and a timer never fires before its deadline.
    Check.that(offsets.enumerated().allSatisfy { $1 >= 20 * Double($0 + 1) }, "real loop: no tick came early (at \(offsets.map { format($0) }) ms, due at 20, 40, 60, 80, 100)")
    Check.that(allOnLoop, "real loop: the consumer resumed on the loop thread after every tick")

    // 2. Real time: debounce on loop.clock. Bursts 5 ms apart, debounced at 100 ms.
    let debouncedReal = try withLoop { loop in
        let (stream, input) = AsyncStream.makeStream(of: Int.self)
        let producer = Task(executorPreference: loop) {
            for value in 1...3 { input.yield(value); try await loop.sleep(for: .milliseconds(5)) }
            try await loop.sleep(for: .milliseconds(400))
            for value in 4...5 { input.yield(value); try await loop.sleep(for: .milliseconds(5)) }
            try await loop.sleep(for: .milliseconds(400))
            input.finish()
        }
        var values: [Int] = []
        for await value in stream.debounce(for: .milliseconds(100), clock: loop.clock) { values.append(value) }
        try await producer.value
        return values
    }
    Check.that(debouncedReal == [3, 5], "real loop: debounce(for: 100 ms, clock: loop.clock) kept the last of each burst: \(debouncedReal)")

    // 3. Virtual time: an hour of 10-minute ticks, exact instants, no real waiting.
    let virtualStart = ContinuousClock.now
    let ticks = try withTestLoop { loop in
        let origin = loop.now
        var offsets: [Duration] = []
        for await instant in AsyncTimerSequence(interval: .seconds(600), clock: loop.clock).prefix(6) {
            offsets.append(origin.duration(to: instant))
        }
        return offsets
    }
    let virtualElapsed = virtualStart.duration(to: .now)
    Check.that(ticks == (1...6).map { Duration.seconds(600 * $0) }, "test loop: 6 ticks at exactly +10, +20, … +60 virtual minutes: \(ticks.map { "\($0.components.seconds)s" })")
    Check.that(virtualElapsed < .seconds(2), "test loop: an hour of virtual ticks took \(format(milliseconds(virtualElapsed))) ms of real time")

    // 4. Virtual time: debounce's inner tasks and sleeps all on the test loop, exact to the nanosecond.
    let debounced = try withTestLoop { loop in
        let origin = loop.now
        let (stream, input) = AsyncStream.makeStream(of: Int.self)
        let producer = Task(executorPreference: loop) {
            for value in 1...3 { input.yield(value); try await loop.sleep(for: .milliseconds(10)) }   // t = 0, 10, 20
            try await loop.sleep(for: .seconds(1))                                                   // t = 1030
            for value in 4...5 { input.yield(value); try await loop.sleep(for: .milliseconds(10)) }  // t = 1030, 1040
            try await loop.sleep(for: .seconds(1))
            input.finish()
        }
        var values: [(Int, Duration)] = []
        for await value in stream.debounce(for: .milliseconds(300), clock: loop.clock) {
            values.append((value, origin.duration(to: loop.now)))
        }
        try await producer.value
        return values
    }
    let expected: [(Int, Duration)] = [(3, .milliseconds(320)), (5, .milliseconds(1340))]
    Check.that(debounced.map(\.0) == expected.map(\.0) && debounced.map(\.1) == expected.map(\.1),
               "test loop: debounce(for: 300 ms) emitted 3 at exactly 320 ms and 5 at 1340 ms virtual: \(debounced.map { "\($0.0)@\(format(milliseconds($0.1)))ms" })")
    // 5. Virtual time with no loop.clock at all: library code on its default clock
    //    (ContinuousClock), which computes absolute deadlines from `clock.now`. On a test loop's
    //    thread ContinuousClock reads virtual time, so the ticks are exact multiples.
    let continuousTicks = try withTestLoop { loop in
        let origin = loop.now
        var offsets: [Duration] = []
        for await _ in AsyncTimerSequence(interval: .seconds(3600), clock: ContinuousClock()).prefix(5) {
            offsets.append(origin.duration(to: loop.now))
        }
        return offsets
    }
    Check.that(continuousTicks == (1...5).map { Duration.seconds(3600 * $0) }, "test loop: AsyncTimerSequence(interval: 1 h, clock: ContinuousClock()) ticked at exactly +1 … +5 virtual hours: \(continuousTicks.map { "\($0.components.seconds / 3600)h" })")

    // 6. debounce on its default clock, the producer sleeping with plain Task.sleep.
    let debouncedDefault = try withTestLoop { loop in
        let origin = loop.now
        let (stream, input) = AsyncStream.makeStream(of: Int.self)
        let producer = Task(executorPreference: loop) {
            for value in 1...3 { input.yield(value); try await Task.sleep(for: .milliseconds(10)) }
            try await Task.sleep(for: .seconds(1))
            for value in 4...5 { input.yield(value); try await Task.sleep(for: .milliseconds(10)) }
            try await Task.sleep(for: .seconds(1))
            input.finish()
        }
        var values: [(Int, Duration)] = []
        for await value in stream.debounce(for: .milliseconds(300)) {
            values.append((value, origin.duration(to: loop.now)))
        }
        try await producer.value
        return values
    }
    Check.that(debouncedDefault.map(\.0) == expected.map(\.0) && debouncedDefault.map(\.1) == expected.map(\.1),
               "test loop: debounce(for: 300 ms) on its default clock emitted 3 at exactly 320 ms and 5 at 1340 ms virtual: \(debouncedDefault.map { "\($0.0)@\(format(milliseconds($0.1)))ms" })")
    Check.note("whole scenario took \(format(milliseconds(realStart.duration(to: .now)))) ms real time")
}
