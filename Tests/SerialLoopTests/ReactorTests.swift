@preconcurrency import Glibc
import Testing
@testable import SerialLoop

// The reactor's unit tests: each scenario is written once and runs on the in-memory backend and on
// epoll (ReactorWorlds.swift). Time is passed in (`verifyIfDue(now:)`), so the checks of waits on
// cached interest ("Descriptors closed behind the loop's back") are driven without waiting.
// Every `try #require(!reactor[isWaiting: w])` comes before awaiting `w`'s outcome, so a waiter the
// reactor failed to resume is an assertion failure, not a hang.

@Suite("Reactor", .serialized)
struct ReactorTests {
    @Test(arguments: Backing.allCases)
    func readinessWakesEveryWaiterOfItsKind(_ backing: Backing) async throws {
        try await backing.run(ReadinessWakesEveryWaiterOfItsKind())
    }

    @Test(arguments: Backing.allCases)
    func interestNarrowsWhenOneSideLeaves(_ backing: Backing) async throws {
        try await backing.run(InterestNarrowsWhenOneSideLeaves())
    }

    @Test(arguments: Backing.allCases)
    func aCancelledWaiterIsRemovedAndNotWoken(_ backing: Backing) async throws {
        try await backing.run(ACancelledWaiterIsRemovedAndNotWoken())
    }

    @Test(arguments: Backing.allCases)
    func aReusedNumberIsWatchedAfresh(_ backing: Backing) async throws {
        try await backing.run(AReusedNumberIsWatchedAfresh())
    }

    @Test(arguments: Backing.allCases)
    func noEventsDeliveredForAPreviousUserOfTheNumber(_ backing: Backing) async throws {
        try await backing.run(NoEventsDeliveredForAPreviousUserOfTheNumber())
    }

    @Test(arguments: Backing.allCases)
    func closedNumbersFailWithEBADF(_ backing: Backing) async throws {
        try await backing.run(ClosedNumbersFailWithEBADF())
    }

    @Test(arguments: Backing.allCases)
    func aWaitedDescriptorClosedBehindTheLoopIsFoundByTheFullCheck(_ backing: Backing) async throws {
        try await backing.run(AWaitedDescriptorClosedIsFoundByTheFullCheck())
    }

    @Test(arguments: Backing.allCases)
    func regularFilesAreAlwaysReady(_ backing: Backing) async throws {
        try await backing.run(RegularFilesAreAlwaysReady())
    }

    @Test(arguments: Backing.allCases)
    func theWakerInterruptsAPoll(_ backing: Backing) async throws {
        try await backing.run(TheWakerInterruptsAPoll())
    }

    /// In memory only: a real kernel cannot be made to fail on demand.
    @Test func backendFailuresAreThrownAndLeaveNoTrace() async throws {
        let backend = InMemoryBackend(firstNumber: 100)
        var reactor = Reactor(backend: backend)
        defer { reactor.close() }
        let fd = backend.open()

        backend.failNextWatch(errno: ENOSPC)
        do {
            _ = try await reactor.wait(id: 1, fd: fd, .read)
            Issue.record("a wait the backend refused was accepted")
        } catch let error as LoopError {
            #expect(error.errno == ENOSPC)
            #expect(error.operation == "readable(fd: \(fd))")
        }
        #expect(reactor.waiterCount == 0)
        #expect(reactor.kernelRegistrationCount == 0)
        reactor.checkInvariants()

        // A callback the backend refuses leaves the callbacks as they were.
        try reactor.setCallback({}, fd: fd, for: .read, operation: "addReader")
        backend.failNextWatch(errno: ENOMEM)
        #expect(throws: LoopError.self) { try reactor.setCallback({}, fd: fd, for: .write, operation: "addWriter") }
        #expect(reactor.callbackCount == 1)
        #expect(reactor[kernelInterestOf: fd] == .read)
        #expect(backend.watchedInterest(fd) == .read)
        reactor.checkInvariants()

        // A wait on cached interest costs no backend call; widening costs one.
        let calls = backend.controlCalls
        let (reader, joined) = try await reactor.wait(id: 2, fd: fd, .read)
        #expect(joined == .waiting(calledKernel: false))
        #expect(backend.controlCalls == calls)
        let (writer, widened) = try await reactor.wait(id: 3, fd: fd, .write)
        #expect(widened == .waiting(calledKernel: true))
        #expect(backend.controlCalls == calls + 1)

        // A hang-up wakes readers and writers, whatever the descriptor is ready for.
        backend.setReadiness(fd, [])
        backend.hangUp(fd)
        #expect(try reactor.pollNow() == 1)
        try #require(!reactor[isWaiting: reader] && !reactor[isWaiting: writer])
        #expect(await reader.succeeded)
        #expect(await writer.succeeded)
        let hadCallback = try reactor.setCallback(nil, fd: fd, for: .read, operation: "removeReader")
        #expect(hadCallback)
    }
}

