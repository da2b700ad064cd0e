import Testing
@testable import SerialLoop

/// Programmer errors trap with a message that says what was wrong; each runs in its own process.
@Suite("Misuse traps")
struct MisuseTests {
    @Test func nestedSyncWithLoopTraps() async {
        await #expect(processExitsWith: .failure) {
            try withLoop { _ in
                try withLoop { _ in 1 }
            }
        }
    }

    @Test func runningAShutDownLoopTraps() async {
        await #expect(processExitsWith: .failure) {
            let loop = try Loop()
            loop.shutDown()
            loop.run()
        }
    }

    @Test func schedulingFromAnotherThreadTraps() async {
        await #expect(processExitsWith: .failure) {
            let thread = try Loop.startThread()
            thread.loop.schedule(after: .seconds(1)) {}
        }
    }
}
