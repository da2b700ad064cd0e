/// What a live loop is waiting for (``Loop/pendingWork``): the shape of ``LoopLeftovers``, with
/// more detail, taken while the loop runs.
public struct LoopPendingWork: Sendable, CustomStringConvertible {
    /// A pending timer.
    public struct Timer: Sendable, CustomStringConvertible {
        /// What the timer will wake.
        public enum Kind: Sendable, Equatable {
            /// A task in `loop.sleep` / a `loop.clock` sleep.
            case loopSleep
            /// A `Task.sleep` (or `ContinuousClock`/`SuspendingClock` sleep) of a task on the loop.
            case taskSleep
            /// A `schedule(after:)`/`schedule(at:)` callback.
            case scheduledCallback
        }
        /// When it is due (loop time); `nanosecondsSinceOrigin == .max` means never.
        public var deadline: LoopClock.Instant
        /// What it will wake.
        public var kind: Kind
        /// Where a scheduled callback was created, if debug mode was on then.
        public var site: LoopCallbackSite?

        /// `loop.sleep due at 4763.2 s`, `scheduled callback from App.swift:12 due at …`.
        public var description: String {
            let due = deadline.nanosecondsSinceOrigin == .max ? "never" : "at \(Duration.nanoseconds(deadline.nanosecondsSinceOrigin).diagnosticText)"
            let what: String
            switch kind {
            case .loopSleep: what = "loop.sleep"
            case .taskSleep: what = "Task.sleep"
            case .scheduledCallback: what = "scheduled callback" + (site.map { " from \($0)" } ?? "")
            }
            return "\(what) due \(due)"
        }
    }

    /// A task suspended in `readable`/`writable`.
    public struct DescriptorWait: Sendable, CustomStringConvertible {
        /// Which readiness the task waits for: `readable` or `writable`.
        public enum Interest: Sendable, Equatable {
            /// Waiting in `readable(_:)` (or a read readiness stream or scope).
            case readable
            /// Waiting in `writable(_:)` (or a write readiness stream or scope).
            case writable
        }
        /// The descriptor.
        public var fd: Int32
        /// Which readiness the task waits for.
        public var interest: Interest
        /// How long it has waited (loop time), if debug mode was on when the wait began.
        public var waited: Duration?

        /// `readable(fd: 6) for 353.2 ms`.
        public var description: String {
            "\(interest == .readable ? "readable" : "writable")(fd: \(fd))" + (waited.map { " for \($0.diagnosticText)" } ?? "")
        }
    }

    /// Something tasks are suspended on until code elsewhere completes it.
    public struct AwaitedFuture: Sendable, CustomStringConvertible {
        /// What it is: `LoopFuture<Int> made at App.swift:42`, or `gather(_:) of 3`.
        public var what: String
        /// How many tasks are suspended on it.
        public var awaiters: Int
        /// How long the first of them has waited (loop time).
        public var waited: Duration

        /// `LoopFuture<Int> made at App.swift:42: 1 task(s) waiting for 2 s`.
        public var description: String {
            "\(what): \(awaiters) task(s) waiting for \(waited.diagnosticText)"
        }
    }

    /// The loop's time when the snapshot was taken.
    public var now: LoopClock.Instant
    /// Pending timers, earliest first.
    public var timers: [Timer] = []
    /// Suspended descriptor waits, by descriptor.
    public var descriptorWaits: [DescriptorWait] = []
    /// Futures and gathers that tasks await, longest-awaited first.
    public var futures: [AwaitedFuture] = []
    /// Futures and gathers that tasks await (`futures.count`).
    public var awaitedFutures = 0
    /// Tasks awaiting an uncompleted `LoopFuture`.
    public var futureAwaiters = 0
    /// Jobs on the ready queue (when taken on the loop thread from a job: the ones behind it).
    public var readyJobs = 0

    /// Nothing pending: no timer, no wait, no awaited future, no ready job.
    public var isEmpty: Bool {
        timers.isEmpty && descriptorWaits.isEmpty && awaitedFutures == 0 && readyJobs == 0
    }

    /// The same facts, as ``LoopLeftovers``.
    public var leftovers: LoopLeftovers {
        var leftovers = LoopLeftovers()
        for timer in timers {
            switch timer.kind {
            case .loopSleep: leftovers.sleeps.append(timer.deadline)
            case .taskSleep: leftovers.taskSleeps.append(timer.deadline)
            case .scheduledCallback: leftovers.scheduledCallbacks.append(timer.deadline)
            }
        }
        var byDescriptor: [Int32: (readers: Int, writers: Int)] = [:]
        for wait in descriptorWaits {
            if wait.interest == .readable { byDescriptor[wait.fd, default: (0, 0)].readers += 1 } else { byDescriptor[wait.fd, default: (0, 0)].writers += 1 }
        }
        leftovers.descriptorWaits = byDescriptor.keys.sorted().map { ($0, byDescriptor[$0]!.readers, byDescriptor[$0]!.writers) }
        leftovers.futureAwaiters = futureAwaiters
        return leftovers
    }

