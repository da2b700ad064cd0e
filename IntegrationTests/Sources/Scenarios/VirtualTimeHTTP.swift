import LoopHTTP
import SerialLoop

/// The HTTP server and a 50-way fan-out client on one *test* loop: real loopback sockets, virtual
/// time. Every request sleeps a minute on the server; the whole run takes exactly one virtual
/// minute and milliseconds of real time.
func runVirtualTimeHTTP() throws {
    print("virtual-time-http: HTTP server + 50 clients on one test loop, each request sleeping 60 s of virtual time")
    let realStart = ContinuousClock.now
    let (statuses, bodies, virtualElapsed, slowest) = try withTestLoop { loop in
        let server = try HTTPServer(on: loop, address: .loopback(port: 0)) { request in
            try? await loop.sleep(for: .seconds(60))
            return HTTPResponse(status: 200, text: "slept a minute for \(request.target)\n")
        }
        let serving = Task(executorPreference: loop) { try await server.run() }
        let start = loop.now
        let results = try await withThrowingTaskGroup(of: (Int, String, Duration).self) { group in
            for index in 0..<50 {
                group.addTask {
                    let begin = loop.now
                    let response = try await HTTPClient.get("/client/\(index)", from: server.listener.address, on: loop)
                    return (response.status, String(decoding: response.body, as: UTF8.self), begin.duration(to: loop.now))
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let elapsed = start.duration(to: loop.now)
        serving.cancel()
        try? await serving.value
        try server.listener.close()
        return (results.map(\.0), Set(results.map(\.1)), elapsed, results.map(\.2).max() ?? .zero)
    }
    let realElapsed = realStart.duration(to: .now)
    Check.that(statuses.count == 50 && statuses.allSatisfy { $0 == 200 }, "all 50 requests answered 200")
    Check.that(bodies.count == 50, "each client got its own answer (\(bodies.count) distinct bodies)")
    Check.that(virtualElapsed >= .seconds(60) && virtualElapsed < .seconds(61),
               "the fan-out took \(virtualElapsed) of virtual time: every request slept 60 s, all at once (slowest request \(slowest))")
    Check.that(realElapsed < .seconds(10), "and \(format(milliseconds(realElapsed))) ms of real time")
}
