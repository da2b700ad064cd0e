import SerialLoop

/// The loop's contract (ordering, timers, cancellation, readiness, futures) holds on both clocks:
/// contract tests take `@Test(arguments: bothClocks)` and run their one definition on a real loop
/// (`withLoop`) and on a test loop (`withTestLoop`). Their durations are milliseconds, so the real
/// run stays short; on the test loop the same code runs in virtual time.
let bothClocks: [Loop.TimeMode] = [.real, .virtual]

func withLoop<T: Sendable>(time: Loop.TimeMode, _ body: sending (Loop) async throws -> T) async throws -> T {
    switch time {
    case .real: try await withLoop(body)
    case .virtual: try await withTestLoop(body)
    }
}

extension Loop {
    /// Lets the work queued so far run: `runUntilIdle()` on a test loop; on a real loop, until a
    /// zero-delay timer fires (a later tick than every job already queued).
    func settle() async {
        if let testLoop = self as? TestLoop { await testLoop.runUntilIdle() } else { await idleTick() }
    }
}
