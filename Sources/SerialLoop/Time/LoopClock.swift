/// The loop's clock, as a `Clock`: monotonic nanoseconds in real mode, virtual time on a test loop.
///
/// Any API that takes `some Clock` runs on loop time with it — `Task.sleep(for:clock:)`,
/// swift-async-algorithms' `debounce(for:clock:)`, your own timeouts — and on a test loop those
/// sleeps are virtual too. Sleeping on it from any task is fine: the timer lives on the loop.
public struct LoopClock: Clock, Sendable {
    /// A point in loop time: nanoseconds since an arbitrary, fixed origin (loop creation on a test
    /// loop, boot on a real one).
    public struct Instant: InstantProtocol, Sendable, CustomStringConvertible {
        /// Nanoseconds since the clock's origin; `Int64.max` is "never".
        public var nanosecondsSinceOrigin: Int64

        /// The instant `nanosecondsSinceOrigin` nanoseconds after the origin.
        public init(nanosecondsSinceOrigin: Int64) {
            self.nanosecondsSinceOrigin = nanosecondsSinceOrigin
        }

        /// Saturates instead of trapping: `now.advanced(by: .seconds(Int64.max))` is "never".
        public func advanced(by duration: Duration) -> Instant {
            Instant(nanosecondsSinceOrigin: nanosecondsSinceOrigin.saturatingAdd(duration.saturatingNanoseconds))
        }

        /// The duration from this instant to `other` (negative if `other` is earlier), saturating.
        public func duration(to other: Instant) -> Duration {
            .nanoseconds(other.nanosecondsSinceOrigin.saturatingSubtract(nanosecondsSinceOrigin))
        }

        /// Whether `lhs` is earlier than `rhs`.
        public static func < (lhs: Instant, rhs: Instant) -> Bool {
            lhs.nanosecondsSinceOrigin < rhs.nanosecondsSinceOrigin
        }

        /// `LoopClock.Instant(12.5 seconds)`.
        public var description: String {
            "LoopClock.Instant(\(Duration.nanoseconds(nanosecondsSinceOrigin)))"
        }
    }

    /// The loop whose time this clock reads.
    public let loop: Loop

    init(loop: Loop) {
        self.loop = loop
    }

    /// The loop's current time (``Loop/now``). Any thread.
    public var now: Instant { loop.now }

    /// One nanosecond: deadlines are kept exactly.
    public var minimumResolution: Duration { .nanoseconds(1) }

    /// Suspends the calling task until `deadline` on the loop's timers (``Loop/sleep(until:)``).
    /// Any task.
    /// - Parameters:
    ///   - deadline: when to resume; a past deadline resumes on the next tick.
    ///   - tolerance: ignored: the loop fires timers at their deadline.
    /// - Throws: `CancellationError` at once when the task is cancelled (the timer is removed);
    ///   ``LoopError/loopHasShutDown(_:)`` once the loop has shut down.
    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try await loop.sleep(until: deadline)
    }
}
