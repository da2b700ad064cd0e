@preconcurrency import Glibc
import Testing
@testable import SerialLoop

@Suite("Descriptor readiness")
struct IOTests {
    @Test(arguments: bothClocks) func readableAndWritableOnASocketpair(time: Loop.TimeMode) async throws {
        let echoed = try await withLoop(time: time) { loop in
            let (a, b) = makeSocketPair()
            defer { try? loop.close(a); try? loop.close(b) }
            let server = Task(executorPreference: loop) {
                try await loop.readable(b)
                let text = readString(b)
                try await loop.writable(b)
                writeAll(b, text.uppercased())
            }
            try await loop.writable(a)
            writeAll(a, "hello")
            try await loop.readable(a)
            try await server.value
            return readString(a)
        }
        #expect(echoed == "HELLO")
    }

    @Test(arguments: bothClocks) func readableOnAPipeAndEndOfFile(time: Loop.TimeMode) async throws {
        let (text, eof) = try await withLoop(time: time) { loop in
            let (readEnd, writeEnd) = makePipe()
            let reader = Task(executorPreference: loop) { () async throws -> String in
                try await loop.readable(readEnd)
                return readString(readEnd)
            }
            try await loop.writable(writeEnd)
            writeAll(writeEnd, "through a pipe")
            let text = try await reader.value
            try loop.close(writeEnd)
            try await loop.readable(readEnd)        // EOF counts as readable
            let eof = readString(readEnd)
            try loop.close(readEnd)
            return (text, eof)
        }
        #expect(text == "through a pipe")
        #expect(eof == "")
    }

    @Test(arguments: bothClocks) func readableReturnsOnTheNextTickWhenAlreadyReady(time: Loop.TimeMode) async throws {
        let ok = try await withLoop(time: time) { loop in
            let (a, b) = makeSocketPair()
            writeAll(a, "already there")
            try await loop.readable(b)
            try await loop.readable(b)              // still readable: level-triggered
            let ok = readString(b) == "already there"
            try loop.close(a); try loop.close(b)
            return ok
        }
        #expect(ok)
    }

    @Test(arguments: bothClocks) func manyWaitersOnOneDescriptorAllWake(time: Loop.TimeMode) async throws {
        let woken = try await withLoop(time: time) { loop in
            let (a, b) = makeSocketPair()
            let count = LoopBox(0)
            let waiters = (0..<10).map { _ in
                Task(executorPreference: loop) { try await loop.readable(b); count.value += 1 }
            }
            await loop.idleTick()
            #expect(loop.pendingWaiterCount == 10)
            writeAll(a, "x")
            for waiter in waiters { try await waiter.value }
            try loop.close(a); try loop.close(b)
            return count.value
        }
        #expect(woken == 10)
    }

    @Test(arguments: bothClocks) func cancellingAReadinessWaitThrowsAndDeregisters(time: Loop.TimeMode) async throws {
        let (outcome, waitersAfter) = try await withLoop(time: time) { loop in
            let (a, b) = makeSocketPair()
            let waiter = Task(executorPreference: loop) { try await loop.readable(b) }
            await loop.idleTick()
            #expect(loop.pendingWaiterCount == 1)
            waiter.cancel()
            let outcome = await waiter.result
            let after = loop.pendingWaiterCount
            try loop.close(a); try loop.close(b)
            return (outcome, after)
        }
        #expect(throws: CancellationError.self) { try outcome.get() }
        #expect(waitersAfter == 0)
    }

    /// More descriptors ready at once than the backend's event buffer holds (64 at first): every
    /// one is delivered — to waiting tasks and to reader callbacks alike — over successive polls
    /// while the buffer grows between them (epoll is level-triggered, so an event a poll had no
    /// room for comes again; the sanitizer jobs check the growth itself for memory errors).
    @Test(arguments: bothClocks) func aBurstLargerThanThePollBufferIsDeliveredWhole(time: Loop.TimeMode) async throws {
        let count = 150
        let outcome = await withWatchdog("150 ready descriptors delivered") { try await withLoop(time: time) { loop in
            let pairs = (0..<count).map { _ in makeSocketPair() }
            let calls = LoopBox(0)
            for (_, b) in pairs[..<(count / 2)] {
                try loop.addReader(b) {
                    if readString(b) == "x" { calls.value += 1 }
                }
            }
            let readers = pairs[(count / 2)...].map { _, b in
                Task(executorPreference: loop) { () async throws -> String in
                    try await loop.readable(b)
                    return readString(b)
                }
            }
            await loop.idleTick()                                  // every wait registered
            for (a, _) in pairs { writeAll(a, "x") }               // all ready before the next poll
            var read = 0
            for reader in readers where try await reader.value == "x" { read += 1 }
            for _ in 0..<10 where calls.value < count / 2 { await loop.settle() }
            for (a, b) in pairs {
                loop.removeReader(b)
                try loop.close(a); try loop.close(b)
            }
            return (read, calls.value)
        } }
        let (read, callbacks) = try #require(outcome).get()
        #expect(read == count / 2)
        #expect(callbacks == count / 2)
    }