struct ReadinessWakesEveryWaiterOfItsKind: ReactorScenario {
    func run<B: PollBackend & ~Copyable>(_ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws {
        let fd = world.openSocket()
        let (first, registered) = try await reactor.wait(id: 1, fd: fd, .read)
        #expect(registered == .waiting(calledKernel: true))
        let (second, joined) = try await reactor.wait(id: 2, fd: fd, .read)
        #expect(joined == .waiting(calledKernel: false))
        let (writer, widened) = try await reactor.wait(id: 3, fd: fd, .write)
        #expect(widened == .waiting(calledKernel: true))
        #expect(reactor[kernelInterestOf: fd] == [.read, .write])
        #expect(reactor.waiterCount == 3)

        #expect(try reactor.pollNow() == 1)                        // writable, not readable
        try #require(!reactor[isWaiting: writer])
        #expect(await writer.succeeded)
        #expect(reactor[isWaiting: first] && reactor[isWaiting: second])

        world.makeReadable(fd)
        #expect(try reactor.pollNow() == 1)
        try #require(!reactor[isWaiting: first] && !reactor[isWaiting: second])
        #expect(await first.succeeded)
        #expect(await second.succeeded)
        #expect(reactor.waiterCount == 0)
    }
}

struct InterestNarrowsWhenOneSideLeaves: ReactorScenario {
    func run<B: PollBackend & ~Copyable>(_ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws {
        let fd = world.openSocket()
        let (reader, _) = try await reactor.wait(id: 1, fd: fd, .read)
        let (writer, _) = try await reactor.wait(id: 2, fd: fd, .write)
        #expect(reactor[kernelInterestOf: fd] == [.read, .write])

        #expect(try reactor.pollNow() == 1)                        // writable: the writer leaves
        try #require(!reactor[isWaiting: writer])
        #expect(await writer.succeeded)
        #expect(reactor[kernelInterestOf: fd] == [.read, .write])  // lazily: still watched
        #expect(try reactor.pollNow() == 1)                        // writable, nobody wants it: narrowed
        #expect(reactor[kernelInterestOf: fd] == .read)
        #expect(try reactor.pollNow() == 0)                        // the backend watches reads only
        #expect(reactor[isWaiting: reader])

        world.makeReadable(fd)
        #expect(try reactor.pollNow() == 1)
        try #require(!reactor[isWaiting: reader])
        #expect(await reader.succeeded)

        // A reader that comes straight back joins the cached interest: no backend call.
        let (again, outcome) = try await reactor.wait(id: 3, fd: fd, .read)
        #expect(outcome == .waiting(calledKernel: false))
        #expect(try reactor.pollNow() == 1)                        // still readable
        try #require(!reactor[isWaiting: again])
        #expect(await again.succeeded)
        #expect(try reactor.pollNow() == 1)                        // readable, nobody waits: dropped
        #expect(reactor[kernelInterestOf: fd] == [])
        #expect(reactor.kernelRegistrationCount == 0)
        #expect(try reactor.pollNow() == 0)
    }
}

struct ACancelledWaiterIsRemovedAndNotWoken: ReactorScenario {
    func run<B: PollBackend & ~Copyable>(_ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws {
        let fd = world.openSocket()
        let (cancelled, _) = try await reactor.wait(id: 1, fd: fd, .read)
        let (kept, _) = try await reactor.wait(id: 2, fd: fd, .read)
        let removed = reactor.removeWaiter(id: 1, fd: fd, for: .read)
        let continuation = try #require(removed)
        continuation.resume(throwing: CancellationError())         // as DescriptorWait.cancel does
        let removedAgain = reactor.removeWaiter(id: 1, fd: fd, for: .read)
        #expect(removedAgain == nil)
        let removedAsWriter = reactor.removeWaiter(id: 2, fd: fd, for: .write)
        #expect(removedAsWriter == nil)                            // wrong kind: not found
        #expect(reactor.waiterCount == 1)
        #expect(await cancelled.wasCancelled)

        world.makeReadable(fd)
        #expect(try reactor.pollNow() == 1)
        try #require(!reactor[isWaiting: kept])
        #expect(await kept.succeeded)

        // The only waiter cancelled: the next event for it narrows the interest away.
        let (alone, _) = try await reactor.wait(id: 3, fd: fd, .read)
        let removedLast = reactor.removeWaiter(id: 3, fd: fd, for: .read)
        let last = try #require(removedLast)
        last.resume(throwing: CancellationError())
        #expect(await alone.wasCancelled)
        #expect(reactor.waiterCount == 0)
        #expect(reactor[kernelInterestOf: fd] == .read)
        #expect(try reactor.pollNow() == 1)                        // readable, nobody waits
        #expect(reactor.kernelRegistrationCount == 0)
        #expect(try reactor.pollNow() == 0)
    }
}

struct AReusedNumberIsWatchedAfresh: ReactorScenario {
    func run<B: PollBackend & ~Copyable>(_ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws {
        let fd = world.openSocket()
        let (first, _) = try await reactor.wait(id: 1, fd: fd, .read)
        world.makeReadable(fd)
        #expect(try reactor.pollNow() == 1)
        try #require(!reactor[isWaiting: first])
        #expect(await first.succeeded)
        world.drain(fd)                      // were the description to survive the close, it is quiet

        world.closeBehindTheLoop(fd)
        let reused = world.reopenSocket(at: fd)
        try #require(reused == fd, "the number was not reused: the scenario would prove nothing")
        let (second, outcome) = try await reactor.wait(id: 2, fd: fd, .read)
        #expect(outcome == .waiting(calledKernel: false))          // the reactor cannot tell
        world.makeReadable(fd)
        #expect(try reactor.pollNow() == 0)                        // the hazard: the closed description was dropped
        #expect(reactor[isWaiting: second])

        #expect(reactor.timeUntilVerification(now: 1) == verificationDelay)
        #expect(reactor.verifyIfDue(now: 1 + verificationDelay - 1) == 0)
        #expect(reactor.verifyIfDue(now: 1 + verificationDelay) == 0)   // re-registered: still waiting
        #expect(reactor[isWaiting: second])
        #expect(reactor.kernelRegistrationCount == 1)
        #expect(try reactor.pollNow() == 1)
        try #require(!reactor[isWaiting: second])
        #expect(await second.succeeded)
    }
}

struct NoEventsDeliveredForAPreviousUserOfTheNumber: ReactorScenario {
    func run<B: PollBackend & ~Copyable>(_ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws {
        let fd = world.openSocket()
        let keeper = world.dup(fd)           // keeps fd's description open after fd is closed
        let (first, _) = try await reactor.wait(id: 1, fd: fd, .read)
        world.makeReadable(fd)
        #expect(try reactor.pollNow() == 1)
        try #require(!reactor[isWaiting: first])
        world.drain(fd)

        world.closeBehindTheLoop(fd)
        let reused = world.reopenSocket(at: fd)
        try #require(reused == fd, "the number was not reused: the scenario would prove nothing")
        let (second, _) = try await reactor.wait(id: 2, fd: fd, .read)
        _ = reactor.timeUntilVerification(now: 1)
        #expect(reactor.verifyIfDue(now: 1 + verificationDelay) == 0)   // new description, new generation

        // The old description is still watched under the old number (the interest list is keyed
        // by number *and* description) and reports events tagged with the old generation.
        world.makeReadable(keeper)
        #expect(try reactor.pollNow() == 1)                        // the stale event arrived…
        #expect(reactor[isWaiting: second])                         // …and was dropped
        world.makeReadable(fd)
        #expect(try reactor.pollNow() == 2)                        // stale and current
        try #require(!reactor[isWaiting: second])
        #expect(await second.succeeded)
    }
}

struct ClosedNumbersFailWithEBADF: ReactorScenario {
    func run<B: PollBackend & ~Copyable>(_ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws {
        // A number the reactor has never seen and that is not open: refused, and the table does not grow.
        let unused = world.unusedNumber()
        let size = reactor.registrationTableSize
        do {
            _ = try await reactor.wait(id: 1, fd: unused, .read)
            Issue.record("a wait on a closed number was accepted")
        } catch let error as LoopError {
            #expect(error.errno == EBADF)
        }
        #expect(reactor.registrationTableSize == size)

        // Closed behind the loop's back: a wait that joins the cached interest is checked after
        // the delay, and every waiter on the number fails with EBADF.
        let fd = world.openSocket()
        let (first, _) = try await reactor.wait(id: 2, fd: fd, .read)
        world.closeBehindTheLoop(fd)
        #expect(try reactor.pollNow() == 0)
        let (second, outcome) = try await reactor.wait(id: 3, fd: fd, .read)
        #expect(outcome == .waiting(calledKernel: false))
        #expect(reactor.timeUntilVerification(now: 1) == verificationDelay)
        #expect(reactor.verifyIfDue(now: 1 + verificationDelay) == 2)
        try #require(!reactor[isWaiting: first] && !reactor[isWaiting: second])
        #expect(await first.errno == EBADF)
        #expect(await second.errno == EBADF)
        #expect(reactor.kernelRegistrationCount == 0)

        // Forgotten by then: the next wait asks the backend, which refuses at once.
        do {
            _ = try await reactor.wait(id: 4, fd: fd, .write)
            Issue.record("a wait on a closed number was accepted")
        } catch let error as LoopError {
            #expect(error.errno == EBADF)
            #expect(error.operation == "writable(fd: \(fd))")
        }
        #expect(reactor.waiterCount == 0)
    }
}

struct AWaitedDescriptorClosedIsFoundByTheFullCheck: ReactorScenario {
    func run<B: PollBackend & ~Copyable>(_ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws {
        let fd = world.openSocket()
        let (waiter, outcome) = try await reactor.wait(id: 1, fd: fd, .read)
        #expect(outcome == .waiting(calledKernel: true))           // verified: only the full check looks again
        world.closeBehindTheLoop(fd)
        #expect(try reactor.pollNow() == 0)
        #expect(reactor.timeUntilVerification(now: 1) == fullCheckInterval)
        #expect(reactor.verifyIfDue(now: fullCheckInterval) == 0)
        #expect(reactor[isWaiting: waiter])
        #expect(reactor.verifyIfDue(now: 1 + fullCheckInterval) == 1)
        try #require(!reactor[isWaiting: waiter])
        #expect(await waiter.errno == EBADF)
    }
}

struct RegularFilesAreAlwaysReady: ReactorScenario {
    func run<B: PollBackend & ~Copyable>(_ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws {
        let file = world.openRegularFile()
        for (id, interest) in [(UInt64(1), Interest.read), (2, .write)] {
            let (waiter, outcome) = try await reactor.wait(id: id, fd: file, interest)
            try #require(outcome == .alwaysReady)                  // else the waiter would wait forever
            #expect(await waiter.succeeded)
        }
        #expect(reactor.waiterCount == 0)
        #expect(reactor.kernelRegistrationCount == 0)
        do {
            try reactor.setCallback({}, fd: file, for: .read, operation: "addReader(fd: \(file))")
            Issue.record("a callback on a regular file was accepted: it would spin")
        } catch {
            #expect(error.errno == EPERM)
        }
        #expect(reactor.callbackCount == 0)

        // A watched number reused for a regular file behind the loop's back: the check finds it
        // always ready and wakes every waiter on it.
        let fd = world.openSocket()
        let (first, _) = try await reactor.wait(id: 3, fd: fd, .read)
        world.closeBehindTheLoop(fd)
        let reused = world.reopenRegularFile(at: fd)
        try #require(reused == fd, "the number was not reused: the scenario would prove nothing")
        let (second, outcome) = try await reactor.wait(id: 4, fd: fd, .read)
        #expect(outcome == .waiting(calledKernel: false))
        _ = reactor.timeUntilVerification(now: 1)
        #expect(reactor.verifyIfDue(now: 1 + verificationDelay) == 2)
        try #require(!reactor[isWaiting: first] && !reactor[isWaiting: second])
        #expect(await first.succeeded)
        #expect(await second.succeeded)
        #expect(reactor.kernelRegistrationCount == 0)
    }
}

struct TheWakerInterruptsAPoll: ReactorScenario {
    func run<B: PollBackend & ~Copyable>(_ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws {
        #expect(try reactor.poll(timeoutNanoseconds: 0) { _ in }.woke == false)
        let waker = reactor.waker
        await Task.detached { waker(); waker() }.value             // from another thread, twice
        let first = try reactor.poll(timeoutNanoseconds: nil) { _ in }   // would block without the wake-up
        #expect(first.woke && first.events == 0)
        #expect(try reactor.poll(timeoutNanoseconds: 0) { _ in }.woke == false)    // consumed, coalesced
    }
}
