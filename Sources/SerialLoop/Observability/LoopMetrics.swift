import Synchronization

// Metrics that are always on. Every value is written by the loop thread only and read by any
// thread, so a write is a relaxed load and store (a plain `mov` on x86-64 and arm64), never a
// read-modify-write with a lock prefix: the always-on cost is a handful of stores per tick, one per
// callback, one per poll, and a histogram update per timer that fires. Job and tick durations need
// a clock read per job, which is not cheap enough to pay always (see README, "Diagnosing a slow
// loop"): they are recorded only while the loop times jobs (a `LoopTimingInstrument` or debug
// mode is installed).

/// A snapshot of a loop's metrics (``Loop/metrics``). Counters count since the loop was created;
/// gauges are as of the last tick; distributions cover the loop's whole life.
///
/// Readable from any thread; the values are read one by one, not as one atomic snapshot, so two
/// counters may be a tick apart.
public struct LoopMetrics: Sendable, CustomStringConvertible {
    // Counters
    /// Turns of the loop.
    public var ticks = 0
    /// Work items run: task and actor jobs, callbacks, timer callbacks, wait starts.
    public var jobs = 0
    /// Of those, plain and timer callbacks (`execute`, `schedule`, reader/writer callbacks, …).
    public var callbacks = 0
    /// Timers that fired (sleeps, `Task.sleep`s, scheduled callbacks).
    public var timersFired = 0
    /// Timers cancelled before they fired: scheduled callbacks (also after their timer fired but
    /// before they ran), `loop.sleep`s of cancelled tasks. (`Task.sleep`s: the runtime cannot
    /// withdraw their timers, so they fire, as no-ops.)
    public var timersCancelled = 0
    /// Calls into the I/O backend (epoll_wait), blocking or not.
    public var polls = 0
    /// Of those, polls that could block (a timeout other than zero): the loop had nothing to do.
    public var blockingPolls = 0
    /// Work items that arrived from other threads through the inbox.
    public var crossThreadArrivals = 0
    /// Polls that returned because another thread woke the loop.
    public var wakeUps = 0

    // Gauges
    /// Jobs the last tick found ready.
    public var readyDepth = 0
    /// The most jobs a tick has found ready.
    public var readyHighWaterMark = 0
    /// Timers pending after the last tick's jobs.
    public var pendingTimers = 0
    /// Tasks suspended in `readable`/`writable` after the last tick's jobs.
    public var descriptorWaiters = 0
    /// Futures and gathers that tasks await, after the last tick's jobs.
    public var awaitedFutures = 0

    // Distributions
    /// How late timers fired: the loop time at which the tick moved them to the ready queue minus
    /// their deadline. Always on. On a test loop it is in virtual time.
    public var loopLag = LoopDistribution()
    /// Real time the loop spent blocked in polls that could block. Always on.
    public var pollBlocked = LoopDistribution()
    /// How long each job ran. Recorded only while a ``LoopTimingInstrument`` or debug mode is installed.
    public var jobDuration = LoopDistribution()
    /// How long each tick ran, not counting time blocked in the poll. Recorded only while a
    /// ``LoopTimingInstrument`` or debug mode is installed.
    public var tickDuration = LoopDistribution()

    /// The snapshot as a few lines of text (counters, gauges, then one line per distribution), as the
    /// example app prints it on `SIGUSR1`.
    public var description: String {
        """
        ticks \(ticks), jobs \(jobs) (callbacks \(callbacks)), timers fired \(timersFired), cancelled \(timersCancelled), \
        polls \(polls) (blocking \(blockingPolls)), cross-thread arrivals \(crossThreadArrivals), wake-ups \(wakeUps)
        ready \(readyDepth) (high-water \(readyHighWaterMark)), pending timers \(pendingTimers), descriptor waiters \(descriptorWaiters), awaited futures \(awaitedFutures)
        loop lag      \(loopLag)
        poll blocked  \(pollBlocked)
        job duration  \(jobDuration)
        tick duration \(tickDuration)
        """
    }
}

