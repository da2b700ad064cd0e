// A test target imports this module for the trait; `TestLoop` itself (and `TestLoop.current`,
// which this trait binds) and the rest of the loop's API live in SerialLoop, which comes with it, so
// `import SerialLoopTesting` alone is enough in a test file.
@_exported import SerialLoop
import Testing

/// Runs each test it is applied to on its own test loop (virtual time, see `withTestLoop`):
///
/// ```swift
/// import SerialLoopTesting
///
/// @Test(.testLoop) func retriesWithBackoff() async throws {
///     let loop = try #require(TestLoop.current)
///     let start = loop.now
///     try await fetchWithRetry(attempts: 4, backoff: .seconds(1))   // plain Task.sleep inside
///     #expect(start.duration(to: loop.now) == .seconds(7))
/// }
/// ```
///
/// The test function runs inside the loop's body task, so it and everything it awaits in
/// structured form (nonisolated async functions, `async let`, task groups, actors on the loop)
/// runs on the loop's thread, and `Task.sleep` there is virtual. Each test case gets a fresh loop
/// on a dedicated thread (the async `withTestLoop`): tests stay parallel, and no thread of Swift
/// Testing's small cooperative pool is blocked. Leftovers and stalls fail the test with the
/// loop's error. On a suite, the trait applies to every test in it (one loop per test case).
///
/// A test isolated to a global actor (`@MainActor`) runs its body on that actor, not on the loop;
/// the trait then only provides `TestLoop.current` for explicit use (`Task(executorPreference:)`).
public struct TestLoopTrait: TestTrait, SuiteTrait, TestScoping {
    /// Applied to a suite, each test (case) in it gets its own loop.
    public var isRecursive: Bool { true }

    let autoAdvancesTime: Bool
    let ioQuietPeriod: Duration?
    let stallTimeout: Duration?

    /// No scope for the suite itself: loops are per test case.
    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        testCase == nil ? nil : self
    }

    /// Runs one test case on a new test loop: Swift Testing calls this, not user code. The loop has
    /// the trait's settings and is `TestLoop.current` in the test and the tasks it starts.
    /// - Throws: the test's error; else ``SerialLoop/LoopLeftoversError`` when the test left work
    ///   pending, or the stall's ``SerialLoop/LoopError``.
    public func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        try await withTestLoop { loop in
            loop.autoAdvancesTime = autoAdvancesTime
            if let ioQuietPeriod { loop.ioQuietPeriod = ioQuietPeriod }
            if let stallTimeout { loop.stallTimeout = stallTimeout }
            try await TestLoopOfTest.$loop.withValue(loop) {
                try await function()
            }
        }
    }
}

extension Trait where Self == TestLoopTrait {
    /// Runs the test on its own test loop with the default settings.
    public static var testLoop: Self { testLoop() }

    /// Runs the test on its own test loop.
    /// - Parameters:
    ///   - autoAdvancesTime: `false` to move time only with `advance(by:)` / `advance(to:)`.
    ///   - ioQuietPeriod: real time in-flight I/O must stay quiet before a jump.
    ///   - stallTimeout: real time spent waiting without virtual time moving, after which the
    ///     test fails with a stall.
    public static func testLoop(autoAdvancesTime: Bool = true, ioQuietPeriod: Duration? = nil, stallTimeout: Duration? = nil) -> Self {
        TestLoopTrait(autoAdvancesTime: autoAdvancesTime, ioQuietPeriod: ioQuietPeriod, stallTimeout: stallTimeout)
    }
}
