@preconcurrency import Glibc

/// Debug mode (asyncio's debug mode): set ``Loop/debug`` to report slow jobs and late timers.
///
/// While it is on, every job is timed (two clock reads per job: see <doc:DiagnosingASlowLoop>),
/// and callbacks remember where they were created (`execute`, `schedule`, `addReader`,
/// `addWriter` capture `#fileID:#line`).
public struct LoopDebugOptions: Sendable {
    /// Jobs that run at least this long are reported.
    public var slowJobThreshold: Duration
    /// Timers that fire at least this late are reported (the worst per tick).
    public var lagThreshold: Duration
    /// At most this many reports per second; the rest are counted and the count is given with the
    /// next report.
    public var maximumReportsPerSecond: Int
    /// Where reports go. Called on the loop's thread. Default: one line on stderr.
    public var sink: @Sendable (LoopDebugReport) -> Void

    /// Debug mode's settings; assign them to ``Loop/debug`` (loop thread) to turn it on.
    /// - Parameters:
    ///   - slowJobThreshold: jobs that run at least this long (real time) are reported.
    ///   - lagThreshold: ticks whose timers fire at least this late are reported.
    ///   - maximumReportsPerSecond: the rate limit; reports over it are counted, and the count goes
    ///     with the next report.
    ///   - sink: where reports go, called on the loop's thread; ``standardError`` by default.
    public init(
        slowJobThreshold: Duration = .milliseconds(100),
        lagThreshold: Duration = .milliseconds(100),
        maximumReportsPerSecond: Int = 10,
        sink: @escaping @Sendable (LoopDebugReport) -> Void = LoopDebugOptions.standardError
    ) {
        self.slowJobThreshold = slowJobThreshold
        self.lagThreshold = lagThreshold
        self.maximumReportsPerSecond = maximumReportsPerSecond
        self.sink = sink
    }

    /// Writes the report's description, one line, to stderr.
    public static let standardError: @Sendable (LoopDebugReport) -> Void = { report in
        fputs("SerialLoop: \(report)\n", stderr)
    }
}

/// One debug-mode finding.
public struct LoopDebugReport: Sendable, CustomStringConvertible {
    /// What a report is about.
    public enum Kind: Sendable, Equatable {
        /// A job ran longer than `slowJobThreshold`.
        case slowJob
        /// Timers fired later than `lagThreshold`.
        case lateTimers
        /// The loop was deallocated without `shutdown()` while work was still pending on it: the
        /// tasks suspended there are never resumed (`pending` says what).
        case abandonedWork
        /// A `LoopFuture` was deallocated uncompleted while done-callbacks (or tasks) waited for
        /// it: it failed with a `LoopError` so they run instead of waiting for ever (`site`:
        /// where it was made; `pending`: how many of each).
        case droppedFuture
    }

    /// What the report is about; the other fields that apply depend on it.
    public var kind: Kind
    /// For slow jobs: what ran.
    public var job: LoopJobKind?
    /// For slow task jobs: the task's name (`Task(name:)`), when the loop knows it (see
    /// <doc:DiagnosingASlowLoop>). The runtime gives an executor no way to read a task's name from
    /// its job, so the loop reads `Task.name` when the task calls into the loop on the loop's thread:
    /// a suspension on a loop API (`readable`, `sleep`, `future.value`, …), any SerialLoopNet socket
    /// operation, a yield, a hop onto an actor whose executor is the loop, creating a task. The name
    /// is known if the task made such a call in the slow job or in an earlier job on the loop. It is
    /// `nil` for a task that made none: one whose first await was a default-actor hop, a main-actor
    /// hop or a plain `Task.sleep` (the runtime makes those moves without such a call) and that then
    /// blocked and ended.
    public var taskName: String?
    /// For slow callbacks: where the callback was created.
    public var site: LoopCallbackSite?
    /// For slow jobs: how long the job ran (real time).
    public var duration: Duration
    /// Slow jobs: how late the earliest pending timer was when the job ended (the lag it caused),
    /// zero if none was due. Late timers: the worst lateness of the tick.
    public var lag: Duration
    /// Late timers: how many timers of the tick were late.
    public var lateTimers: Int
    /// Reports dropped by the rate limit since the previous report.
    public var suppressed: Int
    /// Abandoned work: what was still pending when the loop was deallocated. Dropped future: its
    /// awaiting tasks and done-callbacks.
    public var pending: String? = nil
    /// Dropped future: its value type.
    public var futureType: String? = nil

