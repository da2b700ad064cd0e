import CoreMetrics
import SerialLoop
import Synchronization

/// Publishes a loop's metrics (``Loop/metrics``) to swift-metrics.
///
/// Names follow swift-metrics' (and so Prometheus') conventions: snake case, a `serialloop_`
/// prefix, `_total` on counters, base units in the name (`_seconds`), and a `loop` dimension that
/// names the loop, so several loops share one set of names.
///
/// | metric | kind | from |
/// |---|---|---|
/// | `serialloop_ticks_total` | counter | `ticks` |
/// | `serialloop_jobs_total` | counter | `jobs` |
/// | `serialloop_callbacks_total` | counter | `callbacks` |
/// | `serialloop_timers_fired_total` | counter | `timersFired` |
/// | `serialloop_timers_cancelled_total` | counter | `timersCancelled` |
/// | `serialloop_polls_total` | counter | `polls` |
/// | `serialloop_blocking_polls_total` | counter | `blockingPolls` |
/// | `serialloop_cross_thread_arrivals_total` | counter | `crossThreadArrivals` |
/// | `serialloop_wake_ups_total` | counter | `wakeUps` |
/// | `serialloop_ready_jobs` | gauge | `readyDepth` |
/// | `serialloop_ready_jobs_high_water` | gauge | `readyHighWaterMark` |
/// | `serialloop_pending_timers` | gauge | `pendingTimers` |
/// | `serialloop_descriptor_waiters` | gauge | `descriptorWaiters` |
/// | `serialloop_awaited_futures` | gauge | `awaitedFutures` |
/// | `serialloop_loop_lag_seconds{quantile}` | gauge | `loopLag` p50, p90, p99, max (`quantile="1"`) |
/// | `serialloop_poll_blocked_seconds{quantile}` | gauge | `pollBlocked` |
/// | `serialloop_job_duration_seconds{quantile}` | gauge | `jobDuration` (debug mode or an instrument) |
/// | `serialloop_tick_duration_seconds{quantile}` | gauge | `tickDuration` (debug mode or an instrument) |
/// | `serialloop_loop_lag_samples_total` etc. | counter | each distribution's `count` |
///
/// Counters are cumulative in the loop and monotonic in swift-metrics: each ``publish()`` adds what
/// happened since the previous one. The loop keeps its distributions as histograms and exposes
/// quantiles, not samples, so they are published as gauges (a Prometheus summary's shape); for
/// swift-metrics *timers* with real samples, install ``LoopTimersInstrument``.
///
/// Reading is safe from any thread (the snapshot is a series of relaxed loads); ``publish()`` may
/// run anywhere, ``start(interval:)`` runs it on the loop itself.
public final class LoopMetricsPublisher: Sendable {
    public let loop: Loop
    public let loopName: String

    private let counters: [(KeyPath<LoopMetrics, Int> & Sendable, Counter)]
    private let gauges: [(KeyPath<LoopMetrics, Int> & Sendable, Gauge)]
    private let distributions: [(KeyPath<LoopMetrics, LoopDistribution> & Sendable, quantiles: [Gauge], samples: Counter)]
    /// The counter values as of the previous publish (guarded by the mutex).
    private let published = Mutex<[Int]?>(nil)
    /// The periodic publishing task (guarded by the mutex).
    private let periodic = Mutex<Task<Void, Never>?>(nil)

    /// - Parameters:
    ///   - loopName: the value of the `loop` dimension.
    ///   - prefix: the names' prefix (default `serialloop`).
    ///   - factory: the swift-metrics backend (default: the bootstrapped one).
    public init(loop: Loop, loopName: String = "main", prefix: String = "serialloop", factory: any MetricsFactory = MetricsSystem.factory) {
        self.loop = loop
        self.loopName = loopName
        let dimensions = [("loop", loopName)]
        func counter(_ name: String) -> Counter {
            Counter(label: "\(prefix)_\(name)_total", dimensions: dimensions, factory: factory)
        }
        func gauge(_ name: String, _ extra: [(String, String)] = []) -> Gauge {
            Gauge(label: "\(prefix)_\(name)", dimensions: dimensions + extra, factory: factory)
        }
        counters = [
            (\LoopMetrics.ticks, counter("ticks")),
            (\LoopMetrics.jobs, counter("jobs")),
            (\LoopMetrics.callbacks, counter("callbacks")),
            (\LoopMetrics.timersFired, counter("timers_fired")),
            (\LoopMetrics.timersCancelled, counter("timers_cancelled")),
            (\LoopMetrics.polls, counter("polls")),
            (\LoopMetrics.blockingPolls, counter("blocking_polls")),
            (\LoopMetrics.crossThreadArrivals, counter("cross_thread_arrivals")),
            (\LoopMetrics.wakeUps, counter("wake_ups")),
        ]
        gauges = [
            (\LoopMetrics.readyDepth, gauge("ready_jobs")),
            (\LoopMetrics.readyHighWaterMark, gauge("ready_jobs_high_water")),
            (\LoopMetrics.pendingTimers, gauge("pending_timers")),
            (\LoopMetrics.descriptorWaiters, gauge("descriptor_waiters")),
            (\LoopMetrics.awaitedFutures, gauge("awaited_futures")),
        ]
        func distribution(_ keyPath: KeyPath<LoopMetrics, LoopDistribution> & Sendable, _ name: String)
            -> (KeyPath<LoopMetrics, LoopDistribution> & Sendable, quantiles: [Gauge], samples: Counter)
        {
            let quantiles = Self.quantileLabels.map { gauge("\(name)_seconds", [("quantile", $0)]) }
            return (keyPath, quantiles, counter("\(name)_samples"))
        }
        distributions = [
            distribution(\LoopMetrics.loopLag, "loop_lag"),
            distribution(\LoopMetrics.pollBlocked, "poll_blocked"),
            distribution(\LoopMetrics.jobDuration, "job_duration"),
            distribution(\LoopMetrics.tickDuration, "tick_duration"),
        ]
    }

