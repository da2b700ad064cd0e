import Testing
@preconcurrency import Glibc
@testable import SerialLoop

/// A non-blocking socketpair for tests; closed through the loop by the caller.
func makeSocketPair() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    let result = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
    precondition(result == 0, "socketpair failed: errno \(errno)")
    return (fds[0], fds[1])
}

/// A non-blocking pipe: (read end, write end).
func makePipe() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    let result = pipe(&fds)
    precondition(result == 0, "pipe failed: errno \(errno)")
    for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    return (fds[0], fds[1])
}

func writeAll(_ fd: Int32, _ text: String) {
    let bytes = Array(text.utf8)
    precondition(write(fd, bytes, bytes.count) == bytes.count)
}

func readString(_ fd: Int32) -> String {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let count = read(fd, &buffer, buffer.count)
    return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
}

/// A value shared between tasks on one loop thread (tests only; the loop serialises access).
final class LoopBox<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// An actor that runs on a given loop.
actor LoopActor {
    let loop: Loop
    var log: [String] = []
    init(loop: Loop) { self.loop = loop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    func record(_ entry: String) -> Bool {
        log.append(entry)
        return loop.isOnLoopThread
    }
}

/// Set by `.ci/reliability.sh` for the sanitizer runs. Tests whose subject is a *real-time* bound
/// (how much wall time an hour of virtual sleeps took) cannot hold under a sanitizer's 5–20×
/// slowdown; those jobs check memory and data races, the normal run checks timing. Virtual time is
/// exact everywhere: no test of virtual durations is switched off under a sanitizer.
let underSanitizer = getenv("SERIALLOOP_SANITIZER") != nil

/// The real monotonic clock, in nanoseconds, on any thread. (`ContinuousClock.now` reads virtual
/// time on a test loop's thread.)
func realNanoseconds() -> Int64 { monotonicNanoseconds() }