/// A distribution of durations from a fixed-bucket histogram: 8 buckets per power of two, so a
/// quantile is within 6.25 % of the true value (bucket midpoints, clamped to the exact maximum).
public struct LoopDistribution: Sendable, CustomStringConvertible {
    /// How many durations were recorded.
    public var count = 0
    /// The sum of the recorded durations.
    public var total: Duration = .zero
    /// The median, within 6.25 %.
    public var p50: Duration = .zero
    /// The 90th percentile, within 6.25 %.
    public var p90: Duration = .zero
    /// The 99th percentile, within 6.25 %.
    public var p99: Duration = .zero
    /// Exact.
    public var max: Duration = .zero

    /// `total / count`, or zero when nothing was recorded.
    public var mean: Duration { count == 0 ? .zero : total / count }

    /// `n 18, p50 77.8 µs, p90 278.5 µs, p99 437 ms, max 437 ms`, or `n 0`.
    public var description: String {
        if count == 0 { return "n 0" }
        return "n \(count), p50 \(p50.diagnosticText), p90 \(p90.diagnosticText), p99 \(p99.diagnosticText), max \(max.diagnosticText)"
    }
}

extension Duration {
    /// "12.3 ms", "850 µs", "42 ns": for reports.
    var diagnosticText: String {
        let ns = Double(saturatingNanoseconds)
        func fixed(_ value: Double, _ unit: String) -> String {
            let tenths = (value * 10).rounded() / 10
            return (tenths == tenths.rounded() ? "\(Int64(tenths))" : "\(tenths)") + " " + unit
        }
        if ns >= 1e9 { return fixed(ns / 1e9, "s") }
        if ns >= 1e6 { return fixed(ns / 1e6, "ms") }
        if ns >= 1e3 { return fixed(ns / 1e3, "µs") }
        return "\(Int64(ns)) ns"
    }
}

/// A single-writer counter: the loop thread adds, any thread reads.
struct LoopCounter: ~Copyable {
    private let value = Atomic<Int>(0)

    @inline(__always)
    func add(_ amount: Int) {
        guard LoopMetricsStorage.isCompiledIn else { return }
        value.store(value.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }

    @inline(__always)
    func set(_ newValue: Int) {
        guard LoopMetricsStorage.isCompiledIn else { return }
        value.store(newValue, ordering: .relaxed)
    }

    @inline(__always)
    var current: Int { value.load(ordering: .relaxed) }
}

/// A log-linear histogram of nanosecond values: values 0..<8 have a bucket each, then every power
/// of two is split into 8 buckets, up to 2^43 ns (about 2.4 hours; larger values land in the last
/// bucket, the maximum stays exact). Single writer (the loop thread), any reader.
final class DurationHistogram: @unchecked Sendable {
    // Unchecked Sendable: `buckets` is a fixed pointer to atomics (not checkable as a pointer);
    // every other property is an atomic counter.
    static let bucketCount = 8 + (43 - 2) * 8

    /// `Atomic` is not copyable, so it cannot live in an `Array`: the buckets are raw storage.
    private let buckets: UnsafeMutablePointer<Atomic<Int>>
    private let count = LoopCounter()
    private let sum = LoopCounter()
    private let maximum = LoopCounter()

    init() {
        buckets = .allocate(capacity: Self.bucketCount)
        for index in 0..<Self.bucketCount { (buckets + index).initialize(to: Atomic(0)) }
    }

    deinit {
        buckets.deinitialize(count: Self.bucketCount)
        buckets.deallocate()
    }

    @inline(__always)
    static func bucket(for nanoseconds: Int) -> Int {
        if nanoseconds < 8 { return Swift.max(nanoseconds, 0) }
        let exponent = Int.bitWidth - 1 - nanoseconds.leadingZeroBitCount
        let sub = (nanoseconds >> (exponent - 3)) & 7
        return Swift.min((exponent - 2) * 8 + sub, bucketCount - 1)
    }

