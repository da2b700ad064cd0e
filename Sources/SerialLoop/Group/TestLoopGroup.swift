@preconcurrency import Glibc
import CSerialLoopShims
import Synchronization

// A deterministic test mode for a group of loops: every loop a `TestLoop`, all on ONE thread and
// ONE virtual clock, turned by a driver that interleaves them in a seeded order.
//
// - One thread. The group's loops are created on the driver's thread and each tick of each runs
//   there, inside `enterThread`/`leaveThread` (so `Loop.current` is the loop whose code runs, and
//   `isOnLoopThread` answers for that loop only: code on loop A that uses loop B goes through B's
//   inbox, as in a group of threads). Cross-loop work is therefore an inbox push and a tick of the
//   other loop: nothing races, and the order is the driver's.
// - One clock. The loops share a `VirtualClock` (LoopTime holds a reference): its reading, holds,
//   settings, stepping requests and stall budget are the group's, so a control on any member acts
//   on all of them. What is per loop stays per loop (timers, runtime sleep owners, escaped tasks).
// - The interleaving. Each turn, the driver collects the loops with work (ready jobs, inbox
//   arrivals, timers due at the current virtual time, a stop) and runs one tick of one of them,
//   picked by a SplitMix64 stream from the seed. The tick is a loop's own (`tick(polls: false)`:
//   phases 1–4), followed by a non-blocking peek at its I/O (phase 5 with work ready). So each
//   loop keeps its own FIFO order, and the seed chooses how the loops' ticks interleave; the same
//   program and seed give the same choices, so the same trace.
// - Idle. When no loop has work, the driver applies a single test loop's idle policy
//   (TestLoop+IdlePolicy.swift) to the group: ready I/O first; then `runUntilIdle` waiters; then
//   an `advance` in progress; then, with auto-advance and no hold, a jump to the earliest live
//   deadline of any loop (after I/O in flight on any loop has been quiet for `ioQuietPeriod`);
//   else park — on every loop's epoll descriptor at once, through an epoll of them — counting
//   towards `stallTimeout`, and declare a stall when it is spent.

/// Runs `body` with a group of `loops` test loops that share **one thread** and **one virtual
/// clock**, interleaved in an order drawn from `seed`, then shuts the group down and returns
/// `body`'s value (or rethrows its error) — the group analogue of ``withTestLoop(_:)-17bdc``.
///
/// The body gets a ``LoopGroup``, the type production code takes: ``LoopGroup/next()``,
/// ``LoopGroup/loop(forKey:)``, ``LoopGroup/loops`` and ``LoopGroup/metrics`` work as on a group
/// of threads, and so do tasks pinned to a loop, actors on a loop, and `execute` from loop to
/// loop. Each member is a ``TestLoop`` (`group.loops[i] as! TestLoop`). Every tick runs on the
/// group's one thread; `Loop.current` is the loop whose code runs, and a loop's
/// ``Loop/isOnLoopThread`` is `false` in another loop's code, so work for another loop hops to it
/// as it would across threads. Which loop runs its next tick is chosen by the seed: the same seed
/// gives the same interleaving (and trace), another seed another legal one.
///
/// The loops share one clock: it moves only when every loop is idle, straight to the earliest
/// deadline of any loop (`loop.sleep`, plain `Task.sleep`, scheduled callbacks), under the idle
/// policy of a single test loop (holds, auto-advance, I/O quiet period, stall timeout; real
/// descriptors still work). The controls of any member act on that one clock and see the whole
/// group: ``TestLoop/runUntilIdle()`` returns when every loop is idle, ``TestLoop/advance(by:)``
/// fires every loop's timers on the way, a ``TestLoop/holdTime()`` holds the group's time, and the
/// settings are the group's (set them from code on that member: the body's own loop,
/// `TestLoop.current`).
///
/// The body runs in the calling task on the group's first loop (`group.loops[0]`), as
/// `withTestLoop`'s body runs on its loop. When it returns, the group's run ends, what is left
/// pending on every loop is collected, and every loop shuts down as one loop does
/// (``Loop/shutdown()``: waits resumed, nothing hangs). Leftovers throw
/// ``LoopLeftoversError`` (all loops' together), after the body's own error if it threw; a stall
/// throws ``LoopError`` of kind ``LoopError/Kind/stalled`` naming what each loop had pending.
///
/// - Parameters:
///   - loops: how many loops; at least 1.
///   - seed: the interleaving's seed. `nil`: `SERIAL_LOOP_SEED` from the environment if set, else
///     a random one; either way it is printed on stderr, so a failing run can be replayed.
///   - body: the test, given the group.
/// - Throws: what `body` throws; ``LoopLeftoversError``; ``LoopError`` for a stall, a `stop()`,
///   or a program that does not link virtual time.
public func withTestLoopGroup<T: Sendable>(
    loops: Int = 2,
    seed: UInt64? = nil,
    _ body: sending (LoopGroup) async throws -> T
) async throws -> T {
    let host = try await DedicatedTestGroup.start(loops: loops, seed: seed)
    let driver = host.driver
    let first = driver.members[0]
    let group = LoopGroup(host: driver)
    let outcome: Result<T, any Error>
    do {
        let value = try await withTaskExecutorPreference(first) {
            defer { driver.bodyFinished() }
            return try await body(group)
        }
        outcome = .success(value)
    } catch {
        outcome = .failure(error)
    }
    return try await host.outcome(afterBody: outcome)
}

