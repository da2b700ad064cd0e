@preconcurrency import Glibc
import AsyncHTTPClient
import NIOCore
import NIOPosix
import SerialLoop
import Synchronization

/// AsyncHTTPClient from loop tasks: 50 concurrent GETs of a static file from nginx, each a child
/// task of a loop task. AsyncHTTPClient does its I/O on its own NIO event loop; every `await` on it
/// must come back to the SerialLoop thread (the tasks prefer the loop), and every body must be the file.
func runAHCFanOut(_ arguments: [String]) async throws {
    guard let url = option("--url", in: arguments), let path = option("--expect-body-file", in: arguments) else { usage() }
    let count = option("--count", in: arguments).flatMap(Int.init) ?? 50
    print("ahc-fanout: \(count) concurrent AsyncHTTPClient GETs of \(url) from loop tasks")
    let expected = try readWholeFile(path)

    struct Outcome: Sendable {
        var status: UInt = 0
        var bodyMatches = false
        var awaits = 0
        var awaitsOffLoop = 0
    }
    let client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton)
    let maxInFlight = Locked((now: 0, max: 0))
    let (outcomes, elapsed) = try await withLoop { loop in
        let start = loop.now
        let outcomes = try await withThrowingTaskGroup(of: Outcome.self) { group in
            for _ in 0..<count {
                group.addTask {
                    var outcome = Outcome()
                    func note() {
                        outcome.awaits += 1
                        if !loop.isOnLoopThread { outcome.awaitsOffLoop += 1 }
                    }
                    maxInFlight.withLock { $0.now += 1; $0.max = max($0.max, $0.now) }
                    defer { maxInFlight.withLock { $0.now -= 1 } }
                    let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(20))
                    note()
                    outcome.status = response.status.code
                    var body = [UInt8]()
                    for try await chunk in response.body {
                        note()
                        body += chunk.readableBytesView
                    }
                    note()
                    outcome.bodyMatches = body == expected
                    return outcome
                }
            }
            var all: [Outcome] = []
            for try await outcome in group { all.append(outcome) }
            return all
        }
        return (outcomes, start.duration(to: loop.now))
    }
    try await client.shutdown()

    Check.that(outcomes.count == count, "\(outcomes.count) of \(count) requests finished")
    Check.that(outcomes.allSatisfy { $0.status == 200 }, "every status is 200")
    Check.that(outcomes.allSatisfy(\.bodyMatches), "every body equals the file (\(expected.count) bytes): \(outcomes.filter(\.bodyMatches).count) of \(count)")
    let awaits = outcomes.reduce(0) { $0 + $1.awaits }
    let offLoop = outcomes.reduce(0) { $0 + $1.awaitsOffLoop }
    Check.that(offLoop == 0, "every continuation resumed on the loop thread: \(awaits - offLoop) of \(awaits) awaits (execute, each body chunk, end of body)")
    let peak = maxInFlight.withLock { $0.max }
    Check.that(peak == count, "all \(count) requests were in flight at once (peak \(peak))")
    Check.note("\(count) requests in \(format(milliseconds(elapsed))) ms of loop time")
}

func readWholeFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw LoopError(operation: "open(\(path))", errno: errno) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0 { if errno == EINTR { continue }; throw LoopError(operation: "read(\(path))", errno: errno) }
        if n == 0 { return bytes }
        bytes += buffer[..<n]
    }
}
