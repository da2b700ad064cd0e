import Testing
@testable import SerialLoop

@Suite("Ordering rules")
struct OrderingTests {
    @Test(arguments: bothClocks) func callbacksRunInFIFOOrder(time: Loop.TimeMode) async throws {
        let order = try await withLoop(time: time) { loop in
            let log = LoopBox<[Int]>([])
            let done = loop.makeFuture(of: [Int].self)
            for i in 0..<100 { loop.callSoon { log.value.append(i) } }
            loop.callSoon { done.succeed(log.value) }
            return try await done.value
        }
        #expect(order == Array(0..<100))
    }

    @Test(arguments: bothClocks) func workEnqueuedDuringATickWaitsForTheNextTick(time: Loop.TimeMode) async throws {
        // Tick snapshot: a callback queued by a running callback runs after everything that was
        // already ready, even though it was queued "in the middle".
        let order = try await withLoop(time: time) { loop in
            let log = LoopBox<[String]>([])
            let done = loop.makeFuture(of: [String].self)
            loop.callSoon {
                log.value.append("a")
                loop.callSoon { log.value.append("a-child") }
            }
            loop.callSoon { log.value.append("b") }
            loop.callSoon { loop.callSoon { loop.callSoon { done.succeed(log.value) } } }
            return try await done.value
        }
        #expect(order == ["a", "b", "a-child"])
    }