    /// A task cancelled before it waits gets `CancellationError` from `readable` even though the
    /// descriptor is ready: its cancellation handler runs as it is installed, before the wait starts.
    @Test(arguments: bothClocks) func readableInACancelledTaskThrowsEvenWhenReady(time: Loop.TimeMode) async throws {
        let (outcome, waitersAfter) = try await withLoop(time: time) { loop in
            let (a, b) = makeSocketPair()
            writeAll(a, "ready")
            let reader = Task(executorPreference: loop) {
                withUnsafeCurrentTask { $0?.cancel() }
                try await loop.readable(b)
            }
            let outcome = await reader.result
            let after = loop.pendingWaiterCount
            try loop.close(a); try loop.close(b)
            return (outcome, after)
        }
        #expect(throws: CancellationError.self) { try outcome.get() }
        #expect(waitersAfter == 0)
    }

    /// Waits cancelled from another thread while the descriptor becomes ready: each cancellation
    /// handler runs on the cancelling thread and reaches the loop through its inbox, racing the
    /// wake-up. Every cancelled wait ends (woken or cancelled), every other one is woken, and
    /// nothing is left registered: a handler never outlives its wait.
    @Test func readableWaitsCancelledFromAnotherThreadWhileOthersWake() async throws {
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let loop = thread.loop
        let (a, b) = makeSocketPair()
        let waiters = (0..<200).map { _ in Task(executorPreference: loop) { try await loop.readable(b) } }
        let settled = await withWatchdog("the waiters registering") {
            while try await loop.onLoop({ loop.pendingWaiterCount }) < 200 { try await Task.sleep(for: .milliseconds(1)) }
        }
        #expect(settled != nil)
        for (index, waiter) in waiters.enumerated() where index.isMultiple(of: 2) { waiter.cancel() }
        writeAll(a, "x")
        for (index, waiter) in waiters.enumerated() {
            switch await waiter.result {
            case .success: break
            case .failure(let error):
                #expect(index.isMultiple(of: 2) && error is CancellationError, "waiter \(index): \(error)")
            }
        }
        #expect(try await loop.onLoop { loop.pendingWaiterCount } == 0)
        close(a); close(b)
    }

    @Test(arguments: bothClocks) func invalidDescriptorIsAnErrorNamingTheOperationAndErrno(time: Loop.TimeMode) async throws {
        let errors = try await withLoop(time: time) { loop in
            var errors: [LoopError] = []
            for fd: Int32 in [-1, 9999] {
                do { try await loop.readable(fd) } catch let error as LoopError { errors.append(error) }
            }
            do { try await loop.writable(-1) } catch let error as LoopError { errors.append(error) }
            return errors
        }
        #expect(errors.count == 3)
        #expect(errors.allSatisfy { $0.errno == EBADF })
        #expect(errors[0].description.hasPrefix("readable(fd: -1): EBADF"))
        #expect(errors[1].description.hasPrefix("readable(fd: 9999): EBADF"))
        #expect(errors[2].description.hasPrefix("writable(fd: -1): EBADF"))
    }

