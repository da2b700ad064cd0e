@preconcurrency import Glibc
import SerialLoop
import SerialLoopNet

/// The app: an HTTP/1.1 endpoint on the loop's socket layer, one task per request, shared state on
/// the loop, file hashing offloaded to the loop's pool, and a graceful stop on SIGTERM or SIGINT.
///
/// Routes (every response closes its connection):
///   GET /               a greeting
///   GET /count          "requests=N in-flight=M"
///   GET /hash?path=P    the FNV-1a 64 hash of the file P, read with blocking calls off the loop
///   GET /slow/MS        answers after MS milliseconds on the loop's timers (0...60000)
///   GET /block/MS       blocks the loop thread for MS milliseconds (0...10000), then answers: a
///                       deliberately bad handler, for debug mode to catch
///
/// Diagnostics: debug mode is on (jobs over 100 ms are reported on stderr with the request task's
/// name), and SIGUSR1 prints what the loop is waiting for and its metrics on stdout.
///
/// Graceful stop: on the first SIGTERM or SIGINT the listener closes (new connections are
/// refused), requests already read are answered, connections that have not sent a complete
/// request within `headGrace` are closed, and `run()` returns once every request task has ended.
/// Loop thread only.
final class App: @unchecked Sendable {
    let loop: Loop
    let listener: TCPListener
    let stats: RequestStats
    /// How long a connection may take to send its request head (normally, and after a stop).
    let headTimeout = Duration.seconds(10)
    let headGrace = Duration.seconds(1)

    /// Connections still reading their request head, with the timer that will close them.
    private var reading: [ObjectIdentifier: (connection: TCPConnection, deadline: ScheduledCallback)] = [:]
    /// Every connection task that has not ended.
    private var tasks: [Int: Task<Void, Never>] = [:]
    private var nextTaskID = 0
    private var isStopping = false

    init(loop: Loop, port: UInt16) throws {
        self.loop = loop
        self.listener = try TCPListener(on: loop, address: .loopback(port: port))
        self.stats = MainActor.assumeIsolated { RequestStats() }
    }

    func run() async throws {
        let stopSignals = try loop.signals(SIGTERM, SIGINT)
        let watcher = Task {
            for await signal in stopSignals {
                await self.stop(because: signal)
                break
            }
        }
        loop.debug = LoopDebugOptions(slowJobThreshold: .milliseconds(100))
        let dumpSignals = try loop.signals(SIGUSR1)
        let dumper = Task {
            for await _ in dumpSignals {
                say("SIGUSR1: \(await self.loop.pendingWork)\nmetrics: \(self.loop.metrics)")
            }
        }
        say("listening on \(listener.address)")
        while !isStopping {
            let connection: TCPConnection
            do {
                connection = try await listener.accept()
            } catch {
                if isStopping || listener.isClosed { break }
                say("accept failed: \(error)")      // e.g. EMFILE: keep serving the others
                try? await loop.sleep(for: .milliseconds(10))
                continue
            }
            let id = nextTaskID
            nextTaskID += 1
            // A plain Task {}: in whole-program mode it runs on the loop, like everything else.
            tasks[id] = Task(name: "connection \(id + 1)") {
                await self.serve(connection)
                self.tasks[id] = nil
            }
        }
        // Draining: every request task ends (answered, or closed if it never sent a request).
        while let (_, task) = tasks.first {
            await task.value
        }
        watcher.cancel()
        await watcher.value
        dumper.cancel()
        await dumper.value
        say("stopped after \(await stats.started) request(s)")
    }

    private func stop(because signal: Int32) async {
        guard !isStopping else { return }
        isStopping = true
        try? listener.close()                       // new connections are refused from here on
        let inFlight = await stats.inFlight
        say("received \(signal == SIGTERM ? "SIGTERM" : "SIGINT"), draining \(inFlight) request(s)")
        for (key, entry) in reading {
            entry.deadline.cancel()
            reading[key]?.deadline = loop.schedule(after: headGrace) { try? entry.connection.close() }
        }
    }

