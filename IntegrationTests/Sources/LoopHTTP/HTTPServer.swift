@preconcurrency import Glibc
import SerialLoop
import SerialLoopNet

/// A small HTTP/1.1 server on SerialLoop's socket layer: one task per connection on the loop,
/// keep-alive, pipelining, `Content-Length` bodies, `Expect: 100-continue`, and an idle timeout so a client that stops
/// sending cannot hold a connection forever (a slow client that keeps sending is served).
///
/// ```swift
/// try withLoop { loop in
///     let server = try HTTPServer(on: loop, address: .loopback(port: 8080)) { request in
///         HTTPResponse(status: 200, text: "Hello, world!\n")
///     }
///     try await server.run()
/// }
/// ```
public final class HTTPServer: @unchecked Sendable {
    public typealias Handler = @Sendable (HTTPRequest) async -> HTTPResponse

    public let loop: Loop
    public let listener: TCPListener
    /// A connection with no bytes arriving for this long while waiting for a request is closed.
    public var idleTimeout: Duration
    private let handler: Handler
    /// Loop thread only.
    public private(set) var requestsServed = 0
    public private(set) var connectionsAccepted = 0

    /// Binds `address` on `loop`. With `reusePort`, the listener sets `SO_REUSEPORT`, so one server
    /// per loop of a `LoopGroup` can bind the same port (the kernel spreads connections over them).
    public init(on loop: Loop, address: SocketAddress, reusePort: Bool = false, idleTimeout: Duration = .seconds(30), handler: @escaping Handler) throws {
        self.loop = loop
        self.listener = try TCPListener(on: loop, address: address, reusePort: reusePort)
        self.idleTimeout = idleTimeout
        self.handler = handler
    }

    /// Accepts and serves connections until the listener is closed or the task is cancelled.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            while true {
                let connection: TCPConnection
                do {
                    connection = try await listener.accept()
                } catch is CancellationError {
                    break
                } catch {
                    if listener.isClosed { break }
                    logError("accept: \(error)")     // e.g. EMFILE: keep serving the others
                    try? await loop.sleep(for: .milliseconds(10))
                    continue
                }
                connectionsAccepted += 1
                group.addTask { await self.serve(connection) }
            }
            group.cancelAll()
        }
    }

    private func serve(_ connection: TCPConnection) async {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        let idle = IdleWatch(loop: loop, connection: connection, timeout: idleTimeout)
        defer {
            idle.stop()
            scratch.deallocate()
            try? connection.close()
        }
        var parser = HTTPRequestParser()
        do {
            while true {
                while let request = try parser.nextRequest() {
                    let response = await handler(request)
                    let keepAlive = request.wantsKeepAlive
                    try await connection.write(response.serialized(keepAlive: keepAlive, http10KeepAlive: request.minorVersion == 0))
                    requestsServed += 1
                    if !keepAlive { return }
                }
                if parser.takeContinueRequest() {
                    try await connection.write("HTTP/1.1 100 Continue\r\n\r\n")
                }
                idle.startReading()
                let count = try await connection.read(into: scratch)
                idle.isReading = false
                if count == 0 { return }            // the client closed its side
                parser.append(UnsafeRawBufferPointer(rebasing: scratch[..<count]))
            }
        } catch let error as HTTPParseError {
            let response = HTTPResponse(status: error.status, text: "\(error)\n")
            try? await connection.write(response.serialized(keepAlive: false, http10KeepAlive: false))
        } catch is CancellationError {
        } catch {
            if !connection.isClosed { logError("connection fd \(connection.fd): \(error)") }
        }
    }
}

/// Closes a connection that has waited `timeout` for request bytes with none arriving (measured
/// from the start of each read); the read it waits in then fails. Time spent writing a response (to a slow reader) does not count.
///
/// One timer per connection, not one per read: a read only records the time; when the timer
/// fires it re-arms itself for the connection's real idle deadline, or closes it. (This also
/// sidesteps cancelling timers on the hot path.) Loop thread only.
private final class IdleWatch {
    let loop: Loop
    let connection: TCPConnection
    let timeout: Duration
    private var lastActivity: LoopClock.Instant
    var isReading = false
    private var timer: ScheduledCallback?

    init(loop: Loop, connection: TCPConnection, timeout: Duration) {
        self.loop = loop
        self.connection = connection
        self.timeout = timeout
        self.lastActivity = loop.now
        arm(at: lastActivity.advanced(by: timeout))
    }

    /// The idle clock starts when the server begins to wait for bytes.
    func startReading() {
        lastActivity = loop.now
        isReading = true
    }

    private func arm(at deadline: LoopClock.Instant) {
        timer = loop.schedule(at: deadline) { [weak self] in self?.fire() }
    }

    private func fire() {
        timer = nil
        guard isReading else {                      // writing a response: check again later
            arm(at: loop.now.advanced(by: timeout))
            return
        }
        let deadline = lastActivity.advanced(by: timeout)
        if loop.now >= deadline {
            try? connection.close()
        } else {
            arm(at: deadline)
        }
    }

    func stop() {
        timer?.cancel()
        timer = nil
    }
}

func logError(_ message: String) {
    fputs("serial-loop-http-server: \(message)\n", stderr)
}
