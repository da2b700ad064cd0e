@preconcurrency import Glibc
import Logging
import SerialLoop
import SerialLoopLogging
import Testing

@Suite struct LoggingBridgeTests {
    /// A named task blocks the loop for 80 ms in debug mode (threshold 20 ms): the loop's real
    /// slow-job report comes out as one warning with the task's name and the job's duration.
    @Test func slowTaskJobBecomesAWarningWithTaskNameAndDuration() async throws {
        let store = RecordingLogHandlerStore()
        let logger = store.logger(label: "loop")
        try await withLoop { loop in
            loop.debug = .logging(to: logger, loopName: "test-loop", slowJobThreshold: .milliseconds(20))
            await Task(name: "blocks-80ms", executorPreference: loop) {
                usleep(80_000)
                // The loop learns a task's name when the task calls into it inside the slow job
                // (the runtime hands an executor jobs, not names: README, "Diagnosing a slow loop").
                await Task.yield()
            }.value
            // The report is delivered as the job ends, before anything after it runs.
        }
        let slow = store.records.filter { $0.metadata["loop.report"] == "slow-job" }
        try #require(slow.count == 1, "records: \(store.records.map(\.message))")
        let record = slow[0]
        #expect(record.level == .warning)
        #expect(record.metadata["loop.job"] == "task")
        #expect(record.metadata["loop.task_name"] == "blocks-80ms")
        #expect(record.metadata["loop.name"] == "test-loop")
        #expect(record.message.contains("blocks-80ms"))
        let duration = try #require(Double(record.metadata["loop.duration_ms"]?.description ?? ""))
        #expect(duration >= 80 && duration < 5_000, "duration_ms \(duration)")
    }

    /// A slow scheduled callback: the level is the configured one, the site is where the callback
    /// was created (this file), and the lag it caused a timer due meanwhile is in `loop.lag_ms`.
    @Test func slowCallbackCarriesItsSiteAndTheLagItCaused() async throws {
        let store = RecordingLogHandlerStore()
        let logger = store.logger()
        let line = try await withLoop { loop in
            var siteLine = 0
            loop.debug = .logging(
                to: logger, levels: LoopReportLevels(slowJob: .error),
                slowJobThreshold: .milliseconds(20), lagThreshold: .seconds(10))
            let future = loop.makeFuture(of: Void.self)
            siteLine = #line + 1
            loop.schedule(after: .milliseconds(1)) {
                // A timer due 10 ms into the 60 ms block: pending when the job ends, so late.
                loop.schedule(after: .milliseconds(10)) { future.succeed(()) }
                usleep(60_000)
            }
            try await future.value
            return siteLine
        }
        let slow = store.records.filter { $0.metadata["loop.report"] == "slow-job" }
        try #require(slow.count == 1, "records: \(store.records.map(\.message))")
        let record = slow[0]
        #expect(record.level == .error)
        #expect(record.metadata["loop.job"] == "scheduled callback")
        let site = record.metadata["loop.site"]?.description ?? ""
        #expect(site.hasSuffix("LoggingBridgeTests.swift:\(line)"), "site \(site)")
        let lag = try #require(Double(record.metadata["loop.lag_ms"]?.description ?? ""))
        #expect(lag >= 40, "lag_ms \(lag)")
    }

    /// Late timers: a job that blocks past the lag threshold without itself being reported as
    /// slow (slow-job threshold higher) makes the timer due meanwhile late: a late-timers record.
    @Test func lateTimersBecomeARecordWithLagAndCount() async throws {
        let store = RecordingLogHandlerStore()
        let logger = store.logger()
        try await withLoop { loop in
            loop.debug = .logging(
                to: logger, levels: LoopReportLevels(lateTimers: .notice),
                slowJobThreshold: .seconds(10), lagThreshold: .milliseconds(20))
            let future = loop.makeFuture(of: Void.self)
            loop.schedule(after: .milliseconds(1)) {
                loop.schedule(after: .milliseconds(10)) { future.succeed(()) }   // fires ~50 ms late
                usleep(60_000)
            }
            try await future.value
        }
        let late = store.records.filter { $0.metadata["loop.report"] == "late-timers" }
        try #require(late.count >= 1, "records: \(store.records.map(\.message))")
        #expect(late[0].level == .notice)
        #expect(late[0].metadata["loop.late_timers"] == "1")
        let lag = try #require(Double(late[0].metadata["loop.lag_ms"]?.description ?? ""))
        #expect(lag >= 40, "lag_ms \(lag)")
    }

    /// A loop dropped without `shutdown()` while timers are pending: the core's shutdown warning
    /// (abandoned work) becomes an error record saying what was pending.
    @Test func abandonedWorkBecomesAnErrorWithWhatWasPending() throws {
        let store = RecordingLogHandlerStore()
        let logger = store.logger()
        do {
            let loop = try Loop()
            loop.debug = .logging(to: logger, loopName: "dropped")
            loop.schedule(after: .seconds(60)) {}
            loop.schedule(after: .seconds(120)) {}
        }                                                   // deallocated here, never shut down
        let records = store.records.filter { $0.metadata["loop.report"] == "abandoned-work" }
        try #require(records.count == 1, "records: \(store.records.map(\.message))")
        #expect(records[0].level == .error)
        #expect(records[0].metadata["loop.name"] == "dropped")
        let pending = records[0].metadata["loop.pending"]?.description ?? ""
        #expect(pending.hasPrefix("2 timer(s)"), "pending: \(pending)")
        #expect(records[0].message.contains("deallocated without shutdown()"))
    }

    /// A `LoopFuture` dropped uncompleted while a done-callback waits for it: the core fails it and
    /// reports the drop; the bridge logs an error with where the future was made and its type.
    @Test func aDroppedFutureBecomesAnErrorWithItsSiteAndType() throws {
        let store = RecordingLogHandlerStore()
        let logger = store.logger()
        let line = #line + 4
        try withLoop { loop in
            loop.debug = .logging(to: logger, loopName: "futures")
            do {
                let future = loop.makeFuture(of: Int.self)
                future.whenComplete { _ in }
            }                                               // the only reference is gone
            await Task.yield()
            loop.debug = nil
        }
        let records = store.records.filter { $0.metadata["loop.report"] == "dropped-future" }
        try #require(records.count == 1, "records: \(store.records.map(\.message))")
        #expect(records[0].level == .error)
        #expect(records[0].metadata["loop.future_type"] == "Int")
        #expect(records[0].metadata["loop.site"]?.description.hasSuffix("LoggingBridgeTests.swift:\(line)") == true,
                "site: \(records[0].metadata["loop.site"].map { "\($0)" } ?? "none")")
        #expect(records[0].metadata["loop.pending"] == "0 awaiting task(s), 1 done-callback(s)")
    }

    @Test func millisecondsAreExactToTheMicrosecond() {
        #expect(LoopReportLogging.milliseconds(.microseconds(12_345)) == "12.345")
        #expect(LoopReportLogging.milliseconds(.milliseconds(80)) == "80.000")
        #expect(LoopReportLogging.milliseconds(.microseconds(7)) == "0.007")
    }
}
