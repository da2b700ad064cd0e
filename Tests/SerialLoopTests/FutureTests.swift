@preconcurrency import Glibc
import Testing
@testable import SerialLoop

@Suite("Futures and gather")
struct FutureTests {
    @Test(arguments: bothClocks) func doneCallbacksRunInRegistrationOrderAfterCompletion(time: Loop.TimeMode) async throws {
        let log = try await withLoop(time: time) { loop in
            let future = loop.makeFuture(of: Int.self)
            let log = LoopBox<[String]>([])
            future.whenComplete { log.value.append("first \(try! $0.get())") }
            future.whenComplete { log.value.append("second \(try! $0.get())") }
            future.succeed(1)
            future.succeed(2)                     // first completion wins
            log.value.append("after succeed")     // callbacks are scheduled, not run inline
            _ = try await future.value
            await loop.idleTick()
            future.whenComplete { log.value.append("late \(try! $0.get())") }
            await loop.idleTick()
            return log.value
        }
        #expect(log == ["after succeed", "first 1", "second 1", "late 1"])
    }

    @Test(arguments: bothClocks) func severalAwaitersAllGetTheValue(time: Loop.TimeMode) async throws {
        let values = try await withLoop(time: time) { loop in
            let future = loop.makeFuture(of: String.self)
            let awaiters = (0..<5).map { _ in Task(executorPreference: loop) { try await future.value } }
            loop.schedule(after: .milliseconds(1)) { future.succeed("v") }
            var values: [String] = []
            for awaiter in awaiters { values.append(try await awaiter.value) }
            return values
        }
        #expect(values == Array(repeating: "v", count: 5))
    }

    @Test(arguments: bothClocks) func failureIsRethrownToAwaiters(time: Loop.TimeMode) async throws {
        await #expect(throws: Boom.self) {
            try await withLoop(time: time) { loop in
                let future = loop.makeFuture(of: Int.self)
                future.fail(Boom())
                return try await future.value
            }
        }
    }

    @Test(arguments: bothClocks) func completingFromAnotherThreadResumesOnTheLoop(time: Loop.TimeMode) async throws {
        let (value, onLoop) = try await withLoop(time: time) { loop in
            let future = loop.makeFuture(of: Int.self)
            let thread = spawnThread { future.succeed(99) }
            let value = try await future.value
            pthread_join(thread, nil)
            return (value, loop.isOnLoopThread)
        }
        #expect(value == 99)
        #expect(onLoop)
    }

    @Test(arguments: bothClocks) func cancellingAnAwaiterLeavesTheFutureUsable(time: Loop.TimeMode) async throws {
        let (outcome, later) = try await withLoop(time: time) { loop in
            let future = loop.makeFuture(of: Int.self)
            let awaiter = Task(executorPreference: loop) { try await future.value }
            await loop.idleTick()
            awaiter.cancel()
            let outcome = await awaiter.result
            future.succeed(5)
            return (outcome, try await future.value)
        }
        #expect(throws: CancellationError.self) { try outcome.get() }
        #expect(later == 5)
    }

    @Test(arguments: bothClocks) func gatherReturnsResultsInInputOrder(time: Loop.TimeMode) async throws {
        let results = try await withLoop(time: time) { loop in
            try await loop.gather((0..<10).map { i in
                { @Sendable in
                    try await Task.sleep(for: .milliseconds(10 - i))  // finish in reverse
                    return i
                }
            })
        }
        #expect(results == Array(0..<10))
    }

    @Test(arguments: bothClocks) func gatherCancelsTheRestOnFirstError(time: Loop.TimeMode) async throws {
        let cancelled = LoopOutcome()
        await #expect(throws: Boom.self) {
            try await withLoop(time: time) { loop in
                _ = try await loop.gather([
                    { @Sendable in try await Task.sleep(for: .milliseconds(1)); throw Boom() },
                    { @Sendable in
                        do { try await loop.sleep(for: .seconds(60)) } catch is CancellationError { cancelled.set("yes") }
                        return ()
                    },
                ])
            }
        }
        #expect(cancelled.value == "yes")
    }

    @Test func gatherStaysLinearAtHundredThousandSleepingMembers() async throws {
        // Task groups turn quadratic when many children finish out of order; gather must not.
        // Reverse-order finishing: member i sleeps (n - i) ms of virtual time.
        let n = 100_000
        let sum = try await withTestLoop { loop in
            let results = try await loop.gather((0..<n).map { i in
                { @Sendable in try await loop.sleep(for: .milliseconds(n - i)); return i }
            })
            return results.reduce(0, +)
        }
        #expect(sum == n * (n - 1) / 2)
    }

    @Test(arguments: bothClocks) func gatherOverFuturesAndTasks(time: Loop.TimeMode) async throws {
        let (fromFutures, fromTasks) = try await withLoop(time: time) { loop in
            let futures = (0..<3).map { _ in loop.makeFuture(of: Int.self) }
            for (i, future) in futures.enumerated().reversed() { future.succeed(i) }
            let tasks = (0..<3).map { i in Task<Int, any Error>(executorPreference: loop) { i * 10 } }
            return (try await loop.gather(futures), try await loop.gather(tasks))
        }
        #expect(fromFutures == [0, 1, 2])
        #expect(fromTasks == [0, 10, 20])
    }
}
