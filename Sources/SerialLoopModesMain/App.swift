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
        case "virtual-time-not-linked":
            // This fixture does not link SerialLoopVirtualTime: a test loop says what to link.
            do {
                _ = try withTestLoop { _ in 1 }
                ModeTrace.record("withTestLoop", "FAILED: ran without virtual time linked")
            } catch {
                ModeTrace.record("withTestLoop threw", "\(kindName(error)) \(error)")
            }
            do {
                _ = try Loop.runMain(time: .virtual) { _ in 1 }
                ModeTrace.record("runMain(time: .virtual)", "FAILED: ran without virtual time linked")
            } catch {
                ModeTrace.record("runMain(time: .virtual) threw", "\(kindName(error)) \(error)")
            }
        default:
            fputs("usage: SerialLoopModesMain main-thread|whole-program|virtual-time-not-linked\n", stderr)
            exit(64)
        }
        ModeTrace.finish()
    }
}

/// The error's ``LoopError/Kind``, told apart by a switch (what a program does), for the trace.
func kindName(_ error: any Error) -> String {
    guard let error = error as? LoopError else { return "[not a LoopError]" }
    switch error.kind {
    case .virtualTimeNotLinked: return "[virtualTimeNotLinked]"
    default: return "[another kind: \(error.kind)]"
    }
}
