@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop

private struct OffloadFailure: Error, Equatable {
    let code: Int
}

/// A blocking gate for offloaded closures: `wait()` blocks its thread in read(2) until `open()`.
/// (The blocking work a test releases, not a synchronisation by sleeping.)
private final class Gate: Sendable {
    let readFD: Int32
    let writeFD: Int32
    init() {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        (readFD, writeFD) = (fds[0], fds[1])
    }
    func wait() {
        var byte: UInt8 = 0
        while read(readFD, &byte, 1) < 0 && errno == EINTR {}
    }
    func open() {
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
    }
    deinit {
        close(readFD)
        close(writeFD)
    }
}

/// A flag set on one thread and read on another.
private final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
}

@Suite("Offload: blocking work on the loop's pool", .serialized)
struct OffloadTests {
    @Test func offloadRunsOffTheLoopAndResumesOnIt() async throws {
        try await withWatchdog(seconds: 20) {
            try await withLoop { loop in
                #expect(loop.offloadThreadCount == 0, "threads start lazily")
                let ranOnLoopThread = try await loop.offload { loop.isOnLoopThread }
                #expect(!ranOnLoopThread)
                #expect(loop.isOnLoopThread, "the caller resumes on the loop")
                #expect(loop.offloadThreadCount == 1)
                // The closure may borrow the caller's state: it is not escaping.
                var buffer = [UInt8](repeating: 7, count: 16)
                let sum = try await loop.offload {
                    buffer[0] = 1
                    return buffer.reduce(0) { $0 + Int($1) }
                }
                #expect(sum == 1 + 15 * 7)
            }
        }
    }

