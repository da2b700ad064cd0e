@preconcurrency import Glibc
import Logging
import SerialLoop
import SerialLoopLifecycle
import SerialLoopNet
import ServiceLifecycle

/// Counters of the HTTP server (loop thread only).
final class LifecycleServerStats: @unchecked Sendable {
    var started = 0
    var answered = 0
    var inFlight = 0
    var isDraining = false
}

/// An HTTP server on a SerialLoop, run as a `LoopService` inside a swift-service-lifecycle
/// `ServiceGroup` whose graceful-shutdown signals are SIGTERM and SIGINT. On SIGTERM the group's
/// graceful shutdown reaches the service's work (`withGracefulShutdownHandler`): it closes the
/// listener (new connections are refused), answers the requests in flight, and returns; the service
/// then shuts its loop down, the group ends, and the process exits 0.
///
/// Routes (each response closes its connection): GET /slow/MS (answers "slept MS ms" after MS ms on
/// the loop's timers), GET /stats ("started=N answered=N in-flight=N").
func runLifecycleServer(_ arguments: [String]) async throws {
    var logger = Logger(label: "lifecycle-server")
    logger.logLevel = .info
    let stats = LifecycleServerStats()
    let service = try LoopService(name: "http-on-serialloop") { loop in
        let listener = try TCPListener(on: loop, address: .loopback(port: 0))
        print("listening on 127.0.0.1:\(listener.address.port)")
        fflush(stdout)
        try await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                while true {
                    let connection: TCPConnection
                    do { connection = try await listener.accept() } catch { break }   // the listener closed
                    group.addTask { await serveLifecycleRequest(connection, loop: loop, stats: stats) }
                }
                print("graceful shutdown: listener closed, draining \(stats.inFlight) request(s) in flight")
                fflush(stdout)
            }   // returns once every request task has ended
        } onGracefulShutdown: {
            // Called on the thread that triggered it; the listener belongs to the loop.
            loop.execute {
                stats.isDraining = true
                try? listener.close()
            }
        }
        print("drained: started \(stats.started), answered \(stats.answered), in flight \(stats.inFlight)")
        fflush(stdout)
    }
    let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    try await group.run()
    Check.that(stats.inFlight == 0 && stats.answered == stats.started, "every request started was answered (\(stats.answered) of \(stats.started))")
    Check.that(service.loop.hasShutDown, "the service shut its loop down")
    Check.finish("lifecycle-server")
}

func serveLifecycleRequest(_ connection: TCPConnection, loop: Loop, stats: LifecycleServerStats) async {
    defer { try? connection.close() }
    var head: [UInt8] = []
    while !head.ends(with: [13, 10, 13, 10]) {
        guard let chunk = try? await connection.read(upToCount: 4096), !chunk.isEmpty, head.count < 16384 else { return }
        head += chunk
    }
    stats.started += 1
    stats.inFlight += 1
    defer { stats.inFlight -= 1 }
    let requestLine = String(decoding: head.prefix { $0 != 13 }, as: UTF8.self).split(separator: " ")
    let target = requestLine.count >= 2 ? String(requestLine[1]) : "/"
    var status = "200 OK"
    var body: String
    if target.hasPrefix("/slow/"), let ms = Int(target.dropFirst(6)) {
        do {
            try await loop.sleep(for: .milliseconds(ms))
            body = "slept \(ms) ms\n"
        } catch {
            status = "503 Service Unavailable"
            body = "cancelled\n"
        }
    } else if target == "/stats" {
        // in-flight: the others, not counting this request
        body = "started=\(stats.started) answered=\(stats.answered) in-flight=\(stats.inFlight - 1) draining=\(stats.isDraining)\n"
    } else {
        status = "404 Not Found"
        body = "not found\n"
    }
    let response = "HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    if (try? await connection.write(response)) != nil { stats.answered += 1 }
}

extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}
