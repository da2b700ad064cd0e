@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop

// One test per hazard the acceptance suite found (issue 9). Each failed on the code before the
// fix — by hanging (turned into a failure by a watchdog), by trapping, or by a wrong outcome.

/// 1. Awaiting a loop that has shut down.
@Suite("Awaits on a loop that has shut down")
struct ShutDownLoopTests {
    /// Every async loop API, called by a foreign task after `withLoop` returned, fails at once
    /// with a LoopError that names the operation and says the loop has shut down.
    @Test func everyAsyncAPIFailsAtOnceAfterWithLoopReturned() async throws {
        let (loop, fd, future) = try await withLoop { loop in
            let (a, _) = makeSocketPair()
            return (loop, a, loop.makeFuture(of: Int.self))
        }
        #expect(loop.hasShutDown)
        let outcomes: [(String, Result<Void, any Error>?)] = [
            ("sleep(until:)", await withWatchdog("sleep after shutdown") { try await loop.sleep(for: .seconds(1)) }),
            ("sleep(until:)", await withWatchdog("clock sleep after shutdown") { try await loop.clock.sleep(for: .seconds(1)) }),
            ("readable(fd: \(fd))", await withWatchdog("readable after shutdown") { try await loop.readable(fd) }),
            ("writable(fd: \(fd))", await withWatchdog("writable after shutdown") { try await loop.writable(fd) }),
            ("LoopFuture.value", await withWatchdog("future.value after shutdown") { _ = try await future.value }),
            ("gather(_:)", await withWatchdog("gather after shutdown") { _ = try await loop.gather([{ @Sendable in 1 }]) }),
            ("gather(_:)", await withWatchdog("gather(futures) after shutdown") { _ = try await loop.gather([future]) }),
        ]
        for (operation, outcome) in outcomes {
            let error = try #require(loopError(outcome), "\(operation) did not fail with a LoopError: \(String(describing: outcome))")
            #expect(error.operation == operation)
            #expect(error.isLoopShutDown)
            #expect(error.description == "\(operation): the loop has shut down")
        }
        close(fd)
    }

    @Test func everyAsyncAPIFailsAtOnceAfterLoopThreadShutdown() async throws {
        let thread = try Loop.startThread()
        let loop = thread.loop
        try await loop.sleep(for: .milliseconds(1))       // alive: works
        thread.shutdown()
        let sleep = await withWatchdog("sleep after LoopThread.shutdown") { try await loop.sleep(for: .seconds(1)) }
        #expect(loopError(sleep)?.isLoopShutDown == true)
        let (a, b) = makeSocketPair()
        let read = await withWatchdog("readable after LoopThread.shutdown") { try await loop.readable(a) }
        #expect(loopError(read)?.isLoopShutDown == true)
        close(a); close(b)
    }

