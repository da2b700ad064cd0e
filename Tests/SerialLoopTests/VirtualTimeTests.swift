@preconcurrency import Glibc
import Testing
@testable import SerialLoop

@Suite("Test loop: virtual time")
struct VirtualTimeTests {
    @Test(.disabled(if: underSanitizer, "real-time bounds do not hold under a sanitizer's slowdown"))
    func anHourOfTaskSleepTakesMicroseconds() async throws {
        let wallStart = ContinuousClock.now
        let elapsed = try await withTestLoop { loop in
            let start = loop.now
            for _ in 0..<60 { try await Task.sleep(for: .seconds(60)) }
            return start.duration(to: loop.now)
        }
        let wall = wallStart.duration(to: .now)
        print("an hour of Task.sleep (60 × 1 min) took \(wall) of wall time")
        #expect(elapsed == .seconds(3600))
        // Not a performance assertion: real sleeping would take an hour; anything well under
        // that proves the sleeps were virtual. 30 s, not less: each jump waits for a real-time
        // quiet period, which a machine at load 20 on 2 cores stretched past 5 s in all.
        #expect(wall < .seconds(30))
    }

    @Test func advanceFiresExactlyTheDueTimersInOrder() async throws {
        let (afterThree, afterFive, now) = try await withTestLoop { loop in
            loop.autoAdvancesTime = false
            let log = LoopBox<[Int]>([])
            for second in [5, 1, 3, 2, 3] {
                loop.schedule(after: .seconds(second)) { log.value.append(second) }
            }
            let start = loop.now
            await loop.advance(by: .seconds(3))
            let afterThree = log.value
            #expect(start.duration(to: loop.now) == .seconds(3))
            await loop.advance(by: .seconds(2))
            return (afterThree, log.value, start.duration(to: loop.now))
        }
        #expect(afterThree == [1, 2, 3, 3])
        #expect(afterFive == [1, 2, 3, 3, 5])
        #expect(now == .seconds(5))
    }

    @Test func advanceLetsWokenWorkRunBeforeTheNextTimerFires() async throws {
        let log = try await withTestLoop { loop in
            loop.autoAdvancesTime = false
            let log = LoopBox<[String]>([])
            let sleeper = Task(executorPreference: loop) {
                try await loop.sleep(for: .seconds(1))
                log.value.append("woke at \(loop.now.nanosecondsSinceOrigin / 1_000_000_000)")
                try await loop.sleep(for: .seconds(1))
                log.value.append("woke at \(loop.now.nanosecondsSinceOrigin / 1_000_000_000)")
            }
            loop.schedule(after: .milliseconds(1500)) { log.value.append("timer at 1.5") }
            await loop.advance(by: .seconds(2))
            try await sleeper.value
            return log.value
        }
        #expect(log == ["woke at 1", "timer at 1.5", "woke at 2"])
    }

    @Test func runUntilIdleDoesNotMoveTheClock() async throws {
        let (moved, ran) = try await withTestLoop { loop in
            let ran = LoopBox(0)
            for _ in 0..<10 { Task(executorPreference: loop) { ran.value += 1; await Task.yield(); ran.value += 1 } }
            let timer = loop.schedule(after: .seconds(1)) {}
            let start = loop.now
            await loop.runUntilIdle()
            timer.cancel()
            return (start.duration(to: loop.now), ran.value)
        }
        #expect(moved == .zero)
        #expect(ran == 20)
    }

    @Test func cancellingAVirtualSleepDoesNotMoveTheClock() async throws {
        let (moved, pending) = try await withTestLoop { loop in
            let start = loop.now
            let sleeper = Task(executorPreference: loop) { try await loop.sleep(for: .seconds(3600)) }
            await loop.runUntilIdle()
            sleeper.cancel()
            _ = await sleeper.result
            await loop.runUntilIdle()
            return (start.duration(to: loop.now), loop.pendingTimerCount)
        }
        #expect(moved == .zero)
        #expect(pending == 0)
    }

    @Test func aCancelledTaskSleepIsNotReportedAsALeftover() async throws {
        // A timeout pattern: the work wins, the Task.sleep racing it is cancelled. The runtime
        // leaves the cancelled sleep's timer behind; the test loop must not call it a leftover.
        let value = try await withTestLoop { loop in
            try await withThrowingTaskGroup(of: Int?.self) { group in
                group.addTask { try await Task.sleep(for: .seconds(30)); return nil }
                group.addTask { try await Task.sleep(for: .seconds(1)); return 42 }
                let first = try await group.next()!
                group.cancelAll()
                return first
            }
        }
        #expect(value == 42)
    }

    @Test func liveTaskSleepsAreReportedAsLeftovers() async throws {
        do {
            try await withTestLoop { loop in
                Task(executorPreference: loop) { try await Task.sleep(for: .seconds(30)) }
                await loop.runUntilIdle()
            }
            Issue.record("expected LoopLeftoversError")
        } catch let error as LoopLeftoversError {
            #expect(error.leftovers.taskSleeps == [LoopClock.Instant(nanosecondsSinceOrigin: 30_000_000_000)])
            #expect(error.description.contains("1 Task.sleep(s) waking at 30.0 seconds"))
        }
    }

