@preconcurrency import Glibc
import Testing
@testable import SerialLoop

/// Programmer errors trap with a message that says what was wrong; each runs in its own process.
@Suite("Misuse traps")
struct MisuseTests {
    @Test func nestedSyncWithLoopTraps() async {
        await #expect(processExitsWith: .failure) {
            try withLoop { _ in
                _ = try withLoop { _ in 1 }
            }
        }
    }

    @Test func runningAShutDownLoopTraps() async {
        await #expect(processExitsWith: .failure) {
            let loop = try Loop()
            loop.shutdown()
            loop.run()
        }
    }

    /// Descriptor exhaustion (in a child process, so the lowered limit touches no other test):
    /// creating a loop fails with a LoopError naming the call and EMFILE, and a loop that already
    /// exists keeps running.
    @Test func descriptorExhaustionIsAClearErrorAndTheLoopKeepsRunning() async {
        await #expect(processExitsWith: .success) {
            let survivor = try Loop()
            var limit = rlimit()
            getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
            limit.rlim_cur = 64
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
            var opened: [Int32] = []
            while true {
                let fd = open("/dev/null", O_RDONLY)
                if fd < 0 { break }
                opened.append(fd)
            }
            do {
                _ = try Loop()
                exit(10)
            } catch let error as LoopError {
                guard error.errno == EMFILE, error.operation.hasPrefix("epoll_create1") || error.operation.hasPrefix("eventfd") else { exit(11) }
            }
            for fd in opened { close(fd) }
            let value = try survivor.run(until: Task<Int, any Error>(executorPreference: survivor) {
                try await survivor.sleep(for: .milliseconds(1))
                return 7
            })
            exit(value == 7 ? 0 : 12)
        }
    }

    @Test func schedulingFromAnotherThreadTraps() async {
        await #expect(processExitsWith: .failure) {
            let thread = try Loop.startThread()
            thread.loop.schedule(after: .seconds(1)) {}
        }
    }
}