    @Test func errorsAreRethrown() async throws {
        try await withWatchdog(seconds: 20) {
            try await withLoop { loop in
                await #expect(throws: OffloadFailure(code: 42)) {
                    try await loop.offload { () throws -> Int in throw OffloadFailure(code: 42) }
                }
                #expect(loop.isOnLoopThread)
                let five = try await loop.offload { 5 }
                #expect(five == 5, "the pool keeps working after an error")
            }
        }
    }

    /// The issue's figure: 100 blocking calls of 10 ms finish in about 100/pool × 10 ms, while a
    /// 1 ms timer on the loop keeps firing with a lag under 5 ms.
    @Test(.disabled(if: underSanitizer, "wall-clock bounds do not hold under a sanitizer's slowdown"))
    func hundredBlockingCallsRunInParallelWhileTheLoopKeepsTicking() async throws {
        try await withWatchdog(seconds: 30) {
            try await withLoop { loop in
                let pool = 4
                loop.offloadThreadLimit = pool
                let done = LoopBox(false)
                let ticker = Task(executorPreference: loop) { () -> [Int64] in
                    var lags: [Int64] = []
                    var next = loop.now.advanced(by: .milliseconds(1))
                    while !done.value {
                        try? await loop.sleep(until: next)
                        lags.append(next.duration(to: loop.now).saturatingNanoseconds)
                        next = next.advanced(by: .milliseconds(1))
                        if next < loop.now { next = loop.now.advanced(by: .milliseconds(1)) }
                    }
                    return lags
                }
                let start = loop.now
                let count = try await withThrowingTaskGroup(of: Int.self) { group in
                    for index in 0..<100 {
                        group.addTask {
                            try await loop.offload {
                                usleep(10_000)
                                return loop.isOnLoopThread ? -1 : index
                            }
                        }
                    }
                    return try await group.reduce(0) { total, index in index >= 0 ? total + 1 : total }
                }
                let total = start.duration(to: loop.now)
                done.value = true
                let lags = await ticker.value.sorted()
                let ideal = Duration.milliseconds(100 / pool * 10)
                let ms = { (ns: Int64) in "\(Double(ns / 10_000) / 100) ms" }
                print("offload: 100 × usleep(10 ms) on \(pool) threads in \(total) (ideal \(ideal), sequential 1 s); 1 ms timer: \(lags.count) ticks, lag median \(ms(lags[lags.count / 2])), p99 \(ms(lags[lags.count * 99 / 100])), max \(ms(lags.last!))")
                #expect(count == 100, "\(100 - count) of the blocking calls ran on the loop's thread")
                #expect(loop.offloadThreadCount == pool)
                // Generous: twice the ideal plus 100 ms of slack on a shared 2-core machine, and
                // still well under the 1 s the calls would take one after another.
                #expect(total < ideal * 2 + .milliseconds(100))
                #expect(lags.count >= 100)
                // The issue's "lag under 5 ms" is a measurement, printed above and reported from quiet
                // runs (Benchmarks, the note), not an assertion: a tick's lag on a loaded shared
                // machine says nothing about offload (p99 5.03 ms while two builds ran; a max of 57
                // and 88 ms with the suite's other tests beside it). The property — no blocking call
                // runs on the loop's thread, so none can stall it — is asserted directly above (each
                // call reports where it ran), and the total time shows the calls ran 4 at a time.
            }
        }
    }

    /// Cancelled before a thread took it: the closure is withdrawn and never runs, and the caller
    /// gets CancellationError at once, while the pool's only thread is still busy.
    @Test func cancellingAQueuedOffloadWithdrawsIt() async throws {
        try await withWatchdog(seconds: 20) {
            try await withLoop { loop in
                loop.offloadThreadLimit = 1
                let gate = Gate()
                let started = Gate()
                let blocker = Task(executorPreference: loop) {
                    try await loop.offload { started.open(); gate.wait(); return 1 }
                }
                await Task.yield()                              // FIFO: `blocker` submitted its closure
                started.wait()                                  // the only thread is now busy
                let ran = Flag()
                let queued = Task(executorPreference: loop) {
                    try await loop.offload { ran.set(); return 2 }
                }
                await Task.yield()          // FIFO: `queued` ran its first job, which submitted the closure
                #expect(loop.offloadPool.queuedCount == 1)
                queued.cancel()
                await #expect(throws: CancellationError.self) { try await queued.value }
                gate.open()
                let blocked = try await blocker.value
                #expect(blocked == 1)
                let didRun = ran.isSet
                #expect(!didRun, "a withdrawn closure never runs")
            }
        }
    }

    /// Cancelled while the closure runs: the caller waits for it to finish, then gets
    /// CancellationError (the value is discarded).
    @Test func cancellingARunningOffloadWaitsForItThenThrows() async throws {
        try await withWatchdog(seconds: 20) {
            try await withLoop { loop in
                let gate = Gate()
                let started = Gate()
                let finished = Flag()
                let task = Task(executorPreference: loop) { () async throws -> Int in
                    do {
                        return try await loop.offload {
                            started.open()
                            gate.wait()
                            finished.set()
                            return 1
                        }
                    } catch {
                        let closureFinished = finished.isSet
                        #expect(closureFinished, "offload returned while its closure still ran")
                        throw error
                    }
                }
                try await loop.offload { started.wait() }      // the closure is running
                task.cancel()
                gate.open()
                await #expect(throws: CancellationError.self) { try await task.value }
                let closureFinished = finished.isSet
                #expect(closureFinished)
            }
        }
    }

    /// Any task may offload to a loop (the loop must be running): its outcome still comes back
    /// through the loop, and the caller resumes on its own executor.
    @Test func offloadFromATaskOffTheLoop() async throws {
        try await withWatchdog(seconds: 20) {
            let thread = try Loop.startThread()
            defer { thread.shutdown() }
            let loop = thread.loop
            let value = try await Task.detached { try await loop.offload { 6 * 7 } }.value
            #expect(value == 42)
            await #expect(throws: OffloadFailure(code: 1)) {
                try await Task.detached { try await loop.offload { () throws -> Int in throw OffloadFailure(code: 1) } }.value
            }
        }
    }

    @Test func aCancelledTaskDoesNotStartAnOffload() async throws {
        try await withWatchdog(seconds: 20) {
            try await withLoop { loop in
                let ran = Flag()
                withUnsafeCurrentTask { $0?.cancel() }
                await #expect(throws: CancellationError.self) {
                    try await loop.offload { ran.set() }
                }
                let didRun = ran.isSet
                #expect(!didRun)
                #expect(loop.offloadThreadCount == 0)
            }
        }
    }

    /// On a test loop an offload holds virtual time exactly: a 1 s virtual sleep that runs beside
    /// a 50 ms (real) offload ends at exactly 1 s, after the offload's result, which came at
    /// virtual 0 — and the clock did not move while the closure ran. The quiet period is set to
    /// 10 s: if the result's arrival restarted it, this test would take 10 s, not 50 ms.
    @Test func offloadHoldsVirtualTimeExactly() async throws {
        try await withWatchdog(seconds: 20) {
            let realStart = monotonicNanoseconds()
            try await withTestLoop { loop in
                loop.ioQuietPeriod = .seconds(10)
                let trace = LoopBox<[String]>([])
                let sleeper = Task(executorPreference: loop) {
                    try await loop.sleep(for: .seconds(1))
                    trace.value.append("sleep ended at \(loop.now.nanosecondsSinceOrigin)")
                }
                let seenInside = try await loop.offload { () -> Int64 in
                    usleep(50_000)
                    return loop.now.nanosecondsSinceOrigin          // any thread may read the clock
                }
                trace.value.append("offload returned at \(loop.now.nanosecondsSinceOrigin)")
                try await sleeper.value
                #expect(seenInside == 0, "virtual time moved while the offload ran")
                #expect(trace.value == ["offload returned at 0", "sleep ended at 1000000000"])
            }
            let real = Duration.nanoseconds(monotonicNanoseconds() - realStart)
            #expect(real < .seconds(5), "took \(real): the offload's result restarted the quiet period")
        }
    }

    /// The same hold for a plain `Task.sleep` beside the offload.
    @Test func offloadHoldsVirtualTimeForPlainTaskSleep() async throws {
        try await withWatchdog(seconds: 20) {
            try await withTestLoop { loop in
                loop.ioQuietPeriod = .seconds(10)
                async let slept: Void = Task.sleep(for: .seconds(5))
                let inside = try await loop.offload { usleep(20_000); return loop.now.nanosecondsSinceOrigin }
                let returned = loop.now.nanosecondsSinceOrigin
                try await slept
                #expect(inside == 0 && returned == 0)
                #expect(loop.now.nanosecondsSinceOrigin == 5_000_000_000)
            }
        }
    }

    @Test func offloadAfterShutdownThrowsALoopError() async throws {
        try await withWatchdog(seconds: 20) {
            let loop = try await withLoop { loop in
                _ = try await loop.offload { 1 }
                return loop
            }
            #expect(loop.offloadThreadCount == 0, "shutdown joined the pool's threads")
            do {
                _ = try await loop.offload { 1 }
                Issue.record("offload after shutdown did not throw")
            } catch let error as LoopError {
                #expect(error.operation == "offload")
                #expect(error.kind == .shutDown && error.isLoopShutDown)
                #expect("\(error)" == "offload: the loop has shut down, and its offload threads with it")
            }
        }
    }

    /// Shutdown with offloads in flight: the running closure finishes and its caller gets the
    /// value; the queued one never runs and its caller gets CancellationError; threads are joined.
    @Test func shutdownFinishesRunningOffloadsAndWithdrawsQueuedOnes() async throws {
        try await withWatchdog(seconds: 20) {
            let outcomes = Lock<[String]>([])
            let ranSecond = Flag()
            let loop = try await withLoop { loop in
                loop.offloadThreadLimit = 1
                let started = Gate()
                Task(executorPreference: loop) {
                    do {
                        let value = try await loop.offload { started.open(); usleep(50_000); return 1 }
                        outcomes.withLock { $0.append("first: \(value)") }
                    } catch { outcomes.withLock { $0.append("first: \(error)") } }
                }
                Task(executorPreference: loop) {
                    do {
                        let value = try await loop.offload { ranSecond.set(); return 2 }
                        outcomes.withLock { $0.append("second: \(value)") }
                    } catch { outcomes.withLock { $0.append("second: \(type(of: error))") } }
                }
                await Task.yield()          // FIFO: both tasks have submitted their closures
                started.wait()              // blocks the loop thread until the first closure runs
                #expect(loop.offloadPool.queuedCount == 1)
                return loop                 // shutdown: the first finishes, the second is withdrawn
            }
            _ = loop
            let final = outcomes.withLock { $0 }.sorted()
            #expect(final == ["first: 1", "second: CancellationError"])
            let secondRan = ranSecond.isSet
            #expect(!secondRan)
            #expect(loop.offloadThreadCount == 0)
        }
    }
}

