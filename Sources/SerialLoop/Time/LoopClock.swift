/// The loop's clock, as a `Clock`: monotonic nanoseconds in real mode, virtual time on a test loop.
///
/// Any API that takes `some Clock` runs on loop time with it — `Task.sleep(for:clock:)`,
/// swift-async-algorithms' `debounce(for:clock:)`, your own timeouts — and on a test loop those
/// sleeps are virtual too. Sleeping on it from any task is fine: the timer lives on the loop.
public struct LoopClock: Clock, Sendable {
    /// A point in loop time: nanoseconds since an arbitrary, fixed origin (loop creation on a test
    /// loop, boot on a real one).
    public struct Instant: InstantProtocol, Sendable, CustomStringConvertible {
        public var nanosecondsSinceOrigin: Int64

        public init(nanosecondsSinceOrigin: Int64) {
            self.nanosecondsSinceOrigin = nanosecondsSinceOrigin
        }

        /// Saturates instead of trapping: `now.advanced(by: .seconds(Int64.max))` is "never".
        public func advanced(by duration: Duration) -> Instant {
            Instant(nanosecondsSinceOrigin: nanosecondsSinceOrigin.saturatingAdd(duration.saturatingNanoseconds))
        }

        public func duration(to other: Instant) -> Duration {
            .nanoseconds(other.nanosecondsSinceOrigin.saturatingSubtract(nanosecondsSinceOrigin))
        }

        public static func < (lhs: Instant, rhs: Instant) -> Bool {
            lhs.nanosecondsSinceOrigin < rhs.nanosecondsSinceOrigin
        }

        public var description: String {
            "LoopClock.Instant(\(Duration.nanoseconds(nanosecondsSinceOrigin)))"
        }
    }

    public let loop: Loop

    init(loop: Loop) {
        self.loop = loop
    }

    public var now: Instant { loop.now }

    public var minimumResolution: Duration { .nanoseconds(1) }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try await loop.sleep(until: deadline)
    }
}