    /// Waits pending when shutdown begins: a task of the loop unwinds with CancellationError, a
    /// foreign task gets the shutdown error.
    @Test func waitsPendingAtShutdownAreResumedByKind() async throws {
        let thread = try Loop.startThread()
        let loop = thread.loop
        let future = loop.makeFuture(of: Int.self)
        let started = Counter()
        let foreignSleep = Task { started.increment(); try await loop.sleep(for: .seconds(3600)) }
        let foreignFuture = Task { started.increment(); _ = try await future.value }
        let loopSleep = Task(executorPreference: loop) { started.increment(); try await loop.sleep(for: .seconds(3600)) }
        // Wait until all three are suspended on the loop (each registered one timer or awaiter).
        let settled = await withWatchdog("waiters registering") {
            while true {
                let pending = try await loop.onLoop { loop.pendingTimerCount + loop.leftovers().futureAwaiters }
                if pending == 3 { return }
                try await Task.sleep(for: .milliseconds(1))
            }
        }
        #expect(settled != nil)
        thread.shutdown()
        let outcomes = await (foreignSleep.result, foreignFuture.result, loopSleep.result)
        #expect(loopError(outcomes.0)?.isLoopShutDown == true, "foreign sleep: \(outcomes.0)")
        #expect(loopError(outcomes.1)?.isLoopShutDown == true, "foreign future.value: \(outcomes.1)")
        #expect((try? outcomes.2.get()) == nil)
        if case .failure(let error) = outcomes.2 { #expect(error is CancellationError) }
    }

    /// The race: 50 tasks on the default executor sleep on the loop in a loop while `shutdown()`
    /// runs. Every one of them must end, with the shutdown error.
    @Test(arguments: 0..<5) func foreignSleepersRacingShutdownAllEnd(round: Int) async throws {
        let thread = try Loop.startThread()
        let loop = thread.loop
        let sleeps = Counter()
        let sleepers = (0..<50).map { _ in
            Task { () -> (any Error)? in
                while true {
                    do { try await loop.sleep(for: .microseconds(100)) } catch { return error }
                    sleeps.increment()
                }
            }
        }
        // Let some of them get going, then shut down under their feet (round 0: at once).
        if round > 0 {
            _ = await withWatchdog("first sleeps") { await sleeps.reach(round * 20) }
        }
        thread.shutdown()
        for sleeper in sleepers {
            let outcome = await withWatchdog("a sleeper after shutdown") { await sleeper.value }
            let result = try #require(outcome)
            let error = try #require(try result.get())
            #expect((error as? LoopError)?.isLoopShutDown == true, "\(error)")
        }
    }

    /// `runUntilIdle` and `advance` cannot throw: on a shut-down loop they return at once.
    @Test func steppingAShutDownTestLoopReturnsAtOnce() async throws {
        let loop = try await withTestLoop { $0 }
        let idle = await withWatchdog("runUntilIdle after shutdown") { await loop.runUntilIdle() }
        let advance = await withWatchdog("advance after shutdown") { await loop.advance(by: .seconds(1)) }
        #expect(idle != nil && advance != nil)
    }
}

extension Loop {
    /// Runs `body` on the loop and returns its value (tests).
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) async throws -> T {
        let future = makeFuture(of: T.self)
        execute { future.succeed(body()) }
        return try await future.value
    }
}

/// 2. Descriptor numbers closed behind the loop's back and reused.
@Suite("Descriptor lifecycle")
struct DescriptorLifecycleTests {
    /// A finished wait, then plain `close(2)`, then a new file with the same number: a wait on
    /// the new file works (the loop's cached interest belonged to the old one).
    @Test func finishedWaitThenCloseAndReuseOfTheNumberIsWatched() async throws {
        let woke = try await withLoop { loop in
            let (r, w) = makePipe()
            let high = highDuplicate(r, slot: 1)
            close(r)
            writeAll(w, "a")
            try await loop.readable(high)
            _ = readString(high)
            close(high)                                   // plain close: the loop is not told
            close(w)
            let (r2, w2) = makePipe()
            #expect(dup2(r2, high) == high)                // the same number, a new file
            close(r2)
            writeAll(w2, "b")
            let waiter = Task(executorPreference: loop) { try await loop.readable(high) }
            let watchdog = loop.schedule(after: .seconds(10)) { waiter.cancel() }
            let outcome = await waiter.result
            watchdog.cancel()
            let text = readString(high)
            try loop.close(high)
            close(w2)
            return (outcome, text)
        }
        #expect(throws: Never.self) { try woke.0.get() }
        #expect(woke.1 == "b")
    }

