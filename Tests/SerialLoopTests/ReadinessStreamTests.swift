@preconcurrency import Glibc
import Testing
@testable import SerialLoop

@Suite("Readiness streams")
struct ReadinessStreamTests {
    /// One stream per side, 1,000 round trips: each element means one byte can be read.
    @Test func manyWaitsOnOneReadinessStream() async throws {
        let rounds = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let echo = Task(executorPreference: loop) {
                var byte: UInt8 = 0
                var echoed = 0
                for try await _ in loop.readiness(b, .read) {
                    while read(b, &byte, 1) == 1 {
                        _ = write(b, &byte, 1)
                        echoed += 1
                    }
                    if byte == 0 { break }                      // the last byte ends the echo
                }
                return echoed
            }
            var rounds = 0
            var byte: UInt8 = 1
            var replies = loop.readiness(a, .read).makeAsyncIterator()
            for round in 1...1000 {
                byte = round == 1000 ? 0 : 1
                _ = write(a, &byte, 1)
                try #require(try await replies.next() != nil)
                #expect(read(a, &byte, 1) == 1)
                rounds += 1
            }
            #expect(try await echo.value == 1000)
            #expect(loop.pendingWaiterCount == 0)
            try loop.close(a); try loop.close(b)
            return rounds
        }
        #expect(rounds == 1000)
    }

    @Test func writeReadinessStreamYieldsWhileWritable() async throws {
        let count = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            var count = 0
            for try await _ in loop.readiness(a, .write) {
                count += 1
                if count == 3 { break }
            }
            try loop.close(a); try loop.close(b)
            return count
        }
        #expect(count == 3)
    }

    /// Cancelling the iterating task mid-wait removes the wait at once and ends the sequence by
    /// throwing `CancellationError`; the iterator returns `nil` afterwards.
    @Test func cancellingMidWaitThrowsCancellationAndRemovesTheWait() async throws {
        let (outcome, waitersAfter) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let reader = Task(executorPreference: loop) { () async throws -> Int in
                var elements = 0
                var iterator = loop.readiness(b, .read).makeAsyncIterator()
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
            await loop.idleTick()
            #expect(loop.pendingWaiterCount == 1)
            reader.cancel()
            let outcome = await reader.result
            let after = loop.pendingWaiterCount
            try loop.close(a); try loop.close(b)
            return (outcome, after)
        }
        #expect(throws: CancellationError.self) { try outcome.get() }
        #expect(waitersAfter == 0)
    }

    /// A task cancelled before it starts iterating gets `CancellationError` from the first `next()`.
    @Test func cancelledBeforeTheFirstWaitThrowsCancellation() async throws {
        let outcome = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            writeAll(a, "ready")                                // would not block: still cancelled
            let reader = Task(executorPreference: loop) {
                withUnsafeCurrentTask { $0?.cancel() }
                for try await _ in loop.readiness(b, .read) {}
            }
            let outcome = await reader.result
            try loop.close(a); try loop.close(b)
            return outcome
        }
        #expect(throws: CancellationError.self) { try outcome.get() }
    }

    @Test func closingThroughTheLoopMidWaitEndsTheStreamWithAnError() async throws {
        let (outcome, b) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let reader = Task(executorPreference: loop) {
                for try await _ in loop.readiness(b, .read) { _ = readString(b) }
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

    @Test func invalidDescriptorThrowsEBADF() async throws {
        let errors = try await withLoop { loop in
            var errors: [LoopError] = []
            for (fd, kind) in [(Int32(-1), DescriptorReadiness.Kind.read), (9999, .read), (-1, .write)] {
                do {
                    for try await _ in loop.readiness(fd, kind) {}
                } catch let error as LoopError {
                    errors.append(error)
                }
            }
            return errors
        }
        #expect(errors.count == 3)
        #expect(errors.allSatisfy { $0.errno == EBADF })
        #expect(errors.map(\.description).map { String($0.prefix(22)) } == [
            "readable(fd: -1): EBAD", "readable(fd: 9999): EB", "writable(fd: -1): EBAD",
        ])
    }

    /// After close through the loop, the number may be reused: a new stream on it works.
    @Test func aNewStreamOnAReusedNumberWorks() async throws {
        let text = try await withLoop { loop in
            // A number in this test's own high range: the number is reused below with dup2, which
            // would silently close another test's descriptor if it were a low, shared number.
            let (a, low) = makeSocketPair()
            let b = highDuplicate(low, slot: 4)
            close(low)
            writeAll(a, "first")
            var first = loop.readiness(b, .read).makeAsyncIterator()
            _ = try await first.next()
            _ = readString(b)
            try loop.close(b)
            // b's number, a new description.
            let (c, d) = makeSocketPair()
            #expect(dup2(d, b) == b)
            close(d)
            writeAll(c, "second")
            var second = loop.readiness(b, .read).makeAsyncIterator()
            _ = try await second.next()
            let text = readString(b)
            try loop.close(a); try loop.close(b); try loop.close(c)
            return text
        }
        #expect(text == "second")
    }

    /// Tasks on the default executor (foreign to the loop) iterate streams on a `LoopThread`: each
    /// wait starts through the inbox, reusing one wait object; cancelling one from another thread
    /// mid-wait ends it with `CancellationError`.
    @Test func foreignTasksIterateStreamsOnALoopThread() async throws {
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let loop = thread.loop
        let (a, b) = makeSocketPair()
        let echo = Task {
            var byte: UInt8 = 0
            var echoed = 0
            for try await _ in loop.readiness(b, .read) {
                while read(b, &byte, 1) == 1 {
                    _ = write(b, &byte, 1)
                    echoed += 1
                }
                if echoed == 200 { break }
            }
            return echoed
        }
        let rounds = await withWatchdog("200 foreign round trips") { () async throws -> Int in
            var byte: UInt8 = 1
            var replies = loop.readiness(a, .read).makeAsyncIterator()
            for _ in 0..<200 {
                _ = write(a, &byte, 1)
                _ = try await replies.next()
                #expect(read(a, &byte, 1) == 1)
            }
            return 200
        }
        #expect(try rounds?.get() == 200)
        #expect(try await echo.value == 200)

        let waiter = Task { for try await _ in loop.readiness(a, .read) {} }
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

    /// A `next()` pending at shutdown: a task of the loop unwinds with `CancellationError`, a
    /// foreign task gets the shutdown error; a `next()` after shutdown fails at once.
    @Test func pendingAndLateWaitsAtShutdown() async throws {
        let thread = try Loop.startThread()
        let loop = thread.loop
        let (a, b) = makeSocketPair()
        let (c, d) = makeSocketPair()
        let loopReader = Task(executorPreference: loop) {
            for try await _ in loop.readiness(b, .read) {}
        }
        let foreignReader = Task {
            for try await _ in loop.readiness(d, .read) {}
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
            for try await _ in loop.readiness(a, .read) {}
        }
        #expect(loopError(late)?.isLoopShutDown == true)
        #expect(loopError(late)?.operation == "readable(fd: \(a))")
        close(a); close(b); close(c); close(d)
    }
}
