@preconcurrency import Glibc
import Synchronization

// The test loop's clock, in one place.
//
// Virtual time moves only at step 5 of a tick, when nothing is ready (`idleOnVirtualTime`), and then
// straight to a deadline: so an hour of sleeps costs as many ticks as there are wake-ups, and the
// timestamps a test observes depend only on the program, not on the machine. What may stop a jump:
//
// - I/O in flight. A descriptor waiter or a reader/writer callback means another thread or process
//   may be about to answer; a jump now would fire the test's timeout early. The loop waits up to
//   `ioQuietPeriod` of *real* time for readiness first.
// - Cross-thread activity. Work arriving from another thread (a continuation resumed by a helper
//   thread, `execute` from a callback, another loop answering) shows that off-loop work is in
//   progress; the loop does not jump until `ioQuietPeriod` of real time has passed since the last
//   such arrival. Each arrival restarts that quiet period.
// - A time hold (`holdTime()` / `holdingTime { }`): the test says "work I started elsewhere will
//   come back; do not jump until I release". Exact, where the two rules above are heuristics.
// - Dead sleeps are not reasons to stop. When a task sleeping in plain `Task.sleep` is cancelled,
//   the runtime resumes it at once but leaves its wake-up job in our timer queue (there is no API
//   to withdraw it). The loop records which task each runtime sleep belongs to (the runtime
//   schedules the sleep from inside that task's job) and, before a jump, sets aside every sleep at
//   the head of the queue whose task is cancelled, so the clock goes to the next *live* deadline.
//   Their jobs still run (dropping them would leak the runtime's sleep task), once the clock has
//   passed their deadlines, where running them is a no-op. A cancelled task's sleep can never be
//   live: cancellation resumes every sleep of the task, and a new sleep in a cancelled task throws
//   at once.

/// Virtual-time control for test loops. Loop thread only.
struct VirtualClockState {
    /// Tasks waiting in `runUntilIdle()`.
    var idleWaiters: [UnsafeContinuation<Void, Never>] = []
    /// A task waiting in `advance(to:)`, and its target time.
    var advanceRequest: (target: Int64, continuation: UnsafeContinuation<Void, Never>)? = nil
    /// Whether the clock jumps to the next deadline by itself when the loop is idle.
    var autoAdvance = true
    /// Active `TimeHold`s; while positive the clock does not jump by itself. (It may dip below zero
    /// for a moment when a hold taken on another thread is released on the loop thread first.)
    var holdCount = 0
    /// Real time the loop waits after I/O in flight or cross-thread activity before it lets virtual
    /// time jump.
    var ioQuietPeriodNanoseconds: Int64 = 250_000_000
    /// CLOCK_MONOTONIC when work last arrived from another thread (0: never).
    var lastCrossThreadArrivalNanoseconds: Int64 = 0
    /// Real time a test loop waits, with nothing scheduled that could ever move it, before it
    /// declares a stall (instead of hanging the test forever).
    var stallTimeoutNanoseconds: Int64 = 30_000_000_000
    /// Set when a stall was declared; `run(until:)` then throws a `LoopError` describing it.
    var stallReport: String? = nil
    /// The task that started each pending runtime sleep (`Task.sleep` & co.). Storing an
    /// `UnsafeCurrentTask` retains the task (its only stored property is a strong reference), and
    /// `isCancelled` is among the APIs the standard library documents as safe from any context.
    /// Entries of sleeps that already fired are swept lazily (see `noteRuntimeSleep`).
    var runtimeSleepOwners: [TimerID: UnsafeCurrentTask] = [:]
    /// The loop thread's CPU time when the current job started (with `Loop.jobStartNanoseconds`,
    /// its wall time): see `recoveredSleepDuration`.
    var jobStartCPUNanoseconds: Int64 = 0
}

