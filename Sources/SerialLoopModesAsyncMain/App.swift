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
        let virtual = CommandLine.arguments.dropFirst().first == "whole-program-virtual"
        let value = try Loop.runMain(time: virtual ? .virtual : .real) { loop in
            try await wholeProgramScenario(loop, virtual: virtual)
        }
        ModeTrace.check("runMain returned the body's value", value == 7)
        ModeTrace.finish()
    }
}
