// An HTTP/1.1 server on a SerialLoop (one thread), built on SerialLoop's socket layer.
//
//   serial-loop-http-server [--port N] [--idle-timeout-ms N] [--loops N]
//   serial-loop-http-server --calibrate-work ROUNDS      prints the CPU time of /work/ROUNDS, exits
//
// Prints "listening on 127.0.0.1:PORT" once bound, then serves until killed.
// Without --loops: one loop on the main thread (`withLoop`). With --loops N: a `LoopGroup` of N
// loops, each with its own server whose listener binds the same port with SO_REUSEPORT (the
// kernel spreads connections over the loops; a connection stays on its loop).
// Routes (the first three and /work are identical in nio-http-server, the wrk baseline):
//   GET  /           "Hello, world!\n"
//   GET  /bytes/N    N bytes of the pattern "abc…xyzabc…" (large bodies: try 8388608)
//   POST /echo       the request body
//   GET  /work/R     the hash of R rounds of CPUWork.cpuWork over the path, in hex (CPU-bound)
//   GET  /delay/MS   "slept MS ms\n" after sleeping MS milliseconds on the loop's timers
//   GET  /stats      "connections=C requests=R\n" (requests served before this one), and with
//                    --loops, "loop0: connections=… requests=…" per loop after it
@preconcurrency import Glibc
import CPUWork
import Dispatch
import LoopHTTP
import SerialLoop
import SerialLoopNet

func usage(_ message: String) -> Never {
    fputs("serial-loop-http-server: \(message)\nusage: serial-loop-http-server [--port N] [--idle-timeout-ms N]\n", stderr)
    exit(2)
}

var port: UInt16 = 0
var idleTimeout = Duration.seconds(30)
var loopCount: Int?
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--loops":
        guard let value = arguments.popFirst().flatMap(Int.init), value >= 1 else { usage("--loops needs a number >= 1") }
        loopCount = value
    case "--calibrate-work":
        guard let rounds = arguments.popFirst().flatMap(Int.init), rounds >= 0 else { usage("--calibrate-work needs a number of rounds") }
        calibrateWork(rounds: rounds)
        exit(0)
    case "--port":
        guard let value = arguments.popFirst().flatMap(UInt16.init) else { usage("--port needs a number 0...65535") }
        port = value
    case "--idle-timeout-ms":
        guard let value = arguments.popFirst().flatMap(Int.init), value > 0 else { usage("--idle-timeout-ms needs a positive number") }
        idleTimeout = .milliseconds(value)
    default:
        usage("unknown argument \(argument)")
    }
}

/// The servers, for the /stats route: one per loop (set once, before serving; each read on its
/// own loop's thread).
final class ServerReference: @unchecked Sendable {
    var servers: [HTTPServer] = []
}

/// The /stats body. One loop: its server's counters. A group: the sums, then each loop's counters,
/// each read on its own loop (`withTaskExecutorPreference` hops there and back).
func stats(_ reference: ServerReference) async -> String {
    var lines: [String] = []
    var connections = 0, requests = 0
    for (index, server) in reference.servers.enumerated() {
        let counts = await withTaskExecutorPreference(server.loop) { (server.connectionsAccepted, server.requestsServed) }
        connections += counts.0
        requests += counts.1
        lines.append("loop\(index): connections=\(counts.0) requests=\(counts.1)\n")
    }
    let total = "connections=\(connections) requests=\(requests)\n"
    return reference.servers.count > 1 ? total + lines.joined() : total
}

/// Prints the CPU time one `GET /work/ROUNDS` handler spends in `cpuWork` (median of 21 batches),
/// so WRK-RESULTS.md can state the work per request it was measured with.
func calibrateWork(rounds: Int) {
    let path = "/work/\(rounds)"
    var samples: [Double] = []
    var sink: UInt64 = 0
    for _ in 0..<21 {
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start)
        for _ in 0..<20 { sink &+= cpuWork(seed: path.utf8, rounds: rounds) }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &end)
        let nanoseconds = Double(end.tv_sec - start.tv_sec) * 1e9 + Double(end.tv_nsec - start.tv_nsec)
        samples.append(nanoseconds / 20)
    }
    samples.sort()
    print("cpuWork rounds=\(rounds): median \(Int(samples[10] / 1000)) us CPU per request (min \(Int(samples[0] / 1000)), max \(Int(samples[20] / 1000)); \(sink % 2))")
}

