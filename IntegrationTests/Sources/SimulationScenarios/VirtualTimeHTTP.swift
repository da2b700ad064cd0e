import LoopHTTP
import ScenarioCheck
import SerialLoop
import SerialLoopNet
import SerialLoopNetSimulation

/// Where the scenario's server and clients run: real loopback sockets, or two hosts of a simulated
/// network. The scenario's code is the same for both: only where sockets are made differs.
struct Placement: Sendable {
    var name: String
    /// The address the server binds.
    var serverAddress: SocketAddress
    /// Runs server-side code (creating the listener, the accept loop).
    var onServer: @Sendable (() throws -> HTTPServer) throws -> HTTPServer
    /// Runs client-side code (connecting).
    var onClient: @Sendable (() async throws -> HTTPResponse) async throws -> HTTPResponse
    /// The network, when simulated (to shut down at the end).
    var network: SimulatedNetwork?

    static func realLoopback() -> Placement {
        Placement(name: "real loopback sockets", serverAddress: .loopback(port: 0),
                  onServer: { try $0() }, onClient: { try await $0() }, network: nil)
    }

    static func simulated(on loop: TestLoop, latency: Duration) throws -> Placement {
        let network = SimulatedNetwork(loop: loop, seed: 1, defaultLink: .init(latency: latency))
        let server = try network.host("server", address: "10.0.0.1")
        let client = try network.host("client", address: "10.0.0.2")
        return Placement(name: "a simulated network (\(latency) per hop)", serverAddress: SocketAddress(host: "10.0.0.1", port: 80),
                         onServer: { try server.run($0) }, onClient: { try await client.run($0) }, network: network)
    }
}

/// The HTTP server and a 50-way fan-out client on one *test* loop: every request sleeps a minute
/// on the server; the whole run takes one virtual minute (plus the network's round trips) and
/// milliseconds of real time. Run twice with the same code: over real loopback sockets, and over
/// a simulated network with 5 ms per hop, where the times are exact.
func runVirtualTimeHTTP() throws {
    for simulated in [false, true] {
        let latency = Duration.milliseconds(5)
        print("virtual-time-http: HTTP server + 50 clients on one test loop, each request sleeping 60 s of virtual time, over \(simulated ? "a simulated network" : "real loopback sockets")")
        let realStart = ContinuousClock.now
        let (statuses, bodies, virtualElapsed, slowest, fastest) = try withTestLoop { loop in
            let placement = simulated ? try Placement.simulated(on: loop, latency: latency) : .realLoopback()
            defer { placement.network?.shutdown() }
            // From here on, the scenario as it always was: only `placement` differs.
            let server = try placement.onServer {
                try HTTPServer(on: loop, address: placement.serverAddress) { request in
                    try? await loop.sleep(for: .seconds(60))
                    return HTTPResponse(status: 200, text: "slept a minute for \(request.target)\n")
                }
            }
            let serving = Task(executorPreference: loop) { try await server.run() }
            let start = loop.now
            let results = try await withThrowingTaskGroup(of: (Int, String, Duration).self) { group in
                for index in 0..<50 {
                    group.addTask {
                        let begin = loop.now
                        let response = try await placement.onClient {
                            try await HTTPClient.get("/client/\(index)", from: server.listener.address, on: loop)
                        }
                        return (response.status, String(decoding: response.body, as: UTF8.self), begin.duration(to: loop.now))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let elapsed = start.duration(to: loop.now)
            serving.cancel()
            try? await serving.value
            try server.listener.close()
            return (results.map(\.0), Set(results.map(\.1)), elapsed, results.map(\.2).max() ?? .zero, results.map(\.2).min() ?? .zero)
        }
        let realElapsed = realStart.duration(to: .now)
        Check.that(statuses.count == 50 && statuses.allSatisfy { $0 == 200 }, "all 50 requests answered 200")
        Check.that(bodies.count == 50, "each client got its own answer (\(bodies.count) distinct bodies)")
        if simulated {
            // Connect: one round trip (2 hops); the request: one hop; the minute; the response: one hop.
            let exact = Duration.seconds(60) + latency * 4
            Check.that(virtualElapsed == exact && slowest == exact && fastest == exact,
                       "every request took exactly 60 s + 4 hops of 5 ms = \(exact) of virtual time (fan-out \(virtualElapsed), slowest \(slowest), fastest \(fastest))")
        } else {
            Check.that(virtualElapsed >= .seconds(60) && virtualElapsed < .seconds(61),
                       "the fan-out took \(virtualElapsed) of virtual time: every request slept 60 s, all at once (slowest request \(slowest))")
        }
        Check.that(realElapsed < .seconds(10), "and \(format(milliseconds(realElapsed))) ms of real time")
    }
}
