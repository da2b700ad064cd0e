import ScenarioCheck
@preconcurrency import Glibc
import LoopHTTP
import SerialLoop
import SerialLoopNet

struct FanOutOptions {
    var address = SocketAddress.loopback(port: 80)
    var count = 50
    var path = "/"
    /// When set, the server delays each response this long: every request must take at least
    /// this, and they must overlap (wall time close to the slowest request, not the sum).
    var minimumDelay: Duration?
    var expectedBody: [UInt8]?

    init(_ arguments: [String]) throws {
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            guard let value = rest.popFirst() else { throw OptionError("\(argument) needs a value") }
            switch argument {
            case "--address":
                let parts = value.split(separator: ":")
                guard parts.count == 2, let port = UInt16(parts[1]) else { throw OptionError("--address wants HOST:PORT, got \(value)") }
                address = SocketAddress(host: String(parts[0]), port: port)
            case "--count":
                guard let number = Int(value), number > 0 else { throw OptionError("--count wants a positive number") }
                count = number
            case "--path":
                path = value
            case "--min-delay-ms":
                guard let number = Int(value) else { throw OptionError("--min-delay-ms wants a number") }
                minimumDelay = .milliseconds(number)
            case "--expect-body-file":
                let file = fopen(value, "rb")
                guard let file else { throw OptionError("cannot open \(value): errno \(errno)") }
                defer { fclose(file) }
                var bytes: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 65536)
                while case let n = fread(&chunk, 1, chunk.count, file), n > 0 { bytes += chunk[..<n] }
                expectedBody = bytes
            default:
                throw OptionError("unknown option \(argument)")
            }
        }
    }
}

struct OptionError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// N concurrent GETs from one loop (a task group on the loop), against a real server.
func runFanOut(_ options: FanOutOptions) throws {
    print("fan-out: \(options.count) concurrent GET \(options.path) to \(options.address) from one SerialLoop")
    struct Outcome: Sendable {
        var status: Int
        var body: [UInt8]
        var duration: Duration
        var onLoopThread: Bool
    }
    let (outcomes, wall, errors) = try withLoop { loop in
        let start = loop.now
        var outcomes: [Outcome] = []
        var errors: [String] = []
        await withTaskGroup(of: Result<Outcome, any Error>.self) { group in
            for _ in 0..<options.count {
                group.addTask {
                    let begin = loop.now
                    do {
                        let response = try await HTTPClient.get(options.path, from: options.address, on: loop)
                        return .success(Outcome(status: response.status, body: response.body, duration: begin.duration(to: loop.now),
                                                onLoopThread: loop.isOnLoopThread))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            for await result in group {
                switch result {
                case .success(let outcome): outcomes.append(outcome)
                case .failure(let error): errors.append("\(error)")
                }
            }
        }
        return (outcomes, start.duration(to: loop.now), errors)
    }
    for error in Set(errors) { Check.note("error: \(error)") }
    Check.that(errors.isEmpty && outcomes.count == options.count, "all \(options.count) requests completed (\(outcomes.count) did, \(errors.count) failed)")
    Check.that(outcomes.allSatisfy { $0.status == 200 }, "every status is 200 (got \(Set(outcomes.map(\.status)).sorted()))")
    Check.that(outcomes.allSatisfy(\.onLoopThread), "every request ran and resumed on the loop thread")
    if let expected = options.expectedBody {
        Check.that(outcomes.allSatisfy { $0.body == expected }, "every body equals the served file (\(expected.count) bytes)")
    }
    guard !outcomes.isEmpty else { return }
    let durations = outcomes.map { milliseconds($0.duration) }.sorted()
    let sum = durations.reduce(0, +)
    let wallMs = milliseconds(wall)
    let slowest = durations.last!
    print("  figures: wall \(format(wallMs)) ms; per request min \(format(durations.first!)) / median \(format(durations[durations.count / 2])) / max \(format(slowest)) ms; sum \(format(sum)) ms; overlap (sum / wall) \(format(sum / wallMs))x")
    if let delay = options.minimumDelay {
        let delayMs = milliseconds(delay)
        Check.that(durations.first! >= delayMs * 0.95, "every request took at least the server's \(format(delayMs, 0)) ms delay (min \(format(durations.first!)) ms)")
        Check.that(wallMs <= slowest * 1.2 + 50, "wall time \(format(wallMs)) ms is close to the slowest request (\(format(slowest)) ms), not the sum (\(format(sum)) ms)")
        Check.that(wallMs < delayMs * Double(options.count) / 4, "wall time \(format(wallMs)) ms is far below serial time (\(format(delayMs * Double(options.count), 0)) ms)")
    }
}