    @Test func closedDescriptorIsAnError() async throws {
        // Tests run in parallel and the kernel hands out the lowest free number, so a freshly
        // closed low descriptor may already belong to another test. The highest allowed number
        // will not (the stress tests stay below a quarter of the limit).
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let high = Int32(clamping: limit.rlim_cur - 1)
        let error = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            #expect(dup2(a, high) == high)
            try loop.close(high)
            defer { try? loop.close(a); try? loop.close(b) }
            do {
                try await loop.readable(high)
                return nil as LoopError?
            } catch let error as LoopError {
                return error
            }
        }
        #expect(error?.errno == EBADF)
    }

    @Test func closingThroughTheLoopWakesWaitersWithAnError() async throws {
        let outcomes = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let reader = Task(executorPreference: loop) { try await loop.readable(b) }
            await loop.idleTick()
            try loop.close(b)
            let outcome = await reader.result
            try loop.close(a)
            return outcome
        }
        #expect(throws: LoopError.self) { try outcomes.get() }
    }

    @Test func regularFilesAreAlwaysReady() async throws {
        let fd = open("/proc/self/status", O_RDONLY)
        defer { close(fd) }
        try await expectAlwaysReady(fd)
    }

    @Test func noEventsDeliveredForReusedDescriptor() async throws {
        // The kernel reuses a closed number at once. The new user of the number must hear only of
        // its own description, not of the previous one (still open here through a dup, and readable).
        let (stale, text, reusedNumber) = try await withLoop { loop in
            let (a, b0) = makeSocketPair()
            let b = highDuplicate(b0, slot: 6)                  // a number no parallel test takes
            close(b0)
            let keeper = dup(b)                                 // keeps b's description open
            try loop.addReader(b) {}
            try loop.close(b)                                   // forgets b, bumps its generation
            writeAll(a, "stale")                                // the old description is readable
            let (c, d0) = makeSocketPair()
            let d = fcntl(d0, F_DUPFD, b)                       // the lowest free number from b: b
            close(d0)
            let reader = Task(executorPreference: loop) { try await loop.readable(d); return readString(d) }
            for _ in 0..<5 { await Task.yield() }               // ticks, each with a poll
            let stale = loop.pendingWaiterCount == 0            // woken by the old description?
            writeAll(c, "fresh")
            let text = try await reader.value
            try loop.close(a); try loop.close(c); try loop.close(d); close(keeper)
            return (stale, text, d == b)
        }
        #expect(reusedNumber, "the number was not reused: the test proves nothing")
        #expect(!stale, "the new reader was woken by the previous description's data")
        #expect(text == "fresh")
    }

    @Test func readerAndWriterCallbacksRunWhileReadyUntilRemoved() async throws {
        let (reads, wrote) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let done = loop.makeFuture(of: String.self)
            var received = ""
            try loop.addReader(b) {
                received += readString(b)
                if received.count >= 6 { loop.removeReader(b); done.succeed(received) }
            }
            var wrote = 0
            try loop.addWriter(a) {
                writeAll(a, "abc")
                wrote += 1
                if wrote == 2 { loop.removeWriter(a) }
            }
            let text = try await done.value
            #expect(loop.removeReader(b) == false)
            try loop.close(a); try loop.close(b)
            return (text, wrote)
        }
        #expect(reads == "abcabc")
        #expect(wrote == 2)
    }

    @Test func interestIsKeptAcrossWaitsAndDroppedWhenNobodyWants() async throws {
        let (afterWake, afterIdle) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            writeAll(a, "x")
            try await loop.readable(b)
            // Woken, but the kernel still watches b: waiting again costs no epoll_ctl.
            let afterWake = loop.watchedDescriptorCount
            // b stays readable with nobody waiting: the next poll drops the interest.
            await loop.idleTick()
            await loop.idleTick()
            let afterIdle = loop.watchedDescriptorCount
            try loop.close(a); try loop.close(b)
            return (afterWake, afterIdle)
        }
        #expect(afterWake == 1)
        #expect(afterIdle == 0)
    }

    @Test func addReaderOnARegularFileIsRefused() async throws {
        let error = try await withLoop { loop in
            let fd = open("/proc/self/status", O_RDONLY)
            defer { close(fd) }
            do throws(LoopError) { try loop.addReader(fd) {}; return nil as LoopError? } catch { return error }
        }
        #expect(error?.errno == EPERM)
    }
}

extension Loop {
    /// Lets every task spawned so far reach its first suspension: one pass through the ready queue
    /// and one poll. Exact, not a heuristic: a spawned task's first job is already queued.
    func idleTick() async {
        let future = makeFuture(of: Void.self)
        schedule(after: .zero) { future.succeed(()) }
        try? await future.value
    }
}
