import Testing
import SerialLoop
import SerialLoopTesting

@Suite("Test loop: the .testLoop trait")
struct TestLoopTraitTests {
    @Test(.testLoop) func theTestBodyRunsOnItsOwnTestLoop() async throws {
        let loop = try #require(TestLoop.current)
        #expect(loop.isOnLoopThread)
        #expect(loop.timeMode == .virtual)
        let start = loop.now
        try await Task.sleep(for: .seconds(3600))
        #expect(start.duration(to: loop.now) == .seconds(3600))
        #expect(loop.isOnLoopThread)
    }

    @Test(.testLoop(autoAdvancesTime: false, ioQuietPeriod: .milliseconds(10), stallTimeout: .seconds(2)))
    func theTraitsSettingsApply() async throws {
        let loop = try #require(TestLoop.current)
        #expect(!loop.autoAdvancesTime)
        #expect(loop.ioQuietPeriod == .milliseconds(10))
        #expect(loop.stallTimeout == .seconds(2))
        let sleeper = Task(executorPreference: loop) { try await Task.sleep(for: .seconds(5)) }
        await loop.advance(by: .seconds(5))
        try await sleeper.value
        #expect(loop.now == LoopClock.Instant(nanosecondsSinceOrigin: 5_000_000_000))
    }

    @Test(.testLoop, arguments: 1...4) func eachTestCaseGetsAFreshLoop(seconds: Int) async throws {
        let loop = try #require(TestLoop.current)
        #expect(loop.now == LoopClock.Instant(nanosecondsSinceOrigin: 0), "a loop was shared between cases")
        try await Task.sleep(for: .seconds(seconds))
        #expect(loop.now == LoopClock.Instant(nanosecondsSinceOrigin: Int64(seconds) * 1_000_000_000))
    }

    @Test func leftoversFailTheTest() async throws {
        // Drive the trait's scope by hand, so the expected failure is observed instead of failing
        // this test.
        let trait: TestLoopTrait = .testLoop
        await #expect(throws: LoopLeftoversError.self) {
            try await trait.provideScope(for: Test.current!, testCase: Test.Case.current) {
                let loop = try #require(TestLoop.current)
                Task(executorPreference: loop) { try await loop.sleep(for: .seconds(30)) }
                await loop.runUntilIdle()
            }
        }
    }

    @Test func outsideTheTraitThereIsNoTestLoop() async throws {
        #expect(TestLoop.current == nil)
        // A test loop's own code sees it through the thread, with or without the trait.
        try await withTestLoop { loop in
            #expect(TestLoop.current === loop)
            #expect(Loop.current === loop)
        }
        #expect(TestLoop.current == nil)
    }

    @Test(.testLoop) func offTheLoopTheTraitsLoopIsStillCurrent() async throws {
        let loop = try #require(TestLoop.current)
        // The test's own task, run off the loop: no loop on the thread, the trait's loop still.
        let (testLoop, anyLoop) = await withTaskExecutorPreference(globalConcurrentExecutor) {
            (TestLoop.current, Loop.current)
        }
        #expect(testLoop === loop)
        #expect(anyLoop == nil)
        // A detached task created on the loop is escaping work the test loop captures: it runs
        // on the loop and sees it. Created off the loop it runs on the global executor and,
        // without the test's task-locals, sees no test loop.
        #expect(await Task.detached { TestLoop.current }.value === loop)
        let offLoopDetached = await withTaskExecutorPreference(globalConcurrentExecutor) {
            await Task.detached { TestLoop.current }.value
        }
        #expect(offLoopDetached == nil)
    }
}

/// The trait on a suite: every test in it runs on its own loop.
@Suite("Test loop: the .testLoop trait on a suite", .testLoop)
struct TestLoopSuiteTraitTests {
    @Test func first() async throws {
        #expect(TestLoop.current?.isOnLoopThread == true)
        #expect(TestLoop.current?.now == LoopClock.Instant(nanosecondsSinceOrigin: 0))
        try await Task.sleep(for: .seconds(10))
    }

    @Test func second() async throws {
        #expect(TestLoop.current?.isOnLoopThread == true)
        #expect(TestLoop.current?.now == LoopClock.Instant(nanosecondsSinceOrigin: 0))
        try await Task.sleep(for: .seconds(20))
    }
}
