import CoreMetrics
import Logging
import Synchronization

/// A LogHandler that keeps every record (any thread).
final class RecordingLogHandlerStore: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let storage = Mutex<[Record]>([])
    var records: [Record] { storage.withLock { $0 } }
    func append(_ record: Record) { storage.withLock { $0.append(record) } }

    func logger(label: String = "test") -> Logger {
        Logger(label: label) { _ in RecordingLogHandler(store: self) }
    }
}

struct RecordingLogHandler: LogHandler {
    let store: RecordingLogHandlerStore
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        store.append(.init(level: event.level, message: event.message.description, metadata: merged))
    }
}

/// A MetricsFactory that records every value, keyed by "label{dim=value,...}" (any thread).
final class RecordingMetricsFactory: MetricsFactory, Sendable {
    enum Kind: String, Sendable { case counter, recorder, timer }

    private let values = Mutex<[String: (kind: Kind, samples: [Double])]>([:])

    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        label + "{" + dimensions.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    func samples(_ label: String, _ dimensions: [(String, String)]) -> [Double] {
        values.withLock { $0[Self.key(label, dimensions)]?.samples ?? [] }
    }

    func kind(_ label: String, _ dimensions: [(String, String)]) -> Kind? {
        values.withLock { $0[Self.key(label, dimensions)]?.kind }
    }

    /// For counters: the sum of the increments.
    func total(_ label: String, _ dimensions: [(String, String)]) -> Int {
        Int(samples(label, dimensions).reduce(0, +))
    }

    var keys: [String] { values.withLock { Array($0.keys) } }

    fileprivate func record(_ key: String, _ kind: Kind, _ value: Double) {
        values.withLock { values in
            values[key, default: (kind, [])].samples.append(value)
        }
    }

    private func register(_ key: String, _ kind: Kind) {
        values.withLock { values in
            if values[key] == nil { values[key] = (kind, []) }
        }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        let key = Self.key(label, dimensions)
        register(key, .counter)
        return Handler(factory: self, key: key, kind: .counter)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        let key = Self.key(label, dimensions)
        register(key, .recorder)
        return Handler(factory: self, key: key, kind: .recorder)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let key = Self.key(label, dimensions)
        register(key, .timer)
        return Handler(factory: self, key: key, kind: .timer)
    }

    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}

    final class Handler: CounterHandler, RecorderHandler, TimerHandler, Sendable {
        let factory: RecordingMetricsFactory
        let key: String
        let kind: Kind
        init(factory: RecordingMetricsFactory, key: String, kind: Kind) {
            self.factory = factory
            self.key = key
            self.kind = kind
        }
        func increment(by amount: Int64) { factory.record(key, kind, Double(amount)) }
        func reset() {}
        func record(_ value: Int64) { factory.record(key, kind, Double(value)) }
        func record(_ value: Double) { factory.record(key, kind, value) }
        func recordNanoseconds(_ duration: Int64) { factory.record(key, kind, Double(duration)) }
    }
}

/// Runs `body`, failing with `Watchdog.Timeout` if it takes longer than `limit` (real time): a hang
/// becomes a failure, not a stuck test run. The body is cancelled on timeout.
func withWatchdog<T: Sendable>(
    _ limit: Duration = .seconds(30),
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit, clock: .continuous)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw WatchdogTimeout(limit: limit)
        }
        return value
    }
}

struct WatchdogTimeout: Error, CustomStringConvertible {
    let limit: Duration
    var description: String { "watchdog: the body did not finish within \(limit)" }
}