/// `withTestLoopGroup` on the **current thread**: the group's loops run on the calling thread,
/// which the call blocks until the body has finished and the group has shut down; otherwise as
/// the async ``withTestLoopGroup(loops:seed:_:)-11qmk`` (the body runs as a task on
/// the group's first loop).
/// - Parameters:
///   - loops: how many loops; at least 1.
///   - seed: the interleaving's seed (`nil`: `SERIAL_LOOP_SEED`, else random; printed).
///   - body: the test, given the group.
/// - Throws: as the async form.
public func withTestLoopGroup<T: Sendable>(
    loops: Int = 2,
    seed: UInt64? = nil,
    _ body: sending (LoopGroup) async throws -> T
) throws -> T {
    preconditionNoLoopRunning("withTestLoopGroup")
    let driver = try OneThreadTestGroup(loops: loops, seed: seed)
    let group = LoopGroup(host: driver)
    return try withoutActuallyEscaping(body) { body in
        try driver.runBodyHere(UnsafeTransfer({ try await body(group) }))
    }
}

/// The seeded stream that picks which loop ticks next.
private struct Interleaving {
    private var generator: SplitMix64
    init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    mutating func pick(below count: Int) -> Int {
        Int(generator.next() % UInt64(count))
    }
}

/// The test group's host and driver: its loops, their shared clock, and the one thread that turns
/// them (the thread that created it). Everything but `shutDownAll` is that thread's.
final class OneThreadTestGroup: LoopGroupHost, @unchecked Sendable {
    // Unchecked Sendable: the mutable state is the driver thread's (the loops' own rule: their
    // state is their thread's, and the driver is that thread); `shutDownAll` from other threads
    // only stops loops (atomics) and waits on a latch.
    let members: [TestLoop]
    let loops: [Loop]
    let clock = VirtualClock()
    private var interleaving: Interleaving
    /// An epoll descriptor watching every member's epoll descriptor: parking on it waits for I/O
    /// or a wake-up on any loop.
    private let groupPoll: Int32
    /// Each member's identity for its current run (the body's end ends the first one's).
    private var runIDs: [UInt64] = []
    /// Set by the idle policy when the group stalls: the run ends with it.
    private var stall: String? = nil
    /// Scratch: the loops with work this turn.
    private var runnable: [TestLoop] = []
    /// Fulfilled once every loop has shut down (what `shutDownAll` waits for).
    private let down = Latch<Bool>()

