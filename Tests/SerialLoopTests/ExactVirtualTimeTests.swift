@preconcurrency import Glibc
import Dispatch
import Synchronization
import Testing
import CSerialLoopShims
import SerialLoopVirtualTime
@testable import SerialLoop

/// Every way a task can sleep on a test loop.
enum SleepKind: String, CaseIterable, Sendable {
    case taskSleepFor, taskSleepNanoseconds, continuousClock, suspendingClock, loopSleep, loopClock

    func sleep(for duration: Duration, on loop: Loop) async throws {
        switch self {
        case .taskSleepFor: try await Task.sleep(for: duration)
        case .taskSleepNanoseconds: try await Task.sleep(nanoseconds: UInt64(duration.saturatingNanoseconds))
        case .continuousClock: try await ContinuousClock().sleep(for: duration)
        case .suspendingClock: try await SuspendingClock().sleep(for: duration)
        case .loopSleep: try await loop.sleep(for: duration)
        case .loopClock: try await loop.clock.sleep(for: duration)
        }
    }
}

/// Virtual time is exact by construction: on a test loop's thread the runtime's clocks read virtual
/// time, so the deadline the runtime computes for a plain `Task.sleep` is already virtual.
@Suite("Test loop: exact virtual time")
struct ExactVirtualTimeTests {
    static let oddDurations: [Duration] = [
        .nanoseconds(1), .microseconds(250), .microseconds(1500), .milliseconds(1) + .nanoseconds(1), .seconds(365 * 86_400),
    ]

    @Test(arguments: SleepKind.allCases, oddDurations)
    func everySleepAdvancesTheClockByExactlyTheRequestedDuration(kind: SleepKind, duration: Duration) async throws {
        let (loopElapsed, continuousElapsed, suspendingElapsed) = try await withTestLoop { loop in
            try await loop.sleep(for: .milliseconds(7))            // not at the origin
            let start = loop.now
            let continuousStart = ContinuousClock.now
            let suspendingStart = SuspendingClock.now
            try await kind.sleep(for: duration, on: loop)
            return (start.duration(to: loop.now), continuousStart.duration(to: .now), suspendingStart.duration(to: .now))
        }
        #expect(loopElapsed == duration)
        #expect(continuousElapsed == duration)
        #expect(suspendingElapsed == duration)
    }

    @Test func aTaskSleepPollingLoopEndsAtExactlyTheRightVirtualTime() async throws {
        let (polls, elapsed, continuousElapsed) = try await withTestLoop { loop in
            let start = loop.now
            let deadline = ContinuousClock.now.advanced(by: .milliseconds(5))
            var polls = 0
            while ContinuousClock.now < deadline {
                try await Task.sleep(for: .microseconds(400))
                polls += 1
            }
            return (polls, start.duration(to: loop.now), (deadline - .milliseconds(5)).duration(to: .now))
        }
        #expect(polls == 13)                                      // 13 × 400 µs = 5.2 ms ≥ 5 ms
        #expect(elapsed == .microseconds(5200))
        #expect(continuousElapsed == .microseconds(5200))
    }

    @Test func theRuntimesClocksReadVirtualTimeOnTheLoopThreadAndRealTimeElsewhere() async throws {
        #expect(c_serial_loop_clock_is_interposed())
        #expect(c_serial_loop_dispatch_reads_real_time())
        let realBefore = ContinuousClock.now
        let dispatchBefore = DispatchTime.now().uptimeNanoseconds
        let (onLoop, offLoop, dispatchOnLoop, uptimeOnLoop, virtualNow) = try await withTestLoop { loop in
            try await loop.sleep(for: .seconds(3600))
            let onLoop = ContinuousClock.now
            let dispatchOnLoop = DispatchTime.now().uptimeNanoseconds
            var spec = timespec()
            clock_gettime(CLOCK_MONOTONIC, &spec)                 // any other caller: virtual
            let uptimeOnLoop = UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
            let offLoop = await withCheckedContinuation { (continuation: CheckedContinuation<ContinuousClock.Instant, Never>) in
                pthread_detach(spawnThread { continuation.resume(returning: ContinuousClock.now) })
            }
            return (onLoop, offLoop, dispatchOnLoop, uptimeOnLoop, loop.now.nanosecondsSinceOrigin)
        }
        let realAfter = ContinuousClock.now
        let dispatchAfter = DispatchTime.now().uptimeNanoseconds
        // Off the loop thread: real time, between the two real readings around the test loop.
        #expect(realBefore <= offLoop && offLoop <= realAfter)
        // On it: the fixed origin (10⁹ s) + virtual time, for anything reading the monotonic
        // clocks through libc...
        let origin = UInt64(c_serial_loop_virtual_clock_origin_seconds) * 1_000_000_000
        #expect(uptimeOnLoop == origin + UInt64(virtualNow))
        // ...except Dispatch, whose timers are real: its deadlines must be too.
        #expect(dispatchBefore <= dispatchOnLoop && dispatchOnLoop <= dispatchAfter)
        #expect(onLoop.duration(to: realAfter) < .zero, "a virtual instant lies ~31 years after any real one")
        // The loop's own clock stays exact and real reads after the loop ended are real again.
        #expect(virtualNow == 3_600_000_000_000)
    }

