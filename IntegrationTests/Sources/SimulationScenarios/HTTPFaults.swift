import LoopHTTP
import Synchronization
import ScenarioCheck
import SerialLoop
import SerialLoopNet
import SerialLoopNetSimulation

/// The LoopHTTP server and the retrying client (`HTTPClient.get(_:from:on:retrying:)`) on two
/// hosts of a simulated network, each fault scheduled at a virtual time and each outcome checked
/// at the exact virtual time the network's model gives (worked out in the comments).
func runHTTPFaults() throws {
    try partitionDuringARequest()
    try resetMidBody()
    try slowLink()
}

/// Link: 10 ms per hop, no bandwidth limit.
private let hop = Duration.milliseconds(10)

/// A server host answering `/slow` after 200 ms and `/big` with `bodySize` bytes, and a client
/// host; runs `scenario` on the client and returns what it returns, with the network's trace.
private func withHTTPOverSimulatedNetwork<T: Sendable>(
    link: SimulatedNetwork.LinkConditions,
    bodySize: Int = 0,
    _ scenario: @escaping @Sendable (SimulatedNetwork, SimulatedHost, SimulatedHost, SocketAddress) async throws -> T
) throws -> T {
    try withTestLoop { loop in
        let network = SimulatedNetwork(loop: loop, seed: 1, defaultLink: link)
        defer { network.shutdown() }
        // MSS-sized segments and a window larger than the bandwidth-delay product: a transfer's
        // time is its bytes over the link's bandwidth, plus one hop.
        network.segmentSize = 1460
        network.receiveBufferSize = 256 * 1024
        let server = try network.host("server", address: "10.0.0.1")
        let client = try network.host("client", address: "10.0.0.2")
        let body = [UInt8](repeating: 0x61, count: bodySize)
        let http = try server.run {
            try HTTPServer(on: loop, address: SocketAddress(host: "10.0.0.1", port: 80)) { request in
                if request.target == "/slow" { try? await loop.sleep(for: .milliseconds(200)) }
                return HTTPResponse(status: 200, body: request.target == "/big" ? body : Array("done\n".utf8))
            }
        }
        server.spawn { try await http.run() }
        let result = try await client.run { try await scenario(network, server, client, http.listener.address) }
        try http.listener.close()
        return result
    }
}

/// What the client sends for `GET target` to 10.0.0.1:80, byte for byte (HTTPClient's request).
private func requestSize(_ target: String) -> Int {
    "GET \(target) HTTP/1.1\r\nHost: 10.0.0.1:80\r\nUser-Agent: SerialLoop\r\nConnection: close\r\n\r\n".utf8.count
}

/// What the server sends for a 200 with `bodySize` bytes on a `Connection: close` request.
private func responseSize(bodySize: Int) -> Int {
    HTTPResponse(status: 200, body: [UInt8](repeating: 0x61, count: bodySize)).serialized(keepAlive: false, http10KeepAlive: false).count
}

/// The link goes down 100 ms into a request (after the request arrived, while the server works on
/// it) and comes back at 2.1 s. The first attempt's response waits in the partition and the
/// attempt times out at 1.5 s; the second attempt (at 1.75 s, after the 250 ms backoff) sends a
/// SYN that is lost, retransmitted 1 s later (2.75 s, after the heal): connected at 2.77,
/// request in at 2.78, answered at 2.98, response in at exactly 2.99 s.
private func partitionDuringARequest() throws {
    print("faults: a partition during a request (10 ms per hop; partition from 0.1 s to 2.1 s; 1.5 s per attempt, 250 ms backoff)")
    let (outcome, elapsed, trace) = try withHTTPOverSimulatedNetwork(link: .init(latency: hop)) { network, server, client, address in
        let loop = network.loop
        network.schedule(after: .milliseconds(100)) { $0.partition(server, client) }
        network.schedule(after: .milliseconds(2100)) { $0.heal(server, client) }
        let start = loop.now
        let outcome = try await HTTPClient.get("/slow", from: address, on: loop,
                                               retrying: RetryPolicy(attempts: 4, attemptTimeout: .milliseconds(1500), backoff: .milliseconds(250)))
        return (outcome, start.duration(to: loop.now), network.trace)
    }
    Check.that(outcome.response.status == 200 && outcome.response.body == Array("done\n".utf8), "answered 200 \"done\"")
    Check.that(outcome.attempts == 2, "in 2 attempts (\(outcome.attempts)): \(outcome.failures.map(\.error))")
    Check.that(outcome.failures.first?.error.contains("no complete response after 1.5 seconds") == true,
               "the first attempt timed out: \(outcome.failures.first?.error ?? "none")")
    Check.that(elapsed == .milliseconds(2990), "the response arrived at exactly 2.99 s of virtual time (\(elapsed))")
    Check.that(trace.contains { $0.contains("partition") } && trace.contains { $0.contains("heal") }, "the trace shows the partition and the heal (\(trace.count) events)")
}