    /// One line for a log, e.g. `slow task "connection 2" ran 437 ms`.
    public var description: String {
        var text: String
        switch kind {
        case .slowJob:
            var what = job?.description ?? "job"
            if let taskName { what += " \"\(taskName)\"" }
            if let site { what += " created at \(site)" }
            text = "slow \(what) ran \(duration.diagnosticText)"
            if lag > .zero { text += ", making the next timer \(lag.diagnosticText) late" }
        case .lateTimers:
            text = "loop lag: \(lateTimers) timer(s) fired up to \(lag.diagnosticText) late"
        case .abandonedWork:
            text = "a loop was deallocated without shutdown() while work was pending (\(pending ?? "?")); tasks suspended on it will never resume: call loop.shutdown() after run() returns, or use withLoop"
        case .droppedFuture:
            text = "a LoopFuture<\(futureType ?? "?")> made at \(site?.description ?? "?") was deallocated without being completed while \(pending ?? "work") waited for it; it failed with an error instead: keep the future until you complete it"
        }
        if suppressed > 0 { text += " (\(suppressed) more report(s) suppressed)" }
        return text
    }
}

/// A creation site as captured (no conversion until a report needs it).
struct RawCallbackSite {
    let fileID: StaticString
    let line: UInt

    var site: LoopCallbackSite { LoopCallbackSite(fileID: fileID.description, line: line) }
}

/// Rate-limited delivery of debug reports. Loop thread only.
struct DebugReporter {
    var options: LoopDebugOptions
    private var windowStart: Int64 = 0
    private var sentInWindow = 0
    private var suppressed = 0

    init(options: LoopDebugOptions) {
        self.options = options
    }

    mutating func deliver(_ report: LoopDebugReport) {
        let now = monotonicNanoseconds()
        if now - windowStart >= 1_000_000_000 {
            windowStart = now
            sentInWindow = 0
        }
        guard sentInWindow < max(1, options.maximumReportsPerSecond) else {
            suppressed += 1
            return
        }
        sentInWindow += 1
        var report = report
        report.suppressed = suppressed
        suppressed = 0
        options.sink(report)
    }
}

// MARK: Task names (debug mode)
//
// An executor is handed a job, not a task, and the runtime has no API that reads a task's name
// from its job: only code running *in* the task can (`Task.name`). So the loop reads the name when
// the task itself calls into the loop on the loop's thread — an enqueue made from inside the task
// (a hop onto an actor whose executor is the loop, a yield, a child task, a task completing for an
// awaiter) or a suspension on a loop API (`readable`, `sleep`, `future.value`, …), and every
// SerialLoopNet socket operation, even one that does not suspend — and remembers it by the task's
// address (the job of a task *is* the task).
//
// Not seen, checked (DebugTaskNameTests): the runtime makes some of a task's moves without calling
// the loop on its thread. It enqueues a task coming back from the main actor or from an actor on
// another executor *after* clearing the current task (so the enqueue cannot tell whose job it is);
// it switches between the loop and default actors in place; and a plain `Task.sleep` reaches the
// loop through its `SchedulingExecutor` conformance, which does not read names. A slow job is
// therefore reported without a name when its task made none of the calls above in it or in an
// earlier job on the loop — for example a task whose first await is a default-actor hop, a
// main-actor hop or a plain `Task.sleep`, and which then blocks and ends.

extension Loop {
    /// For the socket layer: in debug mode, remembers the name of the task calling (on the loop's
    /// thread), so a slow job of a task that uses sockets is reported by name. Costs one relaxed
    /// atomic load when debug mode is off.
    package func noteCallingTaskName() {
        if metricsStorage.capturesSites.load(ordering: .relaxed) { noteTaskName() }
    }
}
