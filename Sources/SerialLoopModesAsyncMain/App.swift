@preconcurrency import Glibc
import SerialLoop
import SerialLoopModeScenarios

// Test fixture: an `@main` type with `static func main() async`, run by
// Tests/SerialLoopTests/ModeTests.swift in a child process. `Loop.runMain` is its first
// statement: the first part of an async main runs synchronously on the main thread.
@main
struct ModesAsyncMain {
    static func main() async throws {
        ModeTrace.start()
        let scenario = CommandLine.arguments.dropFirst().first ?? ""
        if scenario == "after-an-await" {
            // Too late: after its first suspension an async main resumes on Dispatch's main queue,
            // which `dispatch_main()` has handed to a worker thread. runMain must say so.
            await Task.yield()
            _ = try Loop.runMain { _ in 1 }
            ModeTrace.record("runMain after an await", "returned (unexpected)")
            ModeTrace.finish()
        }
        let virtual = scenario == "whole-program-virtual"
        let value = try Loop.runMain(time: virtual ? .virtual : .real) { loop in
            try await wholeProgramScenario(loop, virtual: virtual)
        }
        ModeTrace.check("runMain returned the body's value", value == 7)
        ModeTrace.finish()
    }
}