extension Loop {
    /// What a test loop does at step 5 of a tick when no work is ready. The rule, in order:
    /// 1. I/O that is ready now is work: poll without blocking first.
    /// 2. Tasks waiting in `runUntilIdle()` resume (time does not move).
    /// 3. Runtime sleeps of cancelled tasks at the head of the timer queue are set aside: they are
    ///    not deadlines anyone waits for.
    /// 4. An `advance(to:)` in progress moves the clock to the next deadline within its target, or
    ///    to the target itself and resumes its caller. (Explicit: holds and quiet periods do not
    ///    apply.)
    /// 5. With auto-advance and no time hold, the clock jumps to the next deadline — after the quiet
    ///    period, if I/O is in flight or work came from another thread recently; anything arriving
    ///    meanwhile cancels the jump (and restarts the quiet period).
    /// 6. Otherwise nothing can move time: wait (for real) for other threads or I/O — at most
    ///    `stallTimeout`; then the loop declares a stall rather than hang: `run(until:)` (and so
    ///    `withTestLoop`) throws a `LoopError` listing what the loop was still waiting on.
    func idleOnVirtualTime() {
        if reactor.hasKernelInterest && poll(timeoutNanoseconds: 0) > 0 { return }
        if !ready.isEmpty || inbox.mayHaveWork { return }
        if !virtualClock.idleWaiters.isEmpty {
            let waiters = virtualClock.idleWaiters
            virtualClock.idleWaiters.removeAll()
            for waiter in waiters { waiter.resume() }
            return
        }
        let deadSleeps = setAsideDeadRuntimeSleeps()
        defer { reinstate(deadSleeps) }
        let now = virtualNanoseconds.load(ordering: .relaxed)
        if let request = virtualClock.advanceRequest {
            if let next = timers.nextDeadline, next <= request.target {
                setVirtualNow(max(now, next))
            } else {
                setVirtualNow(max(now, request.target))
                virtualClock.advanceRequest = nil
                request.continuation.resume()
            }
            return
        }
        if virtualClock.autoAdvance && virtualClock.holdCount <= 0, let next = timers.nextDeadline {
            if let quiet = remainingQuietPeriod() {
                if parkAndPoll(timeoutNanoseconds: quiet) > 0 { return }
                if !ready.isEmpty || inbox.mayHaveWork { return }
            }
            setVirtualNow(max(now, next))
            return
        }
        if parkAndPoll(timeoutNanoseconds: virtualClock.stallTimeoutNanoseconds) == 0 && ready.isEmpty && !inbox.mayHaveWork {
            virtualClock.stallReport = "the test loop stalled: nothing was ready and nothing could move virtual time for \(Duration.nanoseconds(virtualClock.stallTimeoutNanoseconds)) of real time (\(whyTimeCannotMove()); pending: \(leftovers())); the body awaits something only another thread could complete\(mainActorStallHint)"
            exitRequested = true
        }
    }

    /// How long to wait (real time) before a jump, or `nil` to jump now.
    private func remainingQuietPeriod() -> Int64? {
        let quiet = virtualClock.ioQuietPeriodNanoseconds
        if quiet <= 0 { return nil }
        // The main-queue descriptor of a loop on the main thread is the loop's own, not I/O in flight.
        if reactor.waiterCount > 0 || reactor.callbackCount > (servesMainQueue ? 1 : 0) { return quiet }
        let last = virtualClock.lastCrossThreadArrivalNanoseconds
        guard last != 0 else { return nil }
        let since = monotonicNanoseconds() - last
        return since < quiet ? quiet - since : nil
    }

    private func whyTimeCannotMove() -> String {
        if virtualClock.holdCount > 0 { return "time is held by \(virtualClock.holdCount) TimeHold(s)" }
        if !virtualClock.autoAdvance { return "autoAdvancesTime is off and no advance(by:) is running" }
        return "no live timer"
    }

    /// Work arrived from another thread (called by the tick's inbox drain on test loops).
    func noteCrossThreadArrival() {
        virtualClock.lastCrossThreadArrivalNanoseconds = monotonicNanoseconds()
    }

    private func setVirtualNow(_ nanoseconds: Int64) {
        virtualNanoseconds.store(nanoseconds, ordering: .relaxed)
    }

    private func preconditionVirtual(_ operation: String) {
        precondition(timeMode == .virtual, "Loop.\(operation) needs a test loop (virtual time); this loop runs on real time")
    }

    // MARK: Runtime sleeps of cancelled tasks