    /// The half-open range of values in bucket `index`.
    static func bounds(of index: Int) -> (low: Int, high: Int) {
        if index < 8 { return (index, index + 1) }
        let shift = index / 8 - 1
        let sub = index % 8
        return ((8 + sub) << shift, (9 + sub) << shift)
    }

    /// Loop thread only.
    @inline(__always)
    func record(_ nanoseconds: Int64) {
        guard LoopMetricsStorage.isCompiledIn else { return }
        let value = Int(Swift.max(nanoseconds, 0))
        let slot = buckets + Self.bucket(for: value)
        slot.pointee.store(slot.pointee.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        count.add(1)
        // Saturating: a timer scheduled at a saturated past deadline fires "Int64.max late".
        let (total, overflow) = sum.current.addingReportingOverflow(value)
        sum.set(overflow ? .max : total)
        // Unconditional: a compare-and-branch here made the compiler retain the histogram around it.
        maximum.set(Swift.max(value, maximum.current))
    }

    /// Any thread.
    func snapshot() -> LoopDistribution {
        Self.snapshot(of: CollectionOfOne(self))
    }

    /// One distribution over every value recorded by `histograms` (a group's loops): bucket
    /// counts and sums add up, the maximum is the largest. Any thread.
    static func snapshot(of histograms: some Collection<DurationHistogram>) -> LoopDistribution {
        var counts = [Int](repeating: 0, count: Self.bucketCount)
        var total = 0
        var sum = 0
        var max = 0
        for histogram in histograms {
            for index in 0..<Self.bucketCount {
                let count = (histogram.buckets + index).pointee.load(ordering: .relaxed)
                counts[index] += count
                total += count
            }
            let (added, overflow) = sum.addingReportingOverflow(histogram.sum.current)
            sum = overflow ? .max : added
            max = Swift.max(max, histogram.maximum.current)
        }
        var result = LoopDistribution()
        result.count = total
        result.total = .nanoseconds(sum)
        result.max = .nanoseconds(max)
        guard total > 0 else { return result }
        func quantile(_ q: Double) -> Duration {
            let rank = Swift.max(1, Int((q * Double(total)).rounded(.up)))
            var seen = 0
            for index in 0..<Self.bucketCount {
                seen += counts[index]
                if seen >= rank {
                    let (low, high) = Self.bounds(of: index)
                    return .nanoseconds(Swift.min(low + (high - low - 1) / 2, max))
                }
            }
            return .nanoseconds(max)
        }
        result.p50 = quantile(0.5)
        result.p90 = quantile(0.9)
        result.p99 = quantile(0.99)
        return result
    }
}

/// The loop's always-on metrics (single writer: the loop thread).
final class LoopMetricsStorage: Sendable {
    /// Building with `-DSERIALLOOP_NO_METRICS` compiles the always-on metrics out (every update
    /// folds away), for measuring what they cost; `loop.metrics` then reads zeros.
    #if SERIALLOOP_NO_METRICS
    static let isCompiledIn = false
    #else
    static let isCompiledIn = true
    #endif

    let ticks = LoopCounter()
    let jobs = LoopCounter()
    let callbacks = LoopCounter()
    let timersFired = LoopCounter()
    let timersCancelled = LoopCounter()
    let polls = LoopCounter()
    let blockingPolls = LoopCounter()
    let crossThreadArrivals = LoopCounter()
    let wakeUps = LoopCounter()
    let readyDepth = LoopCounter()
    let readyHighWaterMark = LoopCounter()
    let pendingTimers = LoopCounter()
    let descriptorWaiters = LoopCounter()
    let awaitedFutures = LoopCounter()
    let loopLag = DurationHistogram()
    let pollBlocked = DurationHistogram()
    let jobDuration = DurationHistogram()
    let tickDuration = DurationHistogram()

