@preconcurrency import Glibc
import Testing
@testable import SerialLoop

/// `Loop.withReadiness`: a readiness stream whose waits share one cancellation handler, installed
/// for the scope. Everything the plain stream promises must still hold — and cancellation must
/// still reach a wait that the scope's handler does not cover (another task, or after the scope).
@Suite("Readiness scopes")
struct ReadinessScopeTests {
    /// Both sides in scopes, 1,000 round trips: every element means a byte can be read, and
    /// nothing stays registered as a waiter afterwards.
    @Test func manyWaitsInOneScope() async throws {
        let (rounds, echoed, waitersAfter) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let echo = Task(executorPreference: loop) {
                try await echoInScope(loop, b) { byte, _ in byte == 0 }      // the last byte ends the echo
            }
            let rounds = try await loop.withReadiness(a, .read) { readiness in
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

    /// Cancelling the scope's task mid-wait: the wait is removed at once, the stream throws
    /// `CancellationError` (through the scope), and the iterator returns `nil` afterwards.
    @Test func cancellingMidWaitEndsTheScopeWithCancellation() async throws {
        let (outcome, waitersAfter) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let reader = Task(executorPreference: loop) { () async throws -> Int in
                try await loop.withReadiness(b, .read) { readiness in
                    var elements = 0
                    var iterator = readiness.makeAsyncIterator()
                    do {
                        while try await iterator.next() != nil {
                            elements += 1
                            _ = readString(b)
                        }
                    } catch {
                        #expect(try await iterator.next() == nil)   // ended: nil from now on
                        throw error
                    }
                    return elements
                }
            }
            writeAll(a, "one")                                  // one element first
            await loop.idleTick()
            await loop.idleTick()
            #expect(loop.pendingWaiterCount == 1)
            reader.cancel()
            let outcome = await withWatchdog("the cancelled scope") { try await reader.value }
            let after = loop.pendingWaiterCount
            try loop.close(a); try loop.close(b)
            return (outcome, after)
        }
        let result = try #require(outcome)
        #expect(throws: CancellationError.self) { try result.get() }
        #expect(waitersAfter == 0)
    }

    /// A task cancelled before its scope begins: the first wait throws `CancellationError`, even
    /// though the descriptor is ready.
    @Test func aScopeInACancelledTaskThrowsCancellation() async throws {
        let outcome = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            writeAll(a, "ready")
            let reader = Task(executorPreference: loop) {
                withUnsafeCurrentTask { $0?.cancel() }
                try await loop.withReadiness(b, .read) { readiness in
                    for try await _ in readiness {}
                }
            }
            let outcome = await reader.result
            try loop.close(a); try loop.close(b)
            return outcome
        }
        #expect(throws: CancellationError.self) { try outcome.get() }
    }

