@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop
import SerialLoopNet

/// Returns once `condition` holds on `loop`'s thread: re-checks it as a callback behind the loop's
/// other work (no sleep).
private func whenOnLoop(_ loop: Loop, _ condition: @escaping @Sendable () -> Bool) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        @Sendable func check() {
            if condition() { continuation.resume() } else { loop.execute(check) }
        }
        loop.execute(check)
    }
}

/// A counter that a test awaits: `wait(for:)` returns once it reached the value (no sleep).
private final class Countdown: Sendable {
    private let state = Lock<(count: Int, waiters: [(Int, CheckedContinuation<Void, Never>)])>((0, []))
    var count: Int { state.withLock { $0.count } }

    func add() {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.count += 1
            let count = state.count
            let ready = state.waiters.filter { $0.0 <= count }.map(\.1)
            state.waiters.removeAll { $0.0 <= count }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    func wait(for target: Int) async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.count >= target { return true }
                state.waiters.append((target, continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// Joins `threads` without blocking a cooperative thread (a thread of its own waits).
private func join(_ threads: [pthread_t]) async {
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
        pthread_detach(spawnThread {
            for thread in threads { pthread_join(thread, nil) }
            done.resume()
        })
    }
}

/// A server on every loop of `group`: a listener whose acceptor serves each connection (read a
/// byte, work 10 ms, write it back, then start a follow-up task on the next loop that works 5 ms
/// more), and a graceful-shutdown handler that closes the listener.
private struct EchoServers {
    let listeners: [TCPListener]
    let acceptors: [Task<Void, Never>]
    let acceptorsEnded = Countdown()
    let accepted = Countdown()
    let served = Countdown()
    let followUps = Countdown()

    init(on group: LoopGroup) throws {
        var listeners: [TCPListener] = []
        var acceptors: [Task<Void, Never>] = []
        let (acceptorsEnded, accepted, served, followUps) = (self.acceptorsEnded, self.accepted, self.served, self.followUps)
        for (index, loop) in group.loops.enumerated() {
            let listener = try TCPListener(on: loop)
            group.onGracefulShutdown(on: loop) { try listener.close() }
            let next = group.loops[(index + 1) % group.loops.count]
            acceptors.append(Task(executorPreference: loop) {
                while let connection = try? await listener.accept() {
                    accepted.add()
                    Task(executorPreference: loop) {
                        do {
                            let byte = try await connection.read(upToCount: 1)
                            try await loop.sleep(for: .milliseconds(10))
                            try await connection.write(byte)
                            try connection.close()
                            served.add()
                            Task(executorPreference: next) {
                                if (try? await next.sleep(for: .milliseconds(5))) != nil { followUps.add() }
                            }
                        } catch {}
                    }
                }
                acceptorsEnded.add()
            })
            listeners.append(listener)
        }
        self.listeners = listeners
        self.acceptors = acceptors
    }
}

@Suite("Loop groups: graceful shutdown")
struct LoopGroupGracefulShutdownTests {
    /// Every loop has a request in flight (a server mid-read, a client mid-sleep on another loop,
    /// follow-up work the request spawns on a third): all of it finishes within the deadline, the
    /// handlers close the listeners, and nothing is cancelled.
    @Test(arguments: [1, 3])
    func workInFlightOnEveryLoopFinishesWithinTheDeadline(loopCount: Int) async throws {
        try await withWatchdog(seconds: 60) {
            let group = try LoopGroup.start(loops: loopCount)
            let servers = try EchoServers(on: group)
            let clientsDone = Countdown(), clientsConnected = Countdown()
            for (index, listener) in servers.listeners.enumerated() {
                let clientLoop = group.loops[(index + 1) % loopCount]
                Task(executorPreference: clientLoop) {
                    do {
                        // The request starts when the grace period does (a handler completes
                        // `go`), so it is in flight then whatever the scheduling: the client
                        // awaits the future (pending work), then sleeps 20 ms, then writes.
                        let go = clientLoop.makeFuture(of: Void.self)
                        group.onGracefulShutdown(on: clientLoop) { go.succeed(()) }
                        let connection = try await TCPConnection.connect(to: listener.address, on: clientLoop)
                        clientsConnected.add()
                        try await go.value
                        try await clientLoop.sleep(for: .milliseconds(20))
                        try await connection.write([UInt8(index)])
                        let echo = try await connection.read(upToCount: 1)
                        try connection.close()
                        if echo == [UInt8(index)] { clientsDone.add() }
                    } catch {
                        Issue.record("client \(index): \(error)")
                    }
                }
            }
            await clientsConnected.wait(for: loopCount)
            await servers.accepted.wait(for: loopCount)
            #expect(!group.isShuttingDownGracefully)
            let report = await group.shutdownGracefully(within: .seconds(30))
            print("graceful shutdown of \(loopCount) loop(s) with a request in flight on each: \(report)")
            #expect(group.isShuttingDownGracefully)
            #expect(report.drained, "\(report)")
            #expect(report.gracePeriod >= .milliseconds(30), "the client's 20 ms and the server's 10 ms were waited for")
            #expect(report.loopsNotDrained.isEmpty)
            #expect(report.handlerErrors.isEmpty)
            #expect(clientsDone.count == loopCount)
            #expect(servers.served.count == loopCount)
            #expect(servers.followUps.count == loopCount, "work spawned during the grace period ran too")
            #expect(servers.acceptorsEnded.count == loopCount, "every handler closed its listener")
            #expect(servers.listeners.allSatisfy { $0.isClosed })
            for acceptor in servers.acceptors { await acceptor.value }
            #expect(group.loops.allSatisfy { $0.hasShutDown })
        }
    }

    /// Work that does not fit in the deadline — tasks of every loop sleeping an hour or reading a
    /// connection nobody writes to, and foreign tasks waiting on the loops — is cancelled when it
    /// passes: every wait is resumed, short work that fits still finishes.
    @Test func workThatOutlivesTheDeadlineIsCancelled() async throws {
        try await withWatchdog(seconds: 60) {
            let loopCount = 3
            let group = try LoopGroup.start(loops: loopCount)
            let servers = try EchoServers(on: group)
            var pinned: [Task<(any Error)?, Never>] = []
            var foreign: [Task<(any Error)?, Never>] = []
            var idleClients: [TCPConnection] = []
            let shortWork = Countdown(), started = Countdown()
            for (index, loop) in group.loops.enumerated() {
                // A client that connects and never writes: the server's read waits forever.
                idleClients.append(try await TCPConnection.connect(to: servers.listeners[index].address, on: loop))
                pinned.append(Task(executorPreference: loop) {
                    started.add()
                    do { try await loop.sleep(for: .seconds(3600)); return nil } catch { return error }
                })
                foreign.append(Task.detached {
                    do { try await loop.sleep(for: .seconds(3600)); return nil } catch { return error }
                })
                Task(executorPreference: loop) {
                    started.add()
                    if (try? await Task.sleep(for: .milliseconds(5))) != nil { shortWork.add() }
                }
            }
            await started.wait(for: 2 * loopCount)
            await servers.accepted.wait(for: loopCount)
            for loop in group.loops {
                await whenOnLoop(loop) { loop.leftovers().sleeps.count == 2 }
            }
            let report = await group.shutdownGracefully(within: .milliseconds(200))
            print("graceful shutdown with work longer than the deadline: \(report)")
            #expect(!report.drained)
            #expect(report.loopsNotDrained == Array(0..<loopCount))
            #expect(report.gracePeriod >= .milliseconds(200))
            #expect(shortWork.count == loopCount, "work that fits in the deadline finishes")
            #expect(servers.acceptorsEnded.count == loopCount)
            #expect(servers.served.count == 0)
            for task in pinned {
                let error = await task.value
                #expect(error is CancellationError, "got \(String(describing: error))")
            }
            for task in foreign {
                let error = await task.value
                #expect((error as? LoopError)?.kind == .shutDown, "got \(String(describing: error))")
            }
            for acceptor in servers.acceptors { await acceptor.value }
            for client in idleClients { try client.close() }
        }
    }

    /// A deadline of zero still runs the handlers (queued before the loops stop), then cancels.
    @Test func aDeadlineOfZeroRunsTheHandlersThenCancels() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 2)
            let servers = try EchoServers(on: group)
            let sleeper = Task<(any Error)?, Never>(executorPreference: group.loops[1]) {
                do { try await group.loops[1].sleep(for: .seconds(3600)); return nil } catch { return error }
            }
            await whenOnLoop(group.loops[1]) { group.loops[1].leftovers().sleeps.count == 1 }
            let report = await group.shutdownGracefully(within: .zero)
            #expect(!report.drained)
            // Loop 0 may have run its handler and drained in the moment the check took; loop 1 cannot.
            #expect(report.loopsNotDrained.contains(1), "\(report)")
            #expect(servers.listeners.allSatisfy { $0.isClosed })
            for acceptor in servers.acceptors { await acceptor.value }
            #expect(servers.acceptorsEnded.count == 2)
            #expect(await sleeper.value is CancellationError)
        }
    }

