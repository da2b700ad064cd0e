// Creates, runs and tears down many loops — each with timers, descriptors, futures, tasks, offloaded
// closures (a pool thread started and joined per loop) and signal listeners — so
// a leak checker (LeakSanitizer via `--sanitize=address`, or valgrind) can prove nothing is left.
// Usage: SerialLoopLeakCheck [loops]   (default 10,000)
import SerialLoop
@preconcurrency import Glibc

/// A failure of the check itself (or the error it throws on purpose through offload).
struct LeakCheckFailure: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

let loops = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 10_000
var completed = 0
for index in 0..<loops {
    let virtual = index % 2 == 0
    @Sendable func exercise(_ loop: Loop) async throws -> Int {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0 else {
            throw LoopError(operation: "socketpair", errno: errno)
        }
        let (a, b) = (fds[0], fds[1])
        // A timer that fires, one that is cancelled, one left pending (dropped at shutdown).
        let fired = loop.makeFuture(of: Int.self)
        loop.schedule(after: .microseconds(10)) { fired.succeed(1) }
        loop.schedule(after: .seconds(60)) {}.cancel()
        loop.schedule(after: .seconds(3600)) {}
        // A reader task woken by readiness, a sleeper cancelled by shutdown, a gathered pair.
        let reader = Task(executorPreference: loop) { () async throws -> Int in
            try await loop.readable(b)
            var byte: UInt8 = 0
            return read(b, &byte, 1)
        }
        _ = Task(executorPreference: loop) { try await loop.sleep(for: .seconds(3600)) }
        var one: UInt8 = 1
        _ = write(a, &one, 1)
        let gathered = try await loop.gather([{ @Sendable in 2 }, { @Sendable in 3 }])
        // Offload: a value, a rethrown error, and a closure still queued at shutdown (withdrawn).
        loop.offloadThreadLimit = 1
        let offloaded = try await loop.offload { 4 }
        do { try await loop.offload { throw LeakCheckFailure("expected") } } catch is LeakCheckFailure {}
        _ = Task(executorPreference: loop) { try await loop.offload { usleep(100) } }
        _ = Task(executorPreference: loop) { try await loop.offload { 0 } }
        // Signals: a listener that receives one, and one left for shutdown to end. (Real-time loops
        // only: on a test loop a delivery is cross-thread activity, which delays the next virtual
        // jump by the real-time quiet period.)
        if loop.timeMode == .real {
            let signals = try loop.signals(SIGWINCH)
            _ = try loop.signals(SIGWINCH)
            var iterator = signals.makeAsyncIterator()
            kill(getpid(), SIGWINCH)
            guard await iterator.next() == SIGWINCH else { throw LeakCheckFailure("no SIGWINCH") }
        }
        let total = try await reader.value + fired.value + gathered.reduce(0, +) + offloaded - 4
        try loop.close(a)
        try loop.close(b)
        return total
    }
    do {
        let total = virtual ? try withTestLoop { try await exercise($0) } : try withLoop { try await exercise($0) }
        precondition(total == 7, "unexpected total \(total)")
    } catch is LoopLeftoversError {
        // Expected on test loops: the pending timer and sleeper are reported, then cleaned up.
    }
    completed += 1
}
print("leak check: created, ran and shut down \(completed) loops (half real, half virtual time)")