    @Test func leftoverDescriptorWaitsAreReported() async throws {
        let (a, b) = makeSocketPair()
        defer { close(a); close(b) }
        do {
            try await withTestLoop { loop in
                Task(executorPreference: loop) { try await loop.readable(b) }
                await loop.runUntilIdle()
                loop.deregister(a)
            }
            Issue.record("expected LoopLeftoversError")
        } catch let error as LoopLeftoversError {
            #expect(error.leftovers.descriptorWaits.count == 1)
            #expect(error.leftovers.descriptorWaits.first?.fd == b)
        }
    }

    @Test func timeoutAroundARealSocketpairExchangeDoesNotFireEarly() async throws {
        // The peer is a real thread that takes real time (50 ms) to answer. While a task waits on
        // the socket, the test loop holds virtual time for `ioQuietPeriod` of real time, so the
        // 5-second virtual timeout must not fire before the answer arrives.
        let (answer, elapsed) = try await withTestLoop { loop in
            loop.ioQuietPeriod = .seconds(2)
            let (mine, peer) = makeSocketPair()
            let peerThread = spawnThread {
                var request = [UInt8](repeating: 0, count: 16)
                var pollFD = pollfd(fd: peer, events: Int16(POLLIN), revents: 0)
                _ = poll(&pollFD, 1, 5_000)
                _ = read(peer, &request, request.count)
                usleep(50_000)                                   // the peer "works" for 50 ms
                writeAll(peer, "pong")
            }
            let start = loop.now
            writeAll(mine, "ping")
            let answer = try await withThrowingTaskGroup(of: String?.self) { group in
                group.addTask { try await loop.sleep(for: .seconds(5)); return nil }   // the timeout
                group.addTask { try await loop.readable(mine); return readString(mine) }
                let first = try await group.next()!
                group.cancelAll()
                return first
            }
            pthread_join(peerThread, nil)
            try loop.close(mine)
            close(peer)
            return (answer, start.duration(to: loop.now))
        }
        #expect(answer == "pong")
        #expect(elapsed == .zero, "virtual time must not move while the peer was answering")
    }

    @Test func timeoutFiresVirtuallyWhenThePeerNeverAnswers() async throws {
        let (answer, elapsed) = try await withTestLoop { loop in
            loop.ioQuietPeriod = .milliseconds(20)
            let (mine, peer) = makeSocketPair()
            let start = loop.now
            let answer = try await withThrowingTaskGroup(of: String?.self) { group in
                group.addTask { try await loop.sleep(for: .seconds(5)); return nil }
                group.addTask { try await loop.readable(mine); return readString(mine) }
                let first = try await group.next()!
                group.cancelAll()
                return first
            }
            try loop.close(mine)
            close(peer)
            return (answer, start.duration(to: loop.now))
        }
        #expect(answer == nil)
        #expect(elapsed == .seconds(5))
    }

    @Test func escapingTasksRunOnTheTestLoopDeterministically() async throws {
        // A plain Task {} goes to the global executor (SE-0417) and would race the body; a test
        // loop captures it and runs it on its own thread, in FIFO order with everything else.
        let (onLoop, log) = try await withTestLoop { loop in
            let log = LoopBox<[String]>([])
            let escaped = Task { () -> Bool in
                log.value.append("escaped task ran")
                return loop.isOnLoopThread
            }
            log.value.append("body continues before the escaped task runs")
            await loop.runUntilIdle()
            log.value.append("body after idle")
            return (await escaped.value, log.value)
        }
        #expect(onLoop)
        #expect(log == ["body continues before the escaped task runs", "escaped task ran", "body after idle"])
    }
}

@Suite("Test loop: determinism")
struct DeterminismTests {
    /// A seeded scenario (the harness: Determinism.swift): 60 tasks that sleep random amounts
    /// (loop.sleep, Task.sleep, clock sleeps), yield, and hop to an actor, logging virtual timestamps.
    static func scenario(seed: UInt64) async throws -> [String] {
        try await Determinism.trace(seed: seed, tasks: 60, steps: 6, setUp: { _ in () }) { loop, ledger, _, step in
            let value = Int(step.value % 1000)
            switch value % 4 {
            case 0: try await loop.sleep(for: .milliseconds(value))
            // Plain Task.sleep reads the virtual clock: exact for any duration.
            case 1: try await Task.sleep(for: .microseconds(value * 13))
            case 2: await Task.yield()
            default: try await loop.clock.sleep(for: .microseconds(value * 7))
            }
            await ledger.record("\(step.tag)@\(loop.now.nanosecondsSinceOrigin)")
        }
    }

    @Test func aRandomizedScenarioProducesTheSameTraceTwice() async throws {
        let first = try await Determinism.expectReplays(seed: Determinism.seed(for: "DeterminismTests"), runs: 2, Self.scenario)
        #expect(first.count == 360)
    }
}

@Suite("Test loop: stalls")
struct StallTests {
    @Test func aStalledTestLoopThrowsInsteadOfHanging() async throws {
        do {
            try await withTestLoop { loop in
                loop.stallTimeout = .milliseconds(50)
                // Nothing will ever resume this: no timer, no descriptor, no other thread.
                let never = loop.makeFuture(of: Void.self)
                try await never.value
            }
            Issue.record("expected a stall error")
        } catch let error as LoopError {
            #expect(error.reason.contains("the test loop stalled"))
            #expect(error.reason.contains("awaiting an uncompleted LoopFuture"))
        }
    }
}