    @Test func closingThroughTheLoopMidWaitEndsTheScopeWithAnError() async throws {
        let (outcome, b) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let reader = Task(executorPreference: loop) {
                try await loop.withReadiness(b, .read) { readiness in
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
    }

    /// The scope's handler covers only its own task: a child task iterating the scope's stream is
    /// cancelled on its own (`cancelAll` cancels the children, not the parent) and must still wake
    /// — its waits install their own handlers. Without that, this test hangs into its watchdog.
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

    /// A number closed through the loop and reused: a new scope on it sees the new description.
    @Test func aScopeOnAReusedNumberWorks() async throws {
        let text = try await withLoop { loop in
            let (a, low) = makeSocketPair()
            let b = highDuplicate(low, slot: 7)
            close(low)
            writeAll(a, "first")
            try await loop.withReadiness(b, .read) { readiness in
                for try await _ in readiness { _ = readString(b); break }
            }
            try loop.close(b)
            let (c, d) = makeSocketPair()
            #expect(dup2(d, b) == b)
            close(d)
            writeAll(c, "second")
            let text = try await loop.withReadiness(b, .read) { readiness in
                var iterator = readiness.makeAsyncIterator()
                _ = try await iterator.next()
                return readString(b)
            }
            try loop.close(a); try loop.close(b); try loop.close(c)
            return text
        }
        #expect(text == "second")
    }

    /// Bad descriptors: the scope's first wait throws EBADF naming the operation; the scope's
    /// handler is removed on the way out (the task goes on to wait elsewhere).
    @Test func badDescriptorsInAScopeThrowEBADF() async throws {
        let (errors, afterwards) = try await withLoop { loop in
            var errors: [LoopError] = []
            for (fd, kind) in [(Int32(-1), DescriptorReadiness.Kind.read), (Int32.max, .read), (-1, .write)] {
                do {
                    try await loop.withReadiness(fd, kind) { readiness in
                        for try await _ in readiness {}
                    }
                } catch let error as LoopError {
                    errors.append(error)
                }
            }
            // The task still waits and is woken normally after the failed scopes.
            let (a, b) = makeSocketPair()
            writeAll(a, "after")
            try await loop.readable(b)
            let text = readString(b)
            try loop.close(a); try loop.close(b)
            return (errors, text)
        }
        #expect(errors.map(\.errno) == [EBADF, EBADF, EBADF])
        #expect(errors.map(\.operation) == ["readable(fd: -1)", "readable(fd: \(Int32.max))", "writable(fd: -1)"])
        #expect(afterwards == "after")
    }

    /// A foreign task (Swift's default executor) using a scope on a `LoopThread`: its waits start
    /// through the inbox and the scope's handler still covers them — cancelling the task from
    /// outside ends a pending wait with `CancellationError`; a wait pending at shutdown ends with
    /// the shutdown error; a scope opened after shutdown fails at once.
    @Test func foreignTasksInScopesOnALoopThread() async throws {
        let thread = try Loop.startThread()
        let loop = thread.loop
        let (a, b) = makeSocketPair()
        let (c, d) = makeSocketPair()
        let echo = Task {
            try await echoInScope(loop, b) { _, echoed in echoed == 100 }
        }
        let rounds = await withWatchdog("100 foreign round trips in scopes") { () async throws -> Int in
            try await loop.withReadiness(a, .read) { readiness in
                var byte: UInt8 = 1
                var replies = readiness.makeAsyncIterator()
                for _ in 0..<100 {
                    _ = write(a, &byte, 1)
                    _ = try await replies.next()
                    #expect(read(a, &byte, 1) == 1)
                }
                return 100
            }
        }
        #expect(try rounds?.get() == 100)
        #expect(try await echo.value == 100)

        let cancelled = Task { try await loop.withReadiness(a, .read) { readiness in for try await _ in readiness {} } }
        let atShutdown = Task { try await loop.withReadiness(d, .read) { readiness in for try await _ in readiness {} } }
        let settled = await withWatchdog("two scoped waiters registering") {
            while try await loop.onLoop({ loop.pendingWaiterCount }) < 2 { await Task.yield() }
        }
        #expect(settled != nil)
        cancelled.cancel()
        let cancelOutcome = await withWatchdog("the cancelled scope") { try await cancelled.value }
        if case .failure(let error)? = cancelOutcome { #expect(error is CancellationError, "\(error)") } else { Issue.record("not cancelled: \(String(describing: cancelOutcome))") }
        thread.shutdown()
        let shutdownOutcome = await withWatchdog("the scope pending at shutdown") { try await atShutdown.value }
        #expect(loopError(shutdownOutcome)?.isLoopShutDown == true, "\(String(describing: shutdownOutcome))")
        let late = await withWatchdog("a scope after shutdown") {
            try await loop.withReadiness(c, .read) { readiness in for try await _ in readiness {} }
        }
        #expect(loopError(late)?.isLoopShutDown == true)
        #expect(loopError(late)?.operation == "readable(fd: \(c))")
        close(a); close(b); close(c); close(d)
    }
}

/// Echoes every byte that arrives on `fd`, iterating a readiness scope, until `isDone(last byte,
/// bytes echoed so far)`; returns how many it echoed. Runs on the caller's executor.
nonisolated(nonsending) private func echoInScope(_ loop: Loop, _ fd: Int32, until isDone: (UInt8, Int) -> Bool) async throws -> Int {
    try await loop.withReadiness(fd, .read) { readiness in
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
