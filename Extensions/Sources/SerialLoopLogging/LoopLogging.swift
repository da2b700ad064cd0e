import Logging
import SerialLoop

/// The levels the bridge logs each kind of ``LoopDebugReport`` at.
public struct LoopReportLevels: Sendable, Equatable {
    /// A job ran longer than `slowJobThreshold`: the loop stalled for everything else.
    public var slowJob: Logger.Level
    /// Timers fired later than `lagThreshold`.
    public var lateTimers: Logger.Level
    /// A loop was deallocated without `shutdown()` while work was pending: tasks will never resume.
    public var abandonedWork: Logger.Level
    /// A `LoopFuture` was dropped uncompleted while callbacks or tasks waited for it: it failed.
    public var droppedFuture: Logger.Level

    public init(slowJob: Logger.Level = .warning, lateTimers: Logger.Level = .warning, abandonedWork: Logger.Level = .error,
                droppedFuture: Logger.Level = .error) {
        self.slowJob = slowJob
        self.lateTimers = lateTimers
        self.abandonedWork = abandonedWork
        self.droppedFuture = droppedFuture
    }

    public func level(for kind: LoopDebugReport.Kind) -> Logger.Level {
        switch kind {
        case .slowJob: slowJob
        case .lateTimers: lateTimers
        case .abandonedWork: abandonedWork
        case .droppedFuture: droppedFuture
        }
    }
}

/// Maps the loop's debug-mode reports to swift-log records.
///
/// The core keeps its closure sink (`LoopDebugOptions.sink`, called on the loop's thread); this
/// bridge is such a sink. Each report becomes one record: the message is the report's one-line
/// description (the same text the default stderr sink prints), the level comes from
/// ``LoopReportLevels``, and the facts are metadata under the `loop.` prefix:
///
/// | key | when | value |
/// |---|---|---|
/// | `loop.report` | always | `slow-job`, `late-timers`, `abandoned-work`, `dropped-future` |
/// | `loop.name` | a name was given | the loop's name |
/// | `loop.job` | slow jobs | `task`, `callback`, `scheduled callback`, … (``LoopJobKind``) |
/// | `loop.task_name` | slow task jobs whose name the loop saw | `Task(name:)` |
/// | `loop.site` | slow callbacks, dropped futures | `Module/File.swift:42`, where the callback or future was created |
/// | `loop.future_type` | dropped futures | the future's value type |
/// | `loop.duration_ms` | slow jobs | how long the job ran, milliseconds (real time) |
/// | `loop.lag_ms` | slow jobs, late timers | how late the next (or worst) timer was, milliseconds |
/// | `loop.late_timers` | late timers | how many timers of the tick were late |
/// | `loop.pending` | abandoned work, dropped futures | what was still pending (waiting) |
/// | `loop.suppressed` | the rate limit dropped reports | how many since the previous record |
///
/// The reports carry no file descriptor: the core's reports say which job was slow, not which
/// descriptor it served, so there is no `fd` key (see the SerialLoop documentation's article
/// "Ecosystem bridges").
public enum LoopReportLogging {
    /// A sink for ``LoopDebugOptions/sink`` that logs every report to `logger`.
    public static func sink(
        logger: Logger,
        loopName: String? = nil,
        levels: LoopReportLevels = LoopReportLevels()
    ) -> @Sendable (LoopDebugReport) -> Void {
        { report in
            logger.log(
                level: levels.level(for: report.kind),
                "\(report.description)",
                metadata: metadata(for: report, loopName: loopName)
            )
        }
    }

    /// The metadata of one report (see the table above).
    public static func metadata(for report: LoopDebugReport, loopName: String? = nil) -> Logger.Metadata {
        var metadata: Logger.Metadata = [:]
        switch report.kind {
        case .slowJob:
            metadata["loop.report"] = "slow-job"
            if let job = report.job { metadata["loop.job"] = "\(job.description)" }
            if let name = report.taskName { metadata["loop.task_name"] = "\(name)" }
            if let site = report.site { metadata["loop.site"] = "\(site.description)" }
            metadata["loop.duration_ms"] = "\(milliseconds(report.duration))"
            if report.lag > .zero { metadata["loop.lag_ms"] = "\(milliseconds(report.lag))" }
        case .lateTimers:
            metadata["loop.report"] = "late-timers"
            metadata["loop.lag_ms"] = "\(milliseconds(report.lag))"
            metadata["loop.late_timers"] = "\(report.lateTimers)"
        case .abandonedWork:
            metadata["loop.report"] = "abandoned-work"
            if let pending = report.pending { metadata["loop.pending"] = "\(pending)" }
        case .droppedFuture:
            metadata["loop.report"] = "dropped-future"
            if let site = report.site { metadata["loop.site"] = "\(site.description)" }
            if let type = report.futureType { metadata["loop.future_type"] = "\(type)" }
            if let pending = report.pending { metadata["loop.pending"] = "\(pending)" }
        }
        if let loopName { metadata["loop.name"] = "\(loopName)" }
        if report.suppressed > 0 { metadata["loop.suppressed"] = "\(report.suppressed)" }
        return metadata
    }

    /// Milliseconds with three decimals ("12.345"): readable, and exact to the microsecond.
    package static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let microseconds = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        let whole = microseconds / 1000
        let fraction = abs(microseconds % 1000)
        let padded = String(fraction)
        return "\(whole).\(String(repeating: "0", count: 3 - padded.count))\(padded)"
    }
}

extension LoopDebugOptions {
    /// Debug mode with its reports logged to `logger` (see ``LoopReportLogging``):
    ///
    /// ```swift
    /// loop.debug = .logging(to: Logger(label: "app.loop"), slowJobThreshold: .milliseconds(50))
    /// ```
    public static func logging(
        to logger: Logger,
        loopName: String? = nil,
        levels: LoopReportLevels = LoopReportLevels(),
        slowJobThreshold: Duration = .milliseconds(100),
        lagThreshold: Duration = .milliseconds(100),
        maximumReportsPerSecond: Int = 10
    ) -> LoopDebugOptions {
        LoopDebugOptions(
            slowJobThreshold: slowJobThreshold,
            lagThreshold: lagThreshold,
            maximumReportsPerSecond: maximumReportsPerSecond,
            sink: LoopReportLogging.sink(logger: logger, loopName: loopName, levels: levels)
        )
    }
}