    /// A descriptor the loop watched, closed with `close(2)` and not reused: `readable` and
    /// `writable` throw EBADF (they used to wait forever on the cached interest).
    @Test func closedPreviouslyWatchedDescriptorGivesEBADF() async throws {
        let (read, write) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let high = highDuplicate(a, slot: 2)
            close(a)
            writeAll(b, "x")
            try await loop.readable(high)
            try await loop.writable(high)
            close(high)                                   // behind the loop's back
            let read = Task(executorPreference: loop) { try await loop.readable(high) }
            let write = Task(executorPreference: loop) { try await loop.writable(high) }
            let watchdog = loop.schedule(after: .seconds(10)) { read.cancel(); write.cancel() }
            let outcomes = (await read.result, await write.result)
            watchdog.cancel()
            close(b)
            return outcomes
        }
        let readError = try #require(loopError(read))
        let writeError = try #require(loopError(write))
        #expect(readError.errno == EBADF && readError.operation.hasPrefix("readable(fd: "))
        #expect(writeError.errno == EBADF && writeError.operation.hasPrefix("writable(fd: "))
    }

    /// A descriptor closed *while* tasks wait on it (documented misuse) is found by the loop's
    /// periodic check: the waiters fail with EBADF within about a second instead of hanging.
    @Test func waitersOnADescriptorClosedWhileWaitingFailWithEBADF() async throws {
        let (reader, writer, left) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let high = highDuplicate(b, slot: 3)
            close(b)
            fillSendBuffer(high)
            let reader = Task(executorPreference: loop) { try await loop.readable(high) }
            let writer = Task(executorPreference: loop) { try await loop.writable(high) }
            await loop.idleTick()
            #expect(loop.pendingWaiterCount == 2)
            close(high)
            let watchdog = loop.schedule(after: .seconds(10)) { reader.cancel(); writer.cancel() }
            let outcomes = (await reader.result, await writer.result)
            watchdog.cancel()
            close(a)
            return (outcomes.0, outcomes.1, loop.pendingWaiterCount)
        }
        #expect(loopError(reader)?.errno == EBADF, "\(reader)")
        #expect(loopError(writer)?.errno == EBADF, "\(writer)")
        #expect(loopError(reader)?.description.contains("closed (not through loop.close) while waiting") == true)
        #expect(loopError(reader)?.kind == .descriptorClosed && loopError(writer)?.kind == .descriptorClosed, "closed behind the loop is a closed descriptor too")
        #expect(left == 0)
    }

    /// A descriptor number far beyond anything open is EBADF, and the registration table does not
    /// grow to its size (it used to allocate a slot per number: ~120 GB for Int32.max).
    @Test(arguments: [Int32.max, Int32.max - 1, 1 << 24, 65_535, -1, Int32.min])
    func hugeOrNegativeDescriptorIsEBADFWithoutAllocating(fd: Int32) async throws {
        let (read, write, callback, tableSize) = try await withLoop { loop in
            let read = await Result { try await loop.readable(fd) }
            let write = await Result { try await loop.writable(fd) }
            let callback = Result { () throws(LoopError) in try loop.addReader(fd) {} }
            return (read, write, callback.mapError { $0 as any Error }, loop.reactor.registrationTableSize)
        }
        #expect(loopError(read)?.errno == EBADF)
        #expect(loopError(write)?.errno == EBADF)
        #expect(loopError(callback)?.errno == EBADF)
        #expect(tableSize < 65_535)
    }
}

/// 3. Extreme inputs and lifecycle edges that used to trap.
@Suite("Extreme inputs")
struct ExtremeInputTests {
    /// The earliest representable instant is "now" (fires on the next tick); the latest is
    /// "never". Neither overflows, on a real loop or a test loop.
    @Test(arguments: [Loop.TimeMode.real, .virtual])
    func extremeInstantsMeanNowAndNever(time: Loop.TimeMode) async throws {
        let body: @Sendable (Loop) async throws -> [String] = { loop in
            var log: [String] = []
            let earliest = LoopClock.Instant(nanosecondsSinceOrigin: .min)
            let latest = LoopClock.Instant(nanosecondsSinceOrigin: .max)
            let fired = loop.makeFuture(of: Void.self)
            loop.schedule(at: earliest) { fired.succeed(()) }
            let never = loop.schedule(at: latest) { log.append("never fired") }
            try await fired.value
            log.append("schedule(at: earliest) fired")
            try await loop.sleep(until: earliest)
            try await loop.sleep(for: .seconds(Int64.min))
            try await loop.sleep(for: Duration(secondsComponent: .min, attosecondsComponent: -999_999_999_999_999_999))
            log.append("past sleeps returned")
            let forever = Task(executorPreference: loop) { try await loop.sleep(until: latest) }
            let forever2 = Task(executorPreference: loop) { try await loop.sleep(for: .seconds(Int64.max)) }
            try await loop.sleep(for: .milliseconds(1))
            forever.cancel(); forever2.cancel()
            log.append("never sleeps: \(await forever.result.failure() is CancellationError), \(await forever2.result.failure() is CancellationError)")
            never.cancel()
            #expect(earliest.duration(to: latest) == .nanoseconds(Int64.max))
            #expect(latest.duration(to: earliest) == .nanoseconds(Int64.min))
            return log
        }
        let log = time == .real ? try await withLoop(body) : try await withTestLoop(body)
        #expect(log == ["schedule(at: earliest) fired", "past sleeps returned", "never sleeps: true, true"])
    }