    /// Whether callbacks capture their creation site and task jobs their task's name (debug mode).
    /// Read by `execute` and `enqueue` on any thread.
    let capturesSites = Atomic<Bool>(false)

    @inline(__always)
    func noteTick(readyJobs: Int) {
        ticks.add(1)
        jobs.add(readyJobs)
        readyDepth.set(readyJobs)
        if readyJobs > readyHighWaterMark.current { readyHighWaterMark.set(readyJobs) }
    }

    @inline(__always)
    func noteTimerFired(lag: Int64) {
        timersFired.add(1)
        loopLag.record(lag)
    }

    @inline(__always)
    func publishGauges(timers: Int, waiters: Int, futures: Int) {
        pendingTimers.set(timers)
        descriptorWaiters.set(waiters)
        awaitedFutures.set(futures)
    }

    /// The metrics of several loops as one (a group's): counters and gauges summed, the ready
    /// high-water mark the highest, distributions over every loop's values. Any thread.
    static func combined(_ storages: [LoopMetricsStorage]) -> LoopMetrics {
        func sum(_ counter: (LoopMetricsStorage) -> Int) -> Int {
            storages.reduce(0) { $0 &+ counter($1) }
        }
        var metrics = LoopMetrics()
        metrics.ticks = sum { $0.ticks.current }
        metrics.jobs = sum { $0.jobs.current }
        metrics.callbacks = sum { $0.callbacks.current }
        metrics.timersFired = sum { $0.timersFired.current }
        metrics.timersCancelled = sum { $0.timersCancelled.current }
        metrics.polls = sum { $0.polls.current }
        metrics.blockingPolls = sum { $0.blockingPolls.current }
        metrics.crossThreadArrivals = sum { $0.crossThreadArrivals.current }
        metrics.wakeUps = sum { $0.wakeUps.current }
        metrics.readyDepth = sum { $0.readyDepth.current }
        metrics.readyHighWaterMark = storages.map { $0.readyHighWaterMark.current }.max() ?? 0
        metrics.pendingTimers = sum { $0.pendingTimers.current }
        metrics.descriptorWaiters = sum { $0.descriptorWaiters.current }
        metrics.awaitedFutures = sum { $0.awaitedFutures.current }
        metrics.loopLag = DurationHistogram.snapshot(of: storages.map(\.loopLag))
        metrics.pollBlocked = DurationHistogram.snapshot(of: storages.map(\.pollBlocked))
        metrics.jobDuration = DurationHistogram.snapshot(of: storages.map(\.jobDuration))
        metrics.tickDuration = DurationHistogram.snapshot(of: storages.map(\.tickDuration))
        return metrics
    }

    func snapshot() -> LoopMetrics {
        var metrics = LoopMetrics()
        metrics.ticks = ticks.current
        metrics.jobs = jobs.current
        metrics.callbacks = callbacks.current
        metrics.timersFired = timersFired.current
        metrics.timersCancelled = timersCancelled.current
        metrics.polls = polls.current
        metrics.blockingPolls = blockingPolls.current
        metrics.crossThreadArrivals = crossThreadArrivals.current
        metrics.wakeUps = wakeUps.current
        metrics.readyDepth = readyDepth.current
        metrics.readyHighWaterMark = readyHighWaterMark.current
        metrics.pendingTimers = pendingTimers.current
        metrics.descriptorWaiters = descriptorWaiters.current
        metrics.awaitedFutures = awaitedFutures.current
        metrics.loopLag = loopLag.snapshot()
        metrics.pollBlocked = pollBlocked.snapshot()
        metrics.jobDuration = jobDuration.snapshot()
        metrics.tickDuration = tickDuration.snapshot()
        return metrics
    }
}

extension Loop {
    /// A snapshot of the loop's metrics. Any thread. See ``LoopMetrics``.
    public var metrics: LoopMetrics { metricsStorage.snapshot() }
}