    init(loops count: Int, seed: UInt64?) throws(LoopError) {
        misuseCheck(count >= 1, "withTestLoopGroup(loops: \(count)): a group needs at least one loop")
        let chosen = seed ?? getenv("SERIAL_LOOP_SEED").flatMap { UInt64(String(cString: $0)) } ?? UInt64.random(in: 0...UInt64.max)
        if seed == nil {
            fputs("withTestLoopGroup seed: \(chosen) (replay with SERIAL_LOOP_SEED=\(chosen) or seed: \(chosen))\n", stderr)
        }
        interleaving = Interleaving(seed: chosen)
        groupPoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        if groupPoll < 0 { throw LoopError(operation: "epoll_create1(EPOLL_CLOEXEC)", errno: errno) }
        var members: [TestLoop] = []
        do throws(LoopError) {
            for _ in 0..<count {
                let member = try TestLoop(virtualClock: clock)
                members.append(member)
                var event = epoll_event()
                event.events = EPOLLIN.rawValue
                if epoll_ctl(groupPoll, EPOLL_CTL_ADD, member.reactor.backend.pollDescriptor, &event) != 0 {
                    throw LoopError(operation: "epoll_ctl(ADD, a group loop's epoll descriptor)", errno: errno)
                }
            }
        } catch {
            for member in members { member.shutdown() }
            Glibc.close(groupPoll)
            throw error
        }
        self.members = members
        self.loops = members
    }

    deinit {
        Glibc.close(groupPoll)
    }

    /// Any thread but the driver's: stops the run and returns once the driver has shut every loop
    /// down (`LoopGroup.shutdown()` on a test group; `withTestLoopGroup` then throws "stopped").
    func shutDownAll() {
        for member in members { member.stop() }
        _ = down.wait()
    }

    // MARK: The run

    /// On the driver's thread, in the body's task on the first loop: the body returned or threw.
    func bodyFinished() {
        members[0].requestExit(ofRun: runIDs[0])
    }

    /// Turns the group until the first loop's run ends (the body finished), any loop is stopped,
    /// or the group stalls.
    func run() -> RunEnd {
        runIDs = members.map { $0.nextRunID() }
        for (member, id) in zip(members, runIDs) { member.runState = .running(run: id) }
        defer {
            for member in members {
                member.runState = .idle
                member.inbox.consumeStop()
            }
        }
        while true {
            if let stall { return .stalled(stall) }
            let now = clock.now
            runnable.removeAll(keepingCapacity: true)
            for member in members where member.hasWork(at: now) { runnable.append(member) }
            if runnable.isEmpty {
                idle()
                continue
            }
            let member = runnable[runnable.count == 1 ? 0 : interleaving.pick(below: runnable.count)]
            let previous = member.enterThread()
            let goesOn = member.tick(polls: false)
            // Phase 5 with work ready: peek at I/O without blocking.
            if goesOn && member.reactor.hasKernelInterest { member.poll(timeoutNanoseconds: 0) }
            member.leaveThread(restoring: previous)
            member.checkInvariantsInDebugBuilds()
            if !goesOn {
                if case .ending(_, let reason) = member.runState { return reason }
                return .stopped
            }
        }
    }

    /// After the run: collects every loop's leftovers (test loops report them), shuts every loop
    /// down, and says how the run went.
    func finish(_ end: RunEnd) -> Result<LoopLeftovers, any Error> {
        var leftovers = LoopLeftovers()
        for member in members { leftovers.add(member.leftovers()) }
        // Task.sleep timers may belong to cancelled sleeps; shutdown tells the live ones apart.
        leftovers.taskSleeps = members.flatMap { $0.shutdown() }
        down.fulfil(true)
        switch end {
        case .completed: return .success(leftovers)
        case .stalled(let report): return .failure(LoopError(.stalled, operation: "withTestLoopGroup", reason: report))
        case .stopped: return .failure(LoopError(.stopped, operation: "withTestLoopGroup", reason: "stop() was called on a loop of the group (or the group was shut down) before the body finished"))
        }
    }

    /// The sync entry point: the body as a task on the first loop, the group turned on this
    /// thread until it finishes, then shut down.
    func runBodyHere<T: Sendable>(_ body: UnsafeTransfer<() async throws -> T>) throws -> T {
        let outcome = OutcomeBox<T>()
        Task(executorPreference: members[0]) {
            let result: Result<T, any Error>
            do { result = .success(try await body.value()) } catch { result = .failure(error) }
            outcome.result = result
            self.bodyFinished()
        }
        let report = finish(run())
        guard let result = outcome.result else {
            fatalError("SerialLoop: the body of withTestLoopGroup never finished, even after the group cancelled everything it could (\(report.failure().map { "\($0)" } ?? "")); it awaits something outside the group")
        }
        switch report {
        case .failure(let runError): throw runError
        case .success(let leftovers):
            let value = try result.get()
            if !leftovers.isEmpty { throw LoopLeftoversError(leftovers: leftovers) }
            return value
        }
    }