    @Test func aDispatchTimerSetOnTheLoopThreadFiresOnRealTime() async throws {
        // Dispatch reads real time even on a test loop's thread, so `asyncAfter(.now() + 20 ms)`
        // fires 20 ms of real time later (not ~31 virtual-origin years later). The test waits for
        // it explicitly: a hold, since work from other threads does not hold time.
        let (fired, elapsed) = try await withWatchdog(.seconds(20)) {
            try await withTestLoop { loop in
                let start = loop.now
                let fired = await loop.holdingTime {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) {
                            continuation.resume(returning: true)
                        }
                    }
                }
                return (fired, start.duration(to: loop.now))
            }
        }
        #expect(fired)
        #expect(elapsed == .zero)
    }

    /// The pattern of swift-async-algorithms' `AsyncTimerSequence`: each deadline is the previous one
    /// plus the interval, the first computed from `clock.now`. Written by hand on `ContinuousClock`.
    struct HandWrittenTimerSequence: AsyncSequence {
        let interval: Duration
        struct AsyncIterator: AsyncIteratorProtocol {
            let interval: Duration
            var last: ContinuousClock.Instant?
            mutating func next() async -> ContinuousClock.Instant? {
                let next = (last ?? ContinuousClock.now).advanced(by: interval)
                do { try await ContinuousClock().sleep(until: next) } catch { return nil }
                last = next
                return ContinuousClock.now
            }
        }
        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(interval: interval) }
    }

    @Test func aTimerSequenceBuiltOnContinuousClockNowTicksAtExactMultiples() async throws {
        let (ticks, loopTicks) = try await withTestLoop { loop in
            let origin = ContinuousClock.now
            let loopOrigin = loop.now
            var ticks: [Duration] = []
            var loopTicks: [Duration] = []
            for await instant in HandWrittenTimerSequence(interval: .seconds(3600)).prefix(5) {
                ticks.append(origin.duration(to: instant))
                loopTicks.append(loopOrigin.duration(to: loop.now))
            }
            return (ticks, loopTicks)
        }
        #expect(ticks == (1...5).map { .seconds(3600 * $0) })
        #expect(loopTicks == ticks)
    }

    @Test func anEscapedTaskSleepingAnHourResumesAtExactlyOneVirtualHour() async throws {
        let results = try await withWatchdog(.seconds(20)) {
          try await withTestLoop { loop in
            let start = loop.now
            let escaped = Task { () -> (Duration, Bool) in
                try await Task.sleep(for: .seconds(3600))
                return (start.duration(to: loop.now), loop.isOnLoopThread)
            }
            let detached = Task.detached { () -> (Duration, Bool) in
                try await ContinuousClock().sleep(for: .seconds(5400))
                return (start.duration(to: loop.now), loop.isOnLoopThread)
            }
            // If the watchdog cancels the body, end the escaped tasks too, so the test fails
            // instead of waiting for them.
            return try await withTaskCancellationHandler {
                [try await escaped.value, try await detached.value]
            } onCancel: {
                escaped.cancel()
                detached.cancel()
            }
          }
        }
        #expect(results.map(\.0) == [.seconds(3600), .seconds(5400)])
        #expect(results.map(\.1) == [true, true], "the escaped tasks resumed off the loop")
    }

    @Test func anEscapedTaskStillSleepingWhenTheBodyEndsIsALeftover() async throws {
        do {
            try await withTestLoop { loop in
                Task { try await Task.sleep(for: .seconds(7200)) }
                try await loop.sleep(for: .seconds(1))
            }
            Issue.record("expected LoopLeftoversError")
        } catch let error as LoopLeftoversError {
            #expect(error.leftovers.taskSleeps == [LoopClock.Instant(nanosecondsSinceOrigin: 7_200_000_000_000)])
        }
    }
}