    /// Records the current task as the owner of the runtime sleep `id`. Loop thread, test loops.
    /// - Complexity: amortised O(1): fired sleeps' entries are swept when the table has grown to
    ///   twice the pending timers.
    func noteRuntimeSleep(_ id: TimerID) {
        guard let owner = withUnsafeCurrentTask(body: { $0 }) else { return }
        if virtualClock.runtimeSleepOwners.count >= 2 * timers.count + 64 {
            virtualClock.runtimeSleepOwners = virtualClock.runtimeSleepOwners.filter { timers.contains($0.key) }
        }
        virtualClock.runtimeSleepOwners[id] = owner
    }

    /// Removes, from the head of the timer queue, every runtime sleep whose task is cancelled.
    private func setAsideDeadRuntimeSleeps() -> [(deadline: Int64, work: Work, owner: UnsafeCurrentTask)] {
        var dead: [(deadline: Int64, work: Work, owner: UnsafeCurrentTask)] = []
        while let (deadline, id) = timers.first, let owner = virtualClock.runtimeSleepOwners[id], owner.isCancelled {
            virtualClock.runtimeSleepOwners[id] = nil
            dead.append((deadline, timers.cancel(id)!, owner))
        }
        return dead
    }

    /// Puts set-aside sleeps back with their own deadlines: those the clock has passed fire on the
    /// next tick (a no-op for a cancelled sleep), the others wait, still known to be dead.
    private func reinstate(_ dead: [(deadline: Int64, work: Work, owner: UnsafeCurrentTask)]) {
        for (deadline, work, owner) in dead {
            virtualClock.runtimeSleepOwners[timers.schedule(at: deadline, work)] = owner
        }
    }

    // MARK: Recovering Task.sleep durations

    /// Marks the start of a job on a test loop (wall and CPU time of the loop thread).
    func noteJobStart() {
        jobStartNanoseconds = monotonicNanoseconds()
        virtualClock.jobStartCPUNanoseconds = threadCPUNanoseconds()
    }

    /// Runs every runtime sleep path once, on a throwaway real-time loop on this thread, the first
    /// time a test loop is created in the process. A cold first `Task.sleep` spends milliseconds
    /// of CPU (lazy binding, metadata) between the runtime's clock read and the loop — more than
    /// `sleepPathCPUBound` — and its duration would be recovered a few milliseconds short (seen:
    /// `Task.sleep(for: .seconds(3))` as 2.997 s, about once in ten suite runs). Warm, that path
    /// costs microseconds.
    static func warmUpRuntimeSleepPaths() {
        _ = runtimeSleepPathsWarmed
    }

    private static let runtimeSleepPathsWarmed: Bool = {
        guard let loop = try? Loop() else { return false }
        let warmUp = Task<Void, any Error>(executorPreference: loop) {
            try await Task.sleep(for: .zero)
            try await Task.sleep(nanoseconds: 0)
            try await Task.sleep(until: .now, clock: .continuous)
            try await Task.sleep(for: .zero, clock: .suspending)
            try await ContinuousClock().sleep(for: .zero)
            try await SuspendingClock().sleep(for: .zero)
        }
        _ = try? loop.run(until: warmUp)
        loop.shutDown()
        return true
    }()

    /// The CPU time a runtime sleep's own code path may take between reading the real clock and
    /// reaching the loop (task creation, cancellation record, our conversion). Usually well under
    /// 10 µs, but a first call (lazy binding, metadata) in a debug or sanitizer build was seen
    /// above 100 µs. It bounds how fine a duration can be recovered after a long job.
    static let sleepPathCPUBound: Int64 = 500_000

    /// A job this short (CPU time) is mostly the sleep path itself.
    static let shortJobCPU: Int64 = 50_000