    // MARK: Idle: the group's version of a test loop's idle policy

    /// What the driver does when no loop has work: TestLoop+IdlePolicy.swift's rule, over all loops.
    private func idle() {
        var delivered = 0
        for member in members where member.reactor.hasKernelInterest { delivered += poll(member, timeoutNanoseconds: 0) }
        if delivered > 0 { return }
        if !clock.idleWaiters.isEmpty {
            let waiters = clock.idleWaiters
            clock.idleWaiters.removeAll()
            clock.noteProgress()
            for waiter in waiters { waiter.resume() }
            return
        }
        let deadSleeps = members.map { $0.setAsideDeadRuntimeSleeps() }
        defer { for (member, dead) in zip(members, deadSleeps) { member.reinstate(dead) } }
        let now = clock.now
        let next = members.compactMap { $0.timers.nextDeadline }.filter { $0 < neverDeadline }.min()
        if let request = clock.advanceRequest {
            if let next, next <= request.target {
                setNow(max(now, next))
            } else {
                if request.target < neverDeadline { setNow(max(now, request.target)) } else { clock.noteProgress() }
                clock.advanceRequest = nil
                request.continuation.resume()
            }
            return
        }
        if clock.autoAdvance && clock.holdCount <= 0, let next {
            if waitForQuietIO(before: next) { setNow(max(now, next)) }
            return
        }
        clock.quietPeriodStart = nil
        if !parkCountingTowardsStall(timeoutNanoseconds: nil) {
            declareStall("virtual time could not move (\(whyTimeCannotMove()))")
        }
    }

    private func setNow(_ nanoseconds: Int64) {
        assert(nanoseconds < neverDeadline && nanoseconds >= clock.now, "virtual time must move forward and never reach 'never'")
        // No loop is entered here: each tick installs the thread's clock from this reading.
        clock.nanoseconds.store(nanoseconds, ordering: .relaxed)
        clock.noteProgress()
    }

    private func waitForQuietIO(before deadline: Int64) -> Bool {
        let quiet = clock.ioQuietPeriodNanoseconds
        guard quiet > 0, members.contains(where: { $0.reactor.waiterCount > 0 || $0.reactor.callbackCount > 0 }) else { return true }
        let start = clock.quietPeriodStart ?? monotonicNanoseconds()
        clock.quietPeriodStart = start
        while true {
            let remaining = quiet - (monotonicNanoseconds() - start)
            if remaining <= 0 { return true }
            guard parkCountingTowardsStall(timeoutNanoseconds: remaining) else {
                let inFlight = members.enumerated().map { "loop \($0): \($1.reactor.descriptorsInFlight())" }.joined(separator: "; ")
                declareStall("I/O in flight kept virtual time from jumping to \(Duration.nanoseconds(deadline)) (\(inFlight); ioQuietPeriod \(Duration.nanoseconds(quiet)))")
                return false
            }
            if members.contains(where: { !$0.ready.isEmpty }) { clock.quietPeriodStart = nil; return false }
            if members.contains(where: { $0.inbox.mayHaveWork || $0.inbox.isStopRequested }) { return false }
        }
    }

    private func parkCountingTowardsStall(timeoutNanoseconds: Int64?) -> Bool {
        let budget = clock.stallTimeoutNanoseconds - clock.waitedWithoutMoving
        if budget <= 0 { return false }
        let start = monotonicNanoseconds()
        park(timeoutNanoseconds: min(timeoutNanoseconds ?? budget, budget))
        clock.waitedWithoutMoving += max(0, monotonicNanoseconds() - start)
        return true
    }

