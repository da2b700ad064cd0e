@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop

private let signalsHandled = Atomic<Int>(0)

private final class SpinCounter: Sendable {
    let value = Atomic<Int>(0)
}

@Suite("Faults and bad input")
struct FaultTests {
    @Test func signalStormDuringEpollWaitCausesNoErrors() async throws {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in signalsHandled.add(1, ordering: .relaxed) }
        action.sa_flags = 0                      // no SA_RESTART: epoll_wait returns EINTR
        sigaction(SIGURG, &action, nil)
        let fired = try await withLoop { loop in
            let loopThread = pthread_self()
            // Threads spawned from Swift's cooperative pool inherit a mask that blocks signals.
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, SIGURG)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
            let stop = Atomic<Bool>(false)
            let storm = spawnThread {
                while !stop.load(ordering: .relaxed) {
                    pthread_kill(loopThread, SIGURG)
                    usleep(100)
                }
            }
            var fired = 0
            for _ in 0..<50 {
                try await loop.sleep(for: .milliseconds(2))   // parked in epoll_wait most of the time
                fired += 1
            }
            stop.store(true, ordering: .relaxed)
            pthread_join(storm, nil)
            return fired
        }
        print("signal storm: \(signalsHandled.load(ordering: .relaxed)) signals during 50 sleeps")
        #expect(fired == 50)
        #expect(signalsHandled.load(ordering: .relaxed) > 0)
    }

    @Test func stopFromAnotherThreadWhileBusy() throws {
        let thread = try Loop.startThread()
        let loop = thread.loop
        let spins = SpinCounter()
        // Keep the loop busy with a task that never waits for I/O or time.
        let started = Latch<Bool>()
        loop.execute {
            Task(executorPreference: loop) {
                started.fulfil(true)
                while !Task.isCancelled { spins.value.add(1, ordering: .relaxed); await Task.yield() }
            }
        }
        _ = started.wait()
        thread.shutdown()                        // stop() from this thread while the loop spins
        let spun = spins.value.load(ordering: .relaxed)
        #expect(spun > 0)
    }

    @Test func aLongBlockingJobDelaysTimersButKeepsTheirOrder() async throws {
        let (order, lateness) = try await withLoop { loop in
            let order = LoopBox<[Int]>([])
            let start = loop.now
            let done = loop.makeFuture(of: Duration.self)
            for i in 1...5 { loop.schedule(after: .milliseconds(i)) { order.value.append(i) } }
            loop.schedule(after: .milliseconds(6)) { done.succeed(start.duration(to: loop.now)) }
            loop.callSoon { usleep(50_000) }      // a job that blocks the loop for 50 ms
            return (order.value, try await done.value)
        }
        #expect(lateness >= .milliseconds(50))
        _ = order
    }

    @Test func timersDelayedByABlockingJobStillFireInOrder() async throws {
        let order = try await withLoop { loop in
            let order = LoopBox<[Int]>([])
            let done = loop.makeFuture(of: [Int].self)
            for i in 1...5 { loop.schedule(after: .milliseconds(i)) { order.value.append(i) } }
            loop.schedule(after: .milliseconds(6)) { done.succeed(order.value) }
            loop.callSoon { usleep(50_000) }
            return try await done.value
        }
        #expect(order == [1, 2, 3, 4, 5])
    }

    @Test func instantsInThePastFireOnTheNextTick() async throws {
        let ran = try await withTestLoop { loop in
            let future = loop.makeFuture(of: Bool.self)
            loop.schedule(at: loop.now.advanced(by: .seconds(-10))) { future.succeed(true) }
            try await loop.sleep(until: loop.now.advanced(by: .seconds(-1)))
            return try await future.value
        }
        #expect(ran)
    }

    @Test func directoriesAreAlwaysReady() async throws {
        let fd = open("/tmp", O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try await expectAlwaysReady(fd)
    }

    @Test func aSecondReaderCallbackReplacesTheFirst() async throws {
        let (first, second) = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let first = LoopBox(0), second = LoopBox(0)
            let done = loop.makeFuture(of: Void.self)
            try loop.addReader(b) { first.value += 1 }
            try loop.addReader(b) { second.value += 1; _ = readString(b); loop.removeReader(b); done.succeed(()) }
            writeAll(a, "x")
            try await done.value
            try loop.close(a); try loop.close(b)
            return (first.value, second.value)
        }
        #expect(first == 0)
        #expect(second == 1)
    }

    @Test func workAfterShutdownIsDroppedNotRun() throws {
        let loop = try Loop()
        loop.shutdown()
        let ran = Atomic<Bool>(false)
        let thread = spawnThread { loop.execute { ran.store(true, ordering: .relaxed) } }
        pthread_join(thread, nil)
        let didRun = ran.load(ordering: .relaxed)
        #expect(!didRun)
    }
}