    @Test func readyWorkDoesNotStarveIO() async throws {
        // A task that yields forever must not keep a ready descriptor from being delivered: the
        // tick polls between batches of ready work, so the wait ends within a tick or two of the
        // spinner's. The spinner gives up after `limit` turns, so a starved wait ends too — and
        // fails the count below instead of hanging.
        let limit = 10_000
        let spinsWhileWaiting = try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let spins = LoopBox(0), spinning = LoopBox(true)
            let spinner = Task(executorPreference: loop) {
                while spinning.value && spins.value < limit {
                    spins.value += 1
                    await Task.yield()
                }
            }
            while spins.value < 3 { await Task.yield() }          // the spinner is spinning
            writeAll(a, "x")
            let before = spins.value
            try await loop.readable(b)
            let during = spins.value - before
            spinning.value = false
            await spinner.value
            try loop.close(a)
            try loop.close(b)
            return during
        }
        #expect(spinsWhileWaiting <= 2, "the spinner ran \(spinsWhileWaiting) times while a ready descriptor waited")
    }

    @Test(arguments: bothClocks) func equalDeadlinesFireInSchedulingOrder(time: Loop.TimeMode) async throws {
        let order = try await withLoop(time: time) { loop in
            let log = LoopBox<[Int]>([])
            let deadline = loop.now.advanced(by: .milliseconds(2))
            for i in 0..<50 { loop.schedule(at: deadline) { log.value.append(i) } }
            try await loop.sleep(until: deadline.advanced(by: .nanoseconds(1)))
            return log.value
        }
        #expect(order == Array(0..<50))
    }

    @Test(arguments: bothClocks) func timersFireInDeadlineOrderWhateverTheSchedulingOrder(time: Loop.TimeMode) async throws {
        let order = try await withLoop(time: time) { loop in
            let log = LoopBox<[Int]>([])
            // Deadlines from one instant: `schedule(after:)` counts from each call, and on a real
            // clock a preemption between two calls (a loaded machine) can reorder close deadlines.
            let start = loop.now
            for delay in [5, 1, 4, 2, 3] {
                loop.schedule(at: start.advanced(by: .milliseconds(delay))) { log.value.append(delay) }
            }
            try await loop.sleep(for: .milliseconds(10))
            return log.value
        }
        #expect(order == [1, 2, 3, 4, 5])
    }

    @Test(arguments: bothClocks) func dueTimersAreAllCollectedBeforeAnyRuns(time: Loop.TimeMode) async throws {
        // Two timers due at the same tick: the first one's callback schedules an immediate
        // callback; it must run after the second timer, not between.
        let order = try await withLoop(time: time) { loop in
            let log = LoopBox<[String]>([])
            let done = loop.makeFuture(of: [String].self)
            // Both due at one instant, so one tick collects both (on a real loop too).
            let deadline = loop.now.advanced(by: .milliseconds(2))
            loop.schedule(at: deadline) {
                log.value.append("t1")
                loop.callSoon { log.value.append("t1-soon"); done.succeed(log.value) }
            }
            loop.schedule(at: deadline) { log.value.append("t2") }
            return try await done.value
        }
        #expect(order == ["t1", "t2", "t1-soon"])
    }

    @Test(arguments: bothClocks) func cancelledTimersNeverFireAndLeaveNothingBehind(time: Loop.TimeMode) async throws {
        let (fired, pending) = try await withLoop(time: time) { loop in
            let fired = LoopBox(0)
            var handles: [ScheduledCallback] = []
            for i in 0..<1000 {
                handles.append(loop.schedule(after: .microseconds(i)) { fired.value += 1 })
            }
            for handle in handles where handle.isPending { handle.cancel() }
            let pending = loop.pendingTimerCount
            try await loop.sleep(for: .milliseconds(3))
            return (fired.value, pending)
        }
        #expect(fired == 0)
        #expect(pending == 0)
    }

    @Test(arguments: bothClocks) func aCallbackCancelledByAnotherDueInTheSameTickNeverRuns(time: Loop.TimeMode) async throws {
        // Due timers are collected before any runs; cancelling one that was already collected
        // must still keep it from running (found by the HTTP server's idle timer).
        let log = try await withLoop(time: time) { loop in
            let log = LoopBox<[String]>([])
            var second: ScheduledCallback?
            let deadline = loop.now.advanced(by: .milliseconds(2))
            loop.schedule(at: deadline) {
                log.value.append("first")
                #expect(second?.isPending == true)
                second?.cancel()
                #expect(second?.isPending == false)
            }
            second = loop.schedule(at: deadline) { log.value.append("second") }
            try await loop.sleep(for: .milliseconds(20))
            return log.value
        }
        #expect(log == ["first"])
    }

    /// The ready queue grows in place (`realloc`) and then moves its wrapped-around run past the
    /// old end: FIFO order must survive growing while the head is anywhere in the buffer.
    /// A plain `Task.sleep` passes through the ready queue three times (its wake-up job, the
    /// wake-up's hop to the global executor routed back, the sleeper), a `loop.sleep` once (the
    /// fired timer resumes the sleeper): with the same deadline, started in the same tick, the
    /// `Task.sleep` resumes exactly two ticks later. Virtual time, so that both deadlines are the
    /// same to the nanosecond. Both orders of starting, several durations.
    @Test(arguments: [(1, true), (1, false), (5_000, true), (3_600_000, false)])
    func aPlainTaskSleepResumesTwoTicksAfterALoopSleepWithTheSameDeadline(milliseconds: Int, loopSleepFirst: Bool) async throws {
        let (started, resumed) = try await withTestLoop { loop in
            let duration = Duration.milliseconds(milliseconds)
            let viaLoop: @Sendable () async throws -> (Int, Int) = {
                let start = loop.metrics.ticks
                try await loop.sleep(for: duration)
                return (start, loop.metrics.ticks)
            }
            let viaTask: @Sendable () async throws -> (Int, Int) = {
                let start = loop.metrics.ticks
                try await Task.sleep(for: duration)
                return (start, loop.metrics.ticks)
            }
            let first = Task(executorPreference: loop) { try await (loopSleepFirst ? viaLoop : viaTask)() }
            let second = Task(executorPreference: loop) { try await (loopSleepFirst ? viaTask : viaLoop)() }
            let (a, b) = (try await first.value, try await second.value)
            let (loopSleep, taskSleep) = loopSleepFirst ? (a, b) : (b, a)
            #expect(loop.now.nanosecondsSinceOrigin == duration.saturatingNanoseconds)
            return ([loopSleep.0, taskSleep.0], [loopSleep.1, taskSleep.1])
        }
        #expect(started[0] == started[1], "both sleeps start in the same tick")
        #expect(resumed[1] - resumed[0] == 2, "the Task.sleep resumes two ticks after the loop.sleep (ticks \(resumed))")
    }

    @Test func readyQueueStaysFIFOWhenItGrowsWrappedAround() {
        final class Log { var values: [Int] = [] }
        let log = Log()
        var queue = ReadyQueue(initialCapacity: 4)
        var pushed = 0
        for round in 0..<12 {
            for _ in 0..<(round % 4 + 2) {       // push a few, pop fewer: the head walks round the buffer
                let value = pushed
                queue.push(.callback { log.values.append(value) })
                pushed += 1
            }
            for _ in 0..<(round % 3) where !queue.isEmpty {
                guard case .callback(let body) = queue.pop() else { Issue.record("not a callback"); return }
                body()
            }
            queue.checkInvariants()
        }
        while !queue.isEmpty {
            guard case .callback(let body) = queue.pop() else { Issue.record("not a callback"); return }
            body()
        }
        #expect(log.values == Array(0..<pushed))
    }

    @Test func timerQueueInvariantsHoldUnderScheduleAndCancel() {
        var queue = TimerQueue()
        var ids: [TimerID] = []
        for i in 0..<2000 { ids.append(queue.schedule(at: Int64((i * 7919) % 1000), .scheduledCallback {})) }
        for (index, id) in ids.enumerated() where index % 3 == 0 { _ = queue.cancel(id) }
        queue.checkInvariants()
        var last = Int64.min
        while let (deadline, _, _) = queue.popDue(now: .max) {
            #expect(deadline >= last)
            last = deadline
        }
        queue.checkInvariants()
        #expect(queue.count == 0)
        #expect(queue.cancel(ids[1]) == nil, "a fired timer's id is stale")
    }
}
