@preconcurrency import Glibc
import SerialLoop
import SerialLoopModeScenarios

// Test fixture: an `@main` type with a sync `main()` (implicitly @MainActor), run by
// Tests/SerialLoopTests/ModeTests.swift in a child process.
@main
struct ModesMain {
    static func main() throws {
        ModeTrace.start()
        switch CommandLine.arguments.dropFirst().first ?? "" {
        case "main-thread":
            let value = try withLoop { loop in try await mainThreadScenario(loop) }
            ModeTrace.check("withLoop returned 42", value == 42)
        case "whole-program":
            let value = try Loop.runMain { loop in try await wholeProgramScenario(loop, virtual: false) }
            ModeTrace.check("runMain returned the body's value", value == 7)
        default:
            fputs("usage: serial-loop-modes-main main-thread|whole-program\n", stderr)
            exit(64)
        }
        ModeTrace.finish()
    }
}
