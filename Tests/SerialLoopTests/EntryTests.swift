import Synchronization
import Testing
@testable import SerialLoop

struct Boom: Error, Equatable {}

@Suite("Entry points and lifecycle")
struct EntryTests {
    @Test func syncWithLoopReturnsTheBodysValue() throws {
        let value = try withLoop { loop in
            try await loop.sleep(for: .milliseconds(1))
            return 42
        }
        #expect(value == 42)
    }

    @Test func syncWithLoopRethrows() {
        #expect(throws: Boom.self) {
            try withLoop { _ in throw Boom() }
        }
    }

    @Test func asyncWithLoopReturnsAndRethrows() async throws {
        #expect(try await withLoop { _ in "value" } == "value")
        await #expect(throws: Boom.self) {
            try await withLoop { _ -> Int in throw Boom() }
        }
    }

    @Test func cancellingTheCallerCancelsTheBody() async throws {
        let outer = Task {
            try await withLoop { loop in
                try await loop.sleep(for: .seconds(3600))
            }
        }
        outer.cancel()
        await #expect(throws: CancellationError.self) { try await outer.value }
    }

    /// Tasks that retry `Task.sleep` after every cancellation keep coming back; shutdown gives up
    /// on them after two rounds that ended nothing, instead of 100 rounds × 1,000 wake-ups.
    @Test func shutdownStopsAtTheFirstRoundsThatEndNothing() throws {
        let loop = try TestLoop()
        final class Counters: Sendable {
            let wakeUpsOnTheLoop = Atomic<Int>(0)
            let started = Atomic<Int>(0)
        }
        let counters = Counters()
        let tasks = 1_000
        for _ in 0..<tasks {
            Task(executorPreference: loop) {
                counters.started.add(1, ordering: .relaxed)
                for _ in 0..<200 {                                // stubborn, but finite
                    try? await Task.sleep(for: .seconds(1))
                    if loop.isOnLoopThread { counters.wakeUpsOnTheLoop.add(1, ordering: .relaxed) }
                }
            }
        }
        let settle = Task(executorPreference: loop) { await Task.yield() }
        try loop.run(until: settle)
        #expect(counters.started.load(ordering: .relaxed) == tasks)
        loop.shutdown()
        let wakeUps = counters.wakeUpsOnTheLoop.load(ordering: .relaxed)
        // Three rounds (the first, one allowed retry, one more that ends nothing), each waking every task.
        #expect(wakeUps <= 3 * tasks, "\(wakeUps) wake-ups on the loop during shutdown")
        #expect(wakeUps >= tasks)
    }

    @Test func runUntilATaskCompletes() throws {
        let loop = try Loop()
        let task = Task(executorPreference: loop) { () async throws -> Int in
            try await loop.sleep(for: .milliseconds(5))
            return 7
        }
        #expect(try loop.run(until: task) == 7)
        let future = loop.makeFuture(of: String.self)
        loop.schedule(after: .milliseconds(1)) { future.succeed("done") }
        #expect(try loop.run(until: future) == "done")
        loop.shutdown()
    }

    @Test func runForeverUntilStop() throws {
        let loop = try Loop()
        var ticks = 0
        loop.schedule(after: .milliseconds(1)) { ticks += 1 }
        loop.schedule(after: .milliseconds(2)) { ticks += 1; loop.stop() }
        loop.schedule(after: .seconds(60)) { ticks += 100 }
        loop.run()
        #expect(ticks == 2)
        // The loop can run again after stop (asyncio allows it too).
        loop.schedule(after: .milliseconds(1)) { loop.stop() }
        loop.run()
        loop.shutdown()
        #expect(ticks == 2)
    }

    @Test func runUntilThrowsWhenStoppedFirst() throws {
        let loop = try Loop()
        let task = Task(executorPreference: loop) { try await loop.sleep(for: .seconds(3600)) }
        loop.schedule(after: .milliseconds(1)) { loop.stop() }
        #expect(throws: LoopError.self) { try loop.run(until: task) }
        loop.shutdown()
    }

    @Test func pendingTasksAreCancelledWhenTheBodyReturns() async throws {
        let outcome = LoopOutcome()
        try await withLoop { loop in
            Task(executorPreference: loop) {
                do {
                    try await loop.sleep(for: .seconds(3600))
                    outcome.set("slept")
                } catch is CancellationError {
                    outcome.set("cancelled")
                } catch {
                    outcome.set("other")
                }
            }
            try await loop.sleep(for: .milliseconds(1))
        }
        #expect(outcome.value == "cancelled")
    }

    @Test func testLoopReportsLeftovers() async throws {
        await #expect(throws: LoopLeftoversError.self) {
            try await withTestLoop { loop in
                Task(executorPreference: loop) { try await loop.sleep(for: .seconds(10)) }
                await loop.runUntilIdle()
            }
        }
    }

    @Test func backgroundLoopThreadRunsWorkAndShutsDownCleanly() async throws {
        let thread = try Loop.startThread()
        let loop = thread.loop
        let value = try await Task(executorPreference: loop) { () async throws -> Bool in
            try await loop.sleep(for: .milliseconds(1))
            return loop.isOnLoopThread
        }.value
        #expect(value)
        thread.shutdown()
        thread.shutdown()   // idempotent
    }
}

/// Written from the loop thread, read after the loop ended.
final class LoopOutcome: @unchecked Sendable {
    private(set) var value: String?
    func set(_ value: String) { self.value = value }
}