    /// The `quantile` dimension's values, in the order p50, p90, p99, max.
    public static let quantileLabels = ["0.5", "0.9", "0.99", "1"]

    /// Reads `loop.metrics` once and publishes it: counters grow by what happened since the previous
    /// publish, gauges are set. Any thread; concurrent calls are serialised.
    public func publish() {
        published.withLock { previous in
            let metrics = loop.metrics
            var values = counters.map { metrics[keyPath: $0.0] }
            values += distributions.map { metrics[keyPath: $0.0].count }
            let before = previous ?? Array(repeating: 0, count: values.count)
            for (index, (_, counter)) in counters.enumerated() where values[index] > before[index] {
                counter.increment(by: values[index] - before[index])
            }
            for (index, distribution) in distributions.enumerated() {
                let slot = counters.count + index
                if values[slot] > before[slot] { distribution.samples.increment(by: values[slot] - before[slot]) }
                let snapshot = metrics[keyPath: distribution.0]
                let quantiles = [snapshot.p50, snapshot.p90, snapshot.p99, snapshot.max]
                for (gauge, value) in zip(distribution.quantiles, quantiles) { gauge.record(Self.seconds(value)) }
            }
            for (keyPath, gauge) in gauges { gauge.record(metrics[keyPath: keyPath]) }
            previous = values
        }
    }

    /// Publishes every `interval` of loop time, from a task on the loop, until ``stop()`` (or the
    /// loop shuts down). On a test loop the interval is virtual. Any thread; starting again
    /// replaces the previous task.
    public func start(interval: Duration = .seconds(1)) {
        let loop = self.loop
        let task = Task(executorPreference: loop) { [self] in
            while !Task.isCancelled {
                publish()
                do { try await loop.sleep(for: interval) } catch { break }
            }
        }
        periodic.withLock { $0?.cancel(); $0 = task }
    }

    /// Stops the periodic publishing and publishes once more, so the last values are out.
    /// Any thread. Returns once the publishing task has ended.
    public func stop() async {
        let task = periodic.withLock { task in defer { task = nil }; return task }
        guard let task else { return }
        task.cancel()
        await task.value
        publish()
    }

    public static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// Records the loop's job durations and timer lateness as swift-metrics *timers*, one sample per
/// job and per fired timer, through the loop's instrument hooks (``LoopInstrument``):
/// `serialloop_job_duration` (dimension `job`: task, callback, …) and `serialloop_timer_lag`.
///
/// Costs a clock read per job (the loop times jobs only while a ``LoopTimingInstrument`` such as
/// this one, or debug mode, is installed) plus
/// a handler call per sample: install it where that is acceptable. Loop thread only, like every
/// instrument: `loop.addInstrument(LoopTimersInstrument(loopName: "main"))`.
public final class LoopTimersInstrument: LoopTimingInstrument {
    private let timerLag: Timer
    /// One timer per ``LoopJobKind``, in the order of ``jobNames``.
    private let jobTimers: [Timer]

    static let jobNames = ["task", "task_sleep_wake_up", "global_job", "callback", "scheduled_callback", "wait_start", "resumption"]

    public init(loopName: String = "main", prefix: String = "serialloop", factory: any MetricsFactory = MetricsSystem.factory) {
        let dimensions = [("loop", loopName)]
        timerLag = Timer(label: "\(prefix)_timer_lag", dimensions: dimensions, factory: factory)
        jobTimers = Self.jobNames.map {
            Timer(label: "\(prefix)_job_duration", dimensions: dimensions + [("job", $0)], factory: factory)
        }
    }

    public func timerDidFire(deadline: LoopClock.Instant, lag: Duration) {
        timerLag.recordNanoseconds(Self.nanoseconds(lag))
    }

    public func jobDidRun(_ job: LoopJobKind, duration: Duration) {
        let index = switch job {
        case .task: 0
        case .taskSleepWakeUp: 1
        case .globalJob: 2
        case .callback: 3
        case .scheduledCallback: 4
        case .waitStart: 5
        case .resumption: 6
        }
        jobTimers[index].recordNanoseconds(Self.nanoseconds(duration))
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : scaled &+ attoseconds / 1_000_000_000
    }
}
