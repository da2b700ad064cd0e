import LoopHTTP
import ScenarioCheck
import SerialLoop
import SerialLoopNet
import SerialLoopNetSimulation

/// LoopHTTP on real loopback sockets under seeded socket chaos: every read, write and accept of
/// the server and of 40 concurrent clients may get `EAGAIN`, `EINTR` or a short count, and accept
/// `ECONNABORTED` (what the kernel may legally answer). Every response must still arrive whole: a
/// short write counted as whole, an `EINTR` treated as fatal or a request head assumed to arrive
/// in one read would show here.
func runChaosHTTP() throws {
    let body = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
    let rates = SocketChaos.Rates(wouldBlock: 0.3, interrupted: 0.2, short: 0.4, aborted: 0.2)
    print("chaos-http: LoopHTTP + 40 concurrent clients on real loopback sockets under socket chaos (EAGAIN 0.3, EINTR 0.2, short 0.4, ECONNABORTED 0.2), seeds 1...5")
    for seed in UInt64(1)...5 {
        let chaos = SocketChaos(seed: seed, rates: rates)
        let results = try withLoop { loop in
            try await withSocketChaos(chaos) {
                let server = try HTTPServer(on: loop, address: .loopback(port: 0)) { request in
                    HTTPResponse(status: 200, body: request.target == "/big" ? body : Array("small \(request.target)\n".utf8))
                }
                let serving = Task(executorPreference: loop) { try await server.run() }
                defer { serving.cancel() }
                return try await withThrowingTaskGroup(of: (String, HTTPResponse).self) { group in
                    for index in 0..<40 {
                        let target = index.isMultiple(of: 2) ? "/big" : "/small/\(index)"
                        group.addTask { (target, try await HTTPClient.get(target, from: server.listener.address, on: loop)) }
                    }
                    let results = try await group.reduce(into: []) { $0.append($1) }
                    try server.listener.close()
                    return results
                }
            }
        }
        let whole = results.filter { target, response in
            response.status == 200 && response.body == (target == "/big" ? body : Array("small \(target)\n".utf8))
        }
        // Short counts of every size summed under one name.
        var totals: [String: Int] = [:]
        for (fault, count) in chaos.injectedCounts {
            let name = "\(fault)"
            totals[name.hasPrefix("short") ? "short" : name, default: 0] += count
        }
        let counts = totals.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        Check.that(results.count == 40 && whole.count == 40,
                   "seed \(seed): \(whole.count) of 40 responses whole (20 of 200,000 bytes, 20 small) with \(counts) injected")
        Check.that(chaos.injectedCounts.values.reduce(0, +) > 100, "seed \(seed): the chaos was real (over 100 faults injected)")
    }
}