@Suite("Test loop: 'never' deadlines")
struct NeverDeadlineTests {
    @Test func neverSleepsStayPendingNeverMoveTheClockAndAreLeftovers() async throws {
        do {
            try await withTestLoop { loop in
                Task(executorPreference: loop) { try await loop.sleep(for: .seconds(Int64.max)) }
                Task(executorPreference: loop) { try await Task.sleep(for: .seconds(Int64.max)) }
                let start = loop.now
                try await loop.sleep(for: .seconds(1))
                #expect(start.duration(to: loop.now) == .seconds(1))
                await loop.advance(by: .seconds(Int64.max))     // "never": fires nothing, moves nothing
                #expect(start.duration(to: loop.now) == .seconds(1))
                try await Task.sleep(for: .seconds(1))
                #expect(start.duration(to: loop.now) == .seconds(2), "the clock saturated")
                #expect(loop.pendingTimerCount == 2)
            }
            Issue.record("expected LoopLeftoversError")
        } catch let error as LoopLeftoversError {
            #expect(error.leftovers.sleeps == [LoopClock.Instant(nanosecondsSinceOrigin: .max)])
            #expect(error.leftovers.taskSleeps == [LoopClock.Instant(nanosecondsSinceOrigin: .max)])
            #expect(error.description.contains("1 loop.sleep(s) waking at never"))
        }
    }

    @Test func aBodyWaitingOnlyForNeverIsAStallNotAJump() async throws {
        do {
            try await withWatchdog(.seconds(20)) {
                try await withTestLoop { loop in
                    loop.stallTimeout = .milliseconds(100)
                    try await loop.sleep(for: .seconds(Int64.max))
                }
            }
            Issue.record("expected a stall error")
        } catch let error as LoopError {
            #expect(error.reason.contains("the test loop stalled"))
            #expect(error.reason.contains("only 'never' deadlines are pending"))
        }
    }
}

@Suite("Test loop: idle policy")
struct IdlePolicyTests {
    /// A thread that calls `loop.execute` every 50 ms of real time until stopped.
    final class Heartbeat: Sendable {
        private let flag = StopFlag()
        private let thread: UnsafeTransfer<pthread_t>

        init(loop: Loop, onBeat: @escaping @Sendable () -> Void = {}) {
            let stopped = flag
            thread = UnsafeTransfer(spawnThread {
                while !stopped.isSet {
                    loop.execute { onBeat() }
                    usleep(50_000)                                  // the period of the source
                }
            })
        }

        /// Stops the thread and waits for it (blocks for up to one period).
        func stop() {
            flag.set()
            pthread_join(thread.value, nil)
        }
    }

    @Test func aHeartbeatFromAnotherThreadDoesNotFreezeTheClock() async throws {
        let realStart = ContinuousClock.now
        let (elapsed, beatsSeen) = try await withWatchdog(.seconds(20)) {
            try await withTestLoop { loop in
                let seen = LoopBox(0)
                let firstBeat = loop.makeFuture(of: Void.self)
                let heartbeat = Heartbeat(loop: loop) {
                    seen.value += 1
                    if seen.value == 1 { firstBeat.succeed(()) }
                }
                try await firstBeat.value                          // the source is running
                let start = loop.now
                for _ in 0..<60 { try await Task.sleep(for: .seconds(60)) }
                let elapsed = start.duration(to: loop.now)
                heartbeat.stop()
                await loop.runUntilIdle()                          // the last beats ran
                return (elapsed, seen.value)
            }
        }
        print("an hour of virtual sleeps beside a 50 ms heartbeat took \(realStart.duration(to: .now)) of real time")
        #expect(elapsed == .seconds(3600))
        #expect(beatsSeen >= 1)
    }