    /// A header line with the counts, then one line per timer, wait and awaited future, as the
    /// example app prints it on `SIGUSR1`.
    public var description: String {
        var lines = ["pending work at \(Duration.nanoseconds(now.nanosecondsSinceOrigin).diagnosticText): \(readyJobs) ready job(s), \(timers.count) timer(s), \(descriptorWaits.count) descriptor wait(s), \(futureAwaiters) task(s) awaiting \(awaitedFutures) future(s)"]
        for timer in timers {
            let due = timer.deadline.nanosecondsSinceOrigin == .max ? "" : ", in \(now.duration(to: timer.deadline).diagnosticText)"
            lines.append("  timer: \(timer)\(due)")
        }
        for wait in descriptorWaits { lines.append("  wait: \(wait)") }
        for future in futures { lines.append("  awaited: \(future)") }
        return lines.joined(separator: "\n")
    }
}

extension Loop {
    /// What the loop is waiting for, as a consistent snapshot taken on the loop's thread between
    /// jobs. Any thread: from another thread the snapshot is taken by a callback through the inbox,
    /// so it is answered when the loop next turns (a loop that is not running answers once it
    /// runs again). On a loop that has shut down: empty.
    public var pendingWork: LoopPendingWork {
        get async {
            if isOnLoopThread { return currentPendingWork() }
            // Through `onLiveLoop`, not a plain inbox callback: a request that reaches the inbox
            // after shutdown's last drain is answered (empty) when the inbox closes, where a
            // callback would be dropped and leave this caller waiting forever.
            return await withUnsafeContinuation { (continuation: UnsafeContinuation<LoopPendingWork, Never>) in
                onLiveLoop({ continuation.resume(returning: self.currentPendingWork()) },
                           orElse: { continuation.resume(returning: LoopPendingWork(now: self.now)) })
            }
        }
    }

    /// ``pendingWork`` now. Loop thread only.
    public func currentPendingWork() -> LoopPendingWork {
        preconditionOnLoopThread("Loop.currentPendingWork()")
        let now = nowNanoseconds
        var work = LoopPendingWork(now: LoopClock.Instant(nanosecondsSinceOrigin: now))
        let sites = observation.timerSites
        var timerList: [(Int64, LoopPendingWork.Timer)] = []
        timers.forEach { deadline, id, item in
            let instant = LoopClock.Instant(nanosecondsSinceOrigin: deadline)
            switch item {
            case .resume: timerList.append((deadline, .init(deadline: instant, kind: .loopSleep)))
            case .sleepWake: timerList.append((deadline, .init(deadline: instant, kind: .taskSleep)))
            case .scheduledCallback: timerList.append((deadline, .init(deadline: instant, kind: .scheduledCallback, site: sites[id]?.site)))
            }
        }
        work.timers = timerList.sorted { $0.0 < $1.0 }.map(\.1)
        let starts = observation.waitStarts
        work.descriptorWaits = reactor.allWaiters().map { waiter in
            .init(fd: waiter.fd, interest: waiter.interest == .read ? .readable : .writable,
                  waited: starts[waiter.id].map { .nanoseconds(now.saturatingSubtract($0)) })
        }
        work.futures = pendingAwaits.values.map { pending in
            LoopPendingWork.AwaitedFuture(what: pending.awaitDescription, awaiters: (pending as? any AwaiterCounting)?.awaiterCount ?? 1,
                                          waited: .nanoseconds(now.saturatingSubtract(pending.awaitedSince)))
        }.sorted { $0.waited > $1.waited }
        work.awaitedFutures = pendingAwaits.count
        work.futureAwaiters = pendingAwaits.values.reduce(0) { $0 + (($1 as? any AwaiterCounting)?.awaiterCount ?? 0) }
        work.readyJobs = ready.count
        return work
    }

    /// Records when a descriptor wait began (while observing).
    func noteWaitStart(_ id: UInt64) {
        guard observation.isDebugging else { return }
        observation.waitStarts.sweepWhenGrown(liveCount: reactor.waiterCount) {
            let live = Set(reactor.allWaiters().map(\.id))
            return { live.contains($0) }
        }
        observation.waitStarts[id] = nowNanoseconds
    }
}
