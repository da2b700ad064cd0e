@preconcurrency import Glibc
import Testing
@testable import SerialLoop

/// The two ways to iterate readiness, as test arguments: a plain stream (`loop.readiness`, a
/// cancellation handler per wait) and a scope (`loop.withReadiness`, one handler for the body).
/// Every promise of the stream must hold in a scope too, so the tests below run once per API, and
/// a failure names the API it failed for.
enum ReadinessAPI: CaseIterable, CustomTestStringConvertible, Sendable {
    case stream
    case scope

    var testDescription: String {
        switch self {
        case .stream: "loop.readiness(fd, kind)"
        case .scope: "loop.withReadiness(fd, kind) { … }"
        }
    }

    /// Runs `body` with a readiness sequence for `fd` made through this API. Runs on the caller's
    /// executor.
    nonisolated(nonsending) func with<T>(
        _ loop: Loop, _ fd: Int32, _ kind: DescriptorReadiness.Kind,
        _ body: nonisolated(nonsending) (DescriptorReadiness) async throws -> T
    ) async throws -> T {
        switch self {
        case .stream: try await body(loop.readiness(fd, kind))
        case .scope: try await loop.withReadiness(fd, kind, body)
        }
    }

    /// A descriptor number of the test's own (`highDuplicate`), apart from the other API's, since
    /// the two arguments run in parallel.
    var slot: Int32 { self == .stream ? 4 : 7 }
}