    @Test func aHeartbeatCannotKeepAStuckTestAliveForever() async throws {
        do {
            try await withWatchdog(.seconds(20)) {
                try await withTestLoop { loop in
                    loop.stallTimeout = .milliseconds(300)
                    let heartbeat = Heartbeat(loop: loop)
                    defer { heartbeat.stop() }
                    let never = loop.makeFuture(of: Void.self)
                    try await never.value
                }
            }
            Issue.record("expected a stall error")
        } catch let error as LoopError {
            #expect(error.reason.contains("the test loop stalled"))
            #expect(error.reason.contains("arrived from other threads"))
        }
    }

    @Test func ioThatNeverGoesQuietIsAStallNamingTheDescriptor() async throws {
        let (readEnd, writeEnd) = makePipe()
        // Closed only after the writer stopped (defers run last-declared first): writing to a
        // pipe whose read end is closed raises SIGPIPE, which ends the test process.
        defer { close(readEnd); close(writeEnd) }
        let stop = StopFlag()
        let writer = spawnThread {
            while !stop.isSet {
                _ = write(writeEnd, "x", 1)
                usleep(5_000)                                       // chatty: every 5 ms
            }
        }
        defer {
            stop.set()
            pthread_join(writer, nil)
        }
        do {
            try await withWatchdog(.seconds(20)) {
                try await withTestLoop { loop in
                    loop.ioQuietPeriod = .milliseconds(100)
                    loop.stallTimeout = .milliseconds(400)
                    try loop.addReader(readEnd) {
                        var buffer = [UInt8](repeating: 0, count: 64)
                        _ = read(readEnd, &buffer, buffer.count)
                    }
                    defer { loop.deregister(readEnd) }
                    try await loop.sleep(for: .seconds(1))          // wants a jump the I/O blocks
                }
            }
            Issue.record("expected a stall error")
        } catch let error as LoopError {
            #expect(error.reason.contains("the test loop stalled"))
            #expect(error.reason.contains("I/O in flight kept virtual time from jumping"))
            #expect(error.reason.contains("fd \(readEnd): a reader callback"))
        }
    }
}

struct WatchdogExpired: Error, CustomStringConvertible {
    let limit: Duration
    var description: String { "the watchdog expired after \(limit) of real time: the test hung" }
}

/// Runs `body`, failing (by a recorded issue and a thrown error, not a hang) if it takes longer
/// than `limit` of real time: the watchdog cancels it, which ends a `withTestLoop` body.
func withWatchdog<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try? await Task.sleep(for: limit)                     // global executor: real time
            return nil
        }
        defer { group.cancelAll() }
        guard case .some(.some(let value)) = try await group.next() else {
            Issue.record("watchdog: the test took longer than \(limit) of real time")
            throw WatchdogExpired(limit: limit)
        }
        return value
    }
}

@Suite("Test loop: one trace under load")
struct DeterminismUnderLoadTests {
    /// 25 tasks × 10 steps, chosen by the seed (the harness: Determinism.swift): every sleep kind
    /// with odd durations (1 ns to ~5 ms, and some of whole hours), yields, escaped `Task {}`s that
    /// sleep, each step logged with the loop's time and `ContinuousClock.now` relative to the start.
    static func trace(seed: UInt64) async throws -> [String] {
        try await Determinism.trace(seed: seed, tasks: 25, steps: 10, setUp: { _ in ContinuousClock.now }) { loop, ledger, origin, step in
            let value = step.value
            let kind = SleepKind.allCases[Int(value % 6)]
            let duration: Duration = value & 0x100 == 0
                ? .nanoseconds(Int64((value >> 16) % 5_000_000) + 1)
                : .seconds(3600 * Int64((value >> 16) % 3))
            switch (value >> 9) % 8 {
            case 0: await Task.yield()
            case 1:
                let escaped = Task { try await kind.sleep(for: duration, on: loop) }
                try await escaped.value
            default: try await kind.sleep(for: duration, on: loop)
            }
            await ledger.record("\(step.tag) \(kind) \(duration) @\(loop.now.nanosecondsSinceOrigin) c\(origin.duration(to: .now))")
        }
    }

    @Test func aSeededScenarioGivesOneTraceFiftyTimesWhileTwoThreadsBurnCPU() async throws {
        let seed = Determinism.seed(for: "DeterminismUnderLoadTests")
        let first = try await Determinism.underCPULoad(burners: 2) {
            try await Determinism.expectReplays(seed: seed, runs: 50, Self.trace)
        }
        #expect(first.count == 250)
    }
}