/// A 1,000,000-byte body over a 1 MB/s link, all connections between the hosts reset at 0.5 s
/// (mid-body): the client's read fails with ECONNRESET at 0.5 s; the retry after 250 ms
/// connects at 0.77 s, its request (R bytes) is in at 0.78 s + R µs, and the response (S bytes)
/// is on the wire for S µs, in at one hop later.
private func resetMidBody() throws {
    print("faults: a reset in the middle of a 1 MB body (10 ms per hop, 1 MB/s; reset at 0.5 s; 250 ms backoff)")
    let body = 1_000_000
    let (outcome, elapsed, resets) = try withHTTPOverSimulatedNetwork(link: .init(latency: hop, bytesPerSecond: 1_000_000), bodySize: body) { network, server, client, address in
        let loop = network.loop
        let resets = Mutex(0)
        network.schedule(after: .milliseconds(500)) { network in resets.withLock { $0 = network.resetConnections(between: server, client) } }
        let start = loop.now
        let outcome = try await HTTPClient.get("/big", from: address, on: loop,
                                               retrying: RetryPolicy(attempts: 3, attemptTimeout: .seconds(10), backoff: .milliseconds(250)))
        return (outcome, start.duration(to: loop.now), resets.withLock { $0 })
    }
    let microsecond = Duration.microseconds(1)
    let expected = Duration.milliseconds(780) + microsecond * requestSize("/big") + microsecond * responseSize(bodySize: body) + hop
    Check.that(resets == 1, "one connection was open between the hosts at 0.5 s and was reset (\(resets))")
    Check.that(outcome.response.status == 200 && outcome.response.body.count == body, "answered 200 with all \(body) bytes (\(outcome.response.body.count))")
    Check.that(outcome.attempts == 2 && outcome.failures.first?.error.contains("ECONNRESET") == true,
               "in 2 attempts, the first failing with ECONNRESET: \(outcome.failures.map(\.error))")
    Check.that(outcome.failures.first?.endedAt == LoopClock.Instant(nanosecondsSinceOrigin: 500_000_000), "the first attempt failed at exactly 0.5 s")
    Check.that(elapsed == expected, "the body was complete at exactly \(expected) (0.78 s + request and response bytes at 1 µs each + one hop): \(elapsed)")
}

/// A 1,000,000-byte body over a 100 kB/s link: connected at 20 ms, request in at 30 ms + R × 10 µs,
/// response on the wire for S × 10 µs and in one hop later: a little over 10 s, exactly.
private func slowLink() throws {
    print("faults: a slow link (10 ms per hop, 100 kB/s) carrying a 1 MB body")
    let body = 1_000_000
    let (outcome, elapsed) = try withHTTPOverSimulatedNetwork(link: .init(latency: hop, bytesPerSecond: 100_000), bodySize: body) { network, _, _, address in
        let loop = network.loop
        let start = loop.now
        let outcome = try await HTTPClient.get("/big", from: address, on: loop,
                                               retrying: RetryPolicy(attempts: 1, attemptTimeout: .seconds(60), backoff: .zero))
        return (outcome, start.duration(to: loop.now))
    }
    let tenMicroseconds = Duration.microseconds(10)
    let expected = Duration.milliseconds(30) + tenMicroseconds * requestSize("/big") + tenMicroseconds * responseSize(bodySize: body) + hop
    Check.that(outcome.response.status == 200 && outcome.response.body.count == body && outcome.attempts == 1, "answered 200 with all \(body) bytes, first attempt")
    Check.that(elapsed == expected, "complete at exactly \(expected): \(elapsed)")
}