    private func serve(_ connection: TCPConnection) async {
        defer { try? connection.close() }
        let key = ObjectIdentifier(connection)
        reading[key] = (connection, loop.schedule(after: isStopping ? headGrace : headTimeout) { try? connection.close() })
        let head = await readHead(connection)
        reading.removeValue(forKey: key)?.deadline.cancel()
        guard let head, let (method, target) = requestLine(head) else { return }

        let number = await stats.begin()
        say("request \(number): \(method) \(target)")
        let (status, body) = await respond(method: method, target: target)
        await stats.end()
        try? await connection.write("HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
    }

    private func respond(method: String, target: String) async -> (String, String) {
        guard method == "GET" else { return ("405 Method Not Allowed", "only GET\n") }
        let (path, query) = splitTarget(target)
        switch path {
        case "/":
            return ("200 OK", "hello from serial-loop-app\n")
        case "/count":
            return ("200 OK", "requests=\(await stats.started) in-flight=\(await stats.inFlight)\n")
        case "/hash":
            guard let file = query["path"], !file.isEmpty else { return ("400 Bad Request", "usage: /hash?path=FILE\n") }
            do {
                let (hash, count) = try await loop.offload { try fnv1a64(ofFileAt: file) }
                return ("200 OK", "fnv1a64=\(String(hash, radix: 16)) bytes=\(count) path=\(file)\n")
            } catch {
                return ("404 Not Found", "\(error)\n")
            }
        case _ where path.hasPrefix("/block/"):
            guard let milliseconds = Int(path.dropFirst("/block/".count)), (0...10_000).contains(milliseconds) else {
                return ("400 Bad Request", "usage: /block/MS with MS in 0...10000\n")
            }
            usleep(UInt32(milliseconds) * 1000)
            return ("200 OK", "blocked the loop for \(milliseconds) ms\n")
        case _ where path.hasPrefix("/slow/"):
            guard let milliseconds = Int(path.dropFirst("/slow/".count)), (0...60_000).contains(milliseconds) else {
                return ("400 Bad Request", "usage: /slow/MS with MS in 0...60000\n")
            }
            try? await loop.sleep(for: .milliseconds(milliseconds))
            return ("200 OK", "slept \(milliseconds) ms\n")
        default:
            return ("404 Not Found", "not found: \(path)\n")
        }
    }

    /// Reads up to the blank line that ends a request head; `nil` if the client went away, the
    /// connection was closed (timeout, stop), or the head is over 16 KiB.
    private func readHead(_ connection: TCPConnection) async -> String? {
        var bytes: [UInt8] = []
        let end = Array("\r\n\r\n".utf8)
        while bytes.firstRange(of: end) == nil {
            guard bytes.count < 16 * 1024, let chunk = try? await connection.read(upToCount: 4096), !chunk.isEmpty else { return nil }
            bytes += chunk
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// `("GET", "/path?query")` from a request head's first line.
func requestLine(_ head: String) -> (String, String)? {
    guard let line = head.split(separator: "\r\n", maxSplits: 1).first else { return nil }
    let parts = line.split(separator: " ")
    guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return nil }
    return (String(parts[0]), String(parts[1]))
}

/// The path and the `key=value` pairs of the query (percent-decoded).
func splitTarget(_ target: String) -> (String, [String: String]) {
    let pieces = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    var query: [String: String] = [:]
    if pieces.count == 2 {
        for pair in pieces[1].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query[percentDecoded(kv[0])] = kv.count == 2 ? percentDecoded(kv[1]) : ""
        }
    }
    return (String(pieces[0]), query)
}

func percentDecoded(_ text: Substring) -> String {
    var bytes: [UInt8] = []
    var iterator = text.utf8.makeIterator()
    while let byte = iterator.next() {
        if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
           let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) {
            bytes.append(value)
        } else {
            bytes.append(byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// One line on stdout, flushed at once (a test or script reads it through a pipe).
func say(_ line: String) {
    print(line)
    fflush(stdout)
}