    /// The duration `d` of a plain `Task.sleep(for: d)` (or `ContinuousClock`/`SuspendingClock`
    /// sleep) that reached a test loop with its real deadline `remaining` nanoseconds away.
    ///
    /// The runtime read the real clock at some instant T during the current job and hands us
    /// "T + d"; we see it at N, so `d = remaining + (N - T)`. The gap N - T is the sleep's own code
    /// path — a few hundred nanoseconds of CPU — plus any preemption that fell inside it. What ran
    /// before T (the job's own work, a blocking call, preemption) does not matter, which is why the
    /// window is not simply "since the job started": 5 ms of work before `Task.sleep(for: 17 ms)`
    /// must still give 17 ms. The loop measures the job's wall time and the thread's CPU time; their
    /// difference P is the time the thread was off the CPU, somewhere in the job. Two hypotheses:
    /// - P fell before T: `d` is in `remaining ... remaining + min(cpu, bound)`;
    /// - P fell between T and N: `d` is in the same window shifted by P (weighed only for a job of
    ///   at most `shortJobCPU` of CPU time: in a longer one, P almost surely fell before T).
    /// In each window the loop takes the roundest duration (whole hours, minutes, seconds, 100 ms,
    /// … down to 10 ns; the smallest multiple of the coarsest unit that fits), and keeps the rounder
    /// of the two (the first on a tie). Durations written in round units — every sleep in practice —
    /// are recovered exactly, whatever the machine's load, so virtual timestamps are identical on
    /// every run: whole milliseconds always (a window at most `sleepPathCPUBound` wide holds one);
    /// finer durations usually, but a cold first call or a preemption inside the sleep path can
    /// round them. What cannot be told apart: the thread being preempted inside the few-µs sleep
    /// path of a long job (rare: that path is a tiny share of the job). `loop.sleep` and `loop.clock` are exact and have neither limit.
    func recoveredSleepDuration(remainingNanoseconds remaining: Int64) -> Int64 {
        let wall = max(0, monotonicNanoseconds() - jobStartNanoseconds)
        let cpu = max(0, threadCPUNanoseconds() - virtualClock.jobStartCPUNanoseconds)
        let width = max(2_000, min(cpu, Self.sleepPathCPUBound))
        let offCPU = max(0, wall - cpu)
        let beforeT = Self.roundestDuration(nearestAbove: remaining, upTo: remaining.saturatingAdd(width))
        // Off-CPU time lands in the sleep path (T to N) with a chance of roughly its share of the
        // job's CPU time: worth weighing only for a short job; after a long one it fell before T.
        guard offCPU > width, cpu <= Self.shortJobCPU else { return beforeT }
        let shifted = remaining.saturatingAdd(offCPU)
        let insideGap = Self.roundestDuration(nearestAbove: shifted, upTo: shifted.saturatingAdd(width))
        return Self.roundness(of: insideGap) > Self.roundness(of: beforeT) ? insideGap : beforeT
    }

    /// The smallest multiple of the coarsest unit that lies in `lower...upper` (nanoseconds): the
    /// gap N - T is usually the shortest the window allows, so among equally round candidates the
    /// one nearest `lower` is the likeliest.
    static func roundestDuration(nearestAbove lower: Int64, upTo upper: Int64) -> Int64 {
        if lower <= 0 { return 0 }                    // zero is the roundest of all
        guard upper < Int64.max / 2 else { return upper }
        for unit in roundUnits {
            let candidate = (lower + unit - 1) / unit * unit
            if candidate <= upper { return candidate }
        }
        return lower
    }

    /// Units a written duration is likely to be a whole multiple of, coarsest first.
    static let roundUnits: [Int64] = [3_600_000_000_000, 60_000_000_000, 1_000_000_000, 100_000_000, 10_000_000,
                                      1_000_000, 100_000, 10_000, 1_000, 100, 10]

    /// How round a duration is: the index of the coarsest unit it is a multiple of, counted from
    /// the finest (10 ns) up; zero is roundest of all.
    static func roundness(of nanoseconds: Int64) -> Int {
        if nanoseconds == 0 { return Int.max }
        guard let coarsest = roundUnits.firstIndex(where: { nanoseconds % $0 == 0 }) else { return 0 }
        return roundUnits.count - coarsest
    }

    // MARK: Stepping