    /// A group with nothing in flight drains at once; handlers run once, on their own loop, in
    /// registration order; a removed handler does not run; one registered afterwards runs at once.
    @Test func handlersRunOnceOnTheirLoopAndCanBeRemoved() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 2)
            let log = Lock<[String]>([])
            for (index, loop) in group.loops.enumerated() {
                group.onGracefulShutdown(on: loop) {
                    log.withLock { $0.append("\(index)a:\(Loop.current === loop)") }
                }
                group.onGracefulShutdown(on: loop) {
                    log.withLock { $0.append("\(index)b:\(Loop.current === loop)") }
                }
            }
            let removed = group.onGracefulShutdown(on: group.loops[0]) { log.withLock { $0.append("removed") } }
            #expect(group.removeGracefulShutdownHandler(removed))
            #expect(!group.removeGracefulShutdownHandler(removed))
            let report = await group.shutdownGracefully(within: .seconds(30))
            #expect(report.drained, "\(report)")
            let entries = log.withLock { $0 }
            #expect(entries.filter { $0.hasPrefix("0") } == ["0a:true", "0b:true"])
            #expect(entries.filter { $0.hasPrefix("1") } == ["1a:true", "1b:true"])
            // After the shutdown: the loop is gone, so the handler does not run (and is not kept).
            group.onGracefulShutdown(on: group.loops[0]) { log.withLock { $0.append("late") } }
            #expect(log.withLock { $0 }.count == 4)
        }
    }

    /// A handler registered during the grace period runs at once on its loop.
    @Test func aHandlerRegisteredDuringTheGracePeriodRunsAtOnce() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 2)
            let inGrace = Countdown(), lateRan = Countdown(), ranOnItsLoop = Lock(false)
            group.onGracefulShutdown(on: group.loops[0]) { inGrace.add() }
            // Holds loop 1 busy (a sleep) until the late handler has run.
            let holder = Task(executorPreference: group.loops[1]) {
                try? await group.loops[1].sleep(for: .seconds(3600))
            }
            await whenOnLoop(group.loops[1]) { group.loops[1].leftovers().sleeps.count == 1 }
            let shutdown = Task.detached { await group.shutdownGracefully(within: .seconds(3600)) }
            await inGrace.wait(for: 1)
            group.onGracefulShutdown(on: group.loops[1]) {
                ranOnItsLoop.withLock { $0 = Loop.current === group.loops[1] }
                lateRan.add()
            }
            await lateRan.wait(for: 1)
            #expect(ranOnItsLoop.withLock { $0 })
            holder.cancel()
            let report = await shutdown.value
            #expect(report.drained, "\(report)")
        }
    }

    /// Handlers that throw are reported; the shutdown goes on and drains.
    @Test func aHandlerThatThrowsIsReportedAndTheShutdownGoesOn() async throws {
        struct Refused: Error, CustomStringConvertible { let loop: Int; var description: String { "refused on \(loop)" } }
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 2)
            let after = Atomic<Int>(0)
            for (index, loop) in group.loops.enumerated() {
                group.onGracefulShutdown(on: loop) { throw Refused(loop: index) }
                group.onGracefulShutdown(on: loop) { after.add(1, ordering: .relaxed) }
            }
            let report = await group.shutdownGracefully(within: .seconds(30))
            #expect(report.drained)
            #expect(report.handlerErrors.compactMap { ($0 as? Refused)?.loop }.sorted() == [0, 1])
            let handlersAfter = after.load(ordering: .relaxed)
            #expect(handlersAfter == 2, "the handlers after a throwing one still run")
        }
    }

    /// A handler that blocks its loop past the deadline: the grace period still ends at the
    /// deadline (the other loops' work is cancelled then), and the shutdown returns once the handler does.
    @Test func aHandlerThatBlocksDoesNotHoldTheDeadline() async throws {
        try await withWatchdog(seconds: 60) {
            let group = try LoopGroup.start(loops: 2)
            let release = Latch<Void>()
            group.onGracefulShutdown(on: group.loops[0]) { release.wait() }
            let sleeper = Task<(any Error)?, Never>(executorPreference: group.loops[1]) {
                do { try await group.loops[1].sleep(for: .seconds(3600)); return nil } catch { return error }
            }
            await whenOnLoop(group.loops[1]) { group.loops[1].leftovers().sleeps.count == 1 }
            let shutdown = Task.detached { await group.shutdownGracefully(within: .milliseconds(100)) }
            // Loop 1's sleep is cancelled by the hard shutdown after the deadline, while loop 0 is
            // still blocked in the handler.
            #expect(await sleeper.value is CancellationError)
            #expect(!group.loops[0].hasShutDown)
            release.fulfil(())
            let report = await shutdown.value
            #expect(report.loopsNotDrained == [0, 1])
            #expect(group.loops.allSatisfy { $0.hasShutDown })
        }
    }

    /// shutdown() during the grace period ends it at once; concurrent graceful calls all return
    /// the same report once the group is down; the handlers ran once.
    @Test func concurrentGracefulAndHardShutdowns() async throws {
        try await withWatchdog(seconds: 60) {
            let group = try LoopGroup.start(loops: 3)
            let handlerRuns = Atomic<Int>(0)
            let inGrace = Countdown()
            for loop in group.loops {
                group.onGracefulShutdown(on: loop) {
                    handlerRuns.add(1, ordering: .relaxed)
                    inGrace.add()
                }
            }
            var sleepers: [Task<(any Error)?, Never>] = []
            for loop in group.loops {
                sleepers.append(Task(executorPreference: loop) {
                    do { try await loop.sleep(for: .seconds(3600)); return nil } catch { return error }
                })
            }
            for loop in group.loops { await whenOnLoop(loop) { loop.leftovers().sleeps.count == 1 } }
            let reports = Lock<[(report: LoopGroup.GracefulShutdownReport, allDown: Bool)]>([])
            // An hour's grace: only shutdown() can end it within the watchdog.
            let graceful = (0..<4).map { _ in
                spawnThread {
                    let report = group.syncShutdownGracefully(within: .seconds(3600))
                    let allDown = group.loops.allSatisfy(\.hasShutDown)
                    reports.withLock { $0.append((report, allDown)) }
                }
            }
            await inGrace.wait(for: 3)
            let hard = (0..<2).map { _ in spawnThread { group.shutdown() } }
            await join(graceful + hard)
            let all = reports.withLock { $0 }.map(\.report)
            #expect(reports.withLock { $0 }.allSatisfy { $0.allDown })
            #expect(all.count == 4)
            #expect(all.allSatisfy { !$0.drained && $0.gracePeriod == all[0].gracePeriod && $0.loopsNotDrained == [0, 1, 2] }, "\(all)")
            let runs = handlerRuns.load(ordering: .relaxed)
            #expect(runs == 3)
            for sleeper in sleepers { #expect(await sleeper.value is CancellationError) }
            // Later calls return the same report at once.
            #expect(await group.shutdownGracefully(within: .seconds(3600)).gracePeriod == all[0].gracePeriod)
        }
    }

    /// Work in transit between loops holds the grace period open: chains of callbacks hop from
    /// loop to loop (`execute`, no timer, no task), so at times the only trace of a chain is a
    /// callback in some loop's inbox while its sender has already gone idle. Declared drained too
    /// early, the hard shutdown would drop hops (a callback sent to a loop that has shut down does
    /// not run); every chain must reach its end. Targets are random, seeded (printed).
    @Test func callbacksInTransitBetweenLoopsHoldTheGracePeriodOpen() async throws {
        try await withWatchdog(seconds: 60) {
            let loopCount = 3, chains = 50, hopsPerChain = 200
            let seed = UInt64.random(in: 0...UInt64.max)
            print("callbacks in transit: seed \(seed)")
            let group = try LoopGroup.start(loops: loopCount)
            let hops = Atomic<Int>(0), finished = Atomic<Int>(0)
            let loops = group.loops
            @Sendable func hop(chain: Int, step: Int, state: UInt64) {
                hops.add(1, ordering: .relaxed)
                guard step < hopsPerChain else {
                    finished.add(1, ordering: .relaxed)
                    return
                }
                // splitmix64 step: the next target, from this chain's own state.
                var z = state &+ 0x9e37_79b9_7f4a_7c15
                let next = z
                z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
                z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
                z ^= z >> 31
                loops[Int(z % UInt64(loopCount))].execute { hop(chain: chain, step: step + 1, state: next) }
            }
            for chain in 0..<chains {
                loops[chain % loopCount].execute { hop(chain: chain, step: 0, state: seed &+ UInt64(chain)) }
            }
            let report = await group.shutdownGracefully(within: .seconds(30))
            let (hopCount, finishedCount) = (hops.load(ordering: .relaxed), finished.load(ordering: .relaxed))
            print("callbacks in transit: \(report); \(hopCount) hops, \(finishedCount) chains finished")
            #expect(report.drained, "\(report)")
            #expect(report.gracePeriod < .seconds(30), "ended by draining, not by the deadline")
            #expect(finishedCount == chains)
            #expect(hopCount == chains * (hopsPerChain + 1))
        }
    }

    /// On a group shut down already: nothing runs, not drained.
    @Test func gracefulShutdownAfterShutdownReturnsAtOnce() async throws {
        try await withWatchdog(seconds: 30) {
            let group = try LoopGroup.start(loops: 2)
            let ran = Atomic<Bool>(false)
            group.onGracefulShutdown(on: group.loops[0]) { ran.store(true, ordering: .relaxed) }
            group.shutdown()
            let report = await group.shutdownGracefully(within: .seconds(3600))
            let handlerRan = ran.load(ordering: .relaxed)
            #expect(!report.drained)
            #expect(!handlerRan)
        }
    }

    /// Work that keeps making more work (a task on each loop that sleeps 1 ms again and again,
    /// and hands a callback to the next loop each time) never drains: the deadline ends it.
    @Test func workThatKeepsSpawningWorkIsCutAtTheDeadline() async throws {
        try await withWatchdog(seconds: 60) {
            let group = try LoopGroup.start(loops: 2)
            let hops = Countdown()
            var spinners: [Task<Void, Never>] = []
            for (index, loop) in group.loops.enumerated() {
                let next = group.loops[(index + 1) % 2]
                spinners.append(Task(executorPreference: loop) {
                    while (try? await loop.sleep(for: .milliseconds(1))) != nil {
                        next.execute { hops.add() }
                    }
                })
            }
            let report = await group.shutdownGracefully(within: .milliseconds(100))
            #expect(!report.drained)
            #expect(report.loopsNotDrained == [0, 1])
            for spinner in spinners { await spinner.value }
            let hopCount = hops.count
            #expect(hopCount > 0)
        }
    }

    @Test func aHandlerOnALoopOutsideTheGroupTrapsWithAMessage() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let group = try LoopGroup.start(loops: 1)
            let other = try Loop.startThread()
            group.onGracefulShutdown(on: other.loop) {}
        }
        let stderrText = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(stderrText.contains("the loop is not one of the group's loops"), "\(stderrText)")
    }

    @Test func gracefulShutdownOnAGroupLoopTrapsWithAMessage() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let group = try LoopGroup.start(loops: 2)
            let done = Latch<Void>()
            group.loops[1].execute {
                group.syncShutdownGracefully(within: .seconds(1))
                done.fulfil(())
            }
            done.wait()
        }
        let stderrText = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(stderrText.contains("LoopGroup.syncShutdownGracefully(within:) called on one of the group's own loops"), "\(stderrText)")
    }
}
