import Testing
import Synchronization
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

/// Watchdogs wait this many times longer under a sanitizer: a 5–20× slowdown of every test running
/// in parallel on 2 cores starves the cooperative pool for seconds, which is slowness, not a hang.
/// (A hang still fails, later.)
let watchdogScale = underSanitizer ? 6 : 1

/// Runs `operation` in a task of its own and returns its outcome — or, if it has not finished
/// after `limit` of real time, records an issue and returns `nil`, so a hang fails the test by
/// assertion instead of hanging the suite. (A watchdog, not synchronisation: it never fires in a
/// passing run.)
func withWatchdog<T: Sendable>(
    _ what: String, limit: Duration = .seconds(10),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ operation: @escaping @Sendable () async throws -> T
) async -> Result<T, any Error>? {
    let limit = limit * watchdogScale
    let claimed = Lock(false)
    let claim: @Sendable () -> Bool = { claimed.withLock { done in defer { done = true }; return !done } }
    let outcome: Result<T, any Error>? = await withUnsafeContinuation { continuation in
        Task {
            let result = await Result(catching: operation)
            if claim() { continuation.resume(returning: result) }
        }
        let thread = spawnThread {
            var request = timespec(tv_sec: Int(limit.components.seconds), tv_nsec: 0)
            var remaining = timespec()
            while nanosleep(&request, &remaining) != 0 { request = remaining }
            if claim() { continuation.resume(returning: nil) }
        }
        pthread_detach(thread)
    }
    if outcome == nil { Issue.record("\(what) did not finish within \(limit): it hangs", sourceLocation: sourceLocation) }
    return outcome
}

/// The `LoopError` a result failed with, if any.
func loopError<T>(_ result: Result<T, any Error>?) -> LoopError? {
    if case .failure(let error)? = result { return error as? LoopError }
    return nil
}

/// Writes to a non-blocking socket until the kernel says EAGAIN, so a `writable` wait suspends.
func fillSendBuffer(_ fd: Int32) {
    let chunk = [UInt8](repeating: 0, count: 65536)
    while write(fd, chunk, chunk.count) > 0 {}
    precondition(errno == EAGAIN, "filling the send buffer failed: errno \(errno)")
}

/// A duplicate of `fd` with a number near the top of the process's descriptor limit, which the
/// other tests (they get the lowest free numbers; the stress test opens a few thousand) do not
/// reach: a test can close and reuse it without racing them. Each test that uses this passes its
/// own `slot` (1, 2, 3, …), 100 numbers apart, so they do not race each other either.
func highDuplicate(_ fd: Int32, slot: Int32) -> Int32 {
    var limit = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    if limit.rlim_cur < 20_000 && limit.rlim_max > limit.rlim_cur {
        limit.rlim_cur = min(limit.rlim_max, 20_000)           // as the stress test does
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }
    let base = Int32(clamping: limit.rlim_cur) - 100 * slot
    precondition(base > 4_000, "the descriptor limit (\(limit.rlim_cur)) is too low for this test")
    let high = fcntl(fd, F_DUPFD, base)
    precondition(high >= base && high < base + 100, "F_DUPFD failed: errno \(errno)")
    return high
}

/// A counter shared across threads (tests), which a task can wait on to reach a value.
final class Counter: Sendable {
    private struct State {
        var value = 0
        var waiters: [(target: Int, continuation: UnsafeContinuation<Void, Never>)] = []
    }
    private let state = Lock(State())

    func increment() {
        let ready: [UnsafeContinuation<Void, Never>] = state.withLock { state in
            state.value += 1
            let value = state.value
            let ready = state.waiters.filter { $0.target <= value }.map(\.continuation)
            state.waiters.removeAll { $0.target <= value }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    var value: Int { state.withLock { $0.value } }

    /// Returns once the counter has reached `target` (at once if it has).
    func reach(_ target: Int) async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let reached = state.withLock { state in
                if state.value >= target { return true }
                state.waiters.append((target, continuation))
                return false
            }
            if reached { continuation.resume() }
        }
    }
}
/// The real monotonic clock, in nanoseconds, on any thread. (`ContinuousClock.now` reads virtual
/// time on a test loop's thread.)
func realNanoseconds() -> Int64 { monotonicNanoseconds() }

/// Asserts that `readable` and `writable` on `fd` (a regular file or directory) return at once
/// without registering a waiter or asking epoll to watch it. A wait that did register would be
/// seen pending after a few ticks and is then cancelled: an assertion failure, not a hang.
func expectAlwaysReady(_ fd: Int32, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    try #require(fd >= 0, "open failed: errno \(errno)", sourceLocation: sourceLocation)
    let (pending, watched, outcomes) = try await withLoop { loop in
        let waits = [
            Task(executorPreference: loop) { try await loop.readable(fd) },
            Task(executorPreference: loop) { try await loop.writable(fd) },
        ]
        for _ in 0..<5 { await Task.yield() }                   // ticks: each wait has started by now
        let pending = loop.pendingWaiterCount, watched = loop.watchedDescriptorCount
        var outcomes: [Result<Void, any Error>] = []
        for wait in waits {
            wait.cancel()
            outcomes.append(await wait.result)
        }
        return (pending, watched, outcomes)
    }
    #expect(pending == 0, "a wait on an always-ready descriptor was left pending", sourceLocation: sourceLocation)
    #expect(watched == 0, "epoll was asked to watch an always-ready descriptor", sourceLocation: sourceLocation)
    for outcome in outcomes {
        #expect(throws: Never.self, sourceLocation: sourceLocation) { try outcome.get() }
    }
}