/// The pattern body of `/bytes/N`, shared with the NIO server and the checks in run.sh.
func patternBytes(_ count: Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        for index in 0..<count { buffer[index] = UInt8(ascii: "a") &+ UInt8(index % 26) }
        initialized = count
    }
}

func route(_ request: HTTPRequest, loop: Loop, reference: ServerReference) async -> HTTPResponse {
    let path = request.target
    switch (request.method, path) {
    case ("GET", "/"):
        return HTTPResponse(status: 200, text: "Hello, world!\n")
    case ("POST", "/echo"):
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/octet-stream")], body: request.body)
    case ("GET", "/stats"):
        return HTTPResponse(status: 200, text: await stats(reference))
    case ("GET", _) where path.hasPrefix("/work/"):
        guard let rounds = workRounds(path: path) else {
            return HTTPResponse(status: 400, text: "bad rounds in \(path) (0...1000000)\n")
        }
        return HTTPResponse(status: 200, text: cpuWorkBody(path: path, rounds: rounds))
    case ("GET", _) where path.hasPrefix("/bytes/"):
        guard let count = Int(path.dropFirst("/bytes/".count)), count >= 0, count <= 256 << 20 else {
            return HTTPResponse(status: 400, text: "bad byte count in \(path) (0...268435456)\n")
        }
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/octet-stream")], body: patternBytes(count))
    case ("GET", _) where path.hasPrefix("/delay/"):
        guard let milliseconds = Int(path.dropFirst("/delay/".count)), milliseconds >= 0, milliseconds <= 60_000 else {
            return HTTPResponse(status: 400, text: "bad delay in \(path) (0...60000 ms)\n")
        }
        do {
            try await loop.sleep(for: .milliseconds(milliseconds))
        } catch {
            return HTTPResponse(status: 500, text: "sleep: \(error)\n")
        }
        return HTTPResponse(status: 200, text: "slept \(milliseconds) ms\n")
    default:
        return HTTPResponse(status: 404, text: "not found: \(request.method) \(path)\n")
    }
}

/// Runs the loop on the calling thread (the main thread); returns only if serving fails.
/// Nonisolated on purpose: top-level code is on the main actor, and the loop blocks this thread.
func serve(port: UInt16, idleTimeout: Duration) throws {
    try withLoop { loop in
        let reference = ServerReference()
        let server = try HTTPServer(on: loop, address: .loopback(port: port), idleTimeout: idleTimeout) { request in
            await route(request, loop: loop, reference: reference)
        }
        reference.servers = [server]
        print("listening on \(server.listener.address)")
        fflush(nil)
        try await server.run()
    }
}

/// A `LoopGroup` of `loops` loops, a server on each whose listener binds the same port with
/// `SO_REUSEPORT` (loop 0 binds first, so port 0 picks one port for all); serves until killed.
func serveGroup(loops: Int, port: UInt16, idleTimeout: Duration) throws {
    let group = try LoopGroup.start(loops: loops)
    let reference = ServerReference()
    var address = SocketAddress.loopback(port: port)
    for loop in group.loops {
        let server = try HTTPServer(on: loop, address: address, reusePort: true, idleTimeout: idleTimeout) { request in
            await route(request, loop: loop, reference: reference)
        }
        address = server.listener.address
        reference.servers.append(server)
    }
    // Every server exists before any serves, so /stats sees them all.
    let failed = DispatchSemaphore(value: 0)
    for server in reference.servers {
        Task(executorPreference: server.loop) {
            do { try await server.run() } catch { logFailure(error) }
            failed.signal()
        }
    }
    print("listening on \(address) (\(loops) loops, a SO_REUSEPORT listener each)")
    fflush(nil)
    failed.wait()
    throw ServerStopped()
}

struct ServerStopped: Error, CustomStringConvertible {
    var description: String { "a loop's server stopped" }
}

func logFailure(_ error: any Error) {
    fputs("serial-loop-http-server: \(error)\n", stderr)
}

do {
    if let loopCount {
        try serveGroup(loops: loopCount, port: port, idleTimeout: idleTimeout)
    } else {
        try serve(port: port, idleTimeout: idleTimeout)
    }
} catch {
    fputs("serial-loop-http-server: \(error)\n", stderr)
    exit(1)
}