    /// Suspends until the loop is idle: no ready work, no due timer, no ready I/O — without moving
    /// the clock. Exact quiescence, no yield counting. Test loops only.
    public func runUntilIdle() async {
        preconditionVirtual("runUntilIdle()")
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            onLoopThread { self.virtualClock.idleWaiters.append(continuation) }
        }
    }

    /// Moves virtual time forward by `duration`, firing every timer due on the way in
    /// `(deadline, sequence)` order and letting the work they wake run before the next one fires.
    /// Returns when the clock reads the target and the loop is idle. Test loops only.
    public func advance(by duration: Duration) async {
        await advance(to: now.advanced(by: duration))
    }

    /// Moves virtual time forward to `deadline` (see ``advance(by:)``). A deadline in the past
    /// only runs the loop until idle. Time holds and quiet periods do not delay an explicit advance.
    public func advance(to deadline: LoopClock.Instant) async {
        preconditionVirtual("advance(to:)")
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            onLoopThread {
                precondition(self.virtualClock.advanceRequest == nil, "Loop.advance(to:) called while another advance is in progress")
                self.virtualClock.advanceRequest = (deadline.nanosecondsSinceOrigin, continuation)
            }
        }
    }

    // MARK: Holding time

    /// Stops the clock from jumping by itself until the returned hold is released — for a test that
    /// started work the loop cannot see (a helper thread, a child process, Dispatch) and that will
    /// come back. ``advance(by:)`` still moves time. Holds nest (a count).
    ///
    /// On the loop thread the hold takes effect at once; from another thread, on the loop's next
    /// tick. Release it with ``TimeHold/release()`` (any thread, idempotent) or use
    /// ``holdingTime(isolation:_:)``. A loop that stays idle while held declares a stall after
    /// ``stallTimeout``. Test loops only.
    public func holdTime() -> TimeHold {
        preconditionVirtual("holdTime()")
        onLoopThread { self.virtualClock.holdCount += 1 }
        return TimeHold(loop: self)
    }

    /// Runs `body` with the clock held (see ``holdTime()``): no automatic jump happens until it
    /// returns or throws.
    public func holdingTime<T, E: Error>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws(E) -> T
    ) async throws(E) -> T {
        let hold = holdTime()
        defer { hold.release() }
        return try await body()
    }

    /// Whether a ``TimeHold`` is active. Loop thread only.
    public var isTimeHeld: Bool {
        preconditionOnLoopThread("Loop.isTimeHeld")
        return virtualClock.holdCount > 0
    }

    // MARK: Settings

    /// Whether a test loop's clock jumps to the next deadline by itself when idle (default `true`).
    /// Turn it off to drive time only with ``advance(by:)`` / ``advance(to:)``. Loop thread only.
    public var autoAdvancesTime: Bool {
        get { preconditionOnLoopThread("Loop.autoAdvancesTime"); return virtualClock.autoAdvance }
        set { preconditionOnLoopThread("Loop.autoAdvancesTime"); virtualClock.autoAdvance = newValue }
    }

    /// How long (real time) a test loop waits, with nothing scheduled that could move it, before it
    /// declares a stall and `withTestLoop` throws (default 30 s). Loop thread only.
    public var stallTimeout: Duration {
        get { preconditionOnLoopThread("Loop.stallTimeout"); return .nanoseconds(virtualClock.stallTimeoutNanoseconds) }
        set { preconditionOnLoopThread("Loop.stallTimeout"); virtualClock.stallTimeoutNanoseconds = max(0, newValue.saturatingNanoseconds) }
    }

    /// How long (real time) a test loop waits before letting virtual time jump while I/O is in
    /// flight (a task waits on a descriptor, or a reader/writer callback is installed), and after
    /// the last work that arrived from another thread (default 250 ms). Raise it when the other
    /// side is slow (a child process, a loaded CI machine); `.zero` turns both waits off.
    /// Loop thread only.
    public var ioQuietPeriod: Duration {
        get { preconditionOnLoopThread("Loop.ioQuietPeriod"); return .nanoseconds(virtualClock.ioQuietPeriodNanoseconds) }
        set { preconditionOnLoopThread("Loop.ioQuietPeriod"); virtualClock.ioQuietPeriodNanoseconds = max(0, newValue.saturatingNanoseconds) }
    }
}

/// Keeps a test loop's clock from jumping by itself until released (see ``Loop/holdTime()``).
public final class TimeHold: Sendable {
    private let loop: Loop
    private let isReleased = Atomic<Bool>(false)

    init(loop: Loop) {
        self.loop = loop
    }

    /// Ends the hold. Any thread; releasing twice is harmless.
    public func release() {
        guard !isReleased.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let loop = self.loop
        loop.onLoopThread { loop.virtualClock.holdCount -= 1 }
    }
}

/// CPU time consumed by the calling thread (CLOCK_THREAD_CPUTIME_ID), in nanoseconds.
func threadCPUNanoseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return Int64(spec.tv_sec) &* 1_000_000_000 &+ Int64(spec.tv_nsec)
}