@Suite("Offload at shutdown, repeated")
struct OffloadShutdownStressTests {
    /// Many loops end with offloads just submitted, running, queued or reporting (the outcome of
    /// one that finished while shutdown looked for leftover work once got lost): every caller is resumed
    /// (with its value or CancellationError) before `withLoop` returns, none is left suspended.
    @Test(arguments: [Loop.TimeMode.real, .virtual])
    func everyOffloadInFlightAtShutdownIsResolved(time: Loop.TimeMode) async throws {
        try await withWatchdog(seconds: 60) {
            for round in 0..<1000 {
                let resolved = Lock(0)
                let body: @Sendable (Loop) async throws -> Void = { loop in
                    loop.offloadThreadLimit = 1 + round % 2
                    _ = try await loop.offload { 4 }
                    for _ in 0..<2 {
                        Task(executorPreference: loop) {
                            _ = try? await loop.offload { if round % 3 == 0 { usleep(50) } }
                            resolved.withLock { $0 += 1 }
                        }
                    }
                    await Task.yield()          // the closures are submitted; the body ends as they finish
                }
                do {
                    if time == .real { try await withLoop(body) } else { try await withTestLoop(body) }
                } catch is LoopLeftoversError {}
                let count = resolved.withLock { $0 }
                #expect(count == 2, "round \(round): \(count) of 2 offload callers resumed before withLoop returned")
                if count != 2 { break }
            }
        }
    }
}