    /// Dropping the last reference to a `LoopThread` on its own loop thread shuts it down
    /// asynchronously (it used to trap: deinit called shutdown(), which refused its own thread).
    @Test func droppingTheLastLoopThreadReferenceOnItsOwnThreadShutsItDown() async throws {
        let holder = LoopBox<LoopThread?>(try Loop.startThread())
        let loop = holder.value!.loop
        loop.execute { holder.value = nil }              // deinit on the loop thread
        let ended = await withWatchdog("loop shutting down after its LoopThread was dropped") {
            while true {
                do { try await loop.sleep(for: .milliseconds(1)) } catch { return error }
            }
        }
        #expect((try? ended?.get() as? LoopError)?.isLoopShutDown == true)
    }

    /// `shutdown()` called from a job of the loop itself stops it after that job.
    @Test func shutdownFromTheLoopsOwnThreadIsAsynchronous() async throws {
        let thread = try Loop.startThread()
        let loop = thread.loop
        let returned = Counter()
        loop.execute { thread.shutdown(); returned.increment() }
        let ended = await withWatchdog("loop shutting down") {
            while !loop.hasShutDown { try await Task.sleep(for: .milliseconds(1)) }
        }
        #expect(ended != nil)
        #expect(returned.value == 1)                      // shutdown() returned inside the job
        thread.shutdown()                                 // idempotent from any thread
    }

    /// `run(until: future)` on a test loop that stalls throws the stall error (it used to crash on
    /// a force-unwrap).
    @Test func runUntilAFutureOnAStalledTestLoopThrowsTheStall() throws {
        let loop = try TestLoop()
        loop.stallTimeout = .milliseconds(20)
        let never = loop.makeFuture(of: Int.self)
        let error = #expect(throws: LoopError.self) { try loop.run(until: never) }
        #expect(error?.operation == "run(until:)")
        #expect(error?.description.contains("stall") == true || error?.description.contains("nothing") == true, "\(String(describing: error))")
        loop.shutdown()
    }

    /// A `run(until:)` that ended by `stop()` leaves its watcher behind; when what it waited for
    /// completes later, it must not end the *next* run (it used to, which then reported "stop()
    /// was called" although nobody called it).
    @Test func aStoppedRunUntilDoesNotEndTheNextRun() throws {
        let loop = try Loop()
        let first = loop.makeFuture(of: Int.self)
        loop.callSoon { loop.stop() }
        #expect(throws: LoopError.self) { try loop.run(until: first) }
        let firstTask = Task(executorPreference: loop) { try await loop.sleep(for: .milliseconds(1)); return 1 }
        loop.callSoon { loop.stop() }
        #expect(throws: LoopError.self) { try loop.run(until: firstTask) }

        loop.schedule(after: .milliseconds(1)) { first.succeed(1) }   // both complete mid next run
        let second = loop.makeFuture(of: Int.self)
        loop.schedule(after: .milliseconds(20)) { second.succeed(2) }
        #expect(try loop.run(until: second) == 2)
        let third = Task(executorPreference: loop) { try await loop.sleep(for: .milliseconds(5)); return 3 }
        #expect(try loop.run(until: third) == 3)
        loop.shutdown()
        #expect(throws: LoopError.self) { try loop.run(until: third) }   // shut down: an error, not a trap
    }
}

/// 4. Test loops must not take over tasks they do not own.
@Suite("Foreign tasks on test loops")
struct ForeignTaskTests {
    /// A task of another executor that awaits a test loop resumes on its own executor, not on the
    /// loop thread (the test loop's capture of global work let it take the task over).
    @Test func foreignTaskAwaitingATestLoopResumesOnItsOwnExecutor() async throws {
        let thread = try Loop.startThread(time: .virtual)
        let loop = thread.loop
        let before = loop.now
        try await loop.sleep(for: .seconds(5))
        #expect(!loop.isOnLoopThread, "the foreign task was moved onto the test loop's thread by sleep")
        #expect(before.duration(to: loop.now) == .seconds(5))
        let future = loop.makeFuture(of: Int.self)
        loop.execute { future.succeed(7) }
        #expect(try await future.value == 7)
        #expect(!loop.isOnLoopThread, "the foreign task was moved onto the test loop's thread by future.value")
        #expect(try await loop.gather([{ @Sendable in 1 }, { @Sendable in 2 }]) == [1, 2])
        #expect(!loop.isOnLoopThread, "the foreign task was moved onto the test loop's thread by gather")
        thread.shutdown()                                 // from the test's own executor: no trap
    }
}

extension Result {
    func failure() -> Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