@Suite("Readiness streams and scopes")
struct ReadinessTests {
    /// Both sides iterate, 1,000 round trips: each element means one byte can be read, and
    /// nothing stays registered as a waiter afterwards.
    @Test(arguments: ReadinessAPI.allCases)
    func manyWaitsOnOneSequence(api: ReadinessAPI) async throws {
        let (rounds, echoed, waitersAfter) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let echo = Task(executorPreference: loop) {
                try await echoEveryByte(api, loop, b) { byte, _ in byte == 0 }      // the last byte ends the echo
            }
            let rounds = try await api.with(loop, a, .read) { readiness in
                var rounds = 0
                var byte: UInt8 = 1
                var replies = readiness.makeAsyncIterator()
                for round in 1...1000 {
                    byte = round == 1000 ? 0 : 1
                    _ = write(a, &byte, 1)
                    try #require(try await replies.next() != nil)
                    #expect(read(a, &byte, 1) == 1)
                    rounds += 1
                }
                return rounds
            }
            let echoed = try await echo.value
            let after = loop.pendingWaiterCount
            try loop.close(a); try loop.close(b)
            return (rounds, echoed, after)
        }
        #expect(rounds == 1000)
        #expect(echoed == 1000)
        #expect(waitersAfter == 0)
    }

    @Test(arguments: ReadinessAPI.allCases)
    func writeReadinessYieldsWhileWritable(api: ReadinessAPI) async throws {
        let count = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let count = try await api.with(loop, a, .write) { readiness in
                var count = 0
                for try await _ in readiness {
                    count += 1
                    if count == 3 { break }
                }
                return count
            }
            try loop.close(a); try loop.close(b)
            return count
        }
        #expect(count == 3)
    }

    /// Cancelling the iterating task mid-wait (after one element) removes the wait at once and
    /// ends the sequence by throwing `CancellationError`; the iterator returns `nil` afterwards.
    @Test(arguments: ReadinessAPI.allCases)
    func cancellingMidWaitThrowsCancellationAndRemovesTheWait(api: ReadinessAPI) async throws {
        let (outcome, elements, waitersAfter) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let elements = Lock(0)
            let reader = Task(executorPreference: loop) {
                try await api.with(loop, b, .read) { readiness in
                    var iterator = readiness.makeAsyncIterator()
                    do {
                        while try await iterator.next() != nil {
                            elements.withLock { $0 += 1 }
                            _ = readString(b)
                        }
                    } catch {
                        #expect(try await iterator.next() == nil)   // ended: nil from now on
                        throw error
                    }
                }
            }
            writeAll(a, "one")                                  // one element first
            await loop.idleTick()
            await loop.idleTick()
            #expect(loop.pendingWaiterCount == 1)
            reader.cancel()
            let outcome = await withWatchdog("the cancelled reader") { try await reader.value }
            let after = loop.pendingWaiterCount
            try loop.close(a); try loop.close(b)
            return (outcome, elements.withLock { $0 }, after)
        }
        let result = try #require(outcome)
        #expect(throws: CancellationError.self) { try result.get() }
        #expect(elements == 1)
        #expect(waitersAfter == 0)
    }

    /// A task cancelled before it starts iterating gets `CancellationError` from the first wait,
    /// even though the descriptor is ready.
    @Test(arguments: ReadinessAPI.allCases)
    func cancelledBeforeTheFirstWaitThrowsCancellation(api: ReadinessAPI) async throws {
        let outcome = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            writeAll(a, "ready")
            let reader = Task(executorPreference: loop) {
                withUnsafeCurrentTask { $0?.cancel() }
                try await api.with(loop, b, .read) { readiness in
                    for try await _ in readiness {}
                }
            }
            let outcome = await reader.result
            try loop.close(a); try loop.close(b)
            return outcome
        }
        #expect(throws: CancellationError.self) { try outcome.get() }
    }

    @Test(arguments: ReadinessAPI.allCases)
    func closingThroughTheLoopMidWaitEndsTheSequenceWithDescriptorClosed(api: ReadinessAPI) async throws {
        let (outcome, b) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let reader = Task(executorPreference: loop) {
                try await api.with(loop, b, .read) { readiness in
                    for try await _ in readiness { _ = readString(b) }
                }
            }
            await loop.idleTick()
            #expect(loop.pendingWaiterCount == 1)
            try loop.close(b)
            let outcome = await reader.result
            try loop.close(a)
            return (outcome, b)
        }
        let error = try #require(loopError(outcome))
        #expect(error.operation == "readable(fd: \(b))")
        #expect(error.kind == .descriptorClosed)
    }

    /// Bad descriptors: the first wait throws EBADF naming the operation; the task goes on to
    /// wait elsewhere normally (a scope's handler is removed on the way out).
    @Test(arguments: ReadinessAPI.allCases)
    func invalidDescriptorsThrowEBADF(api: ReadinessAPI) async throws {
        let (errors, afterwards) = try await withLoop { loop in
            var errors: [LoopError] = []
            for (fd, kind) in [(Int32(-1), DescriptorReadiness.Kind.read), (9999, .read), (Int32.max, .read), (-1, .write)] {
                do {
                    try await api.with(loop, fd, kind) { readiness in
                        for try await _ in readiness {}
                    }
                } catch let error as LoopError {
                    errors.append(error)
                }
            }
            let (a, b) = makeSocketPair()
            writeAll(a, "after")
            try await loop.readable(b)
            let text = readString(b)
            try loop.close(a); try loop.close(b)
            return (errors, text)
        }
        #expect(errors.map(\.kind) == Array(repeating: .system(errno: EBADF), count: 4))
        #expect(errors.map(\.operation) == ["readable(fd: -1)", "readable(fd: 9999)", "readable(fd: \(Int32.max))", "writable(fd: -1)"])
        #expect(errors.first?.description == "readable(fd: -1): EBADF (Bad file descriptor)")
        #expect(afterwards == "after")
    }

    /// After close through the loop, the number may be reused: a new sequence on it sees the new
    /// description.
    @Test(arguments: ReadinessAPI.allCases)
    func aNewSequenceOnAReusedNumberWorks(api: ReadinessAPI) async throws {
        let text = try await withLoop { loop in
            // A number in this test's own high range: the number is reused below with dup2, which
            // would silently close another test's descriptor if it were a low, shared number.
            let (a, low) = makeSocketPair()
            let b = highDuplicate(low, slot: api.slot)
            close(low)
            writeAll(a, "first")
            try await api.with(loop, b, .read) { readiness in
                for try await _ in readiness { _ = readString(b); break }
            }
            try loop.close(b)
            // b's number, a new description.
            let (c, d) = makeSocketPair()
            #expect(dup2(d, b) == b)
            close(d)
            writeAll(c, "second")
            let text = try await api.with(loop, b, .read) { readiness in
                var iterator = readiness.makeAsyncIterator()
                _ = try await iterator.next()
                return readString(b)
            }
            try loop.close(a); try loop.close(b); try loop.close(c)
            return text
        }
        #expect(text == "second")
    }

    /// Tasks on the default executor (foreign to the loop) on a `LoopThread`: each wait starts
    /// through the inbox; cancelling one from another thread mid-wait ends it with `CancellationError`.
    @Test(arguments: ReadinessAPI.allCases)
    func foreignTasksIterateOnALoopThread(api: ReadinessAPI) async throws {
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let loop = thread.loop
        let (a, b) = makeSocketPair()
        let echo = Task {
            try await echoEveryByte(api, loop, b) { _, echoed in echoed == 200 }
        }
        let rounds = await withWatchdog("200 foreign round trips") { () async throws -> Int in
            try await api.with(loop, a, .read) { readiness in
                var byte: UInt8 = 1
                var replies = readiness.makeAsyncIterator()
                for _ in 0..<200 {
                    _ = write(a, &byte, 1)
                    _ = try await replies.next()
                    #expect(read(a, &byte, 1) == 1)
                }
                return 200
            }
        }
        #expect(try rounds?.get() == 200)
        #expect(try await echo.value == 200)

        let waiter = Task { try await api.with(loop, a, .read) { readiness in for try await _ in readiness {} } }
        let settled = await withWatchdog("the waiter registering") {
            while try await loop.onLoop({ loop.pendingWaiterCount }) < 1 { try await Task.sleep(for: .milliseconds(1)) }
        }
        #expect(settled != nil)
        waiter.cancel()
        let outcome = await withWatchdog("the cancelled waiter") { try await waiter.value }
        if case .failure(let error)? = outcome { #expect(error is CancellationError, "\(error)") } else { Issue.record("not cancelled: \(String(describing: outcome))") }
        #expect(try await loop.onLoop { loop.pendingWaiterCount } == 0)
        close(a); close(b)
    }

    /// A wait pending at shutdown: a task of the loop unwinds with `CancellationError`, a foreign
    /// task gets the shutdown error; a wait after shutdown fails at once with it.
    @Test(arguments: ReadinessAPI.allCases)
    func pendingAndLateWaitsAtShutdown(api: ReadinessAPI) async throws {
        let thread = try Loop.startThread()
        let loop = thread.loop
        let (a, b) = makeSocketPair()
        let (c, d) = makeSocketPair()
        let loopReader = Task(executorPreference: loop) {
            try await api.with(loop, b, .read) { readiness in for try await _ in readiness {} }
        }
        let foreignReader = Task {
            try await api.with(loop, d, .read) { readiness in for try await _ in readiness {} }
        }
        let settled = await withWatchdog("readers registering") {
            while try await loop.onLoop({ loop.pendingWaiterCount }) < 2 { try await Task.sleep(for: .milliseconds(1)) }
        }
        #expect(settled != nil)
        thread.shutdown()
        let outcomes = await (loopReader.result, foreignReader.result)
        if case .failure(let error) = outcomes.0 { #expect(error is CancellationError, "\(error)") } else { Issue.record("loop reader finished") }
        #expect(loopError(outcomes.1)?.isLoopShutDown == true, "foreign reader: \(outcomes.1)")
        let late = await withWatchdog("readiness after shutdown") {
            try await api.with(loop, a, .read) { readiness in for try await _ in readiness {} }
        }
        #expect(loopError(late)?.isLoopShutDown == true)
        #expect(loopError(late)?.operation == "readable(fd: \(a))")
        close(a); close(b); close(c); close(d)
    }
}

/// What only a scope has to get right: its one cancellation handler covers its own task's waits
/// only, so cancellation must still reach a wait it does not cover (another task, or after the scope).
@Suite("Readiness scopes: waits the scope's handler does not cover")
struct ReadinessScopeTests {
    /// A child task iterating the scope's stream is cancelled on its own (`cancelAll` cancels the
    /// children, not the parent) and must still wake — its waits install their own handlers.
    /// Without that, this test hangs into its watchdog.
    @Test func aChildTaskIteratingTheScopesStreamCanBeCancelledAlone() async throws {
        let (outcome, waitersAfter) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            // The watchdog that runs its body in place (on the loop) and aborts on a hang.
            let outcome = try await withWatchdog(seconds: 10) {
                try await loop.withReadiness(b, .read) { readiness in
                    await Result {
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            group.addTask(executorPreference: loop) {
                                for try await _ in readiness { _ = readString(b) }
                            }
                            await loop.idleTick()
                            #expect(loop.pendingWaiterCount == 1)
                            group.cancelAll()
                            try await group.next()
                        }
                    }
                }
            }
            let after = loop.pendingWaiterCount
            try loop.close(a); try loop.close(b)
            return (outcome, after)
        }
        #expect(throws: CancellationError.self) { try outcome.get() }
        #expect(waitersAfter == 0)
    }

    /// An iterator that outlives its scope keeps working, and cancellation still reaches its waits
    /// (the scope's handler is gone; they install their own).
    @Test func anIteratorThatOutlivesItsScopeStillHonoursCancellation() async throws {
        let (text, outcome) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let reader = Task(executorPreference: loop) { () async throws -> String in
                var escaped = try await loop.withReadiness(b, .read) { readiness in readiness.makeAsyncIterator() }
                _ = try await escaped.next()                   // after the scope: its own handler
                let text = readString(b)
                _ = try await escaped.next()                   // waits until cancelled
                return text
            }
            await loop.idleTick()
            writeAll(a, "late")
            await loop.idleTick()
            await loop.idleTick()
            #expect(loop.pendingWaiterCount == 1)
            reader.cancel()
            let outcome = await withWatchdog("the escaped iterator") { try await reader.value }
            try loop.close(a); try loop.close(b)
            return (outcome.flatMap { try? $0.get() }, outcome)
        }
        #expect(text == nil)                                    // it threw
        let result = try #require(outcome)
        #expect(throws: CancellationError.self) { try result.get() }
    }
}

/// Echoes every byte that arrives on `fd`, iterating readiness through `api`, until
/// `isDone(last byte, bytes echoed so far)`; returns how many it echoed. Runs on the caller's executor.
nonisolated(nonsending) private func echoEveryByte(_ api: ReadinessAPI, _ loop: Loop, _ fd: Int32, until isDone: (UInt8, Int) -> Bool) async throws -> Int {
    try await api.with(loop, fd, .read) { readiness in
        var byte: UInt8 = 0
        var echoed = 0
        for try await _ in readiness {
            while read(fd, &byte, 1) == 1 {
                _ = write(fd, &byte, 1)
                echoed += 1
            }
            if isDone(byte, echoed) { break }
        }
        return echoed
    }
}