    /// Parks until I/O or a wake-up on any loop, or the timeout: each loop announces it is parking
    /// (so other threads' pushes write its eventfd), the thread waits on the epoll of the loops'
    /// epoll descriptors, and then every loop polls without blocking (delivering readiness and
    /// consuming its wake-up).
    private func park(timeoutNanoseconds: Int64) {
        var parked = 0
        for member in members {
            guard member.inbox.beginParking() else { break }
            parked += 1
        }
        if parked == members.count {
            var timeout = timeoutNanoseconds
            let now = monotonicNanoseconds()
            for member in members where member.reactor.mayNeedVerification {
                if let check = member.reactor.timeUntilVerification(now: now) { timeout = min(timeout, check) }
            }
            var event = epoll_event()
            // Milliseconds, rounded up: a quiet period or a stall budget, not a deadline of the program.
            let milliseconds = Int32(clamping: (max(0, timeout) + 999_999) / 1_000_000)
            _ = epoll_wait(groupPoll, &event, 1, milliseconds)
        }
        for member in members.prefix(parked) { member.inbox.endParking() }
        for member in members { poll(member, timeoutNanoseconds: 0) }
    }

    /// Polls `member` once, inside its context (readiness it delivers lands on its ready queue).
    @discardableResult
    private func poll(_ member: TestLoop, timeoutNanoseconds: Int64) -> Int {
        let previous = member.enterThread()
        defer { member.leaveThread(restoring: previous) }
        return member.poll(timeoutNanoseconds: timeoutNanoseconds)
    }

    private func declareStall(_ why: String) {
        let pending = members.enumerated().map { "loop \($0): \($1.leftovers())" }.joined(separator: "; ")
        stall = "the test loop group stalled: \(why) for \(Duration.nanoseconds(clock.stallTimeoutNanoseconds)) of real time spent waiting; pending: \(pending). The body awaits something only another thread could complete"
    }

    private func whyTimeCannotMove() -> String {
        if clock.holdCount > 0 { return "time is held by \(clock.holdCount) TimeHold(s)" }
        if !clock.autoAdvance { return "autoAdvancesTime is off and no advance(by:) is running" }
        if members.contains(where: { $0.timers.nextDeadline == neverDeadline }) { return "only 'never' deadlines are pending" }
        return "no live timer on any loop"
    }
}

extension TestLoop {
    /// Whether a test group's driver should give this loop a tick now: jobs ready, arrivals from
    /// other loops or threads, a timer due at `now`, or a stop to honour.
    fileprivate func hasWork(at now: Int64) -> Bool {
        !ready.isEmpty || inbox.mayHaveWork || inbox.isStopRequested || (timers.nextDeadline.map { $0 <= now } ?? false)
    }
}

extension LoopLeftovers {
    /// Adds another loop's leftovers to these (a test group reports its loops' together).
    mutating func add(_ other: LoopLeftovers) {
        sleeps += other.sleeps
        taskSleeps += other.taskSleeps
        scheduledCallbacks += other.scheduledCallbacks
        descriptorWaits += other.descriptorWaits
        futureAwaiters += other.futureAwaiters
    }
}

/// The async entry point's host: the group's thread, which creates the group, turns it while the
/// body runs in the caller's task, then shuts it down and reports.
private final class DedicatedTestGroup: @unchecked Sendable {
    // Safe: `handedOver` carries the driver across (its lock orders the thread's writes before the
    // caller's use), `report` is a `RunReport`.
    private let handedOver = Lock<OneThreadTestGroup?>(nil)
    private let report = RunReport()

    var driver: OneThreadTestGroup { handedOver.withLock { $0! } }

    static func start(loops: Int, seed: UInt64?) async throws -> DedicatedTestGroup {
        let host = DedicatedTestGroup()
        try await withUnsafeThrowingContinuation { (started: UnsafeContinuation<Void, any Error>) in
            pthread_detach(spawnThread {
                let driver: OneThreadTestGroup
                do { driver = try OneThreadTestGroup(loops: loops, seed: seed) } catch {
                    return started.resume(throwing: error)
                }
                host.handedOver.withLock { $0 = driver }
                started.resume()
                host.report.deliver(driver.finish(driver.run()))
            })
        }
        return host
    }

    /// The call's outcome, once the thread has shut the group down (`RunReport.outcome(afterBody:)`).
    func outcome<T>(afterBody body: Result<T, any Error>) async throws -> T {
        try await report.outcome(afterBody: body)
    }
}
