@preconcurrency import Glibc
import Foundation
import Testing
import SerialLoop
import SerialLoopTesting

// The caller's task context inside a loop body: task-locals (how Swift code carries logging
// metadata, tracing, dependencies) and Swift Testing's `Test.current` (how an `#expect` finds its
// test). Every entry point must let them in, and tasks made in the body must inherit them.

enum RequestContext {
    @TaskLocal static var id = 0
}

/// What a body saw: directly, in an `async let` child, in a `Task(executorPreference: loop)`, in a
/// plain `Task {}` made in the body, and the name of the current test.
struct SeenContext: Sendable, Equatable {
    var body: Int
    var asyncLet: Int
    var preferringTask: Int
    var plainTask: Int
    var testName: String?

    static func read(on loop: Loop) async -> SeenContext {
        async let child = RequestContext.id
        let preferring = await Task(executorPreference: loop) { RequestContext.id }.value
        let plain = await Task { RequestContext.id }.value
        return SeenContext(body: RequestContext.id, asyncLet: await child, preferringTask: preferring, plainTask: plain, testName: Test.current?.name)
    }

    static func expected(_ id: Int, test: String) -> SeenContext {
        SeenContext(body: id, asyncLet: id, preferringTask: id, plainTask: id, testName: test)
    }
}

@Suite("Task context in loop bodies")
struct TaskContextTests {
    @Test func asyncWithLoop() async throws {
        let seen = try await RequestContext.$id.withValue(7) {
            try await withLoop { loop in await SeenContext.read(on: loop) }
        }
        #expect(seen == .expected(7, test: "asyncWithLoop()"))
    }

    @Test func asyncWithTestLoop() async throws {
        let seen = try await RequestContext.$id.withValue(8) {
            try await withTestLoop { loop in await SeenContext.read(on: loop) }
        }
        #expect(seen == .expected(8, test: "asyncWithTestLoop()"))
    }

    @Test func syncWithLoop() throws {
        let seen = try RequestContext.$id.withValue(9) {
            try withLoop { loop in await SeenContext.read(on: loop) }
        }
        #expect(seen == .expected(9, test: "syncWithLoop()"))
    }

    @Test func syncWithTestLoop() throws {
        let seen = try RequestContext.$id.withValue(10) {
            try withTestLoop { loop in await SeenContext.read(on: loop) }
        }
        #expect(seen == .expected(10, test: "syncWithTestLoop()"))
    }

    @Test(BindsRequestContext(id: 11), .testLoop) func theTestLoopTrait() async throws {
        let loop = try #require(TestLoop.current)
        let seen = await SeenContext.read(on: loop)
        #expect(seen == .expected(11, test: "theTestLoopTrait()"))
        #expect(loop.isOnLoopThread)
    }

    /// The body is the caller's task: cancelling the caller cancels it, with no extra plumbing.
    @Test func cancellingTheCallerCancelsTheBody() async throws {
        let started = AsyncStream<Void>.makeStream()
        let caller = Task {
            try await withLoop { loop in
                started.continuation.yield()
                try await loop.sleep(for: .seconds(3600))
            }
        }
        for await _ in started.stream { break }
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
    }

    /// `Loop.runMain` (the whole program on one loop): task-locals bound around the call reach the
    /// body and the tasks it makes. In a child process, since the install cannot be undone.
    @Test func runMain() async throws {
        let run = try await Fixture(program: "SerialLoopModes", scenario: "run-main-task-locals").run()
        run.expectCleanExit()
        run.expectLines(["body 12, async let 12, preferring task 12, plain task 12"])
    }

    /// A failing `#expect` in a `.testLoop` test is that test's failure, not an issue of «unknown»
    /// test: the test binary runs the fixture below in a child process, as an IDE or CI would.
    @Test func aFailingExpectationInATestLoopFailsItsTest() async throws {
        let binary = try Fixture.locate("SerialLoopPackageTests.xctest")
        let run = await withCheckedContinuation { continuation in
            _ = startDetachedThread {
                continuation.resume(returning: ChildRun.spawn(
                    [binary, "--testing-library", "swift-testing", "--filter", "FailingExpectationFixture"],
                    extraEnvironment: ["SERIAL_LOOP_RUN_FAILING_FIXTURE=1"]))
            }
        }
        let output = run.stdout + run.stderr                      // Swift Testing reports on stderr
        #expect(!run.timedOut)
        #expect(run.exitCode != 0, "the fixture's failures must fail the run")
        #expect(output.contains("Test anExpectationThatFailsInATestLoopBody() recorded an issue"), "output:\n\(output)")
        #expect(output.contains("Test anExpectationThatFailsInATestLoopBody() failed"), "output:\n\(output)")
        #expect(output.contains("Test asyncWithTestLoopBody() recorded an issue"), "output:\n\(output)")
        #expect(output.contains("Test asyncWithTestLoopBody() failed"), "output:\n\(output)")
        #expect(!output.contains("«unknown»"), "output:\n\(output)")
        #expect(!output.contains("passed after"), "no fixture test may pass: output:\n\(output)")
    }
}

/// Fails on purpose; runs only in the child process of `aFailingExpectationInATestLoopFailsItsTest`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["SERIAL_LOOP_RUN_FAILING_FIXTURE"] == "1"))
struct FailingExpectationFixture {
    @Test(.testLoop) func anExpectationThatFailsInATestLoopBody() async throws {
        try await Task.sleep(for: .seconds(60))
        #expect(1 == 2, "deliberate failure in a .testLoop body")
    }

    @Test func asyncWithTestLoopBody() async throws {
        try await withTestLoop { loop in
            try await loop.sleep(for: .seconds(1))
            #expect(1 == 2, "deliberate failure in an async withTestLoop body")
        }
    }
}

/// Binds `RequestContext.id` around a test, as a tracing or dependency trait would.
struct BindsRequestContext: TestTrait, TestScoping {
    let id: Int
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        try await RequestContext.$id.withValue(id) { try await function() }
    }
}
