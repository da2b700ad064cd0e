// An HTTP/1.1 server on a SerialLoop (one thread), built on SerialLoop's socket layer.
//
//   serial-loop-http-server [--port N] [--idle-timeout-ms N]
//
// Prints "listening on 127.0.0.1:PORT" once bound, then serves until killed.
// Routes (the first three are identical in nio-http-server, the wrk baseline):
//   GET  /           "Hello, world!\n"
//   GET  /bytes/N    N bytes of the pattern "abc…xyzabc…" (large bodies: try 8388608)
//   POST /echo       the request body
//   GET  /delay/MS   "slept MS ms\n" after sleeping MS milliseconds on the loop's timers
//   GET  /stats      "connections=C requests=R\n" (requests served before this one)
@preconcurrency import Glibc
import LoopHTTP
import SerialLoop

func usage(_ message: String) -> Never {
    fputs("serial-loop-http-server: \(message)\nusage: serial-loop-http-server [--port N] [--idle-timeout-ms N]\n", stderr)
    exit(2)
}

var port: UInt16 = 0
var idleTimeout = Duration.seconds(30)
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
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

/// The server, for the /stats route (set once, before serving; read on the loop thread).
final class ServerReference: @unchecked Sendable {
    var server: HTTPServer?
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
        let server = reference.server
        return HTTPResponse(status: 200, text: "connections=\(server?.connectionsAccepted ?? 0) requests=\(server?.requestsServed ?? 0)\n")
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
        reference.server = server
        print("listening on \(server.listener.address)")
        fflush(nil)
        try await server.run()
    }
}

do {
    try serve(port: port, idleTimeout: idleTimeout)
} catch {
    fputs("serial-loop-http-server: \(error)\n", stderr)
    exit(1)
}
