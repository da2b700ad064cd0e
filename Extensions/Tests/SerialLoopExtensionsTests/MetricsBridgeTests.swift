import CoreMetrics
import SerialLoop
import SerialLoopMetrics
import Testing

@Suite struct MetricsBridgeTests {
    let loopDimension = [("loop", "test")]

    /// A publisher running on a test loop every virtual second while the loop fires 20 timers and
    /// runs 10 callbacks: after `stop()`, each counter's increments add up to exactly the loop's
    /// own counter, and the periodic task published more than once.
    @Test func countersAddUpToTheLoopsOwnCounters() async throws {
        let factory = RecordingMetricsFactory()
        let final = try await withTestLoop { loop in
            let publisher = LoopMetricsPublisher(loop: loop, loopName: "test", factory: factory)
            publisher.start(interval: .seconds(1))
            for index in 0..<20 {
                try await loop.sleep(for: .milliseconds(250))      // 5 virtual seconds in all
                if index < 10 { loop.execute { } }
            }
            await publisher.stop()
            return loop.metrics
        }
        #expect(factory.kind("serialloop_timers_fired_total", loopDimension) == .counter)
        #expect(factory.total("serialloop_timers_fired_total", loopDimension) == final.timersFired)
        #expect(final.timersFired >= 20)
        #expect(factory.total("serialloop_ticks_total", loopDimension) == final.ticks)
        #expect(factory.total("serialloop_jobs_total", loopDimension) == final.jobs)
        #expect(factory.total("serialloop_callbacks_total", loopDimension) == final.callbacks)
        #expect(final.callbacks >= 10)
        #expect(factory.total("serialloop_polls_total", loopDimension) == final.polls)
        #expect(factory.total("serialloop_loop_lag_samples_total", loopDimension) == final.loopLag.count)
        // Published at virtual 0, 1, …, 5 s and once more by stop(): every publish in which ticks
        // moved added one increment.
        #expect(factory.samples("serialloop_ticks_total", loopDimension).count >= 5)
        // Gauges: set on every publish, in the metric's own units.
        let pending = factory.samples("serialloop_pending_timers", loopDimension)
        #expect(factory.kind("serialloop_pending_timers", loopDimension) == .recorder)
        #expect(pending.count >= 6)
        let lagMax = factory.samples("serialloop_loop_lag_seconds", loopDimension + [("quantile", "1")])
        #expect(lagMax.last == LoopMetricsPublisher.seconds(final.loopLag.max))
    }

    /// `publish()` from another thread while the loop runs: the snapshot is readable anywhere.
    @Test func publishFromAnotherThreadWhileTheLoopRuns() async throws {
        let factory = RecordingMetricsFactory()
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let loop = thread.loop
        let publisher = LoopMetricsPublisher(loop: loop, loopName: "test", factory: factory)
        for _ in 0..<50 {
            try await Task(executorPreference: loop) { try await loop.sleep(for: .microseconds(10)) }.value
        }
        publisher.publish()
        let fired = factory.total("serialloop_timers_fired_total", loopDimension)
        #expect(fired >= 50)
        #expect(fired <= loop.metrics.timersFired)
    }

    /// The timers instrument: one swift-metrics timer sample per fired timer and per job.
    /// (Expectations stay outside the loop's body: an issue recorded on the loop thread would not
    /// be attributed to this test.)
    @Test func timersInstrumentRecordsOneSamplePerTimerAndJob() async throws {
        let factory = RecordingMetricsFactory()
        let fired = try await withTestLoop { loop in
            let instrument = LoopTimersInstrument(loopName: "test", factory: factory)
            loop.addInstrument(instrument)
            let before = loop.metrics.timersFired
            for _ in 0..<10 { try await loop.sleep(for: .seconds(1)) }
            let fired = loop.metrics.timersFired - before
            loop.removeInstrument(instrument)       // still gets the rest of this tick's hooks
            return fired
        }
        #expect(fired >= 10)
        let lag = factory.samples("serialloop_timer_lag", [("loop", "test")])
        #expect(factory.kind("serialloop_timer_lag", [("loop", "test")]) == .timer)
        #expect(lag.count == fired, "\(lag.count) samples, \(fired) timers fired")
        #expect(lag.allSatisfy { $0 == 0 }, "a test loop's timers fire exactly on time")
        let perKind = ["task", "task_sleep_wake_up", "global_job", "callback", "scheduled_callback", "wait_start", "resumption"].map {
            ($0, factory.samples("serialloop_job_duration", [("loop", "test"), ("job", $0)]).count)
        }
        let jobs = perKind.reduce(0) { $0 + $1.1 }
        // Each of the 10 sleeps ends in a job that resumes the body (the job that installed the
        // instrument ran before it was active).
        #expect(jobs >= 10, "job samples per kind: \(perKind)")
        #expect(factory.kind("serialloop_job_duration", [("loop", "test"), ("job", "task")]) == .timer)
    }
}
